"""The delivery promise for a raw client: offset > since, in order, no duplicates, nothing else.

A raw WebSocket client does not drop duplicates the way the official clients do, so every test
here counts exactly what arrives. Each ends with a marker event published after the subscribe:
once the marker is in, anything the gateway wrongly sent before it has arrived too.
"""

from __future__ import annotations

import asyncio

import pytest

from shared.events import Event
from shared.offsets import parse_offset
from shared.publisher import AsyncPublisher
from tests.support.gateway import Client, running_gateway
from tests.support.redis_server import RedisServer

pytestmark = pytest.mark.topologies


async def _until_marker(client: Client, marker: str) -> list[str]:
    while not client.events or client.events[-1]["offset"] != marker:
        await client.recv()
    return [e["offset"] for e in client.events]


async def test_since_equal_to_the_newest_offset_sends_only_newer_events(
    redis_url: str, pub: AsyncPublisher
) -> None:
    offsets = await pub.publish_many([Event("fresh_type", {"n": n}) for n in range(5)])
    async with running_gateway(redis_url) as gw:
        client = await Client.open(gw.url)
        reply = await client.subscribe("fresh_type", since=offsets[-1])
        assert reply["recovered"] is True and reply["offset"] == offsets[-1]
        marker = await pub.publish("fresh_type", {"n": 5})
        assert await _until_marker(client, marker) == [marker]
        await client.close()


async def test_resume_at_once_after_a_gateway_restart_sends_no_old_event(
    redis_url: str, pub: AsyncPublisher
) -> None:
    offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(300)])
    async with running_gateway(redis_url) as gw:
        # Connect as soon as the server listens: the reader may not know the stream yet.
        starts = [0, 150, 298, 299]  # 299: the newest offset, the client has seen everything
        clients = await asyncio.gather(*(Client.open(gw.url) for _ in starts))
        replies = await asyncio.gather(*(
            c.subscribe("custom", since=offsets[i]) for i, c in zip(starts, clients, strict=True)))
        assert all(r["recovered"] for r in replies)
        marker = await pub.publish("custom", {"n": 300})
        for i, client in zip(starts, clients, strict=True):
            got = await _until_marker(client, marker)
            assert got == [*offsets[i + 1:], marker]
            await client.close()


async def test_a_gateway_that_started_while_redis_was_down_keeps_the_promise(
    private_redis: RedisServer,
) -> None:
    url = private_redis.url
    async with AsyncPublisher.from_url(url) as pub:
        offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(100)])
        await asyncio.to_thread(private_redis.stop)
        async with running_gateway(url) as gw:
            behind, current = await Client.open(gw.url), await Client.open(gw.url)
            await behind.send({"op": "subscribe", "event_type": "custom", "since": offsets[59]})
            await current.send({"op": "subscribe", "event_type": "custom", "since": offsets[-1]})
            await asyncio.to_thread(private_redis.start)
            for client in (behind, current):
                assert (await client.control("subscribed", timeout=30))["recovered"] is True
            marker = await pub.publish("custom", {"n": 100})
            assert await _until_marker(behind, marker) == [*offsets[60:], marker]
            assert await _until_marker(current, marker) == [marker]
            await behind.close()
            await current.close()


async def test_subscribing_before_the_first_publish_establishes_the_epoch(
    redis_url: str, pub: AsyncPublisher
) -> None:
    async with running_gateway(redis_url) as gw:
        first = await Client.open(gw.url)
        reply = await first.subscribe("brand_new")
        assert reply["epoch"], "the epoch of a type without a stream must not be empty"
        offsets = await pub.publish_many([Event("brand_new", {"n": n}) for n in range(3)])
        assert [e["offset"] for e in await first.events_until(3)] == offsets
        await first.close()
        # A client that subscribed before the first publish resumes from the start position.
        again = await Client.open(gw.url)
        resumed = await again.subscribe("brand_new", since=reply["offset"], epoch=reply["epoch"])
        assert resumed["recovered"] is True and resumed["epoch"] == reply["epoch"]
        marker = await pub.publish("brand_new", {"n": 3})
        assert await _until_marker(again, marker) == [*offsets, marker]
        await again.close()


async def test_offsets_arrive_in_ms_seq_order_across_a_seq_rollover(
    redis_url: str, pub: AsyncPublisher
) -> None:
    # One batch lands within one millisecond: sequence numbers 9, 10, 11 ... compare as numbers.
    async with running_gateway(redis_url) as gw:
        client = await Client.open(gw.url)
        await client.subscribe("custom")
        offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(50)])
        got = [e["offset"] for e in await client.events_until(50)]
        assert got == offsets
        assert [parse_offset(o) for o in got] == sorted(parse_offset(o) for o in got)
        await client.close()
