"""Every stream's payload, field for field and JSON type for JSON type, as Binance sends it."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import connect

from simulator import Simulator
from simulator.klines import INTERVALS
from tests.simulator.helpers import Dec, assert_levels, assert_shape, recv_json, recv_until

TRADE = {"e": str, "E": int, "s": str, "t": int, "p": Dec, "q": Dec, "T": int, "m": bool,
         "M": bool}
AGG_TRADE = {"e": str, "E": int, "s": str, "a": int, "p": Dec, "q": Dec, "f": int, "l": int,
             "T": int, "m": bool, "M": bool}
KLINE_K = {"t": int, "T": int, "s": str, "i": str, "f": int, "L": int, "o": Dec, "c": Dec,
           "h": Dec, "l": Dec, "v": Dec, "n": int, "x": bool, "q": Dec, "V": Dec, "Q": Dec,
           "B": str}
KLINE = {"e": str, "E": int, "s": str, "k": KLINE_K}
MINI = {"e": str, "E": int, "s": str, "c": Dec, "o": Dec, "h": Dec, "l": Dec, "v": Dec, "q": Dec}
TICKER = {"e": str, "E": int, "s": str, "p": Dec, "P": Dec, "w": Dec, "x": Dec, "c": Dec,
          "Q": Dec, "b": Dec, "B": Dec, "a": Dec, "A": Dec, "o": Dec, "h": Dec, "l": Dec,
          "v": Dec, "q": Dec, "O": int, "C": int, "F": int, "L": int, "n": int}
BOOK_TICKER = {"u": int, "s": str, "b": Dec, "B": Dec, "a": Dec, "A": Dec}
PARTIAL = {"lastUpdateId": int, "bids": list, "asks": list}
DEPTH = {"e": str, "E": int, "s": str, "U": int, "u": int, "b": list, "a": list}


async def first_per_stream(url: str, streams: list[str], timeout: float = 6.0) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def record(message: Any) -> bool:
        seen.setdefault(message["stream"], message["data"])
        return set(seen) >= set(streams)

    async with connect(url) as ws:
        await recv_until(ws, record, timeout)
    return seen


async def test_each_stream_payload_matches_the_reference(sim: Simulator) -> None:
    streams = [
        "btcusdt@trade", "btcusdt@aggTrade", "btcusdt@kline_1s", "btcusdt@miniTicker",
        "btcusdt@ticker", "btcusdt@bookTicker", "btcusdt@depth5", "btcusdt@depth10@100ms",
        "btcusdt@depth20", "btcusdt@depth", "btcusdt@depth@100ms", "!miniTicker@arr",
    ]
    seen = await first_per_stream(f"{sim.url_ws}/stream?streams={'/'.join(streams)}", streams)
    assert set(seen) == set(streams)
    assert_shape(seen["btcusdt@trade"], TRADE)
    assert seen["btcusdt@trade"]["e"] == "trade" and seen["btcusdt@trade"]["s"] == "BTCUSDT"
    assert_shape(seen["btcusdt@aggTrade"], AGG_TRADE)
    assert seen["btcusdt@aggTrade"]["e"] == "aggTrade"
    assert_shape(seen["btcusdt@kline_1s"], KLINE)
    assert seen["btcusdt@kline_1s"]["k"]["i"] == "1s"
    assert_shape(seen["btcusdt@miniTicker"], MINI)
    assert seen["btcusdt@miniTicker"]["e"] == "24hrMiniTicker"
    assert_shape(seen["btcusdt@ticker"], TICKER)
    assert seen["btcusdt@ticker"]["e"] == "24hrTicker"
    assert_shape(seen["btcusdt@bookTicker"], BOOK_TICKER)
    for name, levels in (("btcusdt@depth5", 5), ("btcusdt@depth10@100ms", 10),
                         ("btcusdt@depth20", 20)):
        assert_shape(seen[name], PARTIAL)
        assert len(seen[name]["bids"]) == levels and len(seen[name]["asks"]) == levels
        assert_levels(seen[name]["bids"])
        assert_levels(seen[name]["asks"])
    for name in ("btcusdt@depth", "btcusdt@depth@100ms"):
        assert_shape(seen[name], DEPTH)
        assert seen[name]["e"] == "depthUpdate" and seen[name]["U"] <= seen[name]["u"]
        assert_levels(seen[name]["b"])
        assert_levels(seen[name]["a"])
    arr = seen["!miniTicker@arr"]
    assert isinstance(arr, list) and arr
    for item in arr:
        assert_shape(item, MINI)


async def test_ticker_fields_agree_with_each_other(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/ethusdt@ticker") as ws:
        t = await recv_json(ws, 5)
    assert t["n"] == t["L"] - t["F"] + 1
    assert float(t["l"]) <= float(t["c"]) <= float(t["h"])
    assert float(t["b"]) < float(t["a"])
    assert abs(float(t["c"]) - float(t["o"]) - float(t["p"])) < 1e-6
    assert t["C"] - t["O"] == 86_400_000


async def test_raw_stream_is_unwrapped_and_combined_is_wrapped(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@aggTrade") as raw:
        assert_shape(await recv_json(raw), AGG_TRADE)
    async with connect(f"{sim.url_ws}/stream?streams=btcusdt@aggTrade") as combined:
        message = await recv_json(combined)
    assert set(message) == {"stream", "data"}
    assert message["stream"] == "btcusdt@aggTrade"
    assert_shape(message["data"], AGG_TRADE)


async def test_raw_path_can_name_several_streams(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade/ethusdt@trade") as ws:
        symbols: set[str] = set()

        def record(message: Any) -> bool:
            symbols.add(message["s"])
            return len(symbols) == 2

        await recv_until(ws, record)
    assert symbols == {"BTCUSDT", "ETHUSDT"}


@pytest.mark.timeout(20)
async def test_every_kline_interval_streams(sim: Simulator) -> None:
    streams = [f"btcusdt@kline_{i}" for i in INTERVALS]
    seen = await first_per_stream(f"{sim.url_ws}/stream?streams={'/'.join(streams)}", streams)
    for interval in INTERVALS:
        k = seen[f"btcusdt@kline_{interval}"]["k"]
        assert k["i"] == interval
        assert k["t"] < k["T"] and (k["T"] + 1 - k["t"]) % 1000 == 0


async def test_microsecond_time_unit(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade?timeUnit=MICROSECOND") as ws:
        micro = await recv_json(ws)
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
        milli = await recv_json(ws)
    assert micro["E"] > 10**15 and micro["T"] > 10**15
    assert milli["E"] < 10**13 and milli["T"] < 10**13


async def test_quiet_symbol_still_has_a_book(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/bnbbtc@depth5@100ms") as ws:
        book = await recv_json(ws)
    assert float(book["bids"][0][0]) < float(book["asks"][0][0])
    assert len(book["bids"]) == len(book["asks"]) == 5
