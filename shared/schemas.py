"""Schemas of the built-in event types' ``data`` (CONTRACT section 2).

A schema lists required fields and what each must be. Extra fields are allowed, so a producer
can add information without breaking consumers. The checks are deliberately shallow and cheap:
they run once per published event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Check = Callable[[Any], bool]


def number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def text(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def boolean(value: Any) -> bool:
    return isinstance(value, bool)


def one_of(*choices: str) -> Check:
    allowed = frozenset(choices)

    def check(value: Any) -> bool:
        return value in allowed

    check.__name__ = "one of " + "/".join(choices)
    return check


def unit_interval(value: Any) -> bool:
    return number(value) and 0 <= value <= 1


def id_like(value: Any) -> bool:
    return integer(value) or text(value)


def levels(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    return all(
        isinstance(level, list | tuple) and len(level) == 2 and number(level[0]) and number(level[1])
        for level in value
    )


Schema = Mapping[str, Check]

PRICE_UPDATE: Schema = {
    "symbol": text, "price": number, "volume": number, "timestamp": text,
    "trade_id": id_like, "side": one_of("buy", "sell"), "source": text,
}
CANDLE: Schema = {
    "symbol": text, "kind": one_of("candle"), "interval": text, "open_time": text,
    "close_time": text, "open": number, "high": number, "low": number, "close": number,
    "volume": number, "quote_volume": number, "trades": integer, "closed": boolean,
}
TICKER: Schema = {
    "symbol": text, "kind": one_of("ticker"), "last": number, "open": number, "high": number,
    "low": number, "volume": number, "quote_volume": number, "change": number,
    "change_percent": number, "bid": number, "ask": number,
}
BOOK_TICKER: Schema = {
    "symbol": text, "kind": one_of("book_ticker"), "bid": number, "bid_qty": number,
    "ask": number, "ask_qty": number, "update_id": integer,
}
MARKET_DATA_KINDS: Mapping[str, Schema] = {
    "candle": CANDLE, "ticker": TICKER, "book_ticker": BOOK_TICKER,
}
ORDERBOOK_UPDATE: Schema = {
    "symbol": text, "bids": levels, "asks": levels, "last_update_id": integer, "timestamp": text,
}
SIGNAL_GENERATED: Schema = {
    "symbol": text, "signal": one_of("LONG", "SHORT", "NEUTRAL"), "entry_price": number,
    "strategy": text, "confidence": unit_interval,
}
TRADE_EXECUTED: Schema = {
    "trade_id": id_like, "symbol": text, "type": one_of("LONG", "SHORT"),
    "entry_price": number, "quantity": number, "leverage": number,
}

BUILTIN: Mapping[str, Schema] = {
    "price_update": PRICE_UPDATE,
    "orderbook_update": ORDERBOOK_UPDATE,
    "signal_generated": SIGNAL_GENERATED,
    "trade_executed": TRADE_EXECUTED,
}


def schema_for(event_type: str, data: Mapping[str, Any]) -> Schema | None:
    """The schema ``data`` must satisfy, or None for types without one."""
    if event_type == "market_data":
        kind = data.get("kind")
        return MARKET_DATA_KINDS.get(kind, {"kind": one_of(*MARKET_DATA_KINDS)}) if isinstance(
            kind, str
        ) else {"kind": one_of(*MARKET_DATA_KINDS)}
    return BUILTIN.get(event_type)


def violations(schema: Schema, data: Mapping[str, Any]) -> list[str]:
    """Human-readable reasons ``data`` breaks ``schema`` (empty when it complies)."""
    problems = []
    for field, check in schema.items():
        if field not in data:
            problems.append(f"missing field {field!r}")
        elif not check(data[field]):
            problems.append(f"field {field!r} must be {check.__name__.replace('_', ' ')}")
    return problems
