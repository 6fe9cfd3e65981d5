"""Validation of events against the contract: what a producer is told when it gets one wrong."""

from __future__ import annotations

import pytest

from shared.errors import (
    EventTooLarge,
    InvalidEventData,
    InvalidEventType,
    PrivateEventWithoutUser,
    ValidationError,
)
from shared.events import (
    Event,
    EventPolicy,
    check_event_type,
    event_from_json,
    is_event_type,
    is_user,
    normalize_symbol,
    prepare,
)

PRICE = {
    "symbol": "BTCUSDT", "price": 65000.5, "volume": 0.01, "timestamp": "2026-11-26T14:00:00.000Z",
    "trade_id": 12345, "side": "buy", "source": "binance",
}


@pytest.mark.parametrize("name", ["a", "my_custom_type", "x" + "y" * 63, "risk_event2"])
def test_valid_event_types_are_accepted(name: str) -> None:
    assert prepare(Event(name, {"k": 1})).event_type == name


@pytest.mark.parametrize("name", ["", "Price", "1abc", "_x", "a-b", "a" * 65, "é", "a b"])
def test_invalid_event_types_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(InvalidEventType, match=r"\^\[a-z\]"):
        prepare(Event(name, {}))


def test_builtin_schema_reports_every_problem() -> None:
    bad = dict(PRICE, price="65000", side="up")
    del bad["trade_id"]
    with pytest.raises(InvalidEventData) as info:
        prepare(Event("price_update", bad))
    message = str(info.value)
    assert "missing field 'trade_id'" in message
    assert "'price' must be number" in message
    assert "'side' must be one of buy/sell" in message


def test_builtin_event_is_accepted_and_symbol_routed_from_data() -> None:
    prepared = prepare(Event("price_update", PRICE))
    assert prepared.symbol == "BTCUSDT"
    assert prepared.user == ""


def test_market_data_kind_selects_schema() -> None:
    with pytest.raises(InvalidEventData, match="kind"):
        prepare(Event("market_data", {"symbol": "BTCUSDT", "kind": "weird"}))
    with pytest.raises(InvalidEventData, match="'bid_qty'"):
        prepare(Event("market_data", {"symbol": "BTCUSDT", "kind": "book_ticker", "bid": 1.0,
                                      "ask": 2.0, "ask_qty": 1.0, "update_id": 1}))


def test_signal_confidence_must_be_between_0_and_1() -> None:
    data = {"symbol": "ETHUSDT", "signal": "LONG", "entry_price": 3000, "strategy": "x",
            "confidence": 1.5}
    with pytest.raises(InvalidEventData, match="confidence"):
        prepare(Event("signal_generated", data))


def test_symbol_is_upper_cased_and_must_agree_with_data() -> None:
    assert prepare(Event("custom", {"a": 1}, symbol="btcusdt")).symbol == "BTCUSDT"
    with pytest.raises(InvalidEventData, match="differs"):
        prepare(Event("price_update", PRICE, symbol="ETHUSDT"))
    with pytest.raises(ValidationError, match="not a valid symbol"):
        prepare(Event("custom", {}, symbol="BTC USDT"))


def test_private_types_require_a_user() -> None:
    data = {"trade_id": "t1", "symbol": "BTCUSDT", "type": "LONG", "entry_price": 1.0,
            "quantity": 2.0, "leverage": 3}
    with pytest.raises(PrivateEventWithoutUser, match="trade_executed is private"):
        prepare(Event("trade_executed", data))
    assert prepare(Event("trade_executed", data, user="alice")).user == "alice"
    policy = EventPolicy(private_types=frozenset({"custom"}))
    with pytest.raises(PrivateEventWithoutUser):
        prepare(Event("custom", {}), policy)


def test_data_must_be_a_json_object() -> None:
    with pytest.raises(InvalidEventData, match="JSON object"):
        prepare(Event("custom", [1, 2]))  # type: ignore[arg-type]
    with pytest.raises(InvalidEventData, match="JSON-compatible"):
        prepare(Event("custom", {"raw": b"\x00"}))
    with pytest.raises(InvalidEventData, match="JSON-compatible"):
        prepare(Event("custom", {1: "non-string key"}))


def test_size_limit() -> None:
    policy = EventPolicy(max_event_bytes=1000)
    prepare(Event("custom", {"x": "a" * 900}), policy)
    with pytest.raises(EventTooLarge, match="over the 1000 limit"):
        prepare(Event("custom", {"x": "a" * 1000}), policy)


def test_event_from_json_checks_shape() -> None:
    event = event_from_json({"event_type": "custom", "data": {"a": 1}, "user": "bob"})
    assert event.user == "bob"
    with pytest.raises(ValidationError, match="unknown event fields: colour"):
        event_from_json({"event_type": "custom", "data": {}, "colour": "red"})
    with pytest.raises(ValidationError, match="user must be a string"):
        event_from_json({"event_type": "custom", "data": {}, "user": 5})
    with pytest.raises(ValidationError, match="JSON object"):
        event_from_json(["custom"])


# --- names are checked whole: "$" also matches before a final newline ------------------------

TRADE = {"trade_id": "t1", "symbol": "BTCUSDT", "type": "LONG", "entry_price": 1.0,
         "quantity": 2.0, "leverage": 3}


@pytest.mark.parametrize("name", ["trade_executed\n", "price_update\n", "custom\n", "custom\r",
                                  "custom\n\n", "\ncustom", "custom\x00"])
def test_event_types_with_a_trailing_newline_or_control_are_refused(name: str) -> None:
    with pytest.raises(InvalidEventType):
        prepare(Event(name, TRADE, user="alice"))
    with pytest.raises(InvalidEventType):
        event_from_json({"event_type": name, "data": {}})
    with pytest.raises(InvalidEventType):
        check_event_type(name)
    assert not is_event_type(name)


def test_a_private_type_cannot_be_published_without_a_user_under_a_newline_alias() -> None:
    with pytest.raises(InvalidEventType):
        prepare(Event("trade_executed\n", TRADE))  # would have been public under another name
    with pytest.raises(PrivateEventWithoutUser):
        prepare(Event("trade_executed", TRADE))


@pytest.mark.parametrize("user", ["alice\n", "alice\r\n", "\nalice", "al\x00ice", "alice\x85",
                                  "a" * 257])
def test_users_with_control_characters_are_refused(user: str) -> None:
    with pytest.raises(ValidationError, match="user"):
        prepare(Event("trade_executed", TRADE, user=user))
    assert not is_user(user)


def test_unicode_users_are_fine() -> None:
    assert prepare(Event("trade_executed", TRADE, user="zoë@example.com")).user == "zoë@example.com"


@pytest.mark.parametrize("symbol", ["BTCUSDT\n", "btcusdt\n", "BTC\nUSDT", "\ufb00USDT", "BTCUSDT "])
def test_symbols_with_a_newline_or_non_ascii_are_refused(symbol: str) -> None:
    with pytest.raises(ValidationError, match="not a valid symbol"):
        prepare(Event("custom", {}, symbol=symbol))
    with pytest.raises(ValidationError, match="not a valid symbol"):
        prepare(Event("custom", {"symbol": symbol}))  # routed from data
    with pytest.raises(ValidationError, match="not a valid symbol"):
        normalize_symbol(symbol)


@pytest.mark.parametrize("key", ["k\n", "k1\r", "\nk"])
def test_idempotency_keys_with_a_newline_are_refused(key: str) -> None:
    with pytest.raises(ValidationError, match="idempotency_key"):
        prepare(Event("custom", {}, idempotency_key=key))
