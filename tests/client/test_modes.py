"""Wire formats, batching, callbacks and filters: the application sees the same events whatever they are."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.client import Event, SubscriptionError, connect
from shared.events import Event as NewEvent
from shared.publisher import AsyncPublisher
from tests.client.helpers import Consumer
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.waiting import until

SYMBOLS = ["BTCUSDT", "ETHUSDT", "SOLUSDT"]


def mixed(n: int, start: int = 0) -> list[NewEvent]:
    return [NewEvent("custom", {"n": i, "price": 100.5 + i, "tags": ["a", i], "nested": {"ok": True}},
                     symbol=SYMBOLS[i % 3]) for i in range(start, start + n)]


async def test_msgpack_json_batched_or_not_deliver_identical_events(
    redis_url: str, pub: AsyncPublisher
) -> None:
    history = await pub.publish_many(mixed(300))
    modes = [("json", False), ("json", True), ("msgpack", False), ("msgpack", True)]
    async with running_gateway(redis_url) as gw:
        clients = [connect(gw.url, format=fmt, batch=batch) for fmt, batch in modes]  # type: ignore[arg-type]
        for client in clients:
            await client.__aenter__()
        try:
            consumers = [Consumer(await c.subscribe("custom", since="0-0")) for c in clients]
            live = await pub.publish_many(mixed(300, 300))
            for consumer in consumers:
                await until(lambda c=consumer: len(c.events) >= 600, what="600 events")  # type: ignore[misc]
            expected = history + live
            seen = [[e.as_dict() for e in c.events] for c in consumers]
            assert [e["offset"] for e in seen[0]] == expected
            assert seen[0][7]["data"] == {"n": 7, "price": 107.5, "tags": ["a", 7], "nested": {"ok": True}}
            assert seen[0][7]["symbol"] == "ETHUSDT"
            assert seen[1] == seen[0] and seen[2] == seen[0] and seen[3] == seen[0]
            for consumer in consumers:
                await consumer.stop()
        finally:
            for client in clients:
                await client.close()


async def test_callbacks_plain_and_async_get_every_event_in_order(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    plain: list[str] = []
    awaited: list[str] = []

    async def slow(event: Event) -> None:
        await asyncio.sleep(0)
        awaited.append(event.offset)

    async with connect(gw.url, batch=True) as ts:
        ts.subscribe("custom", callback=lambda e: plain.append(e.offset))
        await ts.subscribe("other", callback=slow)
        await until(lambda: all(s.subscribed for s in ts.subscriptions.values()))
        a = await pub.publish_many(mixed(50))
        b = await pub.publish_many([NewEvent("other", {"n": i}) for i in range(50)])
        await until(lambda: len(plain) == 50 and len(awaited) == 50)
        assert plain == a and awaited == b


async def test_a_symbol_filter_and_its_update_leave_no_gap_and_no_duplicate(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    async with connect(gw.url) as ts:
        sub = await ts.subscribe("custom", symbols=["btcusdt"])
        before = await pub.publish_many(mixed(30))
        consumer = Consumer(sub)
        await until(lambda: len(consumer.events) == 10)  # n = 0, 3, ... 27: every BTCUSDT one
        assert sub.offset == before[27]
        await sub.update(["BTCUSDT", "ETHUSDT"])
        after = await pub.publish_many(mixed(30, 30))
        # The new filter applies from the subscription's position on (after n=27), history included.
        want = [o for o, e in zip(before + after, mixed(60), strict=True)
                if e.symbol == "BTCUSDT" or (e.symbol == "ETHUSDT" and e.data["n"] > 27)]
        await until(lambda: len(consumer.events) >= len(want))
        assert consumer.offsets == want
        assert {e.symbol for e in consumer.events[10:]} == {"BTCUSDT", "ETHUSDT"}
        await consumer.stop()


async def test_a_refused_subscription_raises_and_the_others_carry_on(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    async with connect(gw.url) as ts:  # anonymous: private types are refused
        with pytest.raises(SubscriptionError) as refused:
            await ts.subscribe("trade_executed")
        assert refused.value.code == "unauthorized"
        assert "trade_executed" not in ts.subscriptions
        sub = await ts.subscribe("custom", last=1)
        offsets = await pub.publish_many(mixed(2))
        got: list[Any] = [(await asyncio.wait_for(sub.get(), 10)).offset for _ in offsets]
        assert got == offsets
        await sub.unsubscribe()
        assert not sub.active and "custom" not in ts.subscriptions
