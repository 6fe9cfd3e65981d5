"""The naive floor server (bench/floor.py): the protocol subset the fan-out bench relies on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from websockets.asyncio.client import ClientConnection, connect

from bench.floor import FloorServer
from shared import codec
from shared.events import Event
from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from shared.settings import Secret
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.integration

COUNT = 50


@pytest.fixture
def floor(private_redis: RedisServer) -> Iterator[FloorServer]:
    server = FloorServer(private_redis.url)
    server.start()
    yield server
    server.stop()


async def subscribe(url: str, event_type: str) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await connect(url, max_size=None)
    welcome = orjson.loads(await ws.recv())
    assert welcome["type"] == "welcome"
    await ws.send(orjson.dumps({"op": "subscribe", "id": 7, "event_type": event_type}).decode())
    return ws, orjson.loads(await ws.recv())


async def offsets_of(ws: ClientConnection, count: int) -> list[Any]:
    """The event messages received until ``count`` have arrived (arrays flattened)."""
    messages: list[Any] = []
    async with asyncio.timeout(10):
        while len(messages) < count:
            frame = await ws.recv()
            assert isinstance(frame, str), "events must go out as text frames, like the gateway's"
            value = orjson.loads(frame)
            messages += value if isinstance(value, list) else [value]
    return messages


async def test_floor_delivers_each_event_once_in_order_with_the_gateways_bytes(
        floor: FloorServer, private_redis: RedisServer) -> None:
    single, reply = await subscribe(floor.url, "floor_test")
    batched, batch_reply = await subscribe(floor.url + "?batch=1", "floor_test")
    assert reply["type"] == batch_reply["type"] == "subscribed"
    assert reply["event_type"] == "floor_test" and reply["id"] == 7

    settings = PublishSettings(redis_url=Secret(private_redis.url))
    async with AsyncPublisher.from_url(private_redis.url, settings) as pub:
        offsets = [await pub.publish("floor_test", {"n": i}, symbol="BTCUSDT") for i in range(COUNT // 2)]
        offsets += await pub.publish_many([Event("floor_test", {"n": i}, symbol="BTCUSDT")
                                           for i in range(COUNT // 2, COUNT)])

    got = await offsets_of(single, COUNT)
    assert [m["offset"] for m in got] == offsets
    assert [m["data"]["n"] for m in got] == list(range(COUNT))
    assert [m["offset"] for m in await offsets_of(batched, COUNT)] == offsets

    # Byte for byte what the gateway sends: codec.event_json of the stored entry.
    client = redis.Redis.from_url(private_redis.url)
    stored: Any = client.xrange(Keys().stream("floor_test"), count=1)
    first = stored[0]
    client.close()
    assert orjson.dumps(got[0]) == codec.event_json(codec.decode_entry("floor_test", *first))

    await single.send('{"op":"ping","id":"p"}')
    assert orjson.loads(await single.recv())["type"] == "pong"
    await single.send('{"op":"nope"}')
    assert orjson.loads(await single.recv())["code"] == "unknown_op"
    for ws in (single, batched):
        await ws.close()

    floor.stop()
    assert floor.proc is not None and floor.proc.poll() is not None
    assert floor.stats is not None and floor.stats["events"] == COUNT
    assert floor.stats["deliveries"] == 2 * COUNT  # each event once to each client, no more
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", floor.port))
