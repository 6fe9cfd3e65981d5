"""The processing side: messages from every connection, parsed and dispatched in arrival order.

Connections append ``(connection, receive ms, bytes)`` to one queue (:meth:`Pipeline.put`, the
read loops' only work); a single task takes them in batches, parses each with
:func:`~ingestor.binance.parser.parse_stream_frame` and hands the message to its feed. Between
batches it yields, so reading and publishing never starve.

* A malformed message (not JSON, wrong field types, unknown event, binary garbage) is counted in
  ``tickstream_ingestor_malformed_messages``, logged with an excerpt (at most 5 lines per
  connection per 10 s, then a count of those not shown) and skipped; the connection and its
  other messages are unaffected.
* The queue is bounded (``max_queued`` messages). When processing falls that far behind, new
  messages are dropped and counted rather than slowing the read loops; every feed heals from it
  (trade and candle ids are backfilled, a depth gap resyncs the book, state updates are
  superseded).
* Each data message stamps its stream's last-seen time on its connection (staleness) and is
  written to the ``--record`` file when recording.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from ingestor.binance.errors import ProtocolError
from ingestor.binance.messages import (
    AggTrade,
    BookTicker,
    ControlError,
    ControlResult,
    DepthUpdate,
    Kline,
    ServerShutdown,
    Ticker24h,
)
from ingestor.binance.parser import parse_stream_frame
from ingestor.books import Books
from ingestor.connection import Connection
from ingestor.feeds import KlineFeeds, StateFeeds, TradeFeeds
from ingestor.metrics import IngestorMetrics
from ingestor.record import Recorder

log = logging.getLogger("tickstream.ingestor.pipeline")

BATCH = 1000
LOG_WINDOW = 10.0
LOG_BURST = 5


class _LogBudget:
    """At most ``LOG_BURST`` lines per ``LOG_WINDOW`` seconds; counts what it swallowed."""

    __slots__ = ("shown", "suppressed", "window_start")

    def __init__(self) -> None:
        self.window_start = 0.0
        self.shown = 0
        self.suppressed = 0

    def allow(self, now: float) -> tuple[bool, int]:
        if now - self.window_start >= LOG_WINDOW:
            self.window_start, self.shown = now, 0
        if self.shown < LOG_BURST:
            self.shown += 1
            suppressed, self.suppressed = self.suppressed, 0
            return True, suppressed
        self.suppressed += 1
        return False, 0


class Pipeline:
    def __init__(
        self,
        metrics: IngestorMetrics,
        *,
        trades: TradeFeeds | None,
        klines: KlineFeeds | None,
        states: StateFeeds,
        books: Books | None,
        recorder: Recorder | None,
        on_shutdown: Callable[[Connection], None],
        max_queued: int = 100_000,
    ) -> None:
        self.metrics = metrics
        self.counts = metrics.counts
        self.trades = trades
        self.klines = klines
        self.states = states
        self.books = books
        self.recorder = recorder
        self.on_shutdown = on_shutdown
        self.max_queued = max_queued
        self._queue: deque[tuple[Connection, int, bytes]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._malformed_logs: dict[str, _LogBudget] = {}
        self._overflow_log = _LogBudget()

    # -- the read loops' side --------------------------------------------------------------------

    def put(self, conn: Connection, receive_ms: int, data: bytes) -> None:
        queue = self._queue
        if len(queue) >= self.max_queued:
            self.counts.frames_dropped += 1
            show, hidden = self._overflow_log.allow(time.monotonic())
            if show:
                conn.log.error("processing is %d messages behind: dropping new messages "
                               "(%d more not logged)", len(queue), hidden)
            return
        queue.append((conn, receive_ms, data))
        self._wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ingestor-pipeline")

    async def stop(self) -> None:
        """Process what is queued, then stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._process(len(self._queue))

    async def _run(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            self._process(BATCH)
            await asyncio.sleep(0)

    def _process(self, limit: int) -> None:
        queue = self._queue
        now = time.monotonic()
        for _ in range(min(limit, len(queue))):
            conn, receive_ms, data = queue.popleft()
            try:
                self._handle(conn, receive_ms, data, now)
            except Exception:  # a bug must not stop ingestion: report it, go on
                log.exception("processing a message failed: %.200r", data)

    # -- dispatch --------------------------------------------------------------------------------

    def _handle(self, conn: Connection, receive_ms: int, data: bytes, now: float) -> None:
        self.counts.frames_in += 1
        try:
            stream, msg = parse_stream_frame(data)
        except ProtocolError as exc:
            self._malformed(conn, exc, now)
            return
        if isinstance(msg, AggTrade):
            if self.trades is not None:
                self.trades.on_trade(msg)
        elif isinstance(msg, DepthUpdate):
            if self.books is not None:
                self.books.on_diff(msg)
        elif isinstance(msg, BookTicker):
            self.states.on_book_ticker(msg)
        elif isinstance(msg, Kline):
            if self.klines is not None:
                self.klines.on_kline(msg)
        elif isinstance(msg, Ticker24h):
            self.states.on_ticker(msg)
        elif isinstance(msg, ControlResult | ControlError):
            conn.on_control(msg)
            return
        elif isinstance(msg, ServerShutdown):
            self.on_shutdown(conn)
            return
        if stream is not None:
            conn.last_seen[stream] = now
            if not conn.delivered.is_set():
                conn.delivered.set()
            if self.recorder is not None:
                self.recorder.write(receive_ms, data)

    def _malformed(self, conn: Connection, exc: ProtocolError, now: float) -> None:
        self.counts.malformed += 1
        budget = self._malformed_logs.get(conn.id)
        if budget is None:
            if len(self._malformed_logs) > 100:
                self._malformed_logs.clear()
            budget = self._malformed_logs[conn.id] = _LogBudget()
        show, hidden = budget.allow(now)
        if show:
            extra = f" ({hidden} more not logged)" if hidden else ""
            conn.log.warning("malformed message skipped: %s%s", exc, extra)
