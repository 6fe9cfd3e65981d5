"""REST bodies the ingestor fetches: depth snapshots, aggTrades and klines pages."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.binance import errors, messages
from ingestor.binance.errors import ProtocolError
from ingestor.binance.rest import (
    parse_depth_snapshot,
    parse_rest_agg_trade,
    parse_rest_agg_trades,
    parse_rest_kline,
    parse_rest_klines,
)
from tests.ingestor import samples
from tests.ingestor.strategies import json_values

KLINE_ROW: list[Any] = orjson.loads(samples.REST_KLINES)[0]
CLOSE_TIME = 1499644799999


def _row(index: int, value: Any) -> list[Any]:
    """The sample kline row with one item replaced."""
    return [value if i == index else item for i, item in enumerate(KLINE_ROW)]


def test_depth_snapshot() -> None:
    assert parse_depth_snapshot("bnbbtc", samples.REST_DEPTH) == messages.DepthSnapshot(
        "BNBBTC", 1027024, (("4.00000000", "431.00000000"),), (("4.00000200", "12.00000000"),)
    )


def test_agg_trades_page() -> None:
    assert parse_rest_agg_trades("BNBBTC", samples.REST_AGG_TRADES) == [
        messages.AggTrade("BNBBTC", None, 26129, 0.01633102, 4.70443515, 27781, 27781, 1498793709153, True)
    ]


def test_klines_page_before_and_after_the_close() -> None:
    (still_open,) = parse_rest_klines("BNBBTC", "1d", samples.REST_KLINES, now_ms=CLOSE_TIME)
    (closed,) = parse_rest_klines("BNBBTC", "1d", samples.REST_KLINES, now_ms=CLOSE_TIME + 1)
    assert not still_open.closed
    assert closed == messages.Kline(
        symbol="BNBBTC",
        event_time=None,
        interval="1d",
        open_time=1499040000000,
        close_time=CLOSE_TIME,
        first_trade_id=None,
        last_trade_id=None,
        open=0.0163479,
        high=0.8,
        low=0.015758,
        close=0.015771,
        volume=148976.11427815,
        quote_volume=2434.19055334,
        trades=308,
        closed=True,
        taker_buy_volume=1756.87402397,
        taker_buy_quote_volume=28.46694368,
    )


def test_single_rows() -> None:
    row = orjson.loads(samples.REST_AGG_TRADES)[0]
    assert parse_rest_agg_trade("bnbbtc", row).agg_id == 26129
    assert parse_rest_kline("bnbbtc", "1d", KLINE_ROW, now_ms=0).open_time == 1499040000000


def test_rest_kline_rejects_an_unknown_interval_as_a_caller_error() -> None:
    with pytest.raises(ValueError, match="interval"):
        parse_rest_kline("BNBBTC", "7m", KLINE_ROW, now_ms=0)


SYMBOL_ERROR = b'{"code":-1121,"msg":"Invalid symbol."}'
NEGATIVE_QTY = {"a": 1, "p": "1", "q": "-2", "f": 1, "l": 1, "T": 1, "m": True}


@pytest.mark.parametrize(
    ("call", "error", "needle"),
    [
        (lambda: parse_depth_snapshot("X", b"<html>502</html>"), errors.InvalidJSON, "<html>"),
        (lambda: parse_depth_snapshot("X", SYMBOL_ERROR), errors.MissingField, "lastUpdateId"),
        (lambda: parse_depth_snapshot("X", b"[]"), errors.UnexpectedShape, "array"),
        (lambda: parse_rest_agg_trades("X", b'{"code":-1121}'), errors.UnexpectedShape, "object"),
        (lambda: parse_rest_agg_trades("X", b'[{"a":1}]'), errors.MissingField, "'p'"),
        (lambda: parse_rest_agg_trades("X", b"[[1,2]]"), errors.UnexpectedShape, "row"),
        (lambda: parse_rest_klines("X", "1m", b"[[1,2,3]]", now_ms=0), errors.UnexpectedShape, "11+"),
        (lambda: parse_rest_kline("X", "1m", _row(8, "308"), now_ms=0), errors.InvalidFieldType, "'trades'"),
        (lambda: parse_rest_kline("X", "1m", _row(1, 0.1), now_ms=0), errors.InvalidFieldType, "'open'"),
        (lambda: parse_rest_agg_trade("X", NEGATIVE_QTY), errors.InvalidFieldValue, "'q'"),
    ],
)
def test_bad_bodies_raise_specific_protocol_errors(
    call: Any, error: type[ProtocolError], needle: str
) -> None:
    with pytest.raises(error) as info:
        call()
    assert type(info.value) is error
    assert needle in str(info.value)
    assert info.value.excerpt


@given(st.binary(max_size=200) | json_values.map(orjson.dumps) | st.lists(json_values).map(orjson.dumps))
def test_fuzz_rest_bodies_raise_only_protocol_errors(body: bytes) -> None:
    for parse in (
        lambda: parse_depth_snapshot("X", body),
        lambda: parse_rest_agg_trades("X", body),
        lambda: parse_rest_klines("X", "1m", body, now_ms=0),
    ):
        try:
            parse()
        except ProtocolError:
            pass


@given(json_values)
def test_fuzz_rest_rows_raise_only_protocol_errors(row: Any) -> None:
    for parse in (
        lambda: parse_rest_agg_trade("X", row),
        lambda: parse_rest_kline("X", "1m", row, now_ms=0),
    ):
        try:
            parse()
        except ProtocolError:
            pass
