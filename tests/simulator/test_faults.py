"""Fault injection, from the Python API: each fault does what a client would notice."""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.frames import Opcode

from simulator import Simulator
from tests.simulator.helpers import (
    RawClient,
    quiet_for,
    recv_json,
    request,
    until_closed,
    wait_for,
)


@pytest.mark.parametrize(("mode", "code"), [("reset", None), ("eof", None), ("close", 4001)])
async def test_drop_all_connections(sim: Simulator, mode: str, code: int | None) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as a, \
            connect(f"{sim.url_ws}/stream?streams=ethusdt@trade") as b:
        await recv_json(a)
        await recv_json(b)
        assert sim.faults.drop(mode, code=code or 1001, reason="bye") == 2
        closed_a = await until_closed(a)
        closed_b = await until_closed(b)
    for closed in (closed_a, closed_b):
        if code is None:
            assert closed.rcvd is None  # no close frame: an abnormal closure (1006)
        else:
            assert closed.rcvd is not None and closed.rcvd.code == code
    await wait_for(lambda: sim.state.connections() == 0)
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as again:
        assert (await recv_json(again))["e"] == "trade"


@pytest.mark.parametrize(("mode", "reset"), [("reset", True), ("eof", False)])
async def test_drop_reset_is_a_tcp_reset(sim: Simulator, mode: str, reset: bool) -> None:
    client = await RawClient.connect(f"{sim.url_ws}/ws/btcusdt@trade")
    assert await client.next_of(Opcode.TEXT) is not None
    sim.faults.drop(mode)
    frames = await client.until_eof()
    client.close()
    assert client.reset is reset
    assert not [f for f in frames if f.opcode is Opcode.CLOSE]


async def test_silence_sends_nothing_then_resumes(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
        await recv_json(ws)
        start = time.time() * 1000
        sim.faults.silence(0.8)
        times: list[int] = []
        while not times or times[-1] < start + 1000:
            times.append((await recv_json(ws, 3))["E"])
    assert not [t for t in times if start + 30 < t < start + 770], times
    assert times[-1] >= start + 800


async def test_silence_swallows_replies_and_pongs() -> None:
    async with Simulator(port=0, rate=0) as sim:
        client = await RawClient.connect(f"{sim.url_ws}/ws")
        sim.faults.silence(None)
        client.send_ping(b"one")
        client.send_text('{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
        with pytest.raises(TimeoutError):
            await client.next_frame(timeout=0.6)
        assert sim.faults.status()["silence"]["active"] is True
        sim.faults.clear_silence()
        client.send_ping(b"two")
        pong = await client.next_of(Opcode.PONG, timeout=2)
        assert pong is not None and bytes(pong.data) == b"two"
        client.close()


async def test_silence_of_existing_connections_spares_new_ones(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as old:
        await recv_json(old)
        await wait_for(lambda: sim.state.connections() == 1)
        sim.faults.silence(None, scope="existing")
        async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as new:
            assert (await recv_json(new))["e"] == "trade"
        in_flight = await quiet_for(old, 0.5)  # frames already sent, then nothing
        assert len(in_flight) < 20


async def test_depth_gap_skips_update_ids_once(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@depth@100ms") as ws:
        events = [await recv_json(ws)]
        sim.faults.depth_gap("BTCUSDT")
        events += [await recv_json(ws) for _ in range(8)]
    gaps = [(a["u"], b["U"]) for a, b in itertools.pairwise(events)
            if b["U"] != a["u"] + 1]
    assert len(gaps) == 1
    assert gaps[0][1] > gaps[0][0] + 1
    assert sim.faults.status()["depth_gap"] == [
        {"symbol": "BTCUSDT", "stream": "depth", "events": 1}
    ]  # the 1000 ms stream had no subscriber: its gap is still pending


def classify(frame: str | bytes) -> str:
    if isinstance(frame, bytes):
        return "binary"
    try:
        data = json.loads(frame)
    except ValueError:
        return "truncated" if frame.startswith("{") else "text"
    return "types" if isinstance(data["t"], str) else "good"


async def test_malformed_frames_are_interleaved(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
        await recv_json(ws)
        sim.faults.malformed(every=2, count=8)
        frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(40)]
    kinds = [classify(f) for f in frames]
    assert {"binary", "text", "truncated", "types"} <= set(kinds)
    assert kinds.count("good") == 40 - 8
    ids = [json.loads(f)["t"] for f, k in zip(frames, kinds, strict=True) if k == "good"]
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # nothing good was lost
    assert sim.faults.status()["malformed"] is None


async def test_malformed_frames_can_replace_good_ones(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
        await recv_json(ws)
        sim.faults.malformed(kinds=["types"], every=3, replace=True)
        frames = [await asyncio.wait_for(ws.recv(), 5) for _ in range(30)]
    good = [json.loads(f)["t"] for f in frames if classify(f) == "good"]
    bad = [f for f in frames if classify(f) == "types"]
    assert len(bad) >= 9
    assert good[-1] - good[0] + 1 > len(good)  # the replaced trades are missing


async def test_rest_failures_and_delays(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url_rest) as http:
        sim.faults.rest(status=500, count=2, path="/api/v3/depth")
        params = {"symbol": "BTCUSDT"}
        assert (await http.get("/api/v3/exchangeInfo")).status_code == 200
        first = await http.get("/api/v3/depth", params=params)
        second = await http.get("/api/v3/depth", params=params)
        third = await http.get("/api/v3/depth", params=params)
        assert [first.status_code, second.status_code, third.status_code] == [500, 500, 200]
        assert first.json()["code"] == -1001 and "X-MBX-USED-WEIGHT-1M" in first.headers
        sim.faults.rest(status=None, delay_ms=300, count=1)
        start = time.monotonic()
        slow = await http.get("/api/v3/ping")
        assert slow.status_code == 200 and time.monotonic() - start >= 0.3
        sim.faults.rest(status=429, retry_after=7, count=1)
        limited = await http.get("/api/v3/ping")
        assert limited.status_code == 429 and limited.headers["Retry-After"] == "7"
        assert (await http.get("/api/v3/ping")).status_code == 200


async def test_reject_new_connections(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as existing:
        sim.faults.reject_connections(30, status=503)
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{sim.url_ws}/ws/btcusdt@trade"):
                pass
        assert info.value.response.status_code == 503
        assert (await recv_json(existing))["e"] == "trade"
        sim.faults.clear()
        async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as again:
            assert (await recv_json(again))["e"] == "trade"


async def test_shutdown_without_close_keeps_the_connection(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
        await recv_json(ws)
        sim.faults.shutdown()
        messages = [await recv_json(ws) for _ in range(30)]
        assert sum(m.get("e") == "serverShutdown" for m in messages) == 1
        reply = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
        assert reply["result"] == ["btcusdt@trade"]
