"""Gapless, duplicate-free, in-order publishing of one id sequence, with REST backfill.

An :class:`OrderedFeed` owns one sequence: a symbol's aggregate trades (ids ``a``, step 1) or one
symbol and interval's closed candles (open times, step one interval). Items come from the live
stream (:meth:`~OrderedFeed.on_live`) and from REST; the feed publishes each id once, in
increasing order:

* the next expected id is published at once (the common case: nothing is held);
* an id at or below the last published one is a duplicate (rotation overlap, backfill overlap)
  and is dropped;
* an id past the next expected one reveals a hole: from then on the feed *holds* every live item
  of this sequence and runs a backfill task, which pages the missing ids over REST
  (``fromId`` / ``startTime`` = next expected, pages of 1000) and publishes them, in order,
  before the held live items; a hole filled by a late live item (two connections interleaving)
  is published as soon as it arrives;
* after a reconnect, :meth:`~OrderedFeed.catch_up` fetches from the next expected id until
  REST has nothing more, so what was missed is published even if no live item follows soon.

A hole REST cannot fill (the exchange no longer has those ids, or ``max_wait`` passed with REST
failing) is skipped, logged, and counted in ``tickstream_ingestor_backfill_missing``. The gap
bookkeeping is :class:`ingestor.gaps.SequenceTracker` (sans-I/O).

:meth:`~OrderedFeed.reset` starts a feed over from the last id Redis holds (a takeover, a
restart, a refetch after the outage buffer dropped some): whatever was held or being fetched is
forgotten and :meth:`~OrderedFeed.catch_up` then fetches everything after that id. On
:meth:`~OrderedFeed.close` (shutdown) held items past an unfilled hole are *not* published: the
next leader resumes from the last published id and fetches them, hole included.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ingestor.binance.errors import ProtocolError
from ingestor.binance.messages import AggTrade, Kline
from ingestor.binance.rest import parse_rest_agg_trades, parse_rest_klines
from ingestor.gaps import Gap, SequenceTracker
from ingestor.metrics import IngestorMetrics
from ingestor.rest import RestClient, RestError
from shared.backoff import delays

log = logging.getLogger("tickstream.ingestor.backfill")

T = TypeVar("T")
PAGE = 1000
MAX_HELD = 50_000
"""Most live items held behind one hole; past it the hole is given up (memory bound)."""


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    complete: bool
    """True when REST had nothing more after these (caught up with the exchange)."""


class OrderedFeed(Generic[T]):
    def __init__(
        self,
        name: str,
        tracker: SequenceTracker,
        key: Callable[[T], int],
        fetch: Callable[[int], Awaitable[Page[T]]],
        emit: Callable[[T, bool], None],
        metrics: IngestorMetrics,
        event_type: str,
        *,
        step: Callable[[int], int] = lambda key: key + 1,
        max_wait: float = 60.0,
        on_idle: Callable[[], None] | None = None,
        room: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.tracker = tracker
        self._key = key
        self._fetch = fetch
        self._emit = emit
        self._metrics = metrics
        self._event_type = event_type
        self._step = step
        self._max_wait = max_wait
        self._on_idle = on_idle
        self._room = room
        self._held: dict[int, tuple[T, bool]] = {}
        self._task: asyncio.Task[None] | None = None
        self._catch_up = False
        self._closing = False
        self.filled = 0
        """Items backfilled since the last :meth:`reset`."""
        self.filled_range: tuple[int, int] | None = None
        """The first and last id backfilled since the last :meth:`reset`."""

    @property
    def filling(self) -> bool:
        return self._task is not None

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The running backfill, if any."""
        return self._task

    @property
    def held(self) -> int:
        return len(self._held)

    def on_live(self, item: T) -> None:
        key = self._key(item)
        last = self.tracker.last
        if last is not None and key <= last:
            self._metrics.counts.duplicates += 1
            return
        if self._task is None:
            if last is None or key == self.tracker.resume_from():
                self._publish(item, False)
                return
            self._held[key] = (item, False)
            self._start()
            return
        if key in self._held:
            self._metrics.counts.duplicates += 1
            return
        self._held[key] = (item, False)
        self._drain()

    def catch_up(self) -> None:
        """Fetch whatever the exchange has after the last published id (after a reconnect)."""
        if self.tracker.last is None:
            return
        self._catch_up = True
        if self._task is None:
            self._start()

    def reset(self, last: int | None) -> None:
        """Start over after ``last`` (None: from the next live item): held items and a running
        backfill are forgotten. Call :meth:`catch_up` to fetch what followed ``last``."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._held.clear()
        self._catch_up = False
        self.tracker.seed(last)
        self.filled = 0
        self.filled_range = None

    async def close(self) -> None:
        """Stop backfilling. Held items after an unfilled hole are not published (that would
        make the hole permanent): the next leader fetches them, from the last published id."""
        self._closing = True
        if self._task is not None:
            task = self._task
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._task = None
        self._drain()
        if self._held:
            log.warning("%s: %d item(s) after the unfilled id %s not published at shutdown: the "
                        "next leader fetches them", self.name, len(self._held),
                        self.tracker.resume_from())
            self._held.clear()
        self._catch_up = False
        if self._on_idle is not None:
            self._on_idle()

    # -- internals -------------------------------------------------------------------------------

    def _start(self) -> None:
        self._task = asyncio.create_task(self._fill(), name=f"backfill {self.name}")

    def _publish(self, item: T, backfilled: bool) -> None:
        verdict = self.tracker.observe(self._key(item))
        if isinstance(verdict, Gap):  # a hole given up on: nothing will fill it any more
            self.tracker.resolve(verdict.from_id, verdict.to_id)
        if backfilled:
            self._metrics.backfilled.labels(self._event_type).inc()
            key = self._key(item)
            self.filled += 1
            first = key if self.filled_range is None else self.filled_range[0]
            self.filled_range = (first, key)
        self._emit(item, backfilled)

    def _drain(self) -> None:
        held = self._held
        expected = self.tracker.resume_from()
        while expected in held:
            item, backfilled = held.pop(expected)
            self._publish(item, backfilled)
            expected = self.tracker.resume_from()

    def _skip_hole(self, why: str) -> None:
        """Publish the oldest held item past the hole that cannot be filled."""
        expected = self.tracker.resume_from()
        first = min(self._held)
        missing = self._count(expected, first) if expected is not None else 0
        self._metrics.backfill_missing.labels(self._event_type).inc(missing)
        log.warning("%s: %d missing id(s) from %s before %s left unfilled: %s", self.name, missing,
                    expected, first, why)
        item, backfilled = self._held.pop(first)
        self._publish(item, backfilled)
        self._drain()

    def _count(self, start: int, stop: int) -> int:
        """How many ids from ``start`` up to (not including) ``stop``."""
        if self._step(start) == start + 1:  # trade ids
            return max(0, stop - start)
        n, value = 0, start
        while value < stop and n < 100_000:  # candle open times (months differ in length)
            n, value = n + 1, self._step(value)
        return n

    def _give_up(self, why: str) -> None:
        self._catch_up = False
        while self._held:
            self._skip_hole(why)

    async def _fill(self) -> None:
        deadline = time.monotonic() + self._max_wait
        waits = delays(0.2, 5.0)
        try:
            while True:
                self._drain()
                if not self._held and not self._catch_up:
                    return
                if time.monotonic() > deadline:
                    self._give_up(f"backfill did not complete within {self._max_wait:g} s")
                    return
                if len(self._held) > MAX_HELD:
                    self._give_up(f"more than {MAX_HELD} live items held behind the hole")
                    return
                if self._room is not None:  # a page must fit in the sink's buffer
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._room(),
                                               max(0.0, deadline - time.monotonic()) + 0.01)
                    if time.monotonic() > deadline:
                        continue  # given up on at the top of the loop
                start = self.tracker.resume_from()
                assert start is not None
                try:
                    page = await self._fetch(start)
                except (RestError, ProtocolError) as exc:
                    wait = min(next(waits), max(0.0, deadline - time.monotonic()))
                    log.warning("%s: backfill from %d failed (%s); again in %.2f s", self.name, start,
                                exc, wait)
                    await asyncio.sleep(wait)
                    continue
                # Live items may have been published while the page was on its way: only what is
                # still after the last published id is new (anything else would sit in held for
                # ever, below the next expected id, and be published twice when skipped).
                last = self.tracker.last
                for item in page.items:
                    key = self._key(item)
                    if (last is None or key > last) and key not in self._held:
                        self._held[key] = (item, True)
                self._drain()
                if page.complete:
                    self._catch_up = False
                if self._held and self.tracker.resume_from() == start:
                    if page.items:  # REST starts past the hole: the exchange no longer has it
                        self._skip_hole("the exchange no longer has them")
                    else:  # REST has nothing yet though later ids exist: let it catch up
                        await asyncio.sleep(min(next(waits), max(0.0, deadline - time.monotonic())))
        finally:
            if self._task is asyncio.current_task():  # not a task reset() replaced
                self._task = None
                if self._on_idle is not None and not self._closing:
                    self._on_idle()


# -- REST pages ------------------------------------------------------------------------------------


def agg_trade_pages(rest: RestClient, symbol: str,
                    limit: int = PAGE) -> Callable[[int], Awaitable[Page[AggTrade]]]:
    async def fetch(from_id: int) -> Page[AggTrade]:
        body = await rest.get("/api/v3/aggTrades", {"symbol": symbol, "fromId": from_id,
                                                    "limit": limit}, 4)
        rows = parse_rest_agg_trades(symbol, body)
        return Page(rows, len(rows) < limit)

    return fetch


def closed_kline_pages(
    rest: RestClient, symbol: str, interval: str, limit: int = PAGE
) -> Callable[[int], Awaitable[Page[Kline]]]:
    async def fetch(start_time: int) -> Page[Kline]:
        body = await rest.get("/api/v3/klines", {"symbol": symbol, "interval": interval,
                                                 "startTime": start_time, "limit": limit}, 2)
        rows = parse_rest_klines(symbol, interval, body, now_ms=time.time_ns() // 1_000_000)
        closed = [k for k in rows if k.closed]
        return Page(closed, len(rows) < limit or len(closed) < len(rows))

    return fetch
