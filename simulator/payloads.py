"""Stream payloads, field for field as Binance sends them.

Prices and quantities are strings; ids, timestamps and counts are numbers; ``m``, ``M``
and ``x`` are booleans. bookTicker and partial depth carry no ``e``/``E``.
"""

from __future__ import annotations

from typing import Any

from simulator.book import DepthDiff, Level
from simulator.klines import Bar
from simulator.market import AggTrade, Trade
from simulator.ticker import Stats24h
from simulator.units import fmt, fmt_percent, fmt_quote, fmt_ratio

Payload = dict[str, Any]


def levels(rows: list[Level]) -> list[list[str]]:
    return [[fmt(p), fmt(q)] for p, q in rows]


def trade(symbol: str, t: Trade, event_time: int) -> Payload:
    return {
        "e": "trade", "E": event_time, "s": symbol, "t": t.id, "p": fmt(t.price),
        "q": fmt(t.qty), "T": t.time, "m": t.buyer_maker, "M": True,
    }


def agg_trade(symbol: str, a: AggTrade, event_time: int) -> Payload:
    return {
        "e": "aggTrade", "E": event_time, "s": symbol, "a": a.id, "p": fmt(a.price),
        "q": fmt(a.qty), "f": a.first_id, "l": a.last_id, "T": a.time,
        "m": a.buyer_maker, "M": True,
    }


def kline(symbol: str, bar: Bar, event_time: int) -> Payload:
    return {
        "e": "kline",
        "E": event_time,
        "s": symbol,
        "k": {
            "t": bar.open_time, "T": bar.close_time, "s": symbol, "i": bar.interval,
            "f": bar.first_id, "L": bar.last_id, "o": fmt(bar.open), "c": fmt(bar.close),
            "h": fmt(bar.high), "l": fmt(bar.low), "v": fmt(bar.volume), "n": bar.trades,
            "x": bar.closed, "q": fmt_quote(bar.quote), "V": fmt(bar.taker_base),
            "Q": fmt_quote(bar.taker_quote), "B": "0",
        },
    }


def mini_ticker(symbol: str, s: Stats24h, event_time: int) -> Payload:
    return {
        "e": "24hrMiniTicker", "E": event_time, "s": symbol, "c": fmt(s.close),
        "o": fmt(s.open), "h": fmt(s.high), "l": fmt(s.low), "v": fmt(s.volume),
        "q": fmt_quote(s.quote),
    }


def ticker(
    symbol: str, s: Stats24h, last_qty: int, bid: Level, ask: Level, event_time: int
) -> Payload:
    change = s.close - s.open
    return {
        "e": "24hrTicker", "E": event_time, "s": symbol, "p": fmt(change),
        "P": fmt_percent(change, s.open), "w": fmt_ratio(s.quote, s.volume),
        "x": fmt(s.prev_close), "c": fmt(s.close), "Q": fmt(last_qty),
        "b": fmt(bid[0]), "B": fmt(bid[1]), "a": fmt(ask[0]), "A": fmt(ask[1]),
        "o": fmt(s.open), "h": fmt(s.high), "l": fmt(s.low), "v": fmt(s.volume),
        "q": fmt_quote(s.quote), "O": s.open_time, "C": s.close_time, "F": s.first_id,
        "L": s.last_id, "n": s.count,
    }


def book_ticker(symbol: str, update_id: int, bid: Level, ask: Level) -> Payload:
    return {
        "u": update_id, "s": symbol, "b": fmt(bid[0]), "B": fmt(bid[1]),
        "a": fmt(ask[0]), "A": fmt(ask[1]),
    }


def partial_depth(update_id: int, bids: list[Level], asks: list[Level]) -> Payload:
    return {"lastUpdateId": update_id, "bids": levels(bids), "asks": levels(asks)}


def depth_update(symbol: str, diff: DepthDiff, event_time: int) -> Payload:
    return {
        "e": "depthUpdate", "E": event_time, "s": symbol, "U": diff.first_id,
        "u": diff.last_id, "b": levels(diff.bids), "a": levels(diff.asks),
    }


def server_shutdown(event_time: int) -> Payload:
    return {"e": "serverShutdown", "E": event_time}


# ---- REST rows ---------------------------------------------------------------------------


def rest_agg_trade(a: AggTrade) -> Payload:
    return {
        "a": a.id, "p": fmt(a.price), "q": fmt(a.qty), "f": a.first_id, "l": a.last_id,
        "T": a.time, "m": a.buyer_maker, "M": True,
    }


def rest_trade(t: Trade) -> Payload:
    return {
        "id": t.id, "price": fmt(t.price), "qty": fmt(t.qty),
        "quoteQty": fmt_quote(t.price * t.qty), "time": t.time,
        "isBuyerMaker": t.buyer_maker, "isBestMatch": True,
    }


def kline_row(bar: Bar) -> list[Any]:
    return [
        bar.open_time, fmt(bar.open), fmt(bar.high), fmt(bar.low), fmt(bar.close),
        fmt(bar.volume), bar.close_time, fmt_quote(bar.quote), bar.trades,
        fmt(bar.taker_base), fmt_quote(bar.taker_quote), "0",
    ]
