"""Market mode: drives every symbol at the configured event rate and on a 100 ms clock.

The generator task runs the market steps that are due (the event rate is split between
symbols by their activity). The clock task, aligned on wall-clock multiples of 100 ms,
flushes the @100ms depth streams; on each new second it flushes the 1000 ms depth
streams, closes klines, pushes klines (1s every second, the others every 2 s) and the
tickers of the symbols that traded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import Any

from simulator.book import Level
from simulator.faults import FaultState
from simulator.hub import Hub
from simulator.klines import Bar
from simulator.market import AggTrade, BookShape, Trade
from simulator.runtime import SymbolRuntime
from simulator.streams import ALL_MINI_TICKERS
from simulator.symbols import SymbolSpec
from simulator.view import BookState

_log = logging.getLogger("tickstream.simulator.engine")
GENERATOR_TICK = 0.01


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class MarketEngine:
    """The market-mode data source: a :class:`~simulator.view.MarketView`."""

    def __init__(
        self,
        specs: tuple[SymbolSpec, ...],
        hub: Hub,
        faults: FaultState,
        *,
        seed: int = 1,
        rate: float = 50.0,
        history: int = 100_000,
        kline_history: int = 1500,
        shape: BookShape | None = None,
    ) -> None:
        now = now_ms()
        self.hub = hub
        self.seed = seed
        self.runtimes = [
            SymbolRuntime(s, seed, hub, faults, now, history, kline_history, shape)
            for s in specs
        ]
        self.by_name = {rt.name: rt for rt in self.runtimes}
        self.paused = False
        self.rate = 0.0
        self._done = [0] * len(self.runtimes)
        self._t0 = time.monotonic()
        self.set_rate(rate)
        self._tasks: list[asyncio.Task[None]] = []

    # ---- control -------------------------------------------------------------------------

    def set_rate(self, rate: float) -> None:
        """Market actions per second across all symbols (0 = only :meth:`generate`)."""
        if rate < 0 or not math.isfinite(rate):
            raise ValueError("rate must be a finite number >= 0")
        self.rate = rate
        self._restart_pacing()

    def _restart_pacing(self) -> None:
        self._t0 = time.monotonic()
        self._done = [0] * len(self.runtimes)

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        self._restart_pacing()

    def generate(self, events: int, symbol: str | None = None) -> None:
        """Run ``events`` market actions now, on ``symbol`` or on every symbol."""
        targets = [self._rt(symbol)] if symbol else self.runtimes
        now = now_ms()
        for rt in targets:
            for _ in range(events):
                rt.step(now)

    def set_status(self, symbol: str, status: str) -> None:
        """Change a symbol's exchangeInfo status; only TRADING symbols trade."""
        rt = self._rt(symbol)
        rt.spec = rt.spec.with_status(status)

    def _rt(self, symbol: str) -> SymbolRuntime:
        rt = self.by_name.get(symbol.upper())
        if rt is None:
            raise KeyError(f"unknown symbol {symbol!r}")
        return rt

    # ---- tasks ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._restart_pacing()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._generator()), loop.create_task(self._clock())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _generator(self) -> None:
        total = sum(rt.spec.activity for rt in self.runtimes) or 1.0
        while True:
            await asyncio.sleep(GENERATOR_TICK)
            if self.paused or self.rate <= 0:
                self._restart_pacing()
                continue
            try:
                self._run_due(total)
            except Exception:
                _log.exception("market step failed")

    def _run_due(self, total_activity: float) -> None:
        elapsed = time.monotonic() - self._t0
        now = now_ms()
        cap = max(1000, int(self.rate * 0.2))
        for i, rt in enumerate(self.runtimes):
            target = int(elapsed * self.rate * rt.spec.activity / total_activity)
            due = target - self._done[i]
            self._done[i] = target
            if rt.spec.status != "TRADING":
                continue
            if due > cap:
                _log.warning("%s: %d events behind, skipping them", rt.name, due - cap)
                due = cap
            for _ in range(due):
                rt.step(now)

    async def _clock(self) -> None:
        last_second = now_ms() // 1000
        while True:
            now = now_ms()
            tick = (now // 100 + 1) * 100
            await asyncio.sleep((tick - now) / 1000)
            t = max(now_ms(), tick)
            try:
                self._on_tick(t, last_second)
            except Exception:
                _log.exception("clock tick failed")
            last_second = t // 1000

    def _on_tick(self, t: int, last_second: int) -> None:
        for rt in self.runtimes:
            rt.flush_depth(True, t)
        second = t // 1000
        if second == last_second:
            return
        minis = []
        for rt in self.runtimes:
            rt.flush_depth(False, t)
            rt.roll_klines(t)
            rt.push_klines(t, even_second=second % 2 == 0)
            mini = rt.push_tickers(t)
            if mini is not None:
                minis.append(mini)
        if minis and self.hub.has(ALL_MINI_TICKERS):
            self.hub.publish(ALL_MINI_TICKERS, minis)

    # ---- MarketView ----------------------------------------------------------------------

    def specs(self) -> list[SymbolSpec]:
        return [rt.spec for rt in self.runtimes]

    def spec(self, symbol: str) -> SymbolSpec | None:
        rt = self.by_name.get(symbol)
        return None if rt is None else rt.spec

    def depth(self, symbol: str, limit: int | None) -> tuple[int, list[Level], list[Level]]:
        book = self._rt(symbol).book
        return book.update_id, book.top(True, limit), book.top(False, limit)

    def agg_trades(
        self, symbol: str, limit: int, from_id: int | None, start: int | None, end: int | None
    ) -> list[AggTrade]:
        return self._rt(symbol).tape.aggs.query(limit, from_id, start, end)

    def trades(self, symbol: str, limit: int, from_id: int | None) -> list[Trade]:
        return self._rt(symbol).tape.trades.query(limit, from_id)

    def klines(
        self, symbol: str, interval: str, limit: int, start: int | None, end: int | None
    ) -> list[Bar]:
        rt = self._rt(symbol)
        rt.roll_klines(now_ms())
        return rt.klines.series[interval].query(limit, start, end)

    def last_trade_id(self, symbol: str) -> int | None:
        return self._rt(symbol).tape.last_trade_id()

    def last_agg_trade_id(self, symbol: str) -> int | None:
        return self._rt(symbol).tape.last_agg_id()

    def book_state(self, symbol: str, depth: int | None = None) -> BookState:
        rt = self._rt(symbol)
        book = rt.book
        return BookState.of(rt.name, book.update_id, book.top(True, depth), book.top(False, depth))

    def describe(self) -> dict[str, Any]:
        return {"mode": "market", "rate": self.rate, "paused": self.paused, "seed": self.seed}
