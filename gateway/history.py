"""Shared history reads: concurrent replays of one type read each stretch of the stream once.

After a gateway restart thousands of clients resume at once, each from its own offset, most of
them a few seconds behind. Each replay asks :meth:`SharedHistory.after` for the entries after
its position; the answer comes from a cached **block** when one covers that position, else
from one ``XRANGE`` whose result becomes a block for the replays that follow. One fetch per type
is in flight at a time, and replays of that type waiting meanwhile are served from its result.

A block is an exact stretch of the stream: every entry with ``start < offset <= end``. Blocks
that overlap or touch are merged. Stream entries never change, so a block stays true until the
stream is trimmed past it or goes back; a block unused for ``ttl`` seconds is dropped, each
entry's encoded frames are kept with it (``gateway.values.Encoded.of``: a storm encodes each
event once, not once per replay), the cache holds at most ``max_entries`` entries (oldest
blocks dropped first), and :meth:`forget` drops a type's blocks when the reader finds a gap.

The number of replays reading at once is bounded by :attr:`SharedHistory.slots` (a semaphore
that :mod:`gateway.replay` holds for the whole replay), so a reconnect storm queues instead of
piling memory.

Stream states (epoch, first and last offsets) that subscribes ask for are coalesced too, by
rounds (:meth:`SharedHistory.state`): a caller never gets an answer to a request that was sent
before it asked, so the state is never older than the caller's subscription.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.broker import Broker
from gateway.values import StreamEntry, StreamState
from shared.offsets import Offset


@dataclass(slots=True)
class Block:
    start: Offset  # exclusive
    entries: list[StreamEntry]
    positions: list[Offset] = field(default_factory=list)
    used: float = 0.0  # last time a lookup was served from it

    @property
    def end(self) -> Offset:
        return self.positions[-1] if self.positions else self.start


def merge_blocks(blocks: list[Block], new: Block) -> list[Block]:
    """Insert ``new`` and merge every block it overlaps or touches (pure)."""
    out: list[Block] = []
    for block in sorted([*blocks, new], key=lambda b: b.start):
        last = out[-1] if out else None
        if last is not None and block.start <= last.end:
            tail = bisect.bisect_right(block.positions, last.end)
            last.entries.extend(block.entries[tail:])
            last.positions.extend(block.positions[tail:])
            last.used = max(last.used, block.used)
        else:
            out.append(Block(block.start, list(block.entries), list(block.positions), block.used))
    return out


class SharedHistory:
    """Owns the cached history blocks, the replay slots and the coalesced state requests."""

    def __init__(self, broker: Broker, *, max_entries: int = 100_000, ttl: float = 10.0,
                 concurrency: int = 512, clock: Callable[[], float] = time.monotonic) -> None:
        self.broker = broker
        self.max_entries = max_entries
        self.ttl = ttl
        self.clock = clock
        self.slots = asyncio.Semaphore(concurrency)
        self.fetches = 0  # XRANGE calls made (for metrics and the storm benchmark)
        self.hits = 0
        self._blocks: dict[str, list[Block]] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._size = 0
        self.state_fetches = 0
        self._rounds: dict[str, _Round] = {}
        self._round_tasks: set[asyncio.Task[None]] = set()

    async def after(self, event_type: str, after: Offset, count: int) -> list[StreamEntry]:
        """Up to ``count`` entries with offset > ``after``, oldest first (as ``broker.history``)."""
        found = self._lookup(event_type, after, count)
        if found is not None:
            self.hits += 1
            return found
        lock = self._locks.setdefault(event_type, asyncio.Lock())
        async with lock:
            found = self._lookup(event_type, after, count)  # a fetch we waited for may cover it
            if found is not None:
                self.hits += 1
                return found
            self.fetches += 1
            page = await self.broker.history(event_type, after, count)
            if page:
                self._insert(event_type, Block(after, list(page), [e.pos for e in page], self.clock()))
            return page

    async def state(self, event_type: str) -> StreamState:
        """``broker.state``, one request per round for every caller waiting on that round."""
        current = self._rounds.get(event_type)
        if current is None or current.sent:  # none, or sent before we asked: join the next
            if current is None or current.next is None:
                round_ = _Round()
                if current is None:
                    self._rounds[event_type] = round_
                    task = asyncio.get_running_loop().create_task(self._run_round(event_type, round_))
                    self._round_tasks.add(task)  # the loop keeps only a weak reference
                    task.add_done_callback(self._round_tasks.discard)
                else:
                    current.next = round_
            else:
                round_ = current.next
        else:
            round_ = current
        return await asyncio.shield(round_.result)

    async def _run_round(self, event_type: str, round_: _Round) -> None:
        while True:
            round_.sent = True
            self.state_fetches += 1
            try:
                round_.result.set_result(await self.broker.state(event_type))
            except Exception as exc:  # every waiter of this round gets it (and retries)
                round_.result.set_exception(exc)
                round_.result.exception()  # retrieved: no "never retrieved" warning
            following = round_.next
            if following is None:
                del self._rounds[event_type]
                return
            self._rounds[event_type] = round_ = following

    def forget(self, event_type: str) -> None:
        for block in self._blocks.pop(event_type, []):
            self._size -= len(block.entries)

    def _lookup(self, event_type: str, after: Offset, count: int) -> list[StreamEntry] | None:
        blocks = self._blocks.get(event_type)
        if not blocks:
            return None
        now = self.clock()
        for block in blocks:
            if now - block.used > self.ttl:
                continue
            if block.start <= after < block.end:
                block.used = now
                index = bisect.bisect_right(block.positions, after)
                return block.entries[index:index + count]
        return None

    def _insert(self, event_type: str, block: Block) -> None:
        now = self.clock()
        fresh = [b for b in self._blocks.get(event_type, []) if now - b.used <= self.ttl]
        merged = merge_blocks(fresh, block)
        self._size += sum(len(b.entries) for b in merged) - sum(
            len(b.entries) for b in self._blocks.get(event_type, []))
        self._blocks[event_type] = merged
        while self._size > self.max_entries:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        oldest_type, oldest = None, None
        for event_type, blocks in self._blocks.items():
            for block in blocks:
                if oldest is None or block.used < oldest.used:
                    oldest_type, oldest = event_type, block
        if oldest_type is None or oldest is None:
            self._size = 0
            return
        self._blocks[oldest_type].remove(oldest)
        self._size -= len(oldest.entries)


class _Round:
    """One coalesced ``state`` request and the round queued behind it."""

    __slots__ = ("next", "result", "sent")

    def __init__(self) -> None:
        self.result: asyncio.Future[StreamState] = asyncio.get_running_loop().create_future()
        self.sent = False
        self.next: _Round | None = None
