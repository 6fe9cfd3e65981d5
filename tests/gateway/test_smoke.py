"""The shortest path a user takes: connect, subscribe, receive what is published."""

from __future__ import annotations

from shared.publisher import AsyncPublisher, PublishSettings
from tests.support.gateway import Client, running_gateway


async def test_published_event_reaches_a_subscriber(redis_url: str) -> None:
    async with running_gateway(redis_url) as gw, AsyncPublisher.from_url(
        redis_url, PublishSettings(redis_url=redis_url)
    ) as pub:
        client = await Client.open(gw.url)
        reply = await client.subscribe("custom", id=1)
        assert reply["id"] == 1 and reply["recovered"] is True
        offset = await pub.publish("custom", {"n": 1}, symbol="BTCUSDT")
        events = await client.events_until(1)
        assert events == [{"event_type": "custom", "offset": offset, "symbol": "BTCUSDT",
                           "ts": int(offset.split("-")[0]), "data": {"n": 1}}]
        await client.close()
