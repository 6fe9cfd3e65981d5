"""The JSON Schema documents and the validator that applies them: every document, every rule."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from shared import events, schemas
from shared.schemas import documents
from shared.schemas.validator import SchemaError, compile_schema

# One valid data object per built-in type (and per market_data kind).
VALID: dict[str, list[dict[str, Any]]] = {
    "price_update": [{"symbol": "BTCUSDT", "price": 65000.5, "volume": 0.01,
                      "timestamp": "2026-11-26T14:00:00.123Z", "trade_id": 3012345678, "side": "buy",
                      "source": "binance"}],
    "market_data": [
        {"symbol": "BTCUSDT", "kind": "candle", "interval": "1m", "open_time": "2026-11-26T14:00:00.000Z",
         "close_time": "2026-11-26T14:00:59.999Z", "open": 1, "high": 2, "low": 0.5, "close": 1.5,
         "volume": 10, "quote_volume": 15, "trades": 7, "closed": True},
        {"symbol": "BTCUSDT", "kind": "ticker", "last": 1, "open": 1, "high": 1, "low": 1, "volume": 1,
         "quote_volume": 1, "change": 0, "change_percent": -1.25, "bid": 1, "ask": 1.1},
        {"symbol": "BTCUSDT", "kind": "book_ticker", "bid": 1, "bid_qty": 2, "ask": 1.1, "ask_qty": 3,
         "update_id": 99},
    ],
    "orderbook_update": [{"symbol": "ETHUSDT", "bids": [[3000.1, 2], [3000, 1.5]], "asks": [[3000.2, 1]],
                          "last_update_id": 5, "timestamp": "2026-11-26T14:00:00.123Z"}],
    "signal_generated": [{"symbol": "ETHUSDT", "signal": "NEUTRAL", "entry_price": 3000,
                          "strategy": "breakout", "confidence": 1}],
    "trade_executed": [{"trade_id": "t-1", "symbol": "ETHUSDT", "type": "SHORT", "entry_price": 3000,
                        "quantity": 2, "leverage": 3}],
    "portfolio_update": [{"equity": 1, "positions": []}, {}],
    "risk_event": [{"level": "high", "message": "margin"}],
}


def test_every_builtin_type_has_a_document_and_an_example() -> None:
    assert set(VALID) == set(schemas.builtin_types()) == set(documents.BUILTIN)
    for name, doc in documents.BUILTIN.items():
        assert doc["$schema"] == documents.DIALECT and doc["title"] == name and doc["type"] == "object"


@pytest.mark.parametrize(("event_type", "data"), [(t, d) for t, ds in VALID.items() for d in ds])
def test_valid_data_passes_and_extra_fields_are_allowed(event_type: str, data: dict[str, Any]) -> None:
    validator = schemas.schema_for(event_type)
    assert validator is not None
    assert schemas.violations(validator, data) == []
    assert schemas.violations(validator, dict(data, extra_field={"any": "thing"})) == []


def _required(event_type: str, data: dict[str, Any]) -> list[str]:
    doc = documents.BUILTIN[event_type]
    required = list(doc["required"])
    for rule in doc.get("allOf", []):
        if rule["if"]["properties"]["kind"]["const"] == data.get("kind"):
            required += rule["then"]["required"]
    return required


@pytest.mark.parametrize(("event_type", "data"), [(t, d) for t, ds in VALID.items() for d in ds])
def test_each_required_field_missing_is_named(event_type: str, data: dict[str, Any]) -> None:
    validator = schemas.schema_for(event_type)
    assert validator is not None
    for field in _required(event_type, data):
        broken = {k: v for k, v in data.items() if k != field}
        assert f"missing field {field!r}" in schemas.violations(validator, broken)


@pytest.mark.parametrize(("event_type", "data"), [(t, d) for t, ds in VALID.items() for d in ds])
def test_each_field_of_the_wrong_type_is_named(event_type: str, data: dict[str, Any]) -> None:
    validator = schemas.schema_for(event_type)
    assert validator is not None
    for field in _required(event_type, data):
        wrong: Any = [] if not isinstance(data[field], list) else "x"
        problems = schemas.violations(validator, dict(data, **{field: wrong}))
        assert len(problems) == 1 and problems[0].startswith(f"field {field!r} must"), problems


def test_messages_name_the_field_the_rule_and_the_value() -> None:
    price = schemas.schema_for("price_update")
    assert price is not None
    bad = dict(VALID["price_update"][0], price="65000", side="up", symbol="")
    assert schemas.violations(price, bad) == [
        "field 'symbol' must not be empty",
        "field 'price' must be number, got string",
        "field 'side' must be one of buy/sell, got 'up'",
    ]
    book = schemas.schema_for("orderbook_update")
    assert book is not None
    levels = dict(VALID["orderbook_update"][0], bids=[[1, 2], [1, "a"], [1]], asks=[[1, 2, 3]])
    assert schemas.violations(book, levels) == [
        "field 'bids[1][1]' must be number, got string", "field 'bids[2]' must have at least 2 items",
        "field 'asks[0]' must have at most 2 items"]
    signal = schemas.schema_for("signal_generated")
    assert signal is not None
    assert schemas.violations(signal, dict(VALID["signal_generated"][0], confidence=1.5)) == [
        "field 'confidence' must be <= 1, got 1.5"]


def test_market_data_kind_selects_the_required_fields() -> None:
    market = schemas.schema_for("market_data")
    assert market is not None
    assert schemas.violations(market, {"symbol": "X", "kind": "weird"}) == [
        "field 'kind' must be one of candle/ticker/book_ticker, got 'weird'"]
    assert schemas.violations(market, {"symbol": "X"}) == ["missing field 'kind'"]
    ticker_only = {k: v for k, v in VALID["market_data"][1].items()}
    ticker_only["kind"] = "book_ticker"
    problems = schemas.violations(market, ticker_only)
    assert "missing field 'bid_qty'" in problems and "missing field 'last'" not in problems


@pytest.mark.parametrize("value", [True, False, float("nan"), float("inf"), None, "1"])
def test_numbers_exclude_booleans_non_finite_and_strings(value: Any) -> None:
    price = schemas.schema_for("price_update")
    assert price is not None
    assert schemas.violations(price, dict(VALID["price_update"][0], price=value)) != []


def test_integers_follow_json_schema() -> None:
    book = schemas.schema_for("orderbook_update")
    assert book is not None
    base = VALID["orderbook_update"][0]
    assert schemas.violations(book, dict(base, last_update_id=5.0)) == []  # 5.0 is an integer
    assert schemas.violations(book, dict(base, last_update_id=5.5)) == [
        "field 'last_update_id' must be integer, got number"]
    assert schemas.violations(book, dict(base, last_update_id=True)) != []


def test_patterns_are_the_rules_of_shared_events() -> None:
    """The envelope's patterns say exactly what shared.events checks (bounds kept identical)."""
    pairs = [(documents.EVENT_TYPE_PATTERN, events.EVENT_TYPE_RE),
             (documents.USER_PATTERN, events.USER_RE),
             (documents.IDEMPOTENCY_KEY_PATTERN, events._IDEM_RE)]
    for pattern, compiled in pairs:
        assert pattern[1:-1] == compiled.pattern.removeprefix(r"\A").removesuffix(r"\Z")
    symbol = re.compile(documents.SYMBOL_PATTERN)
    for text in ["BTCUSDT", "btcusdt", "A", "X" * 64, "BTC-PERP:1/2.x", "", "BTC USDT", "-A", "X" * 65,
                 "BTC\n", "ÉTH"]:
        assert (symbol.fullmatch(text) is not None) == events.is_symbol(text.upper() if text.isascii() else
                                                                        text), text


def test_publish_body_one_event_or_a_bounded_list() -> None:
    body = schemas.publish_validator()
    event = {"event_type": "custom", "data": {"a": 1}, "symbol": "btcusdt", "user": None}
    assert body.problems(event) == [] and body.problems([event, event]) == []
    assert body.problems({"event_type": "custom"}) == []  # data defaults to {}
    assert body.problems([], root="body") == ["body must have at least 1 item"]
    assert body.problems("x", root="body") == ["body must be object or array, got string"]
    too_many = [event] * (documents.MAX_PUBLISH_EVENTS + 1)
    assert body.problems(too_many, root="body") == [
        f"body must have at most {documents.MAX_PUBLISH_EVENTS} items"]
    assert body.problems([event, {"event_type": "Bad", "data": [], "extra": 1}]) == [
        "field '[1].event_type' must match ^[a-z][a-z0-9_]{0,63}$, got 'Bad'",
        "field '[1].data' must be object, got array", "unknown field '[1].extra'"]
    assert body.problems({"data": {}, "idempotency_key": "has space", "user": "a\x00"}) == [
        "missing field 'event_type'",
        "field 'user' must match ^[^\\x00-\\x1f\\x7f-\\x9f]{1,256}$, got 'a\\x00'",
        "field 'idempotency_key' must match ^[^\\x00-\\x20\\x7f-\\x9f]{1,200}$, got 'has space'"]
    # a trailing newline is not a loophole (fullmatch, not search)
    assert body.problems({"event_type": "custom\n"}) != []


def test_validator_keywords() -> None:
    v = compile_schema({
        "$defs": {"n": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 10}},
        "type": "object",
        "properties": {"n": {"$ref": "#/$defs/n"}, "s": {"type": "string", "maxLength": 3},
                       "c": {"const": "x"}, "o": {"type": ["string", "null"], "minLength": 2}},
        "additionalProperties": {"type": "number"},
    })
    assert v.problems({"n": 5, "s": "abc", "c": "x", "o": None, "z": 1.5}) == []
    assert v.problems({"n": 0, "s": "abcd", "c": "y", "o": "a", "z": "q"}) == [
        "field 'n' must be > 0, got 0", "field 's' must be at most 3 characters",
        "field 'c' must be 'x', got 'y'", "field 'o' must be at least 2 characters",
        "field 'z' must be number, got string"]
    assert v.problems({"n": 10}) == ["field 'n' must be < 10, got 10"]
    assert v.problems(7, root="it") == ["it must be object, got integer"]
    assert compile_schema({}).is_valid(object()) and not compile_schema(False).is_valid(1)


@pytest.mark.parametrize("doc", [
    {"type": "object", "patternProperties": {}},  # unsupported keyword: refused, never ignored
    {"format": "date-time"},
    {"pattern": "[a-z]+"},  # unanchored
    {"type": "decimal"},
    {"$ref": "http://example.com/x"},
    {"$ref": "#/$defs/missing"},
    {"then": {}},
    {"enum": [1, 2]},
    {"minimum": "0"},
    {"$defs": {"a": {"items": {"$ref": "#/$defs/a"}}}, "$ref": "#/$defs/a"},  # recursive
])
def test_unsupported_schemas_are_refused_when_compiled(doc: dict[str, Any]) -> None:
    with pytest.raises(SchemaError):
        compile_schema(doc)


def test_documents_are_not_changed_by_compiling_or_validating() -> None:
    before = copy.deepcopy(dict(documents.BUILTIN))
    for name, validator in ((n, schemas.schema_for(n)) for n in documents.BUILTIN):
        assert validator is not None
        validator.problems({})
        assert validator.document is documents.BUILTIN[name]
    assert before == dict(documents.BUILTIN)
