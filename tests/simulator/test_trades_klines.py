"""Trades, aggregate trades, klines and tickers: contiguous ids and mutual consistency."""

from __future__ import annotations

import itertools
from collections import defaultdict
from decimal import Decimal
from typing import Any

import httpx
from websockets.asyncio.client import connect

from simulator import Simulator
from tests.simulator.helpers import recv_json, recv_until, request


async def all_trades(http: httpx.AsyncClient, symbol: str) -> list[dict[str, Any]]:
    """Every retained trade, paging historicalTrades by fromId."""
    trades: list[dict[str, Any]] = []
    from_id = 0
    while True:
        page = (await http.get("/api/v3/historicalTrades",
                               params={"symbol": symbol, "fromId": from_id, "limit": 1000})).json()
        trades.extend(page)
        if len(page) < 1000:
            return trades
        from_id = page[-1]["id"] + 1


async def test_trade_and_agg_trade_ids_are_contiguous_and_consistent(sim: Simulator) -> None:
    trades: dict[int, dict[str, Any]] = {}
    aggs: list[dict[str, Any]] = []
    url = f"{sim.url_ws}/stream?streams=btcusdt@trade/btcusdt@aggTrade"
    async with connect(url) as ws:
        while len(aggs) < 150:
            message = await recv_json(ws)
            if message["stream"] == "btcusdt@trade":
                trades[message["data"]["t"]] = message["data"]
            else:
                aggs.append(message["data"])
    ids = sorted(trades)
    assert ids == list(range(ids[0], ids[-1] + 1))
    assert [a["a"] for a in aggs] == list(range(aggs[0]["a"], aggs[0]["a"] + len(aggs)))
    for prev, agg in itertools.pairwise(aggs):
        assert agg["f"] == prev["l"] + 1
    checked = 0
    for agg in aggs:
        parts = [trades.get(i) for i in range(agg["f"], agg["l"] + 1)]
        if None in parts:
            continue  # trades sent before we connected
        assert all(p is not None and p["p"] == agg["p"] and p["m"] == agg["m"]
                   and p["T"] == agg["T"] for p in parts)
        assert sum(Decimal(p["q"]) for p in parts if p) == Decimal(agg["q"])
        checked += 1
    assert checked >= 140


async def test_rest_agg_trades_match_the_stream(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/ethusdt@aggTrade") as ws:
        streamed = [await recv_json(ws) for _ in range(20)]
    async with httpx.AsyncClient(base_url=sim.url_rest) as http:
        rows = (await http.get("/api/v3/aggTrades", params={
            "symbol": "ETHUSDT", "fromId": streamed[0]["a"], "limit": 20})).json()
    assert rows == [{k: v for k, v in s.items() if k not in ("e", "E", "s")} for s in streamed]


async def test_rest_trades_end_at_the_last_trade(sim: Simulator) -> None:
    assert sim.market is not None
    sim.market.pause()
    sim.market.generate(300, "BTCUSDT")
    last = sim.state.last_trade_id("BTCUSDT")
    assert last is not None
    async with httpx.AsyncClient(base_url=sim.url_rest) as http:
        recent = (await http.get("/api/v3/trades",
                                 params={"symbol": "BTCUSDT", "limit": 30})).json()
        older = (await http.get("/api/v3/historicalTrades",
                                params={"symbol": "BTCUSDT", "fromId": last - 9})).json()
    assert [t["id"] for t in recent] == list(range(last - 29, last + 1))
    assert [t["id"] for t in older] == list(range(last - 9, last + 1))
    row = recent[-1]
    assert set(row) == {"id", "price", "qty", "quoteQty", "time", "isBuyerMaker", "isBestMatch"}
    assert Decimal(row["quoteQty"]) == (Decimal(row["price"]) * Decimal(row["qty"])).quantize(
        Decimal("0.00000001"), rounding="ROUND_DOWN")


async def test_klines_aggregate_exactly_the_trades_in_their_window(sim: Simulator) -> None:
    assert sim.market is not None
    async with connect(f"{sim.url_ws}/ws/btcusdt@kline_1s") as ws:
        await recv_until(ws, lambda m: m["k"]["x"] and m["k"]["n"] > 0)
        await recv_until(ws, lambda m: m["k"]["x"] and m["k"]["n"] > 0)
    sim.market.pause()
    async with httpx.AsyncClient(base_url=sim.url_rest) as http:
        trades = await all_trades(http, "BTCUSDT")
        rows = {}
        for interval in ("1s", "1m", "1d"):
            rows[interval] = (await http.get("/api/v3/klines", params={
                "symbol": "BTCUSDT", "interval": interval, "limit": 1000})).json()
    by_second: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for t in trades:
        by_second[t["time"] // 1000 * 1000].append(t)
    for interval, kline_rows in rows.items():
        assert sum(r[8] for r in kline_rows) == len(trades), interval
        assert sum(Decimal(r[5]) for r in kline_rows) == sum(Decimal(t["qty"]) for t in trades)
    compared = 0
    for row in rows["1s"]:
        window = by_second.get(row[0], [])
        assert row[8] == len(window)
        if not window:
            continue
        prices = [Decimal(t["price"]) for t in window]
        assert Decimal(row[1]) == prices[0] and Decimal(row[4]) == prices[-1]
        assert Decimal(row[2]) == max(prices) and Decimal(row[3]) == min(prices)
        assert Decimal(row[5]) == sum(Decimal(t["qty"]) for t in window)
        taker_buys = [t for t in window if not t["isBuyerMaker"]]
        assert Decimal(row[9]) == sum(Decimal(t["qty"]) for t in taker_buys)
        exact = sum((Decimal(t["price"]) * Decimal(t["qty"]) for t in window), Decimal(0))
        assert Decimal(row[7]) == exact.quantize(Decimal("0.00000001"), rounding="ROUND_DOWN")
        assert row[6] == row[0] + 999
        compared += 1
    assert compared >= 2


async def test_closed_kline_event_matches_rest(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/ethusdt@kline_1s") as ws:
        closed = (await recv_until(ws, lambda m: m["k"]["x"]))["k"]
    async with httpx.AsyncClient(base_url=sim.url_rest) as http:
        rows = (await http.get("/api/v3/klines", params={
            "symbol": "ETHUSDT", "interval": "1s", "startTime": closed["t"], "limit": 1})).json()
    assert rows[0][:9] == [closed["t"], closed["o"], closed["h"], closed["l"], closed["c"],
                           closed["v"], closed["T"], closed["q"], closed["n"]]
    if closed["n"]:
        assert closed["L"] - closed["f"] + 1 == closed["n"]


async def test_ticker_counts_every_trade_of_the_day(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@ticker") as ws:
        ticker = await recv_json(ws)
        assert sim.market is not None
        sim.market.pause()
        await request(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@ticker"], "id": 1})
    async with httpx.AsyncClient(base_url=sim.url_rest) as http:
        trades = await all_trades(http, "BTCUSDT")
    assert ticker["F"] == trades[0]["id"]
    upto = [t for t in trades if t["id"] <= ticker["L"]]
    assert ticker["n"] == len(upto)
    assert Decimal(ticker["v"]) == sum(Decimal(t["qty"]) for t in upto)
    assert ticker["c"] == upto[-1]["price"] and ticker["Q"] == upto[-1]["qty"]
    assert Decimal(ticker["h"]) == max(Decimal(t["price"]) for t in upto)
