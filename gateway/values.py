"""The values the gateway's layers hand each other; the bottom of the gateway.

It imports only :mod:`gateway.wsframe` (frame headers, sans I/O, itself importing nothing).

* :class:`~shared.codec.StreamEntry` -- one stream entry as the broker returns it, its offset
  parsed once (``pos``); the one entry type from the broker to the socket.
* :class:`Encoded` -- one event as sent to clients, in each :data:`Form` it is asked for (JSON or
  msgpack, as a payload or as a whole WebSocket frame), each built at most once and shared by
  every recipient.
* :class:`Batch` -- consecutive public events of one type and their shared frame lists.
* :class:`StreamState` -- a stream's epoch, first retained and last generated offsets.
* :data:`Frame` -- what the writer queues and the socket sends: always exact ``bytes``, from the
  encoder (orjson, msgpack) to the socket, never decoded to ``str`` on the way. A connection
  speaks one format, so its frames go out as WebSocket text frames (JSON, UTF-8 already) or
  binary frames (msgpack) by the connection's format, not by the frame's type.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway import wsframe
from shared import codec
from shared.codec import StreamEntry
from shared.offsets import Offset, format_offset

__all__ = ["EMPTY", "JSON", "JSON_FRAME", "MSGPACK", "MSGPACK_FRAME", "Batch", "Encoded", "Form",
           "Frame", "StreamEntry", "StreamState", "form_of"]

# What a writer queues and a socket writes: one message (JSON sent as text, or msgpack), or
# where the writer frames itself one whole WebSocket frame or a run of them (see Form).
Frame = bytes

# What a connection's writer queues of an event: the message (a payload the library or a batch
# frame wraps) or, where the writer frames itself, the whole WebSocket frame. Server frames are
# not masked, so a frame is the same bytes for every such connection: built once, shared.
Form = int
JSON, MSGPACK, JSON_FRAME, MSGPACK_FRAME = 0, 1, 2, 3


def form_of(binary: bool, framed: bool) -> Form:
    return (JSON_FRAME if framed else JSON) | int(binary)


class Encoded:
    """One event as sent to clients, in each :data:`Form` asked for, each made at most once."""

    __slots__ = ("_forms", "entry", "pos")

    def __init__(self, entry: StreamEntry) -> None:
        self.entry = entry
        self.pos: Offset = entry.pos
        self._forms: list[bytes | None] = [None, None, None, None]

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

    def wire(self, form: Form) -> Frame:
        """The event in ``form``; raises :class:`~shared.errors.CodecError` if it is broken."""
        made = self._forms[form]
        if made is None:
            binary = bool(form & 1)
            if form >= JSON_FRAME:  # the message is not kept too (cached history holds these)
                payload = self._forms[form - JSON_FRAME] or self._encode(binary)
                made = wsframe.header(binary, len(payload)) + payload
            else:
                made = self._encode(binary)
            self._forms[form] = made
        return made

    def _encode(self, binary: bool) -> bytes:
        return codec.event_msgpack(self.entry) if binary else codec.event_json(self.entry)


class Batch:
    """Consecutive public events of one type, as shared frame lists (built once per form).

    Every subscription that takes the whole batch receives the same list object and the same
    byte count: fan-out costs one list append per subscriber, not one per event. In a frame
    form the run is one ``bytes`` (every event's frame, in order): the very object each such
    connection writes, so a flush of one run copies nothing per connection.
    """

    __slots__ = ("_forms", "events")

    def __init__(self, events: list[Encoded]) -> None:
        self.events = events
        self._forms: list[tuple[list[Frame], int] | None] = [None, None, None, None]

    def frames(self, form: Form) -> tuple[list[Frame], int]:
        """The events in one form (a list of messages, or one bytes of frames), and their size."""
        made = self._forms[form]
        if made is None:
            if form >= JSON_FRAME:
                binary = bool(form & 1)
                parts: list[bytes] = []
                for event in self.events:
                    payload = event.wire(form - JSON_FRAME)
                    parts += (wsframe.header(binary, len(payload)), payload)
                run = b"".join(parts)
                made = ([run], len(run))
            else:
                items = [e.wire(form) for e in self.events]
                made = (items, sum(map(len, items)))
            self._forms[form] = made
        return made


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
