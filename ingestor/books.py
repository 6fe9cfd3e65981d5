"""Local order books: diff events in, REST snapshots when needed, top-N ``orderbook_update`` out.

One :class:`~ingestor.orderbook.OrderBook` (the sans-I/O state machine) per symbol, fed by the
``<symbol>@depth@100ms`` diffs. What the book asks for, this module does:

* ``FETCH_SNAPSHOT`` / ``RESYNC``: ``GET /api/v3/depth?limit=SNAPSHOT_LIMIT`` for that symbol
  only, at most one request in flight per symbol (a failed or too-old snapshot is asked for
  again with backoff); other symbols keep publishing;
* ``SYNCED`` / ``UPDATED``: publish the top ``DEPTH_LEVELS`` levels, at most once per
  ``BOOK_INTERVAL`` per symbol (changes in between are folded into the next publication, which
  always reflects the newest book).

When the connection carrying a symbol's diffs is lost, :meth:`Books.reset` discards the book:
diffs sent while it was down are gone, so it is rebuilt from a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from ingestor.binance.errors import ProtocolError
from ingestor.binance.messages import DepthUpdate
from ingestor.binance.rest import parse_depth_snapshot
from ingestor.metrics import IngestorMetrics
from ingestor.normalize import normalize_book
from ingestor.orderbook import Action, OrderBook
from ingestor.rest import RestClient, RestError, depth_weight
from ingestor.sink import Sink
from shared.backoff import delays

log = logging.getLogger("tickstream.ingestor.books")


class _Symbol:
    __slots__ = ("book", "due", "fetch", "next_at")

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self.fetch: asyncio.Task[None] | None = None
        self.next_at = 0.0  # loop time before which no orderbook_update is published
        self.due: asyncio.TimerHandle | None = None


class Books:
    def __init__(
        self,
        symbols: Iterable[str],
        rest: RestClient,
        sink: Sink,
        metrics: IngestorMetrics,
        *,
        depth: int,
        snapshot_limit: int,
        interval: float,
    ) -> None:
        self.rest = rest
        self.sink = sink
        self.metrics = metrics
        self.depth = depth
        self.snapshot_limit = snapshot_limit
        self.interval = interval
        self.symbols = {
            s: _Symbol(OrderBook(s, max_levels=snapshot_limit, max_buffer=10_000)) for s in symbols
        }

    def book(self, symbol: str) -> OrderBook:
        return self.symbols[symbol].book

    def on_diff(self, update: DepthUpdate) -> None:
        state = self.symbols.get(update.symbol)
        if state is None:
            return
        before = state.book.last_update_id
        action = state.book.on_diff(update)
        if action is Action.UPDATED:
            self._publish_soon(state)
        elif action is Action.FETCH_SNAPSHOT:
            self._fetch(state)
        elif action is Action.RESYNC:
            self.metrics.resyncs.labels(update.symbol).inc()
            log.warning("%s: order book gap (diff U=%d after update id %s): resyncing this symbol",
                        update.symbol, update.first_update_id, before)
            self._cancel_due(state)
            self._fetch(state)

    def reset(self, symbols: Iterable[str]) -> None:
        """The diffs of these symbols were interrupted: rebuild their books from scratch."""
        for symbol in symbols:
            state = self.symbols.get(symbol)
            if state is None:
                continue
            state.book.reset()
            self._cancel_due(state)
            if state.fetch is not None:
                state.fetch.cancel()
                state.fetch = None

    async def close(self) -> None:
        for state in self.symbols.values():
            self._cancel_due(state)
            if state.fetch is not None:
                state.fetch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.fetch
                state.fetch = None

    # -- snapshots -------------------------------------------------------------------------------

    def _fetch(self, state: _Symbol) -> None:
        if state.fetch is None:
            state.fetch = asyncio.create_task(self._snapshot(state), name=f"snapshot {state.book.symbol}")

    async def _snapshot(self, state: _Symbol) -> None:
        book = state.book
        symbol = book.symbol
        waits = delays(0.1, 10.0)
        try:
            while True:
                try:
                    body = await self.rest.get(
                        "/api/v3/depth", {"symbol": symbol, "limit": self.snapshot_limit},
                        depth_weight(self.snapshot_limit),
                    )
                    snapshot = parse_depth_snapshot(symbol, body)
                except (RestError, ProtocolError) as exc:
                    log.warning("%s: depth snapshot failed: %s", symbol, exc)
                    action = book.on_snapshot_failed()
                else:
                    self.metrics.snapshots.labels(symbol).inc()
                    action = book.on_snapshot(snapshot)
                    if action is Action.FETCH_SNAPSHOT:
                        log.info("%s: snapshot %d older than the buffered diffs; fetching again",
                                 symbol, snapshot.last_update_id)
                if action is Action.SYNCED:
                    log.info("%s: order book synced at update id %s", symbol, book.last_update_id)
                    self._publish_soon(state)
                    return
                if action is not Action.FETCH_SNAPSHOT:
                    return  # reset meanwhile: the next diff asks again
                await asyncio.sleep(next(waits))
        finally:
            if state.fetch is asyncio.current_task():
                state.fetch = None

    # -- publishing ------------------------------------------------------------------------------

    def _publish_soon(self, state: _Symbol) -> None:
        if state.due is not None:
            return  # already scheduled: it will publish the newest book
        loop = asyncio.get_running_loop()
        now = loop.time()
        if now >= state.next_at:
            self._publish(state, now)
        else:
            state.due = loop.call_at(state.next_at, self._publish_due, state)

    def _publish_due(self, state: _Symbol) -> None:
        state.due = None
        self._publish(state, asyncio.get_running_loop().time())

    def _publish(self, state: _Symbol, now: float) -> None:
        event = normalize_book(state.book, self.depth, now_ms=time.time_ns() // 1_000_000)
        if event is None:
            return
        state.next_at = now + self.interval
        self.sink.put(event, state.book.event_time_ms)

    def _cancel_due(self, state: _Symbol) -> None:
        if state.due is not None:
            state.due.cancel()
            state.due = None
