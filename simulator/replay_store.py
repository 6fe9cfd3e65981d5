"""What a replayed capture has shown so far, served over REST and the admin state.

Trades and aggregate trades come from the replayed ``trade``/``aggTrade`` payloads, the
book from diff-depth events (or partial depth when the capture has no diffs for that
symbol), klines from kline payloads. Symbols are those named by the capture's streams;
their tick and step sizes are guesses (see :func:`simulator.symbols.spec_for`).
"""

from __future__ import annotations

from typing import Any

from simulator.book import Level, OrderBook
from simulator.klines import Bar
from simulator.market import AggTrade, Trade
from simulator.symbols import SymbolSpec, spec_for
from simulator.tape import BoundedLog, Tape
from simulator.units import parse
from simulator.view import BookState


def _levels(rows: Any) -> list[Level]:
    return [(parse(p), parse(q)) for p, q in rows]


class _Klines:
    def __init__(self, capacity: int) -> None:
        self.closed: BoundedLog[Bar] = BoundedLog(capacity)
        self.current: Bar | None = None

    def add(self, bar: Bar) -> None:
        last = self.closed.items[-1] if self.closed.items else None
        if last is not None and bar.open_time <= last.open_time:
            return
        if bar.closed:
            self.closed.append(bar)
            self.current = None
        else:
            self.current = bar

    def query(self, limit: int, start: int | None, end: int | None) -> list[Bar]:
        bars = self.closed.window() + ([self.current] if self.current else [])
        if start is not None:
            bars = [b for b in bars if b.open_time >= start]
        if end is not None:
            bars = [b for b in bars if b.open_time <= end]
        return bars[:limit] if start is not None else bars[-limit:]


class _SymbolStore:
    def __init__(self, spec: SymbolSpec, history: int, kline_history: int) -> None:
        self.spec = spec
        self.tape = Tape(history)
        self.book = OrderBook()
        self.has_diffs = False
        self.klines: dict[str, _Klines] = {}
        self.kline_history = kline_history


class ReplayStore:
    """The replay-mode :class:`~simulator.view.MarketView`."""

    def __init__(self, symbols: list[str], history: int = 100_000, kline_history: int = 1500):
        self.symbols = {
            s: _SymbolStore(spec_for(s), history, kline_history) for s in sorted(symbols)
        }
        self.progress: dict[str, Any] = {}

    def ingest(self, kind: str, symbol: str | None, data: Any) -> None:
        """Record one replayed payload (``kind`` as in :class:`~simulator.streams.StreamSpec`)."""
        store = self.symbols.get(symbol or "")
        if store is None or not isinstance(data, dict):
            return
        if kind == "trade":
            last = store.tape.last_trade_id()
            if last is None or data["t"] > last:
                store.tape.trades.append(
                    Trade(data["t"], parse(data["p"]), parse(data["q"]), data["T"], data["m"])
                )
        elif kind == "aggTrade":
            last = store.tape.last_agg_id()
            if last is None or data["a"] > last:
                store.tape.aggs.append(AggTrade(
                    data["a"], parse(data["p"]), parse(data["q"]), data["f"], data["l"],
                    data["T"], data["m"],
                ))
        elif kind == "depth" and data["u"] > store.book.update_id:
            store.has_diffs = True
            self._apply(store.book, _levels(data["b"]), _levels(data["a"]), data["u"])
        elif kind == "partialDepth" and not store.has_diffs:
            store.book = OrderBook()
            self._apply(store.book, _levels(data["bids"]), _levels(data["asks"]),
                        data["lastUpdateId"])
        elif kind == "kline":
            k = data["k"]
            bar = Bar(
                k["i"], k["t"], k["T"], parse(k["o"]), parse(k["h"]), parse(k["l"]),
                parse(k["c"]), parse(k["v"]), parse(k["q"]) * 10**8, k["n"], k["f"], k["L"],
                parse(k["V"]), parse(k["Q"]) * 10**8, bool(k["x"]),
            )
            series = store.klines.setdefault(k["i"], _Klines(store.kline_history))
            series.add(bar)

    @staticmethod
    def _apply(book: OrderBook, bids: list[Level], asks: list[Level], update_id: int) -> None:
        for price, qty in bids:
            book.set(True, price, qty)
        for price, qty in asks:
            book.set(False, price, qty)
        book.update_id = update_id

    def _store(self, symbol: str) -> _SymbolStore:
        store = self.symbols.get(symbol.upper())
        if store is None:
            raise KeyError(f"unknown symbol {symbol!r}")
        return store

    # ---- MarketView ----------------------------------------------------------------------

    def specs(self) -> list[SymbolSpec]:
        return [s.spec for s in self.symbols.values()]

    def spec(self, symbol: str) -> SymbolSpec | None:
        store = self.symbols.get(symbol)
        return None if store is None else store.spec

    def depth(self, symbol: str, limit: int | None) -> tuple[int, list[Level], list[Level]]:
        book = self._store(symbol).book
        return book.update_id, book.top(True, limit), book.top(False, limit)

    def agg_trades(
        self, symbol: str, limit: int, from_id: int | None, start: int | None, end: int | None
    ) -> list[AggTrade]:
        return self._store(symbol).tape.aggs.query(limit, from_id, start, end)

    def trades(self, symbol: str, limit: int, from_id: int | None) -> list[Trade]:
        return self._store(symbol).tape.trades.query(limit, from_id)

    def klines(
        self, symbol: str, interval: str, limit: int, start: int | None, end: int | None
    ) -> list[Bar]:
        series = self._store(symbol).klines.get(interval)
        return [] if series is None else series.query(limit, start, end)

    def last_trade_id(self, symbol: str) -> int | None:
        return self._store(symbol).tape.last_trade_id()

    def last_agg_trade_id(self, symbol: str) -> int | None:
        return self._store(symbol).tape.last_agg_id()

    def book_state(self, symbol: str, depth: int | None = None) -> BookState:
        store = self._store(symbol)
        book = store.book
        return BookState.of(store.spec.name, book.update_id, book.top(True, depth),
                            book.top(False, depth))

    def describe(self) -> dict[str, Any]:
        return {"mode": "replay", **self.progress}
