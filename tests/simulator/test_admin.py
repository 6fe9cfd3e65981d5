"""The admin HTTP endpoints, start-up faults and the scheduled (chaos) faults."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from websockets.asyncio.client import connect

from simulator import Simulator
from tests.simulator.helpers import recv_until, until_closed, wait_for


@pytest.fixture
async def admin(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url_rest) as client:
        yield client


async def test_state_shows_ids_and_the_true_book(sim: Simulator, admin: httpx.AsyncClient) -> None:
    assert sim.market is not None
    sim.market.pause()
    sim.market.generate(200, "BTCUSDT")
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade"):
        await wait_for(lambda: sim.state.connections() == 1)
        state = (await admin.get("/admin/state", params={"symbol": "BTCUSDT", "depth": 3})).json()
    assert state["source"]["mode"] == "market" and state["source"]["paused"] is True
    assert state["connections"][0]["streams"] == ["btcusdt@trade"]
    btc = state["symbols"]["BTCUSDT"]
    assert list(state["symbols"]) == ["BTCUSDT"]
    assert btc["lastTradeId"] == sim.state.last_trade_id("BTCUSDT")
    assert btc["lastAggTradeId"] == sim.state.last_agg_trade_id("BTCUSDT")
    truth = sim.state.book("BTCUSDT", depth=3)
    assert btc["book"] == {"lastUpdateId": truth.last_update_id,
                           "bids": [list(x) for x in truth.bids],
                           "asks": [list(x) for x in truth.asks]}
    full = (await admin.get("/admin/state")).json()
    assert set(full["symbols"]) == {"BTCUSDT", "ETHUSDT", "BNBBTC"}
    assert len(full["symbols"]["ETHUSDT"]["book"]["bids"]) >= 50


async def test_post_get_delete_faults(sim: Simulator, admin: httpx.AsyncClient) -> None:
    spec = {
        "depth_gap": {"symbol": "ETHUSDT", "events": 2},
        "rest": {"status": 503, "count": 1, "path": "/api/v3/klines"},
        "malformed": {"kinds": ["text"], "every": 10},
        "silence": {"seconds": 30},
    }
    r = await admin.post("/admin/faults", json=spec)
    assert r.status_code == 200
    status = r.json()["faults"]
    assert [op["op"] for op in r.json()["applied"]] == list(spec)
    assert status["silence"]["active"] is True and 29 < status["silence"]["seconds_left"] <= 30
    assert status["malformed"]["kinds"] == ["text"]
    assert {g["events"] for g in status["depth_gap"]} == {2}
    assert (await admin.get("/admin/faults")).json()["rest"][0]["status"] == 503
    klines = await admin.get("/api/v3/klines", params={"symbol": "BTCUSDT", "interval": "1m"})
    assert klines.status_code == 503
    cleared = (await admin.delete("/admin/faults")).json()
    assert cleared["silence"]["active"] is False and cleared["malformed"] is None
    assert cleared["depth_gap"] == [] and cleared["rest"] == []


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"explode": {}}',
        b'{"silence": {"seconds": "5"}}',
        b'{"depth_gap": {}}',
        b'{"drop": {"mode": "gently"}}',
        b'{"malformed": {"kinds": ["poetry"]}}',
        b'{"clear": ["everything"]}',
    ],
)
async def test_bad_fault_specs_are_400(admin: httpx.AsyncClient, body: bytes) -> None:
    r = await admin.post("/admin/faults", content=body)
    assert r.status_code == 400
    assert isinstance(r.json()["error"], str)


async def test_drop_and_shutdown_over_http(sim: Simulator, admin: httpx.AsyncClient) -> None:
    async with connect(f"{sim.url_ws}/stream?streams=btcusdt@trade") as ws:
        await wait_for(lambda: sim.state.connections() == 1)
        r = await admin.post("/admin/faults", json={"shutdown": {"close_after": 5}})
        assert r.json()["applied"] == [{"op": "shutdown", "result": 1}]
        await recv_until(ws, lambda m: m["stream"] == "!serverShutdown")
        r = await admin.post("/admin/faults", json={"drop": {"mode": "close", "code": 4000}})
        assert r.json()["applied"][0]["result"] == 1
        closed = await until_closed(ws)
    assert closed.rcvd is not None and closed.rcvd.code == 4000


async def test_market_controls(sim: Simulator, admin: httpx.AsyncClient) -> None:
    r = await admin.post("/admin/market", json={"paused": True, "rate": 10})
    assert r.json() == {"mode": "market", "rate": 10, "paused": True, "seed": 1}
    before = sim.state.last_trade_id("ETHUSDT")
    r = await admin.post("/admin/market",
                         json={"generate": {"events": 300, "symbol": "ETHUSDT"}})
    assert r.status_code == 200
    assert (sim.state.last_trade_id("ETHUSDT") or 0) > (before or 0)
    r = await admin.post("/admin/market", json={"status": {"BNBBTC": "HALT"}})
    info = (await admin.get("/api/v3/exchangeInfo", params={"symbol": "BNBBTC"})).json()
    assert info["symbols"][0]["status"] == "HALT"
    bad = await admin.post("/admin/market", json={"status": {"BNBBTC": "ASLEEP"}})
    assert bad.status_code == 400


async def test_faults_given_at_start() -> None:
    spec = json.dumps({"rest": {"status": 502, "count": 1}})
    async with Simulator(port=0, rate=0, faults=spec) as sim, \
            httpx.AsyncClient(base_url=sim.url_rest) as http:
        assert (await http.get("/api/v3/ping")).status_code == 502
        assert (await http.get("/api/v3/ping")).status_code == 200


async def test_scheduled_drops() -> None:
    async with Simulator(port=0, rate=100, drop_every=0.3, drop_mode="close") as sim, \
            connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
        closed = await until_closed(ws, 3)
    assert closed.rcvd is not None and closed.rcvd.code == 1001


async def test_scheduled_malformed_frames_and_rest_failures() -> None:
    async with Simulator(port=0, rate=200, malformed_every=4, rest_fail_rate=1.0,
                         rest_fail_status=503) as sim:
        async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
            frames = [await ws.recv() for _ in range(20)]
        async with httpx.AsyncClient(base_url=sim.url_rest) as http:
            assert (await http.get("/api/v3/ping")).status_code == 503
    bad = 0
    for frame in frames:
        try:
            data = json.loads(frame)
            bad += not isinstance(data.get("t"), int)
        except ValueError:
            bad += 1
    assert bad == 4  # one after every 4 good frames: 16 good + 4 bad
