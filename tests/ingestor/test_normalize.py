"""Exchange bytes in, contract events out (CONTRACT.md section 2), with JSON types checked."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.binance import messages
from ingestor.binance.parser import parse_frame
from ingestor.binance.rest import parse_rest_agg_trade, parse_rest_kline
from ingestor.normalize import (
    iso_ms,
    normalize_agg_trade,
    normalize_book,
    normalize_book_ticker,
    normalize_kline,
    normalize_orderbook,
    normalize_ticker,
)
from ingestor.orderbook import OrderBook
from shared.events import Event
from tests.ingestor import samples


def _event(frame: bytes) -> Event:
    """The event a live frame becomes (the dispatch of ingestor.pipeline, by message type)."""
    msg = parse_frame(frame)
    if isinstance(msg, messages.AggTrade):
        return normalize_agg_trade(msg)
    if isinstance(msg, messages.Kline):
        return normalize_kline(msg)
    if isinstance(msg, messages.Ticker24h):
        return normalize_ticker(msg)
    assert isinstance(msg, messages.BookTicker), msg
    return normalize_book_ticker(msg)


def _rest_agg_trade(symbol: str, row: object) -> Event:
    """What the backfill publishes for a ``/api/v3/aggTrades`` row."""
    return normalize_agg_trade(parse_rest_agg_trade(symbol, row))


def _rest_kline(symbol: str, interval: str, row: object, *, now_ms: int) -> Event:
    """What the backfill publishes for a ``/api/v3/klines`` row."""
    return normalize_kline(parse_rest_kline(symbol, interval, row, now_ms=now_ms))


def _assert_json_types(data: Mapping[str, Any], types: dict[str, type]) -> None:
    """Exactly these fields, with these JSON types, surviving a JSON round trip unchanged."""
    assert set(data) == set(types)
    for key, expected in types.items():
        assert type(data[key]) is expected, (key, data[key])
    assert orjson.loads(orjson.dumps(data)) == data


def test_agg_trade_becomes_price_update() -> None:
    event = _event(samples.AGG_TRADE)
    assert event == Event(
        "price_update",
        {
            "symbol": "BNBBTC",
            "price": 0.001,
            "volume": 100.0,
            "timestamp": "2022-12-31T19:43:02.136Z",
            "trade_id": 12345,
            "side": "sell",
            "source": "binance",
        },
        symbol="BNBBTC",
    )
    _assert_json_types(
        event.data,
        {
            "symbol": str,
            "price": float,
            "volume": float,
            "timestamp": str,
            "trade_id": int,
            "side": str,
            "source": str,
        },
    )


@pytest.mark.parametrize(("buyer_is_maker", "side"), [(True, "sell"), (False, "buy")])
def test_side_is_the_takers_side(buyer_is_maker: bool, side: str) -> None:
    frame = orjson.dumps(orjson.loads(samples.AGG_TRADE) | {"m": buyer_is_maker})
    assert _event(frame).data["side"] == side


def test_kline_becomes_candle() -> None:
    event = _event(samples.KLINE)
    assert event == Event(
        "market_data",
        {
            "symbol": "BNBBTC",
            "kind": "candle",
            "interval": "1m",
            "open_time": "2022-12-31T19:43:00.000Z",
            "close_time": "2022-12-31T19:43:59.999Z",
            "open": 0.001,
            "high": 0.0025,
            "low": 0.0015,
            "close": 0.002,
            "volume": 1000.0,
            "quote_volume": 1.0,
            "trades": 100,
            "closed": False,
        },
        symbol="BNBBTC",
    )
    _assert_json_types(
        event.data,
        {
            "symbol": str, "kind": str, "interval": str, "open_time": str, "close_time": str,
            "open": float, "high": float, "low": float, "close": float, "volume": float,
            "quote_volume": float, "trades": int, "closed": bool,
        },
    )  # fmt: skip


def test_closed_kline_is_a_closed_candle() -> None:
    payload = orjson.loads(samples.KLINE)
    payload["k"]["x"] = True
    event = _event(orjson.dumps(payload))
    assert event.data["closed"] is True


def test_ticker() -> None:
    event = _event(samples.TICKER)
    assert event == Event(
        "market_data",
        {
            "symbol": "BNBBTC",
            "kind": "ticker",
            "last": 0.0025,
            "open": 0.001,
            "high": 0.0025,
            "low": 0.001,
            "volume": 10000.0,
            "quote_volume": 18.0,
            "change": 0.0015,
            "change_percent": 250.0,
            "bid": 0.0024,
            "ask": 0.0026,
        },
        symbol="BNBBTC",
    )
    _assert_json_types(event.data, {key: float for key in event.data} | {"symbol": str, "kind": str})


def test_book_ticker() -> None:
    event = _event(samples.BOOK_TICKER)
    assert event == Event(
        "market_data",
        {
            "symbol": "BNBUSDT",
            "kind": "book_ticker",
            "bid": 25.3519,
            "bid_qty": 31.21,
            "ask": 25.3652,
            "ask_qty": 40.66,
            "update_id": 400900217,
        },
        symbol="BNBUSDT",
    )
    _assert_json_types(
        event.data,
        {
            "symbol": str,
            "kind": str,
            "bid": float,
            "bid_qty": float,
            "ask": float,
            "ask_qty": float,
            "update_id": int,
        },
    )


def test_orderbook_update() -> None:
    bids = [(Decimal("4.00000000"), Decimal("431.00000000")), (Decimal("3.9"), Decimal("1"))]
    asks = [(Decimal("4.00000200"), Decimal("12.00000000"))]
    event = normalize_orderbook("BNBBTC", bids, asks, 1027024, 1672515782136)
    assert event == Event(
        "orderbook_update",
        {
            "symbol": "BNBBTC",
            "bids": [[4.0, 431.0], [3.9, 1.0]],
            "asks": [[4.000002, 12.0]],
            "last_update_id": 1027024,
            "timestamp": "2022-12-31T19:43:02.136Z",
        },
        symbol="BNBBTC",
    )
    assert all(type(x) is float for level in event.data["bids"] + event.data["asks"] for x in level)


def test_normalize_book_uses_the_last_diff_time_or_now_after_a_bare_snapshot() -> None:
    book = OrderBook("BNBBTC")
    assert normalize_book(book, 5, now_ms=0) is None  # not synced: nothing to publish
    book.on_diff(messages.DepthUpdate("BNBBTC", 1000, 5, 6, (), ()))
    book.on_snapshot(messages.DepthSnapshot("BNBBTC", 10, (("1.5", "2"),), (("1.6", "3"),)))
    event = normalize_book(book, 5, now_ms=1_500)
    assert event is not None
    assert event.data == {
        "symbol": "BNBBTC",
        "bids": [[1.5, 2.0]],
        "asks": [[1.6, 3.0]],
        "last_update_id": 10,
        "timestamp": "1970-01-01T00:00:01.500Z",
    }
    book.on_diff(messages.DepthUpdate("BNBBTC", 2_000, 11, 11, (("1.5", "0"),), ()))
    event = normalize_book(book, 5, now_ms=9_999)
    assert event is not None
    assert (event.data["bids"], event.data["timestamp"]) == ([], "1970-01-01T00:00:02.000Z")


# -- live and REST give identical events -----------------------------------------------------------


def test_rest_agg_trade_row_equals_the_live_event() -> None:
    row = orjson.loads(samples.REST_AGG_TRADES)[0]
    live = orjson.dumps(
        {"e": "aggTrade", "E": 1498793709200, "s": "BNBBTC"} | {k: v for k, v in row.items() if k != "M"}
    )
    assert _rest_agg_trade("BNBBTC", row) == _event(live)


def test_rest_kline_row_equals_the_live_closed_candle() -> None:
    row = orjson.loads(samples.REST_KLINES)[0]
    t, o, h, low, c, v, ct, q, n, tbv, tbq, _ = row
    k = {
        "t": t, "T": ct, "s": "BNBBTC", "i": "1d", "f": 100, "L": 407, "o": o, "c": c, "h": h, "l": low,
        "v": v, "n": n, "x": True, "q": q, "V": tbv, "Q": tbq, "B": "0",
    }  # fmt: skip
    live = orjson.dumps({"e": "kline", "E": ct + 5, "s": "BNBBTC", "k": k})
    rest = _rest_kline("bnbbtc", "1d", row, now_ms=ct + 1)
    assert rest == _event(live)


def test_rest_kline_still_open_is_marked_so() -> None:
    row = orjson.loads(samples.REST_KLINES)[0]
    event = _rest_kline("BNBBTC", "1d", row, now_ms=row[6])
    assert event.data["closed"] is False


decimals = st.decimals(min_value=0, max_value=10**8, places=8, allow_nan=False).map(str)


@given(
    st.integers(min_value=0, max_value=2**62),
    decimals,
    decimals,
    st.integers(min_value=0, max_value=4_102_444_800_000),
    st.booleans(),
)
def test_any_rest_agg_trade_equals_its_live_twin(agg_id: int, price: str, qty: str, t: int, m: bool) -> None:
    row = {"a": agg_id, "p": price, "q": qty, "f": 1, "l": 2, "T": t, "m": m, "M": True}
    live = orjson.dumps({"e": "aggTrade", "E": t, "s": "ETHUSDT"} | row)
    assert _rest_agg_trade("ETHUSDT", row) == _event(live)


# -- timestamps ------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=253_402_300_799_999))
def test_iso_ms_matches_datetime(ms: int) -> None:
    expected = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms % 1000:03d}Z"
    assert iso_ms(ms) == expected


def test_iso_ms_examples() -> None:
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(1672531200000) == "2023-01-01T00:00:00.000Z"
    assert iso_ms(1672531200007) == "2023-01-01T00:00:00.007Z"
