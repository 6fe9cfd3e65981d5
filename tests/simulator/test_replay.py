"""Replay of a JSONL capture: payloads, order, pacing, skipped lines and REST backfill."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from simulator import Simulator
from tests.simulator.helpers import recv_json, recv_until, request, wait_for

T0 = 1_770_000_000_000


def trade(i: int) -> dict[str, Any]:
    return {"e": "trade", "E": T0 + i, "s": "BTCUSDT", "t": 100 + i, "p": f"{60000 + i}.00000000",
            "q": "0.01000000", "T": T0 + i, "m": i % 2 == 0, "M": True}


def agg(i: int) -> dict[str, Any]:
    return {"e": "aggTrade", "E": T0 + i, "s": "BTCUSDT", "a": 50 + i, "p": f"{60000 + i}.00000000",
            "q": "0.01000000", "f": 100 + i, "l": 100 + i, "T": T0 + i, "m": i % 2 == 0, "M": True}


def depth(i: int) -> dict[str, Any]:
    return {"e": "depthUpdate", "E": T0 + i, "s": "ETHUSDT", "U": 10 * i + 1, "u": 10 * i + 10,
            "b": [[f"{2999 - i}.00000000", "1.00000000"]],
            "a": [["3001.00000000", f"{i + 1}.00000000"]]}


def write_capture(path: Path, step_ms: int = 100) -> list[dict[str, Any]]:
    records = []
    for i in range(6):
        records.append({"ts": T0 + i * step_ms, "stream": "btcusdt@trade", "data": trade(i)})
        records.append({"ts": T0 + i * step_ms, "stream": "btcusdt@aggTrade", "data": agg(i)})
        records.append({"ts": T0 + i * step_ms, "stream": "ethusdt@depth@100ms",
                        "data": depth(i)})
    lines = [json.dumps(r) for r in records]
    lines.insert(3, "this line is not json")
    lines.insert(5, json.dumps({"ts": "late", "stream": 3}))
    path.write_text("\n".join(lines) + "\n")
    return records


@pytest.fixture
def capture(tmp_path: Path) -> tuple[Path, list[dict[str, Any]]]:
    path = tmp_path / "capture.jsonl"
    return path, write_capture(path)


async def test_replay_sends_the_payloads_in_order_at_their_pace(
    capture: tuple[Path, list[dict[str, Any]]],
) -> None:
    path, records = capture
    async with Simulator(port=0, replay=str(path), replay_autostart=False) as sim:
        assert sim.replay is not None and sim.market is None
        streams = "btcusdt@trade/btcusdt@aggTrade/ethusdt@depth@100ms"
        async with connect(f"{sim.url_ws}/stream?streams={streams}") as ws:
            await wait_for(lambda: sim.state.connections() == 1)
            started = time.monotonic()
            sim.replay.begin()
            received = [await recv_json(ws) for _ in records]
            elapsed = time.monotonic() - started
        await wait_for(sim.replay.done.is_set)
        assert sim.replay.skipped == 2 and sim.replay.sent == len(records)
    assert received == [{"stream": r["stream"], "data": r["data"]} for r in records]
    assert 0.45 <= elapsed < 2.0  # 500 ms of capture at speed 1


async def test_replay_speed_factor(capture: tuple[Path, list[dict[str, Any]]]) -> None:
    path, _ = capture
    async with Simulator(port=0, replay=str(path), replay_autostart=False,
                         replay_speed=10) as sim:
        assert sim.replay is not None
        async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
            await wait_for(lambda: sim.state.connections() == 1)
            started = time.monotonic()
            sim.replay.begin()
            trades = [await recv_json(ws) for _ in range(6)]
            elapsed = time.monotonic() - started
    assert [t["t"] for t in trades] == list(range(100, 106))
    assert elapsed < 0.4


async def test_replay_feeds_rest(capture: tuple[Path, list[dict[str, Any]]]) -> None:
    path, _ = capture
    async with Simulator(port=0, replay=str(path), replay_speed=0) as sim, \
            httpx.AsyncClient(base_url=sim.url_rest) as http:
        assert sim.replay is not None
        await wait_for(sim.replay.done.is_set)
        info = (await http.get("/api/v3/exchangeInfo")).json()
        assert [s["symbol"] for s in info["symbols"]] == ["BTCUSDT", "ETHUSDT"]
        aggs = (await http.get("/api/v3/aggTrades",
                               params={"symbol": "BTCUSDT", "fromId": 52})).json()
        assert [a["a"] for a in aggs] == [52, 53, 54, 55]
        assert aggs[0] == {k: v for k, v in agg(2).items() if k not in ("e", "E", "s")}
        book = (await http.get("/api/v3/depth", params={"symbol": "ETHUSDT"})).json()
        assert book["lastUpdateId"] == 60
        assert book["asks"] == [["3001.00000000", "6.00000000"]]
        assert book["bids"][0] == ["2999.00000000", "1.00000000"] and len(book["bids"]) == 6
        state = (await http.get("/admin/state")).json()
        assert state["source"]["mode"] == "replay" and state["source"]["done"] is True
        assert state["symbols"]["BTCUSDT"]["lastTradeId"] == 105
        market = await http.post("/admin/market", json={"paused": True})
        assert market.status_code == 409


async def test_replay_live_methods_still_work(capture: tuple[Path, list[dict[str, Any]]]) -> None:
    path, _ = capture
    async with Simulator(port=0, replay=str(path), replay_autostart=False) as sim, \
            connect(f"{sim.url_ws}/ws") as ws:
        assert sim.replay is not None
        reply = await request(ws, {"method": "SUBSCRIBE", "params": ["ethusdt@depth@100ms"],
                                   "id": 1})
        assert reply == {"result": None, "id": 1}
        sim.replay.begin()
        event = await recv_until(ws, lambda m: m.get("e") == "depthUpdate")
        assert event == depth(0)
