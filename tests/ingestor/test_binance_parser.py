"""Bytes in, messages out: every reference payload, the combined wrapper, and garbage."""

from __future__ import annotations

import json
from typing import Any, get_args

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingestor.binance import errors, messages
from ingestor.binance.errors import ProtocolError
from ingestor.binance.parser import parse_frame, parse_stream_frame
from tests.ingestor import samples
from tests.ingestor.samples import combined
from tests.ingestor.strategies import json_values

# -- every reference payload -------------------------------------------------------------------


def test_trade() -> None:
    assert parse_frame(samples.TRADE) == messages.Trade(
        symbol="BNBBTC",
        event_time=1672515782136,
        trade_id=12345,
        price=0.001,
        quantity=100.0,
        trade_time=1672515782136,
        buyer_is_maker=True,
    )


def test_agg_trade() -> None:
    assert parse_frame(samples.AGG_TRADE) == messages.AggTrade(
        symbol="BNBBTC",
        event_time=1672515782136,
        agg_id=12345,
        price=0.001,
        quantity=100.0,
        first_trade_id=100,
        last_trade_id=105,
        trade_time=1672515782136,
        buyer_is_maker=True,
    )


def test_kline() -> None:
    assert parse_frame(samples.KLINE) == messages.Kline(
        symbol="BNBBTC",
        event_time=1672515782136,
        interval="1m",
        open_time=1672515780000,
        close_time=1672515839999,
        first_trade_id=100,
        last_trade_id=200,
        open=0.001,
        high=0.0025,
        low=0.0015,
        close=0.002,
        volume=1000.0,
        quote_volume=1.0,
        trades=100,
        closed=False,
        taker_buy_volume=500.0,
        taker_buy_quote_volume=0.5,
    )


def test_mini_ticker() -> None:
    assert parse_frame(samples.MINI_TICKER) == messages.MiniTicker(
        "BNBBTC", 1672515782136, close=0.0025, open=0.001, high=0.0025, low=0.001, volume=10000.0,
        quote_volume=18.0,
    )  # fmt: skip


def test_ticker() -> None:
    ticker = parse_frame(samples.TICKER)
    assert ticker == messages.Ticker24h(
        symbol="BNBBTC",
        event_time=1672515782136,
        price_change=0.0015,
        price_change_percent=250.0,
        weighted_avg_price=0.0018,
        prev_close=0.0009,
        last_price=0.0025,
        last_quantity=10.0,
        bid=0.0024,
        bid_quantity=10.0,
        ask=0.0026,
        ask_quantity=100.0,
        open=0.001,
        high=0.0025,
        low=0.001,
        volume=10000.0,
        quote_volume=18.0,
        open_time=0,
        close_time=86400000,
        first_trade_id=0,
        last_trade_id=18150,
        trades=18151,
    )


def test_ticker_accepts_a_negative_change_and_minus_one_trade_ids() -> None:
    payload = orjson.loads(samples.TICKER) | {"p": "-0.0003", "P": "-12.5", "F": -1, "L": -1}
    ticker = parse_frame(orjson.dumps(payload))
    assert isinstance(ticker, messages.Ticker24h)
    assert (ticker.price_change, ticker.price_change_percent) == (-0.0003, -12.5)
    assert (ticker.first_trade_id, ticker.last_trade_id) == (-1, -1)


def test_book_ticker_has_no_event_type_but_is_recognised() -> None:
    assert parse_frame(samples.BOOK_TICKER) == messages.BookTicker(
        "BNBUSDT", 400900217, bid=25.3519, bid_quantity=31.21, ask=25.3652, ask_quantity=40.66
    )


def test_diff_depth_keeps_the_exchange_strings() -> None:
    assert parse_frame(samples.DEPTH_UPDATE) == messages.DepthUpdate(
        "BNBBTC", 1672515782136, 157, 160, bids=(("0.0024", "10"),), asks=(("0.0026", "100"),)
    )


def test_partial_depth_takes_its_symbol_from_the_combined_stream_name() -> None:
    frame = combined("bnbbtc@depth5@100ms", samples.PARTIAL_DEPTH)
    assert parse_stream_frame(frame) == (
        "bnbbtc@depth5@100ms",
        messages.PartialDepth("BNBBTC", 160, (("0.0024", "10"),), (("0.0026", "100"),)),
    )


def test_raw_partial_depth_uses_the_stream_the_connection_was_opened_for() -> None:
    msg = parse_frame(samples.PARTIAL_DEPTH, stream="ethusdt@depth20")
    assert isinstance(msg, messages.PartialDepth)
    assert msg.symbol == "ETHUSDT"


def test_raw_partial_depth_without_a_stream_name_is_refused() -> None:
    with pytest.raises(errors.MissingField, match="combined stream") as info:
        parse_frame(samples.PARTIAL_DEPTH)
    assert info.value.field == "stream"


def test_partial_depth_under_a_non_depth_stream_name_is_refused() -> None:
    with pytest.raises(errors.InvalidFieldValue, match="stream"):
        parse_frame(combined("bnbbtc@trade", samples.PARTIAL_DEPTH))


@pytest.mark.parametrize("frame", [samples.SERVER_SHUTDOWN, samples.SERVER_SHUTDOWN_COMBINED])
def test_server_shutdown_raw_and_combined(frame: bytes) -> None:
    assert parse_frame(frame) == messages.ServerShutdown(1770123456789)


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (samples.SUBSCRIBE_OK, messages.ControlResult(None, 1)),
        (samples.LIST_SUBSCRIPTIONS, messages.ControlResult(("btcusdt@aggTrade",), 3)),
        (samples.GET_PROPERTY, messages.ControlResult(True, 2)),
        (b'{"result":null,"id":"sub-7"}', messages.ControlResult(None, "sub-7")),
        (b'{"result":null,"id":null}', messages.ControlResult(None, None)),
        (samples.CONTROL_ERROR, messages.ControlError(2, "Invalid request: invalid stream", 2)),
        (samples.TOO_MANY, messages.ControlError(4, "Too many subscriptions", 7)),
        (b'{"error":{"code":3,"msg":"Invalid JSON"}}', messages.ControlError(3, "Invalid JSON", None)),
    ],
)
def test_control_replies(frame: bytes, expected: messages.Message) -> None:
    assert parse_frame(frame) == expected


def test_mini_ticker_array() -> None:
    second = orjson.loads(samples.MINI_TICKER) | {"s": "ETHBTC", "c": "0.05"}
    frame = (
        b'{"stream":"!miniTicker@arr","data":[' + samples.MINI_TICKER + b"," + orjson.dumps(second) + b"]}"
    )
    batch = parse_frame(frame)
    assert isinstance(batch, messages.MiniTickerBatch)
    assert [(t.symbol, t.close) for t in batch.tickers] == [("BNBBTC", 0.0025), ("ETHBTC", 0.05)]


@pytest.mark.parametrize(("stream", "payload"), sorted(samples.STREAM_PAYLOADS.items()))
def test_combined_wrapper_gives_the_same_message_and_the_stream_name(stream: str, payload: bytes) -> None:
    name, msg = parse_stream_frame(combined(stream, payload))
    assert name == stream
    assert msg == parse_frame(payload, stream=stream)


@pytest.mark.parametrize(("stream", "payload"), sorted(samples.STREAM_PAYLOADS.items()))
def test_text_and_bytes_parse_alike(stream: str, payload: bytes) -> None:
    assert parse_frame(payload.decode(), stream=stream) == parse_frame(payload, stream=stream)


def test_unknown_extra_fields_are_ignored() -> None:
    payload = orjson.loads(samples.AGG_TRADE) | {"new": [1, 2], "X": "MARKET"}
    assert parse_frame(orjson.dumps(payload)) == parse_frame(samples.AGG_TRADE)


def test_differently_padded_decimals_give_the_same_float() -> None:
    padded = orjson.loads(samples.AGG_TRADE) | {"p": "0.00100000", "q": "100.00000000"}
    assert parse_frame(orjson.dumps(padded)) == parse_frame(samples.AGG_TRADE)


# -- garbage: one ProtocolError subclass per failure mode ----------------------------------------


def _with(payload: bytes, **changes: Any) -> bytes:
    obj = orjson.loads(payload)
    for key, value in changes.items():
        if value is _DELETE:
            del obj[key]
        else:
            obj[key] = value
    return json.dumps(obj, separators=(",", ":")).encode()  # stdlib: allows integers past 64 bits


_DELETE = object()
_KLINE_K = orjson.loads(samples.KLINE)["k"]


@pytest.mark.parametrize(
    ("frame", "error", "needle"),
    [
        (b"\xff\xfe\x00binary", errors.BinaryFrame, "binary"),
        (b"not json", errors.InvalidJSON, "not valid JSON"),
        ("{'single': 'quotes'}", errors.InvalidJSON, "not valid JSON"),
        (b"", errors.InvalidJSON, "not valid JSON"),
        (b"[1, 2]", errors.UnexpectedShape, "expected mini tickers"),
        (b"42", errors.UnexpectedShape, "integer 42"),
        (b'"text"', errors.UnexpectedShape, "string"),
        (b"null", errors.UnexpectedShape, "null"),
        (b'{"stream":5,"data":{}}', errors.UnexpectedShape, "'stream'"),
        (b'{"stream":"x@trade","data":7}', errors.UnexpectedShape, "integer 7"),
        (b"{}", errors.UnknownEvent, "no event type"),
        (b'{"e":"1hTicker","E":1}', errors.UnknownEvent, "'1hTicker'"),
        (b'{"e":["trade"]}', errors.InvalidFieldType, "'e'"),
        (_with(samples.AGG_TRADE, p=_DELETE), errors.MissingField, "'p'"),
        (_with(samples.AGG_TRADE, p=0.001), errors.InvalidFieldType, "decimal string"),
        (_with(samples.AGG_TRADE, p="abc"), errors.InvalidFieldValue, "decimal number"),
        (_with(samples.AGG_TRADE, p="-1"), errors.InvalidFieldValue, "negative"),
        (_with(samples.AGG_TRADE, p="nan"), errors.InvalidFieldValue, "'p'"),
        (_with(samples.AGG_TRADE, q="inf"), errors.InvalidFieldValue, "'q'"),
        (_with(samples.AGG_TRADE, p="1" * 400), errors.InvalidFieldValue, "finite"),
        (_with(samples.AGG_TRADE, a="12345"), errors.InvalidFieldType, "'a'"),
        (_with(samples.AGG_TRADE, a=1.5), errors.InvalidFieldType, "'a'"),
        (_with(samples.AGG_TRADE, a=2**64), errors.InvalidFieldType, "'a'"),
        (_with(samples.AGG_TRADE, m=0), errors.InvalidFieldType, "boolean"),
        (_with(samples.AGG_TRADE, s=""), errors.InvalidFieldValue, "empty"),
        (_with(samples.AGG_TRADE, E=True), errors.InvalidFieldType, "'E'"),
        (_with(samples.AGG_TRADE, T=-1), errors.InvalidFieldValue, "1970..9999"),
        (_with(samples.AGG_TRADE, T=1672515782136000), errors.InvalidFieldValue, "'T'"),
        (_with(samples.TRADE, t=None), errors.InvalidFieldType, "'t'"),
        (_with(samples.BOOK_TICKER, b=None), errors.InvalidFieldType, "'b'"),
        (_with(samples.DEPTH_UPDATE, U=161), errors.InvalidFieldValue, "'U'"),
        (_with(samples.DEPTH_UPDATE, b=[["0.1"]]), errors.InvalidFieldValue, "'b'"),
        (_with(samples.DEPTH_UPDATE, a=[["0.1", 5]]), errors.InvalidFieldValue, "'a'"),
        (_with(samples.DEPTH_UPDATE, a={"0.1": "5"}), errors.InvalidFieldType, "'a'"),
        (_with(samples.KLINE, k=[]), errors.InvalidFieldType, "'k'"),
        (_with(samples.KLINE, k={"i": "1m"}), errors.MissingField, "'k.t'"),
        (_with(samples.KLINE, k=_KLINE_K | {"i": "2m"}), errors.InvalidFieldValue, "'k.i'"),
        (_with(samples.TICKER, n="18151"), errors.InvalidFieldType, "'n'"),
        (b'{"result":null}', errors.MissingField, "'id'"),
        (b'{"result":null,"id":1.5}', errors.InvalidFieldType, "'id'"),
        (b'{"error":"boom","id":1}', errors.InvalidFieldType, "'error'"),
        (b'{"error":{"code":"2","msg":"x"},"id":1}', errors.InvalidFieldType, "'error.code'"),
    ],
)  # fmt: skip
def test_garbage_raises_the_specific_protocol_error(
    frame: bytes | str, error: type[ProtocolError], needle: str
) -> None:
    with pytest.raises(error) as info:
        parse_frame(frame)
    assert type(info.value) is error
    assert needle in str(info.value)
    assert info.value.excerpt, "every parser error shows what arrived"


def test_error_message_names_the_event_and_quotes_the_frame() -> None:
    frame = _with(samples.AGG_TRADE, q="lots")
    with pytest.raises(errors.InvalidFieldValue) as info:
        parse_frame(frame)
    message = str(info.value)
    assert message.startswith("aggTrade: field 'q' must be a decimal number, got string 'lots'")
    assert '{"e":"aggTrade"' in message
    assert (info.value.event, info.value.field) == ("aggTrade", "q")


def test_excerpt_is_short_even_for_a_huge_frame() -> None:
    with pytest.raises(errors.InvalidJSON) as info:
        parse_frame(b"x" * 1_000_000)
    assert len(str(info.value)) < 300
    assert info.value.excerpt.endswith("...")


# -- fuzzing: nothing but ProtocolError, ever ----------------------------------------------------

ALL_FRAMES = [
    *samples.STREAM_PAYLOADS.values(), samples.SERVER_SHUTDOWN, samples.SUBSCRIBE_OK,
    samples.CONTROL_ERROR, samples.LIST_SUBSCRIPTIONS,
]  # fmt: skip


MESSAGE_TYPES = get_args(messages.Message)


def _parses_or_protocol_error(frame: bytes | str, stream: str | None = None) -> None:
    """The parser's whole promise: a message, or a ProtocolError with a message."""
    error: ProtocolError | None = None
    try:
        msg = parse_frame(frame, stream=stream)
    except ProtocolError as exc:
        error = exc
    else:
        assert type(msg) in MESSAGE_TYPES
    if error is not None:
        assert str(error)


@given(st.binary(max_size=300))
@example(b"\x80")
@example(b'{"e":"aggTrade"')
def test_fuzz_arbitrary_bytes(frame: bytes) -> None:
    _parses_or_protocol_error(frame)


@given(st.text(max_size=300))
@example("\ud800")
def test_fuzz_arbitrary_text(frame: str) -> None:
    _parses_or_protocol_error(frame)


@given(json_values, st.none() | st.text(max_size=20))
def test_fuzz_arbitrary_json(value: Any, stream: str | None) -> None:
    _parses_or_protocol_error(orjson.dumps(value), stream)
    _parses_or_protocol_error(orjson.dumps({"stream": stream, "data": value}))


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A valid message with one field (possibly nested) replaced, deleted or added."""
    obj = orjson.loads(draw(st.sampled_from(ALL_FRAMES)))
    target = obj["k"] if "k" in obj and draw(st.booleans()) else obj
    key = draw(st.sampled_from(sorted(target)) | st.text(max_size=2))
    if draw(st.booleans()) and key in target:
        del target[key]
    else:
        target[key] = draw(json_values)
    return orjson.dumps(obj)


@given(mutated_messages(), st.sampled_from([None, "btcusdt@depth20"]))
@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
def test_fuzz_mutated_valid_messages(frame: bytes, stream: str | None) -> None:
    _parses_or_protocol_error(frame, stream)
    _parses_or_protocol_error(combined(stream or "x@depth5", frame))


# -- the fast paths agree with the field specs ----------------------------------------------------

decimal_strings = st.decimals(min_value=0, max_value=10**9, allow_nan=False, places=8).map(str)
times = st.integers(min_value=0, max_value=253_402_300_799_999)
ids = st.integers(min_value=-(2**63), max_value=2**63 - 1)
symbols = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=12)
levels = st.lists(st.tuples(decimal_strings, decimal_strings).map(list), max_size=5)


@given(symbols, times, ids, decimal_strings, decimal_strings, ids, ids, times, st.booleans())
def test_any_valid_agg_trade_parses_to_its_fields(
    s: str, et: int, a: int, p: str, q: str, f: int, last: int, t: int, m: bool
) -> None:
    frame = orjson.dumps(
        {"e": "aggTrade", "E": et, "s": s, "a": a, "p": p, "q": q, "f": f, "l": last, "T": t, "m": m}
    )
    assert parse_frame(frame) == messages.AggTrade(s, et, a, float(p), float(q), f, last, t, m)


@given(symbols, times, ids, decimal_strings, decimal_strings, times, st.booleans())
def test_any_valid_trade_parses_to_its_fields(
    s: str, et: int, t: int, p: str, q: str, tt: int, m: bool
) -> None:
    frame = orjson.dumps({"e": "trade", "E": et, "s": s, "t": t, "p": p, "q": q, "T": tt, "m": m})
    assert parse_frame(frame) == messages.Trade(s, et, t, float(p), float(q), tt, m)


@given(symbols, ids, decimal_strings, decimal_strings, decimal_strings, decimal_strings)
def test_any_valid_book_ticker_parses_to_its_fields(s: str, u: int, b: str, bq: str, a: str, aq: str) -> None:
    frame = orjson.dumps({"u": u, "s": s, "b": b, "B": bq, "a": a, "A": aq})
    assert parse_frame(frame) == messages.BookTicker(s, u, float(b), float(bq), float(a), float(aq))


@given(symbols, times, ids, st.integers(min_value=0, max_value=2**40), levels, levels)
def test_any_valid_depth_update_parses_to_its_fields(
    s: str, et: int, first: int, width: int, bids: list[list[str]], asks: list[list[str]]
) -> None:
    final = min(first + width, 2**63 - 1)
    frame = orjson.dumps({"e": "depthUpdate", "E": et, "s": s, "U": first, "u": final, "b": bids, "a": asks})
    expected = messages.DepthUpdate(s, et, first, final, tuple(map(tuple, bids)), tuple(map(tuple, asks)))  # type: ignore[arg-type]
    assert parse_frame(frame) == expected


@pytest.mark.parametrize(
    "frame", [samples.TRADE, samples.AGG_TRADE, samples.BOOK_TICKER, samples.DEPTH_UPDATE]
)
@pytest.mark.parametrize("bad", [None, True, 1.5, "", "x", [], {}])
def test_fast_path_rejections_name_the_bad_field(frame: bytes, bad: Any) -> None:
    """Each field of a fast-path message, set to a wrong value, is reported by name."""
    for key in orjson.loads(frame):
        if key in ("e", "M"):
            continue
        original = orjson.loads(frame)[key]
        valid = (type(bad) is type(original) and not isinstance(bad, str | list)) or (
            (key, bad) == ("s", "x") or (frame is samples.DEPTH_UPDATE and bad == [] and key in "ab")
        )
        if valid:
            continue
        with pytest.raises((errors.InvalidFieldType, errors.InvalidFieldValue)) as info:
            parse_frame(_with(frame, **{key: bad}))
        assert info.value.field == key, (key, bad, str(info.value))
