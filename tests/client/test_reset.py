"""A resume that cannot be honoured is surfaced to the application, then the stream goes on live."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from shared.client import Event, Reset, StreamReset, connect
from shared.events import Event as NewEvent
from shared.keys import Keys
from shared.publisher import AsyncPublisher
from tests.client.helpers import record_statuses
from tests.support.gateway import running_gateway
from tests.support.waiting import until


def events(n: int, start: int = 0) -> list[NewEvent]:
    return [NewEvent("custom", {"n": i}) for i in range(start, start + n)]


@pytest.mark.parametrize("loss", ["stream-recreated", "trimmed"])
async def test_a_lost_resume_position_is_reported_and_delivery_goes_on_live(
    redis_url: str, pub: AsyncPublisher, aredis: redis.asyncio.Redis, loss: str
) -> None:
    keys = Keys()
    first = await pub.publish_many(events(3))
    async with running_gateway(redis_url) as gw:
        port = gw.settings.port
        client = connect(gw.url, reconnect_base=0.05, reconnect_cap=0.2)
        statuses = record_statuses(client)
        resets: list[Reset] = []
        client.on_reset(resets.append)
        async with client as ts:
            sub = await ts.subscribe("custom", since="0-0")
            assert [(await sub.get()).offset for _ in first] == first
            epoch = sub.epoch
            await gw.stop()  # the client is now away, retrying
            await until(lambda: statuses.of("reconnecting"), what="the client to notice")

            if loss == "stream-recreated":  # deleted with its meta: the next publish starts an epoch
                await aredis.delete(keys.stream("custom"), keys.meta("custom"))
                missed = await pub.publish_many(events(2, 100))
            else:  # everything the client had, and more, trimmed away
                missed = await pub.publish_many(events(5, 100))
                await aredis.xtrim(keys.stream("custom"), maxlen=2, approximate=False)
            async with running_gateway(redis_url, port=port):
                with pytest.raises(StreamReset) as raised:
                    await asyncio.wait_for(sub.get(), 10)
                reset = raised.value.reset
                assert resets == [reset]
                assert reset.since == first[-1]
                assert reset.earliest == (missed[-2] if loss == "trimmed" else missed[0])
                assert reset.offset == missed[-1]  # live from here on
                assert reset.previous_epoch == epoch
                assert (reset.epoch != epoch) == (loss == "stream-recreated")
                assert sub.last_reset == reset and sub.epoch == reset.epoch
                after = await pub.publish_many(events(3, 200))
                got: list[Event] = [await asyncio.wait_for(sub.get(), 10) for _ in after]
                assert [e.offset for e in got] == after
                assert [e.data["n"] for e in got] == [200, 201, 202]


async def test_resets_can_be_a_flag_instead_of_an_exception(
    redis_url: str, pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    old = await pub.publish_many(events(5))
    await aredis.xtrim(Keys().stream("custom"), maxlen=1, approximate=False)
    async with running_gateway(redis_url) as gw, connect(gw.url) as ts:
        sub = await ts.subscribe("custom", since=old[0], raise_on_reset=False)
        assert sub.last_reset is not None and sub.last_reset.earliest == old[-1]
        new = await pub.publish_many(events(2, 10))
        assert [(await asyncio.wait_for(sub.get(), 10)).offset for _ in new] == new
