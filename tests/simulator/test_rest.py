"""REST endpoints: parameters, error bodies, weights, the weight limit."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest

from simulator import Simulator

WEIGHT = "X-MBX-USED-WEIGHT-1M"


@pytest.fixture
async def http(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url_rest) as client:
        yield client


async def test_exchange_info(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v3/exchangeInfo")
    assert r.status_code == 200 and r.headers[WEIGHT] == "20"
    symbols = {s["symbol"]: s for s in r.json()["symbols"]}
    assert set(symbols) == {"BTCUSDT", "ETHUSDT", "BNBBTC"}
    btc = symbols["BTCUSDT"]
    assert (btc["status"], btc["baseAsset"], btc["quoteAsset"]) == ("TRADING", "BTC", "USDT")
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["LOT_SIZE"]["stepSize"] == "0.00001000"
    one = (await http.get("/api/v3/exchangeInfo", params={"symbol": "BNBBTC"})).json()
    assert [s["symbol"] for s in one["symbols"]] == ["BNBBTC"]
    two = (await http.get("/api/v3/exchangeInfo",
                          params={"symbols": json.dumps(["ETHUSDT", "BTCUSDT"])})).json()
    assert [s["symbol"] for s in two["symbols"]] == ["ETHUSDT", "BTCUSDT"]


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/v3/exchangeInfo", {"symbol": "DOGEUSDT"}),
        ("/api/v3/exchangeInfo", {"symbols": '["BTCUSDT","NOPE"]'}),
        ("/api/v3/depth", {"symbol": "NOPE"}),
        ("/api/v3/aggTrades", {"symbol": "btcusdt"}),
        ("/api/v3/klines", {"symbol": "NOPE", "interval": "1m"}),
    ],
)
async def test_unknown_symbol(http: httpx.AsyncClient, path: str, params: dict[str, str]) -> None:
    r = await http.get(path, params=params)
    assert r.status_code == 400
    assert r.json() == {"code": -1121, "msg": "Invalid symbol."}
    assert int(r.headers[WEIGHT]) > 0


async def test_parameter_errors(http: httpx.AsyncClient) -> None:
    r = await http.get("/api/v3/depth")
    assert r.status_code == 400 and r.json()["code"] == -1102
    r = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": "ten"})
    assert r.status_code == 400 and r.json()["code"] == -1100
    r = await http.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "7m"})
    assert r.status_code == 400 and r.json() == {"code": -1120, "msg": "Invalid interval."}
    r = await http.get("/api/v3/klines", params={"symbol": "BTCUSDT"})
    assert r.status_code == 400 and r.json()["code"] == -1102
    r = await http.get("/api/v3/aggTrades", params={"symbol": "BTCUSDT", "limit": 1001})
    assert r.status_code == 400 and r.json()["code"] == -1130


@pytest.mark.parametrize(("limit", "weight", "levels"),
                         [(None, 5, 100), (100, 5, 100), (101, 25, 101), (500, 25, 500),
                          (1000, 50, 1000), (5000, 250, 5000), (9000, 250, 5000)])
async def test_depth_weights(limit: int | None, weight: int, levels: int) -> None:
    async with Simulator(port=0, rate=0, book_levels=5000) as big, \
            httpx.AsyncClient(base_url=big.url_rest) as http:
        assert big.market is not None
        big.market.generate(2000, "BTCUSDT")
        params: dict[str, str | int] = {"symbol": "BTCUSDT"}
        if limit is not None:
            params["limit"] = limit
        r = await http.get("/api/v3/depth", params=params)
        assert r.headers[WEIGHT] == str(weight)
        body = r.json()
        depth = big.state.book("BTCUSDT")
        assert len(body["bids"]) == min(levels, len(depth.bids))
        r2 = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5})
        assert r2.headers[WEIGHT] == str(weight + 5)


async def test_agg_trades_params(sim: Simulator, http: httpx.AsyncClient) -> None:
    assert sim.market is not None
    sim.market.pause()
    sim.market.generate(5000, "BTCUSDT")
    everything = (await http.get("/api/v3/aggTrades",
                                 params={"symbol": "BTCUSDT", "limit": 1000})).json()
    default = (await http.get("/api/v3/aggTrades", params={"symbol": "BTCUSDT"})).json()
    assert len(default) == 500 and default == everything[-500:]
    ids = [a["a"] for a in everything]
    assert ids == list(range(ids[0], ids[0] + len(ids)))
    assert ids[-1] == sim.state.last_agg_trade_id("BTCUSDT")
    start = everything[10]["a"]
    from_id = (await http.get("/api/v3/aggTrades",
                              params={"symbol": "BTCUSDT", "fromId": start, "limit": 3})).json()
    assert [a["a"] for a in from_id] == [start, start + 1, start + 2]
    t0, t1 = everything[0]["T"], everything[-1]["T"]
    window = (await http.get("/api/v3/aggTrades", params={
        "symbol": "BTCUSDT", "startTime": t0, "endTime": t1, "limit": 1000})).json()
    assert all(t0 <= a["T"] <= t1 for a in window) and window[0]["a"] <= ids[0] + 1
    before = (await http.get("/api/v3/aggTrades", params={
        "symbol": "BTCUSDT", "endTime": t0 - 1})).json()
    assert all(a["T"] < t0 for a in before)


async def test_klines_params(sim: Simulator, http: httpx.AsyncClient) -> None:
    rows = (await http.get("/api/v3/klines",
                           params={"symbol": "BTCUSDT", "interval": "1s", "limit": 1000})).json()
    r = await http.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1s"})
    assert r.headers[WEIGHT] == "4"  # 2 per klines call
    assert rows and all(len(row) == 12 for row in rows)
    row = rows[-1]
    assert [type(x) for x in row] == [int, str, str, str, str, str, int, str, int, str, str, str]
    assert Decimal(row[3]) <= Decimal(row[1]) <= Decimal(row[2])
    opened = rows[0][0]
    later = (await http.get("/api/v3/klines", params={
        "symbol": "BTCUSDT", "interval": "1s", "startTime": opened + 1, "limit": 2})).json()
    assert all(x[0] > opened for x in later) and len(later) <= 2
    hourly = (await http.get("/api/v3/klines",
                             params={"symbol": "BTCUSDT", "interval": "1h"})).json()
    assert hourly[-1][0] % 3_600_000 == 0 and hourly[-1][6] == hourly[-1][0] + 3_599_999


async def test_ping_time_and_unknown_path(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v3/ping")).json() == {}
    assert isinstance((await http.get("/api/v3/time")).json()["serverTime"], int)
    r = await http.get("/api/v3/nothing")
    assert r.status_code == 404 and "code" in r.json()
    assert r.headers[WEIGHT] == "2"  # ping + time, nothing for the unknown path


async def test_weight_limit_answers_429_with_retry_after() -> None:
    async with Simulator(port=0, rate=0, weight_limit=50) as sim, \
            httpx.AsyncClient(base_url=sim.url_rest) as http:
        weights = []
        for _ in range(10):
            r = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT"})
            weights.append((r.status_code, int(r.headers[WEIGHT])))
        assert weights[:10] == [(200, 5 * i) for i in range(1, 11)]
        r = await http.get("/api/v3/depth", params={"symbol": "BTCUSDT"})
        assert r.status_code == 429
        assert r.json()["code"] == -1003
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert int(r.headers[WEIGHT]) == 55


async def test_weight_window_resets() -> None:
    # A window long enough that 10 requests always land in one, even on a loaded machine.
    async with Simulator(port=0, rate=0, weight_limit=10, weight_window=3.0) as sim, \
            httpx.AsyncClient(base_url=sim.url_rest) as http:
        statuses = []
        while 429 not in statuses:
            statuses.append((await http.get("/api/v3/ping")).status_code)
            assert len(statuses) < 20
        r = await http.get("/api/v3/ping")
        retry = int(r.headers["Retry-After"])
        assert r.status_code == 429
        assert 1 <= retry <= 3  # seconds left in the 3 s window, rounded up
        used = int(r.headers[WEIGHT])
        # a new window starts within Retry-After: the weight restarts from zero
        deadline = time.monotonic() + retry + 1
        while (r := await http.get("/api/v3/time")).status_code != 200:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert int(r.headers[WEIGHT]) < used
