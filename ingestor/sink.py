"""Events to Redis: a bounded buffer drained by one publishing task, in pipelined batches.

:meth:`Sink.put` never waits: the exchange side keeps reading whatever Redis does. One task
takes everything buffered (up to ``batch_max`` events) and hands it to
:meth:`shared.publisher.AsyncPublisher.publish_many`, which writes it as one pipeline; while that
batch is in flight the next one accumulates, so batches grow with load and latency stays at
one round trip when idle.

Redis outage: the publisher retries a batch until Redis answers (the ingestor's publisher never
gives up, so a batch is never abandoned half-known and re-sent as a duplicate: the publisher's
producer sequence numbers make its retries idempotent); after ``PUBLISH_RETRY_TIMEOUT`` of
failure an error is logged. Meanwhile events accumulate here. ``max_events`` bounds every event
not yet acknowledged by Redis, the batch in flight included. Past the bound the oldest market
data is dropped, counted per event type in ``tickstream_ingestor_buffer_dropped_events`` and
logged: first the oldest *superseded state* (``orderbook_update``, tickers and book tickers:
each is replaced by the next one of its symbol), and only when none is left, the oldest trades
and candles. Nothing is dropped below the bound.

Order: events reach Redis in the order they were put (the two queues that make the drop policy
are merged back by sequence number).

Refetch: dropping a trade or a closed candle breaks its *sequence* (a symbol's trades, a symbol
and interval's candles): the newer items of that sequence still buffered are dropped too, and so
is every new one, so that nothing of it reaches Redis after the hole. At the first publish that
succeeds afterwards (Redis is back), ``on_refetch`` names the broken sequences: the ingestor
starts them over from the last id Redis holds and fetches the rest over REST (then
:meth:`Sink.repair`). Books and tickers are snapshots: the next one replaces what was dropped.

Roles: only the group's leader publishes. A standby's sink is inactive and takes nothing;
:meth:`Sink.deactivate` (stepping down) forgets what is buffered and abandons the batch in
flight: the next leader resumes from what Redis holds. A publish refused by the fence
(:class:`~shared.errors.Fenced`: a newer leader exists) calls ``on_fenced``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Final

from ingestor.backfill import PAGE
from ingestor.metrics import IngestorMetrics
from shared.errors import Fenced, ValidationError
from shared.events import Event
from shared.publisher import AsyncPublisher

log = logging.getLogger("tickstream.ingestor.sink")

STATE_KINDS: Final = frozenset({"ticker", "book_ticker"})
STALL_AFTER: Final = 3.0
"""A batch in flight this long means Redis is unreachable (for /readyz and the logs)."""


def is_state(event: Event) -> bool:
    """Superseded by the next event of its symbol: the first to go when the buffer is full."""
    if event.event_type == "orderbook_update":
        return True
    return event.event_type == "market_data" and event.data.get("kind") in STATE_KINDS


Item = tuple[int, Event, int]  # sequence number, the event, its exchange time in ms (0 = unknown)
SeqKey = tuple[str, ...]
"""A sequence: ``("trades", symbol)`` or ``("candles", symbol, interval)``."""


def sequence_of(event: Event) -> SeqKey | None:
    """The sequence an event belongs to (open candles included: they follow the closed ones)."""
    if event.event_type == "price_update":
        return ("trades", event.symbol or "")
    if event.event_type == "market_data" and event.data.get("kind") == "candle":
        return ("candles", event.symbol or "", str(event.data.get("interval")))
    return None


def is_sequenced(event: Event) -> bool:
    """Whether dropping ``event`` leaves a hole (a trade, a closed candle)."""
    if event.event_type == "price_update":
        return True
    data = event.data
    return event.event_type == "market_data" and data.get("kind") == "candle" and bool(data.get("closed"))


class Sink:
    def __init__(
        self,
        publisher: AsyncPublisher,
        metrics: IngestorMetrics,
        *,
        max_events: int,
        batch_max: int = 5000,
        report_after: float = 15.0,
        active: bool = True,
        on_fenced: Callable[[Fenced], None] | None = None,
        on_refetch: Callable[[frozenset[SeqKey]], None] | None = None,
    ) -> None:
        self.publisher = publisher
        self.metrics = metrics
        self.max_events = max_events
        self.batch_max = max(1, min(batch_max, max_events // 2))
        self.report_after = report_after
        self.active = active
        """False on a standby: nothing is taken."""
        self.on_fenced = on_fenced
        self.on_refetch = on_refetch
        self._state: deque[Item] = deque()
        self._records: deque[Item] = deque()
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._progress = asyncio.Event()  # set whenever the buffer shrinks
        self._task: asyncio.Task[None] | None = None
        self._abandoned: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._in_flight = 0
        self._in_flight_since: float | None = None
        self._dropping_since: float | None = None
        self._dropped_in_episode = 0
        self._broken: set[SeqKey] = set()
        self._refetching: set[SeqKey] = set()

    # -- producer side (synchronous, never waits) ------------------------------------------------

    def put(self, event: Event, exchange_ms: int | None = None) -> None:
        """Buffer ``event`` (as normalized: it is published as is) for the publishing task."""
        if not self.active:
            return
        self._seq += 1
        item = (self._seq, event, exchange_ms or 0)
        if self._broken and sequence_of(event) in self._broken:
            self.metrics.counts.buffer_dropped[event.event_type] += 1  # refetched later
            return
        (self._state if is_state(event) else self._records).append(item)
        if len(self._state) + len(self._records) + self._in_flight > self.max_events:
            self._drop_oldest()
        if not self._wakeup.is_set():
            self._wakeup.set()
            self._idle.clear()

    def _drop_oldest(self) -> None:
        dropped = (self._state or self._records).popleft()[1]
        self.metrics.counts.buffer_dropped[dropped.event_type] += 1
        self._dropped_in_episode += 1
        if is_sequenced(dropped):
            self._break(dropped)
        now = time.monotonic()
        if self._dropping_since is None or now - self._dropping_since >= 10.0:
            log.error("Redis outage buffer full (%d events): dropping the oldest market data "
                      "(%d dropped so far in this outage; trades and closed candles are fetched "
                      "again once Redis is back)", self.max_events, self._dropped_in_episode)
            self._dropping_since = now

    def _break(self, dropped: Event) -> None:
        """A hole in ``dropped``'s sequence: hold back all of it until it is refetched."""
        key = sequence_of(dropped)
        if key is None or key in self._broken:
            return
        self._broken.add(key)
        kept: deque[Item] = deque()
        purged = 0
        for item in self._records:
            if sequence_of(item[1]) == key:
                purged += 1
                self.metrics.counts.buffer_dropped[item[1].event_type] += 1
            else:
                kept.append(item)
        self._records = kept
        log.warning("outage buffer: %s %s broken at %s: holding back its %d newer buffered "
                    "event(s) and what follows until it is refetched", key[0], " ".join(key[1:]),
                    _describe(dropped), purged)

    def repair(self, keys: frozenset[SeqKey]) -> None:
        """These sequences start over (the ingestor reset them to what Redis holds)."""
        self._broken -= keys
        self._refetching -= keys

    @property
    def broken(self) -> frozenset[SeqKey]:
        return frozenset(self._broken)

    # -- backfills -------------------------------------------------------------------------------

    def page_size(self, wanted: int) -> int:
        """The largest backfill page (up to ``wanted``) that fits in the buffer with room to
        spare: a page goes into the buffer at once."""
        return max(1, min(wanted, self.max_events // 4))

    async def room_for_a_page(self) -> None:
        """Wait until a backfill page fits in the buffer (Redis taking what is there)."""
        need = self.page_size(PAGE)
        while self.active and self.buffered + need > self.max_events:
            self._progress.clear()
            await self._progress.wait()

    # -- roles -----------------------------------------------------------------------------------

    def activate(self) -> None:
        """Take events from now on (this ingestor leads its group)."""
        self.active = True
        self._broken.clear()
        self._refetching.clear()

    def deactivate(self) -> None:
        """Stop taking events, forget the buffered ones and abandon the batch in flight."""
        self.active = False
        self._state.clear()
        self._records.clear()
        self._broken.clear()
        self._refetching.clear()
        self._dropped_in_episode = 0
        self._dropping_since = None
        task = self._task
        if task is not None and self._in_flight and task is not asyncio.current_task():
            task.cancel()  # a cancelled publish either ran (then it is in Redis) or did not
            self._abandoned.add(task)
            task.add_done_callback(self._abandoned.discard)
            self._in_flight, self._in_flight_since = 0, None
            self._task = asyncio.create_task(self._run(), name="ingestor-sink")
        if not self._in_flight:
            self._idle.set()
        self._progress.set()

    # -- state -----------------------------------------------------------------------------------

    @property
    def buffered(self) -> int:
        return len(self._state) + len(self._records) + self._in_flight

    @property
    def redis_ok(self) -> bool:
        since = self._in_flight_since
        return since is None or time.monotonic() - since < STALL_AFTER

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingestor-sink")

    async def flush(self, seconds: float) -> bool:
        """Wait until everything put so far is in Redis; False if ``seconds`` passed first."""
        try:
            async with asyncio.timeout(seconds):
                while self.buffered:
                    await self._idle.wait()
            return True
        except TimeoutError:
            return False

    async def stop(self) -> None:
        for task in [self._task, *self._abandoned]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = None
        if self.buffered:
            log.error("stopping with %d events not written to Redis", self.buffered)

    # -- the publishing task ---------------------------------------------------------------------

    def _take(self) -> list[Item]:
        """Up to ``batch_max`` events, oldest first across both queues."""
        batch: list[Item] = []
        state, records = self._state, self._records
        while len(batch) < self.batch_max and (state or records):
            if not state or (records and records[0][0] < state[0][0]):
                batch.append(records.popleft())
            else:
                batch.append(state.popleft())
        return batch

    async def _run(self) -> None:
        me = asyncio.current_task()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while batch := self._take():
                self._in_flight = len(batch)
                self._in_flight_since = time.monotonic()
                try:
                    await self._publish(batch)
                finally:
                    if self._task is me:  # not abandoned by deactivate()
                        self._in_flight = 0
                        self._in_flight_since = None
                        self._progress.set()
            if not self._state and not self._records:
                self._idle.set()

    async def _publish(self, batch: list[Item]) -> None:
        stalled = asyncio.get_running_loop().call_later(self.report_after, self._report_stall)
        try:
            await self.publisher.publish_many([event for _, event, _ in batch])
        except ValidationError:
            await self._publish_one_by_one(batch)
            return
        except Fenced as exc:
            self._fenced(exc, len(batch))
            return
        finally:
            stalled.cancel()
        self._account(batch)
        self._back()

    def _fenced(self, exc: Fenced, events: int) -> None:
        self.metrics.fenced.inc()
        log.error("%s; %d event(s) not written: stepping down to standby", exc, events)
        if self.on_fenced is not None:
            self.on_fenced(exc)

    def _back(self) -> None:
        """A publish succeeded: end an outage episode, ask for the refetch of broken sequences."""
        if self._dropped_in_episode:
            log.warning("Redis reachable again; %d events were dropped while it was not",
                        self._dropped_in_episode)
            self._dropped_in_episode = 0
            self._dropping_since = None
        waiting = frozenset(self._broken - self._refetching)
        if waiting and self.on_refetch is not None:
            self._refetching |= waiting
            self.on_refetch(waiting)

    def _report_stall(self) -> None:
        log.error("Redis unreachable for %g s: holding events until it is back (%d buffered, "
                  "bound %d)", self.report_after, self.buffered, self.max_events)

    def _account(self, batch: list[Item]) -> None:
        now_ms = time.time_ns() // 1_000_000
        counts = self.metrics.counts.published
        observe = self.metrics.latency.observe
        for _, event, exchange_ms in batch:
            counts[event.event_type] += 1
            if exchange_ms:
                observe(max(0, now_ms - exchange_ms) / 1000)

    async def _publish_one_by_one(self, batch: list[Item]) -> None:
        """A batch was refused: isolate the invalid event(s), publish the rest."""
        for index, item in enumerate(batch):
            event = item[1]
            try:
                await self.publisher.publish_many([event])
            except ValidationError as exc:
                self.metrics.invalid_events.labels(event.event_type).inc()
                log.error("event refused by validation, dropped: %s (data %.200r)", exc, event.data)
                continue
            except Fenced as exc:
                self._fenced(exc, len(batch) - index)
                return
            self._account([item])
        self._back()


def _describe(event: Event) -> str:
    data = event.data
    if event.event_type == "price_update":
        return f"trade {data.get('trade_id')}"
    return f"candle {data.get('open_time')}"
