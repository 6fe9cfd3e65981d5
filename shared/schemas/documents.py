"""The JSON Schema documents (draft 2020-12): each built-in type's ``data`` and the HTTP publish body.

These dicts are the single definition: :mod:`shared.schemas` compiles them for validation, the
gateway serves them at ``/api/schemas``, and docs/http-api.md's field tables are generated from
them (``scripts/schemas-doc.py``). Extra fields in ``data`` are allowed (a producer may add
information without breaking consumers); the publish envelope allows none.

The name bounds repeat those of :mod:`shared.events` as JSON Schema patterns (tests check that
they are the same rules).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DIALECT = "https://json-schema.org/draft/2020-12/schema"

# The rules of shared.events, as anchored patterns (tests/shared/test_schemas.py compares them).
EVENT_TYPE_PATTERN = "^[a-z][a-z0-9_]{0,63}$"
SYMBOL_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$"  # upper-cased when published
USER_PATTERN = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$"
IDEMPOTENCY_KEY_PATTERN = "^[^\\x00-\\x20\\x7f-\\x9f]{1,200}$"
MAX_PUBLISH_EVENTS = 10_000

Schema = dict[str, Any]


def _num(description: str, **extra: Any) -> Schema:
    return {"type": "number", "description": description, **extra}


def _int(description: str) -> Schema:
    return {"type": "integer", "description": description}


def _text(description: str) -> Schema:
    return {"type": "string", "minLength": 1, "description": description}


def _time(description: str) -> Schema:
    return _text(description + " (ISO 8601 UTC, e.g. 2026-11-26T14:00:00.123Z)")


def _kind(name: str) -> Schema:
    return {"const": name, "description": f"always {name}"}


def _id(description: str) -> Schema:
    return {"type": ["integer", "string"], "minLength": 1, "description": description}


def _doc(name: str, title: str, properties: Schema, required: list[str], **extra: Any) -> Schema:
    return {"$schema": DIALECT, "title": name, "description": title, "type": "object",
            "required": required, "properties": properties, **extra}


SYMBOL = _text("the market, upper case, e.g. BTCUSDT")
LEVELS = {"type": "array", "items": {"type": "array", "minItems": 2, "maxItems": 2,
                                     "items": {"type": "number"}},
          "description": "[price, quantity] pairs, best first"}

PRICE_UPDATE = _doc("price_update", "One trade on the exchange (from Binance aggregate trades).", {
    "symbol": SYMBOL,
    "price": _num("trade price"),
    "volume": _num("trade quantity, in the base asset"),
    "timestamp": _time("trade time"),
    "trade_id": _id("the exchange's trade id"),
    "side": {"enum": ["buy", "sell"], "description": "the taker's side"},
    "source": _text("where it came from, e.g. binance"),
}, ["symbol", "price", "volume", "timestamp", "trade_id", "side", "source"])

CANDLE_FIELDS: Schema = {
    "interval": _text("candle interval, e.g. 1m, 1h"),
    "open_time": _time("start of the candle"),
    "close_time": _time("end of the candle"),
    "open": _num("first price"), "high": _num("highest price"), "low": _num("lowest price"),
    "close": _num("last price so far"),
    "volume": _num("base asset volume"), "quote_volume": _num("quote asset volume"),
    "trades": _int("number of trades"),
    "closed": {"type": "boolean", "description": "true once the candle is final"},
}
TICKER_FIELDS: Schema = {
    "last": _num("last price"), "open": _num("price 24 h ago"), "high": _num("24 h high"),
    "low": _num("24 h low"), "volume": _num("24 h base asset volume"),
    "quote_volume": _num("24 h quote asset volume"), "change": _num("last - open"),
    "change_percent": _num("24 h change, in percent"), "bid": _num("best bid"), "ask": _num("best ask"),
}
BOOK_TICKER_FIELDS: Schema = {
    "bid": _num("best bid price"), "bid_qty": _num("quantity at the best bid"),
    "ask": _num("best ask price"), "ask_qty": _num("quantity at the best ask"),
    "update_id": _int("the exchange's book update id"),
}
MARKET_DATA_KINDS: Mapping[str, Schema] = {
    "candle": CANDLE_FIELDS, "ticker": TICKER_FIELDS, "book_ticker": BOOK_TICKER_FIELDS,
}


def _kind_rule(kind: str, fields: Schema) -> Schema:
    return {"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
            "then": {"properties": {"kind": _kind(kind), **fields}, "required": list(fields)}}


MARKET_DATA = _doc("market_data", "Candles, 24 h tickers and best bid/ask; `kind` says which, "
                   "and selects the other required fields.", {
                       "symbol": SYMBOL,
                       "kind": {"enum": list(MARKET_DATA_KINDS), "description": "which fields follow"},
                   }, ["symbol", "kind"],
                   allOf=[_kind_rule(k, f) for k, f in MARKET_DATA_KINDS.items()])

ORDERBOOK_UPDATE = _doc("orderbook_update", "The top levels of a sequence-validated L2 order book.", {
    "symbol": SYMBOL,
    "bids": dict(LEVELS, description="bids: [price, quantity] pairs, highest price first"),
    "asks": dict(LEVELS, description="asks: [price, quantity] pairs, lowest price first"),
    "last_update_id": _int("the exchange's update id of this book"),
    "timestamp": _time("when the book was taken"),
}, ["symbol", "bids", "asks", "last_update_id", "timestamp"])

SIGNAL_GENERATED = _doc("signal_generated", "A trading signal from a strategy.", {
    "symbol": SYMBOL,
    "signal": {"enum": ["LONG", "SHORT", "NEUTRAL"], "description": "direction"},
    "entry_price": _num("suggested entry price"),
    "strategy": _text("the strategy's name"),
    "confidence": _num("from 0 to 1", minimum=0, maximum=1),
}, ["symbol", "signal", "entry_price", "strategy", "confidence"])

TRADE_EXECUTED = _doc("trade_executed", "A trade executed for one user (private by default: "
                      "published with `user`).", {
    "trade_id": _id("the trade's id"),
    "symbol": SYMBOL,
    "type": {"enum": ["LONG", "SHORT"], "description": "position direction"},
    "entry_price": _num("fill price"),
    "quantity": _num("position size, in the base asset"),
    "leverage": _num("leverage, e.g. 5"),
}, ["trade_id", "symbol", "type", "entry_price", "quantity", "leverage"])

PORTFOLIO_UPDATE = _doc("portfolio_update", "A user's portfolio, as the publishing service defines "
                        "it (private by default: published with `user`).", {}, [])
RISK_EVENT = _doc("risk_event", "A risk notice for one user, as the publishing service defines it "
                  "(private by default); the dashboard shows `level` and `message` when present.", {}, [])

BUILTIN: Mapping[str, Schema] = {
    "price_update": PRICE_UPDATE,
    "market_data": MARKET_DATA,
    "orderbook_update": ORDERBOOK_UPDATE,
    "signal_generated": SIGNAL_GENERATED,
    "trade_executed": TRADE_EXECUTED,
    "portfolio_update": PORTFOLIO_UPDATE,
    "risk_event": RISK_EVENT,
}

EVENT: Schema = {
    "type": "object",
    "description": "One event.",
    "required": ["event_type"],
    "additionalProperties": False,
    "properties": {
        "event_type": {"type": "string", "pattern": EVENT_TYPE_PATTERN,
                       "description": "the stream to publish to; a built-in type's data must "
                                      "match that type's schema"},
        "data": {"type": "object", "default": {},
                 "description": "the event's data (default {}); at most MAX_EVENT_BYTES "
                                "(256 KiB by default) once msgpack-encoded, else 413"},
        "symbol": {"type": ["string", "null"], "pattern": SYMBOL_PATTERN,
                   "description": "routing symbol (upper-cased); default: data.symbol, which it "
                                  "must equal when both are given"},
        "user": {"type": ["string", "null"], "pattern": USER_PATTERN,
                 "description": "the one user allowed to receive it; required for private types"},
        "idempotency_key": {"type": ["string", "null"], "pattern": IDEMPOTENCY_KEY_PATTERN,
                            "description": "a repeat within the window returns the first offset "
                                           "and publishes nothing"},
    },
}

PUBLISH: Schema = {
    "$schema": DIALECT,
    "title": "publish",
    "description": "The body of POST /api/publish: one event, or a list of 1 to "
                   f"{MAX_PUBLISH_EVENTS} events published in order (at most 4 MiB in all).",
    "$defs": {"event": EVENT},
    "type": ["object", "array"],
    "if": {"type": "object"},
    "then": {"$ref": "#/$defs/event"},
    "else": {"items": {"$ref": "#/$defs/event"}, "minItems": 1, "maxItems": MAX_PUBLISH_EVENTS},
}
