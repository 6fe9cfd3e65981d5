"""Connection rules: message rate limit, pings and pongs, lifetime, serverShutdown."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Close, Opcode

from simulator import Simulator
from tests.simulator.helpers import (
    RawClient,
    recv_json,
    recv_until,
    request,
    until_closed,
    wait_for,
)


async def test_more_than_5_messages_per_second_closes_with_1008() -> None:
    async with Simulator(port=0, rate=0) as sim, connect(f"{sim.url_ws}/ws") as ws:
        for i in range(6):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        closed = await until_closed(ws)
    assert closed.rcvd is not None
    assert closed.rcvd.code == 1008
    assert closed.rcvd.reason == "Too many requests"


async def test_5_messages_per_second_are_fine() -> None:
    async with Simulator(port=0, rate=0) as sim, connect(f"{sim.url_ws}/ws") as ws:
        for i in range(5):
            await ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": i}))
        replies = [await recv_json(ws) for _ in range(5)]
        assert [r["id"] for r in replies] == list(range(5))
        # the limit is per second: once the window has slid, a sixth message is accepted
        # (the passage of time is what is under test here, not a synchronisation)
        await asyncio.sleep(1.05)
        assert (await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 9}))["id"] == 9


async def test_pings_count_against_the_rate_limit() -> None:
    async with Simulator(port=0, rate=0) as sim:
        client = await RawClient.connect(f"{sim.url_ws}/ws")
        for i in range(6):
            client.send_ping(str(i).encode())
        frame = await client.next_of(Opcode.CLOSE)
        client.close()
    assert frame is not None and Close.parse(frame.data).code == 1008


@pytest.mark.timeout(15)
async def test_server_pings_with_a_payload_and_keeps_answering_clients_alive() -> None:
    async with Simulator(port=0, rate=50, ping_interval=0.2, pong_timeout=1.0) as sim:
        raw = await RawClient.connect(f"{sim.url_ws}/ws/btcusdt@trade")
        ping = await raw.next_of(Opcode.PING)
        assert ping is not None and len(ping.data) > 0
        raw.close()
        # a normal client answers pings: it outlives the pong timeout several times over
        async with connect(f"{sim.url_ws}/ws/btcusdt@trade", ping_interval=None) as ws:
            start = time.monotonic()
            while time.monotonic() - start < 2.0:
                assert (await recv_json(ws))["e"] == "trade"
            session = next(iter(sim.server.sessions.values()))
            assert session.pongs_matched >= 5


@pytest.mark.timeout(15)
async def test_no_pong_disconnects_after_the_timeout() -> None:
    async with Simulator(port=0, rate=0, ping_interval=0.2, pong_timeout=0.7) as sim:
        client = await RawClient.connect(f"{sim.url_ws}/ws")
        start = time.monotonic()
        frames = await client.until_eof(timeout=5)
        elapsed = time.monotonic() - start
        client.close()
    pings = [f for f in frames if f.opcode is Opcode.PING]
    closes = [f for f in frames if f.opcode is Opcode.CLOSE]
    assert len(pings) >= 2
    assert closes and Close.parse(closes[0].data).code == 1011
    assert 0.7 <= elapsed < 3.0


@pytest.mark.timeout(15)
async def test_pongs_with_a_wrong_payload_do_not_keep_the_connection() -> None:
    async with Simulator(port=0, rate=0, ping_interval=0.2, pong_timeout=0.7) as sim:
        client = await RawClient.connect(f"{sim.url_ws}/ws")
        start = time.monotonic()
        answered = 0
        while time.monotonic() - start < 3.0:
            frame = await client.next_frame(timeout=5)
            if frame is None:
                break
            if frame.opcode is Opcode.PING:
                client.send_pong(b"not-" + bytes(frame.data))  # answer every ping, wrongly
                answered += 1
            elif frame.opcode is Opcode.CLOSE:
                assert Close.parse(frame.data).code == 1011
        elapsed = time.monotonic() - start
        client.close()
    assert answered >= 2
    assert elapsed < 3.0


@pytest.mark.timeout(15)
async def test_echoing_the_ping_payload_keeps_the_connection() -> None:
    async with Simulator(port=0, rate=0, ping_interval=0.2, pong_timeout=1.0) as sim:
        client = await RawClient.connect(f"{sim.url_ws}/ws")
        start = time.monotonic()
        while time.monotonic() - start < 1.5:
            ping = await client.next_frame(timeout=2)
            assert ping is not None and ping.opcode is Opcode.PING
            client.send_pong(bytes(ping.data))
        assert sim.state.connections() == 1
        client.close()


async def test_connection_lifetime() -> None:
    async with Simulator(port=0, rate=100, lifetime=0.5) as sim:
        async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
            start = time.monotonic()
            closed = await until_closed(ws)
        assert 0.4 <= time.monotonic() - start < 3.0
    assert closed.rcvd is not None and closed.rcvd.code == 1001


async def test_server_shutdown_event_raw_and_combined(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as raw, \
            connect(f"{sim.url_ws}/stream?streams=btcusdt@trade") as combined:
        await wait_for(lambda: sim.state.connections() == 2)
        assert sim.faults.shutdown(close_after=0.3) == 2
        r = await recv_until(raw, lambda m: m.get("e") == "serverShutdown")
        c = await recv_until(combined, lambda m: m.get("stream") == "!serverShutdown")
        assert set(r) == {"e", "E"} and isinstance(r["E"], int)
        assert set(c) == {"stream", "data"} and c["data"]["e"] == "serverShutdown"
        closed = await until_closed(raw)
        assert closed.rcvd is not None and closed.rcvd.code == 1001
