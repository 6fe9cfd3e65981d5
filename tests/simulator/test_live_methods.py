"""SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY, GET_PROPERTY and their errors."""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from simulator import Simulator
from tests.simulator.helpers import recv_json, recv_until, request


async def test_subscribe_list_unsubscribe(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws") as ws:
        reply = await request(ws, {"method": "SUBSCRIBE",
                                   "params": ["btcusdt@aggTrade", "ethusdt@trade"], "id": 1})
        assert reply == {"result": None, "id": 1}
        event = await recv_until(ws, lambda m: m.get("e") == "aggTrade")
        assert event["s"] == "BTCUSDT"
        reply = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3})
        assert reply == {"result": ["btcusdt@aggTrade", "ethusdt@trade"], "id": 3}
        reply = await request(ws, {"method": "UNSUBSCRIBE", "params": ["btcusdt@aggTrade"],
                                   "id": 312})
        assert reply == {"result": None, "id": 312}
        reply = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": "abc"})
        assert reply == {"result": ["ethusdt@trade"], "id": "abc"}
        # after the reply, no more aggTrade events arrive: only trades
        for _ in range(10):
            assert (await recv_json(ws))["e"] == "trade"


async def test_streams_from_the_url_are_listed(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/stream?streams=btcusdt@trade/bnbbtc@depth") as ws:
        reply = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 1})
    assert reply["result"] == ["btcusdt@trade", "bnbbtc@depth"]


async def test_combined_property_defaults_and_changes(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws/btcusdt@trade") as ws:
        assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 2}) \
            == {"result": False, "id": 2}
        assert await request(ws, {"method": "SET_PROPERTY", "params": ["combined", True],
                                  "id": 5}) == {"result": None, "id": 5}
        wrapped = await recv_until(ws, lambda m: "stream" in m)
        assert wrapped["stream"] == "btcusdt@trade" and wrapped["data"]["e"] == "trade"
        assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 6}) \
            == {"result": True, "id": 6}
    async with connect(f"{sim.url_ws}/stream") as ws:
        assert await request(ws, {"method": "GET_PROPERTY", "params": ["combined"], "id": 7}) \
            == {"result": True, "id": 7}


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1',
         {"code": 3, "id": None}),
        ('{"params": ["btcusdt@trade"], "id": 4}', {"code": 2, "id": 4}),
        ('{"method": "SUBSCRIBE_ALL", "id": 8}', {"code": 2, "id": 8}),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@nonsense"], "id": 9}',
         {"code": 2, "id": 9}),
        ('{"method": "SUBSCRIBE", "params": ["!ticker@arr"], "id": 10}', {"code": 2, "id": 10}),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": true}',
         {"code": 2, "id": None}),
        ('{"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": "not-alnum!"}',
         {"code": 2, "id": None}),
        ('{"method": "SET_PROPERTY", "params": ["combined", "yes"], "id": 11}',
         {"code": 1, "id": 11}),
        ('{"method": "SET_PROPERTY", "params": ["compressed", true], "id": 12}',
         {"code": 0, "id": 12}),
        ('{"method": "GET_PROPERTY", "params": ["combined", 1], "id": 13}',
         {"code": 2, "id": 13}),
        ('{"method": "GET_PROPERTY", "params": [42], "id": 14}', {"code": 2, "id": 14}),
        ('{"method": "LIST_SUBSCRIPTIONS", "params": ["x"], "id": 15}', {"code": 2, "id": 15}),
        ('[1, 2, 3]', {"code": 2, "id": None}),
    ],
)
async def test_error_objects(sim: Simulator, message: str, expected: dict[str, object]) -> None:
    async with connect(f"{sim.url_ws}/ws") as ws:
        await ws.send(message)
        reply = await recv_json(ws)
    assert set(reply) == {"error", "id"}
    assert reply["id"] == expected["id"]
    assert reply["error"]["code"] == expected["code"]
    assert isinstance(reply["error"]["msg"], str) and reply["error"]["msg"]


async def test_invalid_stream_error_message(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws") as ws:
        reply = await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@depth7"], "id": 2})
        assert reply == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 2}
        # nothing was subscribed by the failed request
        assert (await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 3}))["result"] == []


async def test_unknown_but_well_formed_symbol_succeeds_and_sends_nothing(sim: Simulator) -> None:
    async with connect(f"{sim.url_ws}/ws") as ws:
        reply = await request(ws, {"method": "SUBSCRIBE",
                                   "params": ["xyzusdt@trade", "BTCUSDT@trade"], "id": 1})
        assert reply == {"result": None, "id": 1}
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 1.2)


async def test_stream_limit_is_1024(sim: Simulator) -> None:
    streams = [f"sym{i}usdt@trade" for i in range(1024)]
    async with connect(f"{sim.url_ws}/ws") as ws:
        reply = await request(ws, {"method": "SUBSCRIBE", "params": streams, "id": 1})
        assert reply == {"result": None, "id": 1}
        reply = await request(ws, {"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 2})
        assert reply == {"error": {"code": 4, "msg": "Too many subscriptions"}, "id": 2}
        # re-subscribing to streams already held does not count twice
        reply = await request(ws, {"method": "SUBSCRIBE", "params": streams[:3], "id": 3})
        assert reply == {"result": None, "id": 3}
        listed = await request(ws, {"method": "LIST_SUBSCRIPTIONS", "id": 4})
        assert len(listed["result"]) == 1024


async def test_bad_stream_in_url_is_refused(sim: Simulator) -> None:
    with pytest.raises(InvalidStatus) as info:
        async with connect(f"{sim.url_ws}/ws/btcusdt@tradez"):
            pass
    assert info.value.response.status_code == 400
    assert json.loads(info.value.response.body)["code"] == 2
    with pytest.raises(InvalidStatus):
        async with connect(f"{sim.url_ws}/stream?streams=!ticker@arr"):
            pass
