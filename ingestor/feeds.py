"""Trades, candles, tickers and book tickers: from parsed messages to the sink, de-duplicated.

* **Trades** (``price_update``): one :class:`~ingestor.backfill.OrderedFeed` per symbol, keyed by
  aggregate trade id.
* **Candles** (``market_data`` kind ``candle``): closed candles go through one ordered feed per
  symbol and interval, keyed by open time. Open candles are updates of one candle in place
  (every 2 s): one is published when it is newer (open time, event time) than the last one;
  while the closed feed backfills, only the newest open update is kept and published after it.
* **Tickers and book tickers** (``market_data``): state updates, published when newer than the
  last one of their symbol (event time ``E`` for tickers, update id ``u`` for book tickers), which
  removes the copies a rotation overlap delivers twice.

Two connections overlap during a rotation; these rules make the overlap invisible in Redis.

Trades and candles are *inactive* while the ingestor is a standby of its group (live items are
ignored: nothing would be published). :meth:`TradeFeeds.activate` / :meth:`KlineFeeds.activate`
start them from the last ids Redis holds and fetch what followed over REST (a takeover, a
start); :meth:`~TradeFeeds.restart` does the same for some sequences (the outage buffer dropped
some of their items).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ingestor.backfill import PAGE, OrderedFeed, agg_trade_pages, closed_kline_pages
from ingestor.binance.messages import AggTrade, BookTicker, Kline, Ticker24h
from ingestor.gaps import SequenceTracker, kline_step
from ingestor.metrics import IngestorMetrics
from ingestor.normalize import (
    PRICE_UPDATE,
    normalize_agg_trade,
    normalize_book_ticker,
    normalize_kline,
    normalize_ticker,
)
from ingestor.rest import RestClient
from ingestor.sink import Sink

MARKET_DATA = "market_data"


def _trade_key(trade: AggTrade) -> int:
    return trade.agg_id


def _kline_key(kline: Kline) -> int:
    return kline.open_time


class TradeFeeds:
    def __init__(self, symbols: Iterable[str], rest: RestClient, sink: Sink, metrics: IngestorMetrics,
                 *, max_wait: float) -> None:
        self.sink = sink
        self.feeds = {
            symbol: OrderedFeed(
                f"{symbol} aggTrades", SequenceTracker(), _trade_key,
                agg_trade_pages(rest, symbol, sink.page_size(PAGE)), self._emit, metrics,
                PRICE_UPDATE, max_wait=max_wait, room=sink.room_for_a_page,
            )
            for symbol in symbols
        }
        self.active = False

    def _emit(self, trade: AggTrade, backfilled: bool) -> None:
        self.sink.put(normalize_agg_trade(trade), trade.event_time)

    def on_trade(self, trade: AggTrade) -> None:
        if not self.active:
            return
        feed = self.feeds.get(trade.symbol)
        if feed is not None:
            feed.on_live(trade)

    def catch_up(self, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            if symbol in self.feeds:
                self.feeds[symbol].catch_up()

    def activate(self, last: Mapping[str, int]) -> None:
        """Publish from now on, each symbol after its ``last`` trade id (none: from live)."""
        for symbol in self.feeds:
            self.restart(symbol, last.get(symbol))
        self.active = True

    def restart(self, symbol: str, last: int | None) -> None:
        """Start ``symbol`` over after trade ``last`` and fetch what followed."""
        feed = self.feeds[symbol]
        feed.reset(last)
        feed.catch_up()

    def deactivate(self) -> None:
        self.active = False
        for feed in self.feeds.values():
            feed.reset(None)

    async def close(self) -> None:
        for feed in self.feeds.values():
            await feed.close()


class _Candles:
    """One symbol and interval: the closed-candle feed and the newest open candle."""

    def __init__(self, symbol: str, interval: str, rest: RestClient, sink: Sink,
                 metrics: IngestorMetrics, max_wait: float) -> None:
        self.sink = sink
        self.closed = OrderedFeed(
            f"{symbol} klines {interval}", SequenceTracker(kline_step(interval)), _kline_key,
            closed_kline_pages(rest, symbol, interval, sink.page_size(PAGE)), self._emit, metrics,
            MARKET_DATA, step=kline_step(interval)[0], max_wait=max_wait, on_idle=self._flush_open,
            room=sink.room_for_a_page,
        )
        self._last_open: tuple[int, int] = (-1, -1)
        self._pending_open: Kline | None = None

    def _emit(self, kline: Kline, backfilled: bool) -> None:
        self.sink.put(normalize_kline(kline), kline.event_time)

    def on_kline(self, kline: Kline) -> None:
        if kline.closed:
            self.closed.on_live(kline)
            return
        next_open = self.closed.tracker.resume_from()
        if next_open is not None and kline.open_time < next_open:
            return  # an update of a candle already published closed
        stamp = (kline.open_time, kline.event_time or 0)
        if stamp <= self._last_open:
            return
        if self.closed.filling:
            self._pending_open = kline
            return
        self._last_open = stamp
        self.sink.put(normalize_kline(kline), kline.event_time)

    def _flush_open(self) -> None:
        pending, self._pending_open = self._pending_open, None
        if pending is not None:
            self.on_kline(pending)

    def reset(self, last: int | None) -> None:
        """Start over after the closed candle opened at ``last`` (ms)."""
        self.closed.reset(last)
        self._last_open = (-1, -1)
        self._pending_open = None


class KlineFeeds:
    def __init__(self, symbols: Iterable[str], intervals: Iterable[str], rest: RestClient, sink: Sink,
                 metrics: IngestorMetrics, *, max_wait: float) -> None:
        self.candles = {
            (symbol, interval): _Candles(symbol, interval, rest, sink, metrics, max_wait)
            for symbol in symbols for interval in intervals
        }
        self.active = False

    def on_kline(self, kline: Kline) -> None:
        if not self.active:
            return
        candles = self.candles.get((kline.symbol, kline.interval))
        if candles is not None:
            candles.on_kline(kline)

    def activate(self, last: Mapping[tuple[str, str], int]) -> None:
        """Publish from now on, each (symbol, interval) after the open time ``last`` holds."""
        for key in self.candles:
            self.restart(key, last.get(key))
        self.active = True

    def restart(self, key: tuple[str, str], last: int | None) -> None:
        candles = self.candles[key]
        candles.reset(last)
        candles.closed.catch_up()

    def deactivate(self) -> None:
        self.active = False
        for candles in self.candles.values():
            candles.reset(None)

    def catch_up(self, symbols: Iterable[str]) -> None:
        wanted = set(symbols)
        for (symbol, _), candles in self.candles.items():
            if symbol in wanted:
                candles.closed.catch_up()

    async def close(self) -> None:
        for candles in self.candles.values():
            await candles.closed.close()


class StateFeeds:
    """Tickers and book tickers: newest-wins per symbol."""

    def __init__(self, sink: Sink, metrics: IngestorMetrics) -> None:
        self.sink = sink
        self.metrics = metrics
        self._ticker_time: dict[str, int] = {}
        self._book_id: dict[str, int] = {}

    def on_ticker(self, ticker: Ticker24h) -> None:
        if ticker.event_time <= self._ticker_time.get(ticker.symbol, -1):
            self.metrics.counts.duplicates += 1
            return
        self._ticker_time[ticker.symbol] = ticker.event_time
        self.sink.put(normalize_ticker(ticker), ticker.event_time)

    def on_book_ticker(self, book: BookTicker) -> None:
        if book.update_id <= self._book_id.get(book.symbol, -1):
            self.metrics.counts.duplicates += 1
            return
        self._book_id[book.symbol] = book.update_id
        self.sink.put(normalize_book_ticker(book))
