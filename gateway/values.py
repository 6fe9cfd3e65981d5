"""The values the gateway's layers hand each other; the bottom of the gateway (imports none of it).

* :class:`~shared.codec.StreamEntry` -- one stream entry as the broker returns it, its offset
  parsed once (``pos``); the one entry type from the broker to the socket.
* :class:`Encoded` -- one event as sent to clients: its JSON and msgpack frames, each built at
  most once and shared by every recipient.
* :class:`Batch` -- consecutive public events of one type and their shared frame lists.
* :class:`StreamState` -- a stream's epoch, first retained and last generated offsets.
* :data:`Frame` -- what the writer queues and the socket sends: always exact ``bytes``, from the
  encoder (orjson, msgpack) to the socket, never decoded to ``str`` on the way. A connection
  speaks one format, so its frames go out as WebSocket text frames (JSON, UTF-8 already) or
  binary frames (msgpack) by the connection's format, not by the frame's type.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import codec
from shared.codec import StreamEntry
from shared.offsets import Offset, format_offset

__all__ = ["EMPTY", "Batch", "Encoded", "Frame", "StreamEntry", "StreamState"]

Frame = bytes  # one WebSocket message: JSON (sent as text) or msgpack (binary), per connection


class Encoded:
    """One event as sent to clients: its JSON and msgpack frames, each made at most once."""

    __slots__ = ("_json", "_msgpack", "entry", "pos")

    def __init__(self, entry: StreamEntry) -> None:
        self.entry = entry
        self.pos: Offset = entry.pos
        self._json: bytes | None = None
        self._msgpack: bytes | None = None

    @classmethod
    def of(cls, entry: StreamEntry) -> Encoded:
        """The entry's one Encoded (kept in its ``cache``): replays sharing a page encode once."""
        encoded = entry.cache
        if encoded is None:
            encoded = entry.cache = cls(entry)
        assert isinstance(encoded, Encoded)
        return encoded

    @property
    def ts(self) -> int:
        return self.pos[0]

    def json(self) -> bytes:
        """The JSON frame; raises :class:`~shared.errors.CodecError` if the payload is broken."""
        if self._json is None:
            self._json = codec.event_json(self.entry)
        return self._json

    def msgpack(self) -> bytes:
        if self._msgpack is None:
            self._msgpack = codec.event_msgpack(self.entry)
        return self._msgpack

    def wire(self, binary: bool) -> Frame:
        return self.msgpack() if binary else self.json()


class Batch:
    """Consecutive public events of one type, as shared frame lists (built once, on demand).

    Every subscription that takes the whole batch receives the same list object and the same
    byte count: fan-out costs one list append per subscriber, not one per event.
    """

    __slots__ = ("_json", "_msgpack", "events")

    def __init__(self, events: list[Encoded]) -> None:
        self.events = events
        self._json: tuple[list[Frame], int] | None = None
        self._msgpack: tuple[list[Frame], int] | None = None

    def frames(self, binary: bool) -> tuple[list[Frame], int]:
        """The frames of every event in one format, and their total size in bytes."""
        if binary:
            if self._msgpack is None:
                items: list[Frame] = [e.msgpack() for e in self.events]
                self._msgpack = (items, sum(map(len, items)))
            return self._msgpack
        if self._json is None:
            items = [e.json() for e in self.events]
            self._json = (items, sum(map(len, items)))
        return self._json


@dataclass(frozen=True, slots=True)
class StreamState:
    """A stream as it stands: its epoch, first retained offset and last generated offset."""

    epoch: str  # "" when the stream was never published to
    first: Offset | None  # None when nothing is retained
    last: Offset  # (0, 0) when nothing was ever written
    trimmed: bool = True  # False when every entry ever added is still retained

    @property
    def earliest(self) -> str:
        """The oldest offset a client can resume from (CONTRACT: ``earliest``)."""
        return format_offset(self.first if self.first is not None else self.last)


EMPTY = StreamState("", None, (0, 0), trimmed=False)
