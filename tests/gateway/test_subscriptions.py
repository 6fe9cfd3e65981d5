"""Subscriptions as a client sees them: live, filtered, replayed from offsets, in both formats."""

from __future__ import annotations

import asyncio

import msgpack
import orjson
import pytest
import redis.asyncio
from websockets.asyncio.client import connect

from shared.events import Event
from shared.keys import Keys
from shared.offsets import parse_offset
from shared.publisher import AsyncPublisher
from tests.support.gateway import Client, InProcessGateway

pytestmark = pytest.mark.topologies


async def test_symbol_filter_and_replacing_it(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    client = await Client.open(gw.url)
    await client.subscribe("custom", symbols=["btcusdt"])
    await pub.publish("custom", {"n": 1}, symbol="ETHUSDT")
    await pub.publish("custom", {"n": 2}, symbol="BTCUSDT")
    await pub.publish("custom", {"n": 3})  # no symbol: only for unfiltered subscriptions
    assert [e["data"]["n"] for e in await client.events_until(1)] == [2]
    await client.subscribe("custom", symbols=["ETHUSDT"])  # replaces the filter, no gap
    await pub.publish("custom", {"n": 4}, symbol="BTCUSDT")
    await pub.publish("custom", {"n": 5}, symbol="ETHUSDT")
    await client.events_until(2)
    assert [e["data"]["n"] for e in client.events] == [2, 5]
    await client.close()


async def test_since_replays_then_goes_live_without_gap_or_duplicate(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(10)])
    client = await Client.open(gw.url)
    reply = await client.subscribe("custom", id=7, since=offsets[3])
    assert reply["recovered"] is True
    assert reply["offset"] == offsets[3]
    assert reply["id"] == 7 and reply["epoch"]
    # publish while the replay may still be running
    more = await pub.publish_many([Event("custom", {"n": n}) for n in range(10, 15)])
    events = await client.events_until(11)
    assert [e["offset"] for e in events] == offsets[4:] + more
    await client.close()


async def test_replay_of_many_pages_under_live_load(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    first = await pub.publish_many([Event("custom", {"n": n}) for n in range(5000)])

    async def keep_publishing() -> list[str]:
        out = []
        for start in range(5000, 6000, 100):
            out += await pub.publish_many([Event("custom", {"n": n}) for n in range(start, start + 100)])
            await asyncio.sleep(0)
        return out

    client = await Client.open(gw.url)
    publisher = asyncio.create_task(keep_publishing())
    await client.subscribe("custom", since=first[0])
    live = await publisher
    events = await client.events_until(4999 + 1000, timeout=30)
    assert [e["offset"] for e in events] == first[1:] + live
    await client.close()


async def test_last_n_filtered_by_symbol(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    await pub.publish_many([Event("custom", {"n": n}, symbol="BTCUSDT" if n % 2 else "ETHUSDT")
                            for n in range(20)])
    client = await Client.open(gw.url)
    reply = await client.subscribe("custom", last=3, symbols=["BTCUSDT"])
    events = await client.events_until(3)
    assert [e["data"]["n"] for e in events] == [15, 17, 19]
    # Offsets compare as (ms, seq) integer pairs: as strings "5-9" > "5-10".
    assert reply["recovered"] is True
    assert parse_offset(reply["offset"]) < parse_offset(events[0]["offset"])
    await pub.publish("custom", {"n": 21}, symbol="BTCUSDT")
    assert (await client.events_until(4))[-1]["data"]["n"] == 21
    await client.close()


async def test_trimmed_offset_or_other_epoch_says_recovered_false(
    gw: InProcessGateway, pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(5)])
    client = await Client.open(gw.url)
    reply = await client.subscribe("custom", since=offsets[2], epoch="not-the-epoch")
    assert reply["recovered"] is False
    assert reply["earliest"] == offsets[0]
    assert reply["offset"] == offsets[-1]  # goes on live from now
    await client.send({"op": "unsubscribe", "event_type": "custom"})
    await client.control("unsubscribed")

    await aredis.xtrim(Keys().stream("custom"), minid=offsets[3], approximate=False)  # 0..2 gone
    reply = await client.subscribe("custom", since=offsets[1])
    assert reply["recovered"] is False and reply["earliest"] == offsets[3]
    new = await pub.publish("custom", {"n": 99})
    assert [e["offset"] for e in await client.events_until(1)] == [new]
    await client.close()


async def test_unsubscribe_stops_delivery(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    client = await Client.open(gw.url)
    await client.subscribe("custom")
    await client.subscribe("other")
    await client.send({"op": "unsubscribe", "id": 2, "event_type": "custom"})
    assert (await client.control("unsubscribed"))["id"] == 2
    await pub.publish("custom", {"n": 1})
    marker = await pub.publish("other", {"n": 2})
    events = await client.events_until(1)
    assert [e["offset"] for e in events] == [marker]
    await client.close()


async def test_msgpack_subprotocol_carries_the_same_messages(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    async with connect(gw.url, subprotocols=["tickstream.msgpack"]) as ws:  # type: ignore[list-item]
        assert ws.subprotocol == "tickstream.msgpack"
        welcome = msgpack.unpackb(await ws.recv())
        assert welcome["type"] == "welcome"
        await ws.send(msgpack.packb({"op": "subscribe", "id": 1, "event_type": "custom"}))
        assert msgpack.unpackb(await ws.recv())["type"] == "subscribed"
        offset = await pub.publish("custom", {"price": 1.5, "list": [1, "a"]}, symbol="ETHUSDT")
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        assert msgpack.unpackb(frame) == {"event_type": "custom", "offset": offset, "symbol": "ETHUSDT",
                                          "ts": int(offset.split("-")[0]),
                                          "data": {"price": 1.5, "list": [1, "a"]}}


async def test_batch_mode_packs_several_events_per_frame(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    async with connect(gw.url + "?batch=1&batch_ms=20") as ws:
        await ws.recv()  # welcome
        await ws.send(orjson.dumps({"op": "subscribe", "event_type": "custom"}).decode())
        assert orjson.loads(await ws.recv())["type"] == "subscribed"
        offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(50)])
        received: list[str] = []
        frames = 0
        while len(received) < 50:
            frame = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
            frames += 1
            items = frame if isinstance(frame, list) else [frame]
            received += [item["offset"] for item in items]
        assert received == offsets
        assert frames < 50, "batch mode should pack events together"


async def test_events_published_to_a_new_type_reach_live_subscribers(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    client = await Client.open(gw.url)
    await client.subscribe("brand_new_type")
    offset = await pub.publish("brand_new_type", {"first": True})
    assert [e["offset"] for e in await client.events_until(1)] == [offset]
    await client.close()


async def test_ping_and_pong(gw: InProcessGateway) -> None:
    client = await Client.open(gw.url)
    await client.send({"op": "ping", "id": "p1"})
    pong = await client.control("pong")
    assert pong["id"] == "p1" and isinstance(pong["ts"], int)
    await client.close()


async def test_replay_far_larger_than_the_client_queue_arrives_without_4008(
    redis_url: str, pub: AsyncPublisher
) -> None:
    from tests.support.gateway import running_gateway

    pad = "p" * 1000
    offsets: list[str] = []
    for start in range(0, 2000, 500):  # about 2 MB of backlog for a 64 KiB queue
        offsets += await pub.publish_many([Event("custom", {"n": n, "pad": pad})
                                           for n in range(start, start + 500)])
    async with running_gateway(redis_url, slow_client_max_bytes=64 * 1024) as gw:
        client = await Client.open(gw.url)
        await client.subscribe("custom", since="0-0")
        events = await client.events_until(2000, timeout=30)
        assert [e["offset"] for e in events] == offsets
        await client.close()


async def test_offsets_order_as_integer_pairs_not_strings(
    gw: InProcessGateway, pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    """Entries ``M-0`` .. ``M-12`` in one millisecond: as strings ``M-9`` > ``M-10``."""
    first = await pub.publish("custom", {"n": -1})  # makes the stream, its epoch and its type
    ms = parse_offset(first)[0] + 1
    written = []
    for seq in range(13):  # a direct writer (docs/redis.md) with explicit ids
        written.append((await aredis.xadd(Keys().stream("custom"), {"j": orjson.dumps({"n": seq}),
                                                                     "s": "", "u": ""},
                                          id=f"{ms}-{seq}")).decode())
    assert written == [f"{ms}-{seq}" for seq in range(13)]
    assert sorted(written) != written  # string order is not offset order

    client = await Client.open(gw.url)
    reply = await client.subscribe("custom", since=first)
    events = await client.events_until(13)
    got = [e["offset"] for e in events]
    assert got == written and got == sorted(got, key=parse_offset)
    await client.close()

    last = await Client.open(gw.url)
    reply = await last.subscribe("custom", last=3)
    events = await last.events_until(3)
    assert [e["offset"] for e in events] == written[-3:]
    assert reply["offset"] == f"{ms}-9"  # the position just before the first replayed event
    assert parse_offset(reply["offset"]) < parse_offset(events[0]["offset"])
    assert not reply["offset"] < events[0]["offset"]  # what comparing strings would say
    await last.close()
