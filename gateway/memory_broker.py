"""An in-memory broker with the same behaviour as Redis Streams, for tests and demos.

Offsets are generated like Redis does (``<ms>-<seq>``, strictly increasing per stream); trimming
by count is exact. One process only: gateways cannot share it.
"""

from __future__ import annotations

import asyncio
import bisect
import os
import time
from collections.abc import Mapping

from gateway.broker import EMPTY, Entry, StreamState
from shared.codec import StreamEntry
from shared.offsets import Offset, format_offset


class _Stream:
    __slots__ = ("entries", "epoch", "last", "positions", "removed")

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.positions: list[Offset] = []
        self.epoch = os.urandom(6).hex()
        self.last: Offset = (0, 0)
        self.removed = 0


class MemoryBroker:
    def __init__(self, max_len: int = 100_000) -> None:
        self.max_len = max_len
        self._streams: dict[str, _Stream] = {}
        self._changed = asyncio.Condition()

    # --- writing (what a publisher does) ---------------------------------------------------

    async def add(self, event_type: str, payload: bytes, symbol: str = "", user: str = "") -> str:
        stream = self._streams.get(event_type)
        if stream is None:
            stream = self._streams[event_type] = _Stream()
        ms = int(time.time() * 1000)
        pos = (ms, 0) if ms > stream.last[0] else (stream.last[0], stream.last[1] + 1)
        stream.last = pos
        offset = format_offset(pos)
        stream.entries.append(Entry(StreamEntry(event_type, offset, symbol, user, payload), pos))
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

    # --- the Broker interface --------------------------------------------------------------

    async def event_types(self) -> set[str]:
        return set(self._streams)

    async def read(
        self, positions: Mapping[str, Offset], count: int, block_ms: int
    ) -> list[tuple[str, list[Entry]]]:
        def ready() -> list[tuple[str, list[Entry]]]:
            out = []
            for event_type, after in positions.items():
                stream = self._streams.get(event_type)
                if stream is not None:
                    start = bisect.bisect_right(stream.positions, after)
                    if start < len(stream.entries):
                        out.append((event_type, stream.entries[start:start + count]))
            return out

        found = ready()
        if found or block_ms <= 0:
            return found
        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: bool(ready())), block_ms / 1000)
            except TimeoutError:
                return []
        return ready()

    async def history(self, event_type: str, after: Offset, count: int) -> list[Entry]:
        stream = self._streams.get(event_type)
        if stream is None:
            return []
        start = bisect.bisect_right(stream.positions, after)
        return stream.entries[start:start + count]

    async def history_before(self, event_type: str, before: Offset | None, count: int) -> list[Entry]:
        stream = self._streams.get(event_type)
        if stream is None:
            return []
        end = len(stream.entries) if before is None else bisect.bisect_left(stream.positions, before)
        return stream.entries[max(0, end - count):end][::-1]

    async def state(self, event_type: str) -> StreamState:
        stream = self._streams.get(event_type)
        if stream is None:
            return EMPTY
        first = stream.positions[0] if stream.positions else None
        return StreamState(stream.epoch, first, stream.last, trimmed=stream.removed > 0)

    async def states(self, event_types: list[str]) -> dict[str, StreamState]:
        return {t: await self.state(t) for t in event_types}

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
