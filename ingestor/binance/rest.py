"""Parse Binance Spot REST bodies the ingestor needs: depth snapshots, aggTrades, klines.

Rows become the same message types as the WebSocket stream (with ``event_time`` None), so one
normalizer serves live and backfilled data. Raises only
:exc:`~ingestor.binance.errors.ProtocolError` for bad bodies, like the frame parser.
"""

from __future__ import annotations

from typing import Final

from ingestor.binance.errors import UnexpectedShape
from ingestor.binance.fields import (
    Spec,
    extract,
    framed,
    loads,
    show,
    to_bool,
    to_int,
    to_levels,
    to_time,
    to_unsigned,
)
from ingestor.binance.messages import AggTrade, DepthSnapshot, Kline
from ingestor.binance.streams import KLINE_INTERVALS

__all__ = [
    "parse_depth_snapshot",
    "parse_rest_agg_trade",
    "parse_rest_agg_trades",
    "parse_rest_kline",
    "parse_rest_klines",
]

_DEPTH_LEVELS: Final[Spec] = (
    ("lastUpdateId", to_int), ("bids", to_levels), ("asks", to_levels),
)  # fmt: skip

_REST_AGG_TRADE: Final[Spec] = (
    ("a", to_int), ("p", to_unsigned), ("q", to_unsigned), ("f", to_int), ("l", to_int),
    ("T", to_time), ("m", to_bool),
)  # fmt: skip


def _rest_agg_trade(symbol: str, row: object) -> AggTrade:
    if type(row) is not dict:
        raise UnexpectedShape(f"aggTrades row is {show(row)}, expected an object")
    agg, price, qty, first, last, trade_time, maker = extract(row, "aggTrades row", _REST_AGG_TRADE)
    return AggTrade(symbol, None, agg, price, qty, first, last, trade_time, maker)


def parse_rest_agg_trade(symbol: str, row: object) -> AggTrade:
    """One decoded ``/api/v3/aggTrades`` row (an object) -> :class:`AggTrade` (no event time)."""
    with framed(row):
        return _rest_agg_trade(symbol.upper(), row)


def parse_rest_agg_trades(symbol: str, body: bytes | str) -> list[AggTrade]:
    """A whole ``/api/v3/aggTrades`` response body -> messages, oldest first as sent."""
    rows = loads(body)
    upper = symbol.upper()
    with framed(body):
        if type(rows) is not list:
            raise UnexpectedShape(f"aggTrades body is {show(rows)}, expected an array")
        return [_rest_agg_trade(upper, row) for row in rows]


_REST_KLINE: Final[Spec] = (
    ("open_time", to_time), ("open", to_unsigned), ("high", to_unsigned),
    ("low", to_unsigned), ("close", to_unsigned), ("volume", to_unsigned),
    ("close_time", to_time), ("quote_volume", to_unsigned), ("trades", to_int),
    ("taker_buy_volume", to_unsigned), ("taker_buy_quote_volume", to_unsigned),
)  # fmt: skip


def _rest_kline(symbol: str, interval: str, row: object, now_ms: int) -> Kline:
    if type(row) is not list or len(row) < len(_REST_KLINE):
        raise UnexpectedShape(f"klines row is {show(row)}, expected an array of 11+ items")
    t, o, h, lo, c, v, ct, qv, n, tbv, tbq = (
        convert(row[i], "klines row", name) for i, (name, convert) in enumerate(_REST_KLINE)
    )
    # Binance's close time is the candle's last millisecond: final once now is past it.
    closed = now_ms > ct
    return Kline(symbol, None, interval, t, ct, None, None, o, h, lo, c, v, qv, n, closed, tbv, tbq)


def _check_interval(interval: str) -> None:
    if interval not in KLINE_INTERVALS:
        raise ValueError(f"invalid kline interval {interval!r}")


def parse_rest_kline(symbol: str, interval: str, row: object, *, now_ms: int) -> Kline:
    """One decoded ``/api/v3/klines`` row (an array) -> :class:`Kline`.

    REST rows do not say whether the candle is final: it is ``closed`` when ``now_ms`` is past
    its close time (the candle's last millisecond). ``interval`` is the one the rows were
    requested with (ValueError if it is not a kline interval).
    """
    _check_interval(interval)
    with framed(row):
        return _rest_kline(symbol.upper(), interval, row, now_ms)


def parse_rest_klines(symbol: str, interval: str, body: bytes | str, *, now_ms: int) -> list[Kline]:
    """A whole ``/api/v3/klines`` response body -> candles, oldest first as sent."""
    _check_interval(interval)
    rows = loads(body)
    upper = symbol.upper()
    with framed(body):
        if type(rows) is not list:
            raise UnexpectedShape(f"klines body is {show(rows)}, expected an array")
        return [_rest_kline(upper, interval, row, now_ms) for row in rows]


def parse_depth_snapshot(symbol: str, body: bytes | str) -> DepthSnapshot:
    """A ``/api/v3/depth`` response body -> :class:`DepthSnapshot` for ``symbol``."""
    obj = loads(body)
    with framed(body):
        if type(obj) is not dict:
            raise UnexpectedShape(f"depth body is {show(obj)}, expected an object")
        return DepthSnapshot(symbol.upper(), *extract(obj, "depth snapshot", _DEPTH_LEVELS))
