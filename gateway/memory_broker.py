"""The second :class:`~gateway.broker.Broker`: Redis Streams' behaviour in memory.

It backs the gateway's unit tests (hub, subscriptions, replay, reader: no Redis, no sockets)
and single-process demos. Offsets are generated like Redis does (``<ms>-<seq>``, strictly
increasing per stream); trimming by count (``max_len``) is exact. Besides the interface it has
what a publisher and a failing Redis do: :meth:`MemoryBroker.add`, :meth:`~MemoryBroker.drop`
(the stream is lost: a new epoch), :meth:`~MemoryBroker.rewind` (a failover lost the newest
entries) and :meth:`~MemoryBroker.interrupt` (the blocked reads lose their connection). One
process only: gateways cannot share it.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Mapping

from gateway.values import EMPTY, StreamEntry, StreamState
from shared.offsets import Offset, format_offset

PARTITION = "memory"


class _Stream:
    __slots__ = ("entries", "epoch", "last", "positions", "removed")

    def __init__(self, epoch: str | None = None) -> None:
        self.entries: list[StreamEntry] = []
        self.positions: list[Offset] = []
        self.epoch = epoch or os.urandom(6).hex()
        self.last: Offset = (0, 0)
        self.removed = 0


class MemoryBroker:
    """Streams in this process's memory, behind the Broker interface (see the module)."""

    def __init__(self, max_len: int = 100_000) -> None:
        self.max_len = max_len
        self._streams: dict[str, _Stream] = {}
        self._changed = asyncio.Condition()
        self._reserved: dict[str, str] = {}
        self._interrupted = False

    # --- writing (what a publisher does) ---------------------------------------------------

    async def add(self, event_type: str, payload: bytes, symbol: str = "", user: str = "") -> str:
        stream = self._streams.get(event_type)
        if stream is None:
            stream = self._streams[event_type] = _Stream(self._reserved.pop(event_type, None))
        ms = int(time.time() * 1000)
        pos = (ms, 0) if ms > stream.last[0] else (stream.last[0], stream.last[1] + 1)
        stream.last = pos
        offset = format_offset(pos)
        stream.entries.append(StreamEntry(event_type, offset, pos, symbol, user, payload))
        stream.positions.append(pos)
        if len(stream.entries) > self.max_len:
            del stream.entries[0], stream.positions[0]
            stream.removed += 1
        async with self._changed:
            self._changed.notify_all()
        return offset

    def drop(self, event_type: str) -> None:
        """Delete a stream, as if Redis lost it: the next add starts a new epoch."""
        self._streams.pop(event_type, None)

    async def interrupt(self) -> None:
        """Fail the blocked read (or else the next one) with a connection error, as a lost Redis
        connection does."""
        self._interrupted = True
        async with self._changed:
            self._changed.notify_all()

    def rewind(self, event_type: str, n: int) -> None:
        """Forget the newest ``n`` entries, as a failover to a lagging replica does."""
        stream = self._streams[event_type]
        del stream.entries[len(stream.entries) - n:], stream.positions[len(stream.positions) - n:]
        stream.last = stream.positions[-1] if stream.positions else (0, 0)

    # --- the Broker interface --------------------------------------------------------------

    async def event_types(self) -> set[str]:
        return set(self._streams)

    async def partitions(self, event_types: list[str]) -> dict[str, list[str]]:
        return {PARTITION: list(event_types)}

    async def read(
        self, partition: str, positions: Mapping[str, Offset], count: int, block_ms: int
    ) -> list[tuple[str, list[StreamEntry]]]:
        def ready() -> list[tuple[str, list[StreamEntry]]]:
            out = []
            for event_type, after in positions.items():
                stream = self._streams.get(event_type)
                if stream is not None:
                    start = bisect.bisect_right(stream.positions, after)
                    if start < len(stream.entries):
                        out.append((event_type, stream.entries[start:start + count]))
            return out

        if self._interrupted:  # the connection was lost while no read was waiting on it
            self._interrupted = False
            raise ConnectionError("memory broker: connection interrupted")
        found = ready()
        if found or block_ms <= 0:
            return found
        async with self._changed:
            try:
                await asyncio.wait_for(
                    self._changed.wait_for(lambda: self._interrupted or bool(ready())), block_ms / 1000)
            except TimeoutError:
                return []
        if self._interrupted:
            self._interrupted = False
            raise ConnectionError("memory broker: connection interrupted")
        return ready()

    async def history(self, event_type: str, after: Offset, count: int) -> list[StreamEntry]:
        stream = self._streams.get(event_type)
        if stream is None:
            return []
        start = bisect.bisect_right(stream.positions, after)
        return stream.entries[start:start + count]

    async def history_before(self, event_type: str, before: Offset | None, count: int) -> list[StreamEntry]:
        stream = self._streams.get(event_type)
        if stream is None:
            return []
        end = len(stream.entries) if before is None else bisect.bisect_left(stream.positions, before)
        return stream.entries[max(0, end - count):end][::-1]

    async def state(self, event_type: str) -> StreamState:
        stream = self._streams.get(event_type)
        if stream is None:
            reserved = self._reserved.get(event_type)
            return EMPTY if reserved is None else StreamState(reserved, None, (0, 0), trimmed=False)
        first = stream.positions[0] if stream.positions else None
        return StreamState(stream.epoch, first, stream.last, trimmed=stream.removed > 0)

    async def states(self, event_types: list[str]) -> dict[str, StreamState]:
        return {t: await self.state(t) for t in event_types}

    async def reserve_epoch(self, event_type: str) -> str:
        stream = self._streams.get(event_type)
        if stream is not None:
            return stream.epoch
        return self._reserved.setdefault(event_type, os.urandom(6).hex())

    async def missing(self, positions: Mapping[str, Offset]) -> set[str]:
        out = set()
        for event_type, pos in positions.items():
            stream = self._streams.get(event_type)
            if stream is None or not stream.positions:
                continue
            index = bisect.bisect_left(stream.positions, pos)
            found = index < len(stream.positions) and stream.positions[index] == pos
            if not found and stream.positions[0] <= pos:
                out.add(event_type)
        return out

    async def new_epoch(self, event_type: str, old_epoch: str, why: str) -> str:
        stream = self._streams.get(event_type)
        if stream is None:
            return ""
        if stream.epoch == old_epoch:
            stream.epoch = os.urandom(6).hex()
        return stream.epoch

    async def refresh(self) -> None:
        return None

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
