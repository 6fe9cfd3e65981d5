"""The market model and its building blocks, without sockets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.book import DiffRecorder, OrderBook
from simulator.klines import INTERVALS, KlineSeries, next_open, open_time
from simulator.market import SymbolMarket, Trade
from simulator.streams import parse_stream
from simulator.symbols import KNOWN, spec_for
from simulator.tape import Tape
from simulator.units import fmt, fmt_quote, parse


def run(seed: int, steps: int) -> tuple[list[Trade], list[tuple[int, int]], int]:
    market = SymbolMarket(KNOWN["BTCUSDT"], seed)
    trades = []
    for i in range(steps):
        trades += market.step(1_000 + i).trades
    return trades, market.book.top(True, 20), market.book.update_id


def test_same_seed_same_market() -> None:
    assert run(7, 3000) == run(7, 3000)
    assert run(7, 3000)[0] != run(8, 3000)[0]


def test_book_never_crosses_and_trades_hit_the_top() -> None:
    market = SymbolMarket(KNOWN["ETHUSDT"], 3)
    for i in range(20_000):
        bid, ask = market.book.best(True), market.book.best(False)
        result = market.step(i)
        for t in result.trades:
            assert bid is not None and ask is not None
            # buyer maker = a seller hit the bids, at or below the previous best bid
            assert t.price <= bid[0] if t.buyer_maker else t.price >= ask[0]
        new_bid, new_ask = market.book.best(True), market.book.best(False)
        assert new_bid is not None and new_ask is not None and new_bid[0] < new_ask[0]
        assert 100 <= market.book.depth(True) <= 1000


def test_every_change_is_recorded_with_its_update_id() -> None:
    book = OrderBook(update_id=10)
    rec = DiffRecorder()
    book.recorders.append(rec)
    book.set(True, 100, 5)
    book.set(True, 100, 7)
    book.set(False, 110, 1)
    book.set(False, 999, 0)  # removing a missing level changes nothing
    diff = rec.flush()
    assert diff is not None
    assert (diff.first_id, diff.last_id) == (11, 13)
    assert diff.bids == [(100, 7)] and diff.asks == [(110, 1)]
    assert rec.flush() is None


@pytest.mark.parametrize("interval", INTERVALS)
def test_kline_open_times_are_aligned(interval: str) -> None:
    t = int(datetime(2026, 3, 18, 13, 47, 21, 500000, tzinfo=UTC).timestamp() * 1000)
    opened = open_time(interval, t)
    closes = next_open(interval, opened) - 1
    assert opened <= t <= closes
    start = datetime.fromtimestamp(opened / 1000, tz=UTC)
    if interval == "1w":
        assert start.weekday() == 0 and start.hour == 0 and start.minute == 0
    elif interval == "1M":
        assert (start.day, start.hour) == (1, 0)
        assert datetime.fromtimestamp((closes + 1) / 1000, tz=UTC).month == 4
    else:
        assert opened == open_time(interval, opened) == open_time(interval, closes)


def test_kline_series_fills_quiet_intervals() -> None:
    series = KlineSeries("1s", 10_000, price=500, capacity=100)
    series.add(Trade(1, 510, 2, 10_100, False))
    closed = series.add(Trade(2, 520, 3, 13_200, True))
    assert [b.open_time for b in closed] == [10_000, 11_000, 12_000]
    assert (closed[0].trades, closed[0].open, closed[0].close) == (1, 510, 510)
    assert (closed[1].trades, closed[1].open, closed[1].first_id) == (0, 510, -1)
    assert series.current.open_time == 13_000 and series.current.taker_base == 0


@given(st.integers(min_value=-(10**17), max_value=10**17))
@settings(max_examples=200)
def test_fixed_point_round_trips(units: int) -> None:
    assert parse(fmt(units)) == units


def test_fixed_point_formats() -> None:
    assert fmt(150_000_000) == "1.50000000" and fmt(-1) == "-0.00000001"
    assert fmt_quote(123 * 10**8 * 10**8 + 99) == "123.00000000"
    assert parse("0.0010") == 100_000


@pytest.mark.parametrize(
    "name",
    ["btcusdt@trade", "btcusdt@aggTrade", "btcusdt@kline_1M", "btcusdt@depth",
     "btcusdt@depth@100ms", "btcusdt@depth20@100ms", "btcusdt@bookTicker", "btcusdt@ticker",
     "btcusdt@miniTicker", "!miniTicker@arr"],
)
def test_valid_stream_names(name: str) -> None:
    assert parse_stream(name) is not None


@pytest.mark.parametrize(
    "name",
    ["!ticker@arr", "btcusdt@depth15", "btcusdt@kline_2m", "btcusdt@aggtrade", "btcusdt",
     "@trade", "btcusdt@depth@500ms", "btc-usdt@trade", "btcusdt@trade "],
)
def test_invalid_stream_names(name: str) -> None:
    assert parse_stream(name) is None


def test_unknown_symbols_get_a_plausible_spec() -> None:
    spec = spec_for("DOGEUSDT")
    assert (spec.base, spec.quote) == ("DOGE", "USDT")
    with pytest.raises(ValueError, match="invalid symbol"):
        spec_for("bad symbol")


def test_history_is_bounded_and_queries_start_at_the_oldest_retained() -> None:
    tape = Tape(capacity=10)
    for i in range(100):
        tape.trades.append(Trade(1000 + i, 5, 1, 50_000 + i // 2, False))
    assert tape.last_trade_id() == 1099
    oldest = tape.trades.query(limit=3, from_id=0)
    assert [t.id for t in oldest] == [1090, 1091, 1092]
    assert [t.id for t in tape.trades.query(limit=2)] == [1098, 1099]
    by_time = tape.trades.query(limit=10, start=50_047, end=50_048)
    assert [t.id for t in by_time] == [1094, 1095, 1096, 1097]
    assert tape.trades.query(limit=10, from_id=2000) == []
