"""Where a gateway gets events from: the :class:`Broker` interface and its Redis implementation.

The gateway needs five things from a broker: the set of event types, a blocking read of every
stream from given positions, a page of history after an offset (and before one, for ``last``),
and the state of a stream (epoch, first retained and last offsets). :class:`RedisBroker` does
them on Redis Streams; :class:`gateway.memory_broker.MemoryBroker` does them in memory for tests
and single-process demos.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from redis.exceptions import ResponseError

from shared.codec import StreamEntry, decode_entry
from shared.keys import Keys
from shared.offsets import Offset, format_offset, parse_offset
from shared.redisconn import async_client


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


@dataclass(slots=True)
class Entry:
    """A stream entry plus its parsed offset, as the gateway passes it around."""

    entry: StreamEntry
    pos: Offset

    @classmethod
    def of(cls, entry: StreamEntry) -> Entry:
        return cls(entry, parse_offset(entry.offset))


class Broker(Protocol):
    async def event_types(self) -> set[str]: ...

    async def read(
        self, positions: Mapping[str, Offset], count: int, block_ms: int
    ) -> list[tuple[str, list[Entry]]]: ...

    async def history(self, event_type: str, after: Offset, count: int) -> list[Entry]: ...

    async def history_before(self, event_type: str, before: Offset | None, count: int) -> list[Entry]:
        """Entries with offset < ``before`` (None: the newest), newest first."""
        ...

    async def state(self, event_type: str) -> StreamState: ...

    async def states(self, event_types: list[str]) -> dict[str, StreamState]: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def _pos(value: bytes | str | None) -> Offset | None:
    if not value:
        return None
    pos = parse_offset(value)
    return None if pos == (0, 0) else pos


class RedisBroker:
    """Redis Streams behind the Broker interface. Errors are redis-py's connection errors."""

    def __init__(self, url: str, keys: Keys) -> None:
        self.keys = keys
        # Blocking reads use their own connection without a socket timeout shorter than BLOCK.
        self._reader = async_client(url, name="tickstream-gateway-reader", socket_timeout=None)
        self._client = async_client(url, name="tickstream-gateway", socket_timeout=5.0)

    async def event_types(self) -> set[str]:
        members: Any = await self._client.smembers(self.keys.types())
        return {m.decode() for m in members}

    async def read(
        self, positions: Mapping[str, Offset], count: int, block_ms: int
    ) -> list[tuple[str, list[Entry]]]:
        streams = {self.keys.stream(t): format_offset(p) for t, p in positions.items()}
        reply: Any = await self._reader.xread(streams, count=count, block=block_ms)  # type: ignore[arg-type]
        out = []
        for stream, raw_entries in reply or []:
            event_type = self.keys.event_type_of(stream)
            out.append((event_type, [Entry.of(decode_entry(event_type, i, f)) for i, f in raw_entries]))
        return out

    async def history(self, event_type: str, after: Offset, count: int) -> list[Entry]:
        raw: Any = await self._client.xrange(
            self.keys.stream(event_type), min="(" + format_offset(after), max="+", count=count
        )
        return [Entry.of(decode_entry(event_type, i, f)) for i, f in raw]

    async def history_before(self, event_type: str, before: Offset | None, count: int) -> list[Entry]:
        top = "+" if before is None else "(" + format_offset(before)
        raw: Any = await self._client.xrevrange(self.keys.stream(event_type), max=top, min="-", count=count)
        return [Entry.of(decode_entry(event_type, i, f)) for i, f in raw]

    async def state(self, event_type: str) -> StreamState:
        return (await self.states([event_type]))[event_type]

    async def states(self, event_types: list[str]) -> dict[str, StreamState]:
        async with self._client.pipeline(transaction=False) as pipe:
            for event_type in event_types:
                pipe.hget(self.keys.meta(event_type), "epoch")
                pipe.xinfo_stream(self.keys.stream(event_type))
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        out = {}
        for index, event_type in enumerate(event_types):
            epoch, info = replies[2 * index], replies[2 * index + 1]
            if isinstance(epoch, Exception):
                raise epoch
            if isinstance(info, ResponseError):  # no such stream
                out[event_type] = EMPTY if not epoch else StreamState(epoch.decode(), None, (0, 0), True)
                continue
            if isinstance(info, Exception):
                raise info
            first = info.get("first-entry")
            out[event_type] = StreamState(
                epoch.decode() if epoch else "",
                parse_offset(first[0]) if first else None,
                _pos(info.get("last-generated-id")) or (0, 0),
                trimmed=int(info.get("entries-added", 0)) > int(info.get("length", 0)),
            )
        return out

    async def ping(self) -> None:
        await self._client.ping()

    async def close(self) -> None:
        await self._reader.aclose()
        await self._client.aclose()
