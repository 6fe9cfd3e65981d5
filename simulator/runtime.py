"""One symbol in market mode: its generator, tape, klines, depth recorders and streams.

It turns what :class:`~simulator.market.SymbolMarket` does into stream events on the hub,
building a payload only when the stream has subscribers.
"""

from __future__ import annotations

from simulator import payloads
from simulator.book import DiffRecorder
from simulator.faults import FaultState
from simulator.hub import Hub
from simulator.klines import INTERVALS, Bar, KlineSet
from simulator.market import BookShape, SymbolMarket
from simulator.symbols import SymbolSpec
from simulator.tape import Tape
from simulator.ticker import rolling_24h

PARTIAL_LEVELS = (5, 10, 20)


class SymbolRuntime:
    def __init__(
        self,
        spec: SymbolSpec,
        seed: int,
        hub: Hub,
        faults: FaultState,
        now: int,
        history: int,
        kline_history: int,
        shape: BookShape | None = None,
    ) -> None:
        self.spec = spec
        self.hub = hub
        self.faults = faults
        self.market = SymbolMarket(spec, seed, shape)
        self.book = self.market.book
        self.tape = Tape(history)
        self.klines = KlineSet(now, spec.price, kline_history)
        self.slow = DiffRecorder()
        self.fast = DiffRecorder()
        self.book.recorders.extend((self.slow, self.fast))
        self.last_qty = 0
        self.traded = False
        """Trades since the last ticker push."""
        self.last_time = now
        p = spec.stream_prefix
        self.s_trade = f"{p}@trade"
        self.s_agg = f"{p}@aggTrade"
        self.s_book = f"{p}@bookTicker"
        self.s_ticker = f"{p}@ticker"
        self.s_mini = f"{p}@miniTicker"
        self.s_depth = f"{p}@depth"
        self.s_depth_fast = f"{p}@depth@100ms"
        self.s_partial = {n: f"{p}@depth{n}" for n in PARTIAL_LEVELS}
        self.s_partial_fast = {n: f"{p}@depth{n}@100ms" for n in PARTIAL_LEVELS}
        self.s_kline = {i: f"{p}@kline_{i}" for i in INTERVALS}

    @property
    def name(self) -> str:
        return self.spec.name

    def step(self, now: int) -> None:
        """One market action at ``now`` (ms), published to the streams that want it."""
        now = max(now, self.last_time)
        self.last_time = now
        hub = self.hub
        result = self.market.step(now)
        if result.trades:
            want_trades = hub.has(self.s_trade)
            for t in result.trades:
                self.tape.trades.append(t)
                self._publish_klines(self.klines.add(t), now)
                if want_trades:
                    hub.publish(self.s_trade, payloads.trade(self.name, t, now))
            want_aggs = hub.has(self.s_agg)
            for a in result.aggs:
                self.tape.aggs.append(a)
                if want_aggs:
                    hub.publish(self.s_agg, payloads.agg_trade(self.name, a, now))
            self.last_qty = result.trades[-1].qty
            self.traded = True
        if result.top_changed and hub.has(self.s_book):
            bid, ask = self.book.best(True), self.book.best(False)
            if bid and ask:
                hub.publish(self.s_book,
                            payloads.book_ticker(self.name, self.book.update_id, bid, ask))

    def _publish_klines(self, closed: list[Bar], now: int) -> None:
        for bar in closed:
            stream = self.s_kline[bar.interval]
            if self.hub.has(stream):
                self.hub.publish(stream, payloads.kline(self.name, bar, now))

    def roll_klines(self, now: int) -> None:
        now = max(now, self.last_time)
        self.last_time = now  # later trades must not land in a closed kline
        self._publish_klines(self.klines.roll(now), now)

    def flush_depth(self, fast: bool, now: int) -> None:
        """Publish the diff-depth event of one speed and the partial books of that speed."""
        recorder, stream = (self.fast, self.s_depth_fast) if fast else (self.slow, self.s_depth)
        diff = recorder.flush()
        hub = self.hub
        if diff is not None and hub.has(stream) and not self.faults.take_depth_gap(self.name, fast):
            hub.publish(stream, payloads.depth_update(self.name, diff, now))
        for levels, name in (self.s_partial_fast if fast else self.s_partial).items():
            if hub.has(name):
                hub.publish(name, payloads.partial_depth(
                    self.book.update_id, self.book.top(True, levels), self.book.top(False, levels)
                ))

    def push_klines(self, now: int, even_second: bool) -> None:
        for interval, stream in self.s_kline.items():
            if (interval == "1s" or even_second) and self.hub.has(stream):
                bar = self.klines.series[interval].current
                self.hub.publish(stream, payloads.kline(self.name, bar, now))

    def push_tickers(self, now: int) -> payloads.Payload | None:
        """Publish ticker and miniTicker if traded since last time; returns the miniTicker."""
        if not self.traded:
            return None
        self.traded = False
        stats = rolling_24h(self.klines.series["1m"], now)
        mini = payloads.mini_ticker(self.name, stats, now)
        if self.hub.has(self.s_mini):
            self.hub.publish(self.s_mini, mini)
        if self.hub.has(self.s_ticker):
            bid = self.book.best(True) or (0, 0)
            ask = self.book.best(False) or (0, 0)
            self.hub.publish(
                self.s_ticker, payloads.ticker(self.name, stats, self.last_qty, bid, ask, now)
            )
        return mini
