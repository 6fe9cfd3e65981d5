"""Resume across gateway failures: every offset exactly once, in order, while events keep coming."""

from __future__ import annotations

import asyncio
import re
import signal

import httpx
import pytest

from shared.client import connect
from shared.events import Event as NewEvent
from shared.publisher import AsyncPublisher
from tests.client.helpers import Consumer, Producer, record_statuses
from tests.support.gateway import GatewayProcess, running_gateway
from tests.support.waiting import until

pytestmark = pytest.mark.topologies


@pytest.mark.parametrize(("sig", "close_code"), [(signal.SIGKILL, 1006), (signal.SIGTERM, 1012)],
                         ids=["sigkill", "sigterm-drain"])
async def test_a_dying_gateway_costs_nothing(
    redis_url: str, pub: AsyncPublisher, sig: int, close_code: int
) -> None:
    first, second = GatewayProcess(redis_url), GatewayProcess(redis_url)
    await asyncio.gather(first.start(), second.start())
    try:
        client = connect([first.url, second.url], batch=True, reconnect_base=0.05, reconnect_cap=0.5)
        statuses = record_statuses(client)
        async with client as ts:
            sub = await ts.subscribe("custom")
            consumer = Consumer(sub)
            producer = Producer(pub)
            await until(lambda: len(consumer.events) >= 100, what="events before the failure")
            node = ts.node
            first.signal(sig)
            await until(lambda: len(statuses.of("connected")) == 2, what="reconnect to the other node")
            assert ts.node != node
            mark = len(producer.offsets)
            await until(lambda: len(consumer.events) >= mark + 100, what="events after the failure")
            published = await producer.stop()
            await until(lambda: len(consumer.events) >= len(published), what="every event")
            assert consumer.offsets == published  # each once, in order, none missing
            assert statuses.codes() == [close_code]
            assert not sub.resets
            await consumer.stop()
        if sig == signal.SIGTERM:
            assert await first.wait() == 0
    finally:
        await asyncio.gather(first.stop(), second.stop())


async def test_a_slow_application_gets_4008_and_then_everything(
    redis_url: str, pub: AsyncPublisher
) -> None:
    # A replay page (50 events of 2 KB) must fit in half the small outgoing queue, or every
    # resume overflows it again (the gateway pushes a whole page at once).
    async with running_gateway(redis_url, slow_client_max_bytes=256 * 1024, replay_page=50) as gw:
        client = connect(gw.url, queue_size=50, reconnect_base=0.05, reconnect_cap=0.5)
        statuses = record_statuses(client)
        async with client as ts:
            sub = await ts.subscribe("custom")
            go = asyncio.Event()
            consumer = Consumer(sub, go)  # the application is busy: it does not read yet
            published: list[str] = []
            pad = "x" * 2000
            async with httpx.AsyncClient(base_url=gw.http) as http:

                async def slow_consumer_closed() -> bool:
                    text = (await http.get("/metrics")).text
                    found = re.search(r"^tickstream_slow_consumer_closes_total (\S+)$", text, re.M)
                    return found is not None and float(found.group(1)) >= 1

                for start in range(0, 20_000, 500):
                    published += await pub.publish_many(
                        [NewEvent("custom", {"n": n, "pad": pad}) for n in range(start, start + 500)])
                    if await slow_consumer_closed():
                        break
                await until(slow_consumer_closed, timeout=20, what="the gateway's 4008")
            assert sub.pending <= 50  # bounded: the client stopped reading instead of buffering
            go.set()
            published += await pub.publish_many([NewEvent("custom", {"n": -1})])
            await until(lambda: len(consumer.events) >= len(published), timeout=30, what="every event")
            assert consumer.offsets == published
            assert 4008 in statuses.codes()
            assert len(statuses.of("connected")) >= 2
            await consumer.stop()
