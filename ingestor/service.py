"""The ingestor process, wired: explicit :meth:`Ingestor.start` and :meth:`Ingestor.stop`.

::

    exchange ──ws──▶ Connection.read ─▶ Pipeline queue ─▶ parse ─▶ TradeFeeds / KlineFeeds /
       ▲                (per shard)                               StateFeeds / Books ─▶ Sink ─▶ Redis
       └──────── REST: exchangeInfo, depth snapshots, aggTrades and klines backfill ◀──┘

Start: symbols are checked against exchangeInfo (an unknown one raises ConfigError), the HTTP
endpoints bind, the ingestor tries once for its group's lease (:mod:`ingestor.group`), then one
:class:`~ingestor.shard.Shard` per group of up to ``STREAMS_PER_CONNECTION`` streams connects.
Stop (SIGTERM/SIGINT in the CLI): stop reading, process what was read, let running backfills
finish (bounded by ``SHUTDOWN_GRACE``), flush the sink to Redis (same bound), release the lease
(a standby takes over at once), then release everything.

Leading and standing by: a standby reads, keeps its books, and publishes nothing (its trade and
candle feeds ignore live items, its sink takes nothing). :meth:`Ingestor.take_over` makes it the
publisher: fence every type it publishes with its lease token, read the last trade id and closed
candle per sequence from Redis (:mod:`ingestor.resume`), start the feeds there and backfill the
rest over REST, before and while live data flows in order behind it. A first start is a
takeover too: a restart resumes where the previous process stopped. :meth:`Ingestor.step_down`
undoes it when another ingestor leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import time
from collections.abc import Coroutine
from typing import Any

from ingestor.backfill import OrderedFeed
from ingestor.binance.streams import (
    agg_trade_stream,
    book_ticker_stream,
    depth_stream,
    kline_stream,
    parse_stream,
    shard_streams,
    ticker_stream,
)
from ingestor.books import Books
from ingestor.connection import Connection
from ingestor.exchange_info import validate_symbols
from ingestor.feeds import KlineFeeds, StateFeeds, TradeFeeds
from ingestor.group import REDIS_ERRORS, Group
from ingestor.health import HealthKey
from ingestor.http import HttpServer
from ingestor.metrics import IngestorMetrics, Live
from ingestor.normalize import MARKET_DATA, ORDERBOOK_UPDATE, PRICE_UPDATE
from ingestor.pipeline import Pipeline
from ingestor.record import Recorder
from ingestor.rest import RestClient
from ingestor.resume import Marks, Resume, mark_of
from ingestor.settings import IngestorSettings
from ingestor.shard import Shard
from ingestor.sink import SeqKey, Sink
from shared.backoff import delays
from shared.errors import ConfigError, Fenced
from shared.keys import Keys
from shared.publisher import AsyncPublisher
from shared.topology import Topology

log = logging.getLogger("tickstream.ingestor.service")


def streams_for(settings: IngestorSettings) -> list[str]:
    """Every stream to subscribe, a symbol's streams together (so they share a connection)."""
    streams: list[str] = []
    for symbol in settings.symbols:
        if settings.has("trades"):
            streams.append(agg_trade_stream(symbol))
        if settings.has("candles"):
            streams.extend(kline_stream(symbol, i) for i in settings.kline_intervals)
        if settings.has("ticker"):
            streams.append(ticker_stream(symbol))
        if settings.has("book_ticker"):
            streams.append(book_ticker_stream(symbol))
        if settings.has("orderbook"):
            streams.append(depth_stream(symbol, 100))
    return streams


def heartbeats_of(streams: tuple[str, ...]) -> list[str]:
    """The streams that always tick: klines (every 2 s), else diff depth, else all of them."""
    kinds = {name: parse_stream(name).kind for name in streams}
    for kind in ("kline", "depth"):
        found = [name for name in streams if kinds[name] == kind]
        if found:
            return found
    return list(streams)


def _symbols(streams: tuple[str, ...], kind: str) -> list[str]:
    found = []
    for name in streams:
        parsed = parse_stream(name)
        if parsed.kind == kind and parsed.symbol is not None:
            found.append(parsed.symbol)
    return list(dict.fromkeys(found))


class Ingestor:
    def __init__(self, settings: IngestorSettings) -> None:
        self.settings = settings
        self.metrics = IngestorMetrics()
        self.rest = RestClient(settings.binance_rest_url, self.metrics, timeout=settings.rest_timeout)
        # The ingestor's publisher never gives up on a batch (see ingestor.sink): an outage is
        # ridden out by the sink's bounded buffer instead.
        self.publisher = AsyncPublisher.from_settings(
            dataclasses.replace(settings, publish_retry_timeout=math.inf)
        )
        self.publisher.marker = mark_of  # the last trade id / closed candle, for resuming
        self.sink = Sink(self.publisher, self.metrics, max_events=settings.buffer_max_events,
                         report_after=settings.publish_retry_timeout, active=False,
                         on_fenced=self._on_fenced, on_refetch=self._on_refetch)
        symbols, wait = settings.symbols, settings.backfill_max_wait
        self.trades = (TradeFeeds(symbols, self.rest, self.sink, self.metrics, max_wait=wait)
                       if settings.has("trades") else None)
        self.klines = (KlineFeeds(symbols, settings.kline_intervals, self.rest, self.sink, self.metrics,
                                  max_wait=wait) if settings.has("candles") else None)
        self.states = StateFeeds(self.sink, self.metrics)
        self.books = (Books(symbols, self.rest, self.sink, self.metrics, depth=settings.depth_levels,
                            snapshot_limit=settings.snapshot_limit, interval=settings.book_interval)
                      if settings.has("orderbook") else None)
        self.recorder = Recorder(settings.record) if settings.record else None
        self.pipeline = Pipeline(self.metrics, trades=self.trades, klines=self.klines,
                                 states=self.states, books=self.books, recorder=self.recorder,
                                 on_shutdown=self._on_server_shutdown)
        groups = shard_streams(streams_for(settings), base_url=settings.binance_ws_url,
                               max_streams=settings.streams_per_connection, max_url_length=10**9)
        self.shards = [
            Shard(i, group, heartbeats_of(group), settings, self.pipeline.put, self, self.metrics)
            for i, group in enumerate(groups)
        ]
        self.http = HttpServer(settings.host, settings.port, self, self.metrics.registry)
        keys = Keys(settings.key_prefix)
        self.health_key = HealthKey(settings.redis_url, keys, settings.node, self.health)
        # The lease and the resume reads have their own connection: a publish retrying through
        # an outage never delays a renewal.
        self.control = Topology(settings.redis_url, name="tickstream-ingestor-lease",
                                socket_timeout=max(0.1, min(1.0, settings.lease_ttl / 3)))
        self.resume = Resume(
            self.control, keys, symbols if self.trades is not None else [],
            [key for key in self.klines.candles] if self.klines is not None else [],
        )
        self.group = Group(settings, self.control, keys, self, self.metrics)
        self.metrics.set_live(self._live)
        self.started_at = time.monotonic()
        self._started = False
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Validate, bind, connect. Raises ConfigError (bad symbol, port taken, RECORD unwritable)
        or RestError (exchange unreachable); nothing is left running then."""
        try:
            await validate_symbols(self.rest, self.settings.symbols)
            try:
                await self.http.start()
            except OSError as exc:
                raise ConfigError(f"PORT: cannot listen on {self.settings.host}:{self.settings.port}: "
                                  f"{exc.strerror or exc}") from None
            if self.recorder is not None:
                try:
                    self.recorder.open()
                except OSError as exc:
                    raise ConfigError(f"RECORD: cannot write {self.settings.record}: "
                                      f"{exc.strerror or exc}") from None
        except BaseException:
            await self._release()
            raise
        self.sink.start()
        self.pipeline.start()
        self.health_key.start()
        await self.group.start()
        for shard in self.shards:
            shard.start()
        self._started = True
        log.info("ingestor %s started as %s of group %s: %d symbols, %d streams on %d "
                 "connection(s), Redis %s", self.settings.node, self.group.role, self.group.name,
                 len(self.settings.symbols), sum(len(s.streams) for s in self.shards),
                 len(self.shards), self.settings.redis_url.redacted())

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        grace = self.settings.shutdown_grace
        deadline = time.monotonic() + grace
        if not self.group.leader:
            await self.group.stop()  # a standby going away stops competing for the lease now
        log.info("stopping: closing exchange connections")
        for shard in self.shards:
            await shard.stop()
        await self.pipeline.stop()
        await self._finish_backfills(deadline)
        for feeds in (self.trades, self.klines):
            if feeds is not None:
                await feeds.close()
        if self.books is not None:
            await self.books.close()
        if not await self.sink.flush(max(0.0, deadline - time.monotonic())):
            log.error("Redis did not take the last %d events within SHUTDOWN_GRACE (%g s)",
                      self.sink.buffered, grace)
        await self.group.stop()  # after the flush: the next leader resumes after our last event
        await self.sink.stop()
        await self._release()
        log.info("ingestor %s stopped", self.settings.node)

    async def _finish_backfills(self, deadline: float) -> None:
        running = self._backfills()
        if running:
            log.info("waiting for %d backfill(s) to finish", len(running))
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))

    async def _release(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.http.stop()
        await self.health_key.stop()
        await self.group.stop()
        await self.rest.aclose()
        await self.publisher.aclose()
        await self.control.aclose()
        if self.recorder is not None:
            await self.recorder.close()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- the group's hooks -----------------------------------------------------------------------

    def _event_types(self) -> list[str]:
        types = []
        if self.settings.has("trades"):
            types.append(PRICE_UPDATE)
        if any(self.settings.has(f) for f in ("candles", "ticker", "book_ticker")):
            types.append(MARKET_DATA)
        if self.settings.has("orderbook"):
            types.append(ORDERBOOK_UPDATE)
        return types

    async def take_over(self, token: int) -> None:
        """Lead with ``token``: fence, read where Redis stands, publish from there."""
        started = time.monotonic()
        self.publisher.fence = (self.settings.group, token)
        await self.publisher.raise_fence(self._event_types())
        marks = await self.resume.read()
        # From here on nothing awaits: no live item slips in between reading and resuming.
        self.sink.activate()
        if self.trades is not None:
            self.trades.activate(marks.trades)
        if self.klines is not None:
            self.klines.activate(marks.candles)
        log.info("leading group %s with lease token %d (takeover %d of this process): resuming "
                 "from Redis: %s", self.settings.group, token, self.group.takeovers + 1,
                 marks.describe())
        self._spawn(self._report_takeover(token, started, marks), f"takeover {token}")

    def step_down(self, reason: str) -> None:
        if self.trades is not None:
            self.trades.deactivate()
        if self.klines is not None:
            self.klines.deactivate()
        self.sink.deactivate()

    def _on_fenced(self, exc: Fenced) -> None:
        self.group.fenced(exc)

    async def _report_takeover(self, token: int, started: float, marks: Marks) -> None:
        """Once the catch-up after a takeover is done, log the gap it filled."""
        deadline = started + self.settings.backfill_max_wait + 10.0
        while (running := self._backfills()) and time.monotonic() < deadline:
            await asyncio.wait(running, timeout=max(0.0, deadline - time.monotonic()))
        if self.group.token != token:
            return
        parts, trades, candles = [], 0, 0
        if self.trades is not None:
            for symbol, feed in self.trades.feeds.items():
                trades += feed.filled
                if feed.filled_range is not None:
                    first, last = feed.filled_range
                    parts.append(f"{symbol} trades {first}..{last} ({feed.filled})")
        if self.klines is not None:
            for (symbol, interval), candle in self.klines.candles.items():
                candles += candle.closed.filled
                if candle.closed.filled:
                    parts.append(f"{symbol} {interval} candles: {candle.closed.filled}")
        log.info("takeover with token %d filled the gap in %.2f s: %d trade(s) and %d candle(s) "
                 "backfilled%s", token, time.monotonic() - started, trades, candles,
                 f" ({'; '.join(parts)})" if parts else " (nothing was missing)")

    def _backfills(self) -> list[asyncio.Task[None]]:
        """The backfills running now (a catch-up starts one per sequence)."""
        feeds: list[OrderedFeed[Any]] = []
        if self.trades is not None:
            feeds.extend(self.trades.feeds.values())
        if self.klines is not None:
            feeds.extend(c.closed for c in self.klines.candles.values())
        return [f.task for f in feeds if f.task is not None]

    def _on_refetch(self, keys: frozenset[SeqKey]) -> None:
        if self.group.token is not None:
            self._spawn(self._refetch(keys, self.group.token), "refetch")

    async def _refetch(self, keys: frozenset[SeqKey], token: int) -> None:
        """Start the broken sequences over from what Redis holds (the buffer dropped some)."""
        trades = [key[1] for key in keys if key[0] == "trades"]
        candles = [(key[1], key[2]) for key in keys if key[0] == "candles"]
        waits = delays(0.2, 5.0)
        while True:
            if self.group.token != token:
                return
            try:
                marks = await self.resume.read(trades, candles)
                break
            except REDIS_ERRORS as exc:
                log.warning("refetch: reading the last ids from Redis failed (%s); again soon", exc)
                await asyncio.sleep(next(waits))
        if self.group.token != token:
            return  # stepped down meanwhile: the next takeover starts everything over
        if self.trades is not None:
            for symbol in trades:
                self.trades.restart(symbol, marks.trades.get(symbol))
        if self.klines is not None:
            for key in candles:
                self.klines.restart(key, marks.candles.get(key))
        self.sink.repair(keys)
        log.warning("refetching what the outage buffer dropped: %s", marks.describe())

    # -- shard hooks -----------------------------------------------------------------------------

    def connected(self, shard: Shard, reconnect: bool) -> None:
        if not reconnect:
            return
        if self.trades is not None:
            self.trades.catch_up(_symbols(shard.streams, "aggTrade"))
        if self.klines is not None:
            self.klines.catch_up(_symbols(shard.streams, "kline"))

    def lost(self, shard: Shard) -> None:
        if self.books is not None:
            self.books.reset(_symbols(shard.streams, "depth"))

    def _on_server_shutdown(self, conn: Connection) -> None:
        for shard in self.shards:
            shard.request_rotation(conn, "serverShutdown")

    # -- status ----------------------------------------------------------------------------------

    @property
    def http_port(self) -> int:
        return self.http.port

    def _connections(self) -> int:
        return sum(len(shard.connections()) for shard in self.shards)

    def _stream_ages(self, now: float) -> dict[str, float]:
        return {s: shard.stream_age(s, now) for shard in self.shards for s in shard.streams}

    @property
    def redis_ok(self) -> bool:
        return self.sink.redis_ok and self.group.redis_ok

    def health(self) -> dict[str, Any]:
        return {
            "status": "ok", "node": self.settings.node, "port": self.http.port,
            "uptime": round(time.monotonic() - self.started_at, 1),
            "connections": self._connections(), "buffered": self.sink.buffered,
            "redis": self.redis_ok, "ts": time.time_ns() // 1_000_000, **self.group.status(),
        }

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        now = time.monotonic()
        limit = self.settings.stale_after
        streams: dict[str, dict[str, Any]] = {}
        stale = []
        for shard in self.shards:
            for name in shard.streams:
                age = shard.stream_age(name, now)
                is_stale = name in shard.heartbeats and age > limit
                if is_stale:
                    stale.append(name)
                streams[name] = {"age": round(age, 3), "stale": is_stale,
                                 "heartbeat": name in shard.heartbeats}
        connected = all(shard.active is not None and shard.active.is_open for shard in self.shards)
        redis_ok = self.redis_ok
        ready = self._started and connected and not stale and redis_ok
        return ready, {
            "status": "ready" if ready else "not ready", "node": self.settings.node,
            "connected": connected, "redis": redis_ok, "buffered": self.sink.buffered,
            **self.group.status(), "stale": stale, "streams": streams,
        }

    def _live(self) -> Live:
        now = time.monotonic()
        return Live(self.sink.buffered, self._connections(), self._stream_ages(now),
                    self.rest.used_weight, self.group.leader, self.group.token or 0)
