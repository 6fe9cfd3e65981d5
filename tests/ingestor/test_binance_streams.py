"""Stream names, combined URLs, sharding under the limits, control messages and pacing."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.binance import streams
from ingestor.binance.errors import InvalidStream, RetiredStream
from ingestor.binance.streams import (
    ControlPacer,
    RequestIds,
    StreamName,
    combined_url,
    parse_stream,
    shard_streams,
    subscribe_requests,
)

BASE = "wss://stream.binance.com:9443"

# -- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (lambda: streams.trade_stream("BTCUSDT"), "btcusdt@trade"),
        (lambda: streams.agg_trade_stream("btcusdt"), "btcusdt@aggTrade"),
        (lambda: streams.kline_stream("BTCUSDT", "1m"), "btcusdt@kline_1m"),
        (lambda: streams.kline_stream("BTCUSDT", "1M"), "btcusdt@kline_1M"),
        (lambda: streams.depth_stream("BTCUSDT"), "btcusdt@depth@100ms"),
        (lambda: streams.depth_stream("BTCUSDT", 1000), "btcusdt@depth"),
        (lambda: streams.partial_depth_stream("BTCUSDT", 20), "btcusdt@depth20"),
        (lambda: streams.partial_depth_stream("BTCUSDT", 5, 100), "btcusdt@depth5@100ms"),
        (lambda: streams.book_ticker_stream("BTCUSDT"), "btcusdt@bookTicker"),
        (lambda: streams.ticker_stream("BTCUSDT"), "btcusdt@ticker"),
        (lambda: streams.mini_ticker_stream("BTCUSDT"), "btcusdt@miniTicker"),
    ],
)
def test_builders(build: Callable[[], str], expected: str) -> None:
    assert build() == expected


@pytest.mark.parametrize(
    "build",
    [
        lambda: streams.trade_stream(""),
        lambda: streams.trade_stream("BTC-USDT"),
        lambda: streams.trade_stream("btc usdt"),
        lambda: streams.trade_stream("币安人生USDT"),
        lambda: streams.trade_stream("A" * 33),
        lambda: streams.kline_stream("BTCUSDT", "2m"),
        lambda: streams.kline_stream("BTCUSDT", "1H"),
        lambda: streams.depth_stream("BTCUSDT", 250),
        lambda: streams.partial_depth_stream("BTCUSDT", 15),
        lambda: streams.partial_depth_stream("BTCUSDT", 10, 500),
    ],
)
def test_builders_refuse_bad_parts(build: Callable[[], str]) -> None:
    with pytest.raises(InvalidStream):
        build()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("btcusdt@aggTrade", StreamName("btcusdt@aggTrade", "aggTrade", "BTCUSDT")),
        ("btcusdt@trade", StreamName("btcusdt@trade", "trade", "BTCUSDT")),
        ("ethbtc@kline_15m", StreamName("ethbtc@kline_15m", "kline", "ETHBTC", interval="15m")),
        ("btcusdt@depth", StreamName("btcusdt@depth", "depth", "BTCUSDT", speed_ms=1000)),
        ("btcusdt@depth@100ms", StreamName("btcusdt@depth@100ms", "depth", "BTCUSDT", speed_ms=100)),
        (
            "btcusdt@depth10@100ms",
            StreamName("btcusdt@depth10@100ms", "partialDepth", "BTCUSDT", levels=10, speed_ms=100),
        ),
        ("btcusdt@bookTicker", StreamName("btcusdt@bookTicker", "bookTicker", "BTCUSDT")),
        ("btcusdt@ticker", StreamName("btcusdt@ticker", "ticker", "BTCUSDT")),
        ("btcusdt@miniTicker", StreamName("btcusdt@miniTicker", "miniTicker", "BTCUSDT")),
        ("!miniTicker@arr", StreamName("!miniTicker@arr", "allMiniTickers", None)),
    ],
)
def test_parse_stream(name: str, expected: StreamName) -> None:
    assert parse_stream(name) == expected


@pytest.mark.parametrize("name", ["!ticker@arr", "!bookTicker"])
def test_retired_streams_are_refused_with_a_replacement(name: str) -> None:
    with pytest.raises(RetiredStream, match="use ") as info:
        parse_stream(name)
    assert isinstance(info.value, InvalidStream)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("BTCUSDT@trade", "lower case"),
        ("btcusdt", "expected <symbol>@<kind>"),
        ("@trade", "invalid symbol"),
        ("btcusdt@avgPrice", "unsupported"),
        ("btcusdt@ticker_1h", "unsupported"),
        ("btcusdt@kline_2m", "interval"),
        ("btcusdt@kline_", "interval"),
        ("btcusdt@depth7", "5, 10 or 20"),
        ("btcusdt@depth@250ms", "speed"),
        ("btcusdt@depth20@", "speed"),
        ("!ticker_1h@arr", "invalid symbol"),
    ],
)
def test_invalid_stream_names(name: str, needle: str) -> None:
    with pytest.raises(InvalidStream, match=needle):
        parse_stream(name)


symbols = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)
stream_names = st.one_of(
    symbols.map(streams.agg_trade_stream),
    symbols.map(streams.trade_stream),
    st.tuples(symbols, st.sampled_from(streams.KLINE_INTERVALS)).map(lambda a: streams.kline_stream(*a)),
    st.tuples(symbols, st.sampled_from([100, 1000])).map(lambda a: streams.depth_stream(*a)),
    symbols.map(streams.book_ticker_stream),
    symbols.map(streams.ticker_stream),
)


@given(symbols, st.sampled_from(streams.KLINE_INTERVALS))
def test_built_names_parse_back(symbol: str, interval: str) -> None:
    parsed = parse_stream(streams.kline_stream(symbol.upper(), interval))
    assert (parsed.kind, parsed.symbol, parsed.interval) == ("kline", symbol.upper(), interval)


# -- URLs and sharding ---------------------------------------------------------------------------


def test_combined_url() -> None:
    assert combined_url(BASE, ["btcusdt@aggTrade", "btcusdt@depth@100ms"]) == (
        "wss://stream.binance.com:9443/stream?streams=btcusdt@aggTrade/btcusdt@depth@100ms"
    )


@pytest.mark.parametrize("base", [BASE + "/", BASE + "/ws", BASE + "/stream", BASE + "/ws/"])
def test_combined_url_tolerates_a_path_on_the_base(base: str) -> None:
    assert combined_url(base, ["btcusdt@trade"]) == BASE + "/stream?streams=btcusdt@trade"


def test_combined_url_refuses_nothing_and_retired_streams() -> None:
    with pytest.raises(ValueError, match="at least one"):
        combined_url(BASE, [])
    with pytest.raises(RetiredStream):
        combined_url(BASE, ["btcusdt@trade", "!ticker@arr"])


def test_sharding_respects_the_1024_streams_limit() -> None:
    names = [streams.agg_trade_stream(f"sym{i}") for i in range(2500)]
    shards = shard_streams(names, base_url=BASE, max_url_length=10**9)
    assert [len(s) for s in shards] == [1024, 1024, 452]
    assert [n for s in shards for n in s] == names


def test_sharding_respects_the_url_length() -> None:
    names = [streams.agg_trade_stream(f"sym{i:04d}") for i in range(1000)]  # 16 chars each
    shards = shard_streams(names, base_url=BASE, max_url_length=8000)
    assert len(shards) > 1
    assert all(len(combined_url(BASE, shard)) <= 8000 for shard in shards)
    assert len(combined_url(BASE, shards[0] + (shards[1][0],))) > 8000  # each shard is full


def test_sharding_drops_duplicates_and_validates() -> None:
    assert shard_streams(["a@trade", "b@trade", "a@trade"], base_url=BASE) == [("a@trade", "b@trade")]
    with pytest.raises(RetiredStream):
        shard_streams(["a@trade", "!ticker@arr"], base_url=BASE)
    assert shard_streams([], base_url=BASE) == []


def test_sharding_refuses_unusable_limits() -> None:
    with pytest.raises(ValueError, match="alone exceeds"):
        shard_streams(["btcusdt@trade"], base_url=BASE, max_url_length=40)
    with pytest.raises(ValueError, match="max_streams"):
        shard_streams(["btcusdt@trade"], base_url=BASE, max_streams=1025)


@given(
    st.lists(stream_names, max_size=60),
    st.integers(min_value=1, max_value=10),
    st.integers(min_value=80, max_value=400),
)
def test_sharding_properties(names: list[str], max_streams: int, max_url_length: int) -> None:
    shards = shard_streams(names, base_url=BASE, max_streams=max_streams, max_url_length=max_url_length)
    assert [n for s in shards for n in s] == list(dict.fromkeys(names))  # all, once, in order
    for index, shard in enumerate(shards):
        assert 0 < len(shard) <= max_streams
        assert len(combined_url(BASE, shard)) <= max_url_length
        if index + 1 < len(shards):  # greedy: the next stream did not fit
            bigger = (*shard, shards[index + 1][0])
            assert len(bigger) > max_streams or len(combined_url(BASE, bigger)) > max_url_length


# -- control messages ---------------------------------------------------------------------------


def test_subscribe_batches_streams_and_numbers_requests() -> None:
    ids = RequestIds()
    names = [streams.agg_trade_stream(f"s{i}") for i in range(5)]
    requests = subscribe_requests([*names, names[0]], ids, batch_size=2)
    assert [(r.method, r.params, r.id) for r in requests] == [
        ("SUBSCRIBE", ("s0@aggTrade", "s1@aggTrade"), 1),
        ("SUBSCRIBE", ("s2@aggTrade", "s3@aggTrade"), 2),
        ("SUBSCRIBE", ("s4@aggTrade",), 3),
    ]
    assert orjson.loads(requests[0].encode()) == {
        "method": "SUBSCRIBE",
        "params": ["s0@aggTrade", "s1@aggTrade"],
        "id": 1,
    }


def test_unsubscribe_and_list_subscriptions() -> None:
    ids = RequestIds(start=312)
    (unsubscribe,) = streams.unsubscribe_requests(["btcusdt@depth"], ids)
    assert unsubscribe.encode() == '{"method":"UNSUBSCRIBE","params":["btcusdt@depth"],"id":312}'
    assert streams.list_subscriptions_request(ids).encode() == '{"method":"LIST_SUBSCRIPTIONS","id":313}'


def test_subscribe_validates_before_using_any_id() -> None:
    ids = RequestIds()
    with pytest.raises(RetiredStream):
        subscribe_requests(["btcusdt@trade", "!ticker@arr"], ids)
    assert ids.next() == 1


def test_request_ids_stay_in_the_signed_64_bit_range() -> None:
    ids = RequestIds(start=2**63 - 1)
    assert (ids.next(), ids.next()) == (2**63 - 1, 1)
    with pytest.raises(ValueError):
        RequestIds(start=0)


# -- pacing --------------------------------------------------------------------------------------


def test_pacer_lets_a_burst_through_then_waits_for_the_window() -> None:
    pacer = ControlPacer(max_messages=3, window_ms=1000)
    for _ in range(3):
        assert pacer.next_send_at(5_000) == 5_000
        pacer.on_sent(5_000)
    assert pacer.next_send_at(5_000) == 6_001
    assert pacer.next_send_at(7_000) == 7_000  # already past the window
    with pytest.raises(ValueError, match="backwards"):
        pacer.on_sent(4_000)


@given(
    st.lists(st.integers(min_value=0, max_value=3_000), min_size=1, max_size=40),
    st.integers(min_value=1, max_value=5),
    st.integers(min_value=1, max_value=2_000),
)
def test_pacer_never_exceeds_the_limit_in_any_window(
    wants: list[int], max_messages: int, window_ms: int
) -> None:
    """Messages wanted at arbitrary times, each sent as soon as the pacer allows."""
    pacer = ControlPacer(max_messages=max_messages, window_ms=window_ms)
    sent: list[int] = []
    clock = 0
    for want in sorted(wants):
        clock = max(clock, want)
        at = pacer.next_send_at(clock)
        assert at >= clock
        if len(sent) >= max_messages:  # not needlessly late: right after the window allows
            assert at <= max(clock, sent[-max_messages] + window_ms + 1)
        pacer.on_sent(at)
        sent.append(at)
        clock = at
    for i, start in enumerate(sent):  # any closed window [start, start + window_ms]
        assert sum(1 for t in sent[i:] if t <= start + window_ms) <= max_messages
