"""Load shedding over real sockets: while the reader is behind, the costliest client goes first
(4008, and it resumes without a gap), newcomers are refused with 1013, the rest stay connected."""

from __future__ import annotations

from typing import Any

from websockets.asyncio.client import connect

from shared.publisher import AsyncPublisher
from tests.support.gateway import Client, InProcessGateway, closed_with


async def test_while_the_reader_is_behind_the_busiest_client_is_shed_and_resumes(
    gw: InProcessGateway, pub: AsyncPublisher, monkeypatch: Any
) -> None:
    quiet = [await Client.open(gw.url) for _ in range(4)]
    for client in quiet:
        await client.subscribe("quiet")
    busy = await Client.open(gw.url)
    epoch = (await busy.subscribe("busy"))["epoch"]
    offsets = [await pub.publish("busy", {"n": n}) for n in range(20)]
    await busy.events_until(20)  # the busiest: it was sent the most

    behind = {"for": 0.0}
    monkeypatch.setattr(gw.node.reader, "behind_for", lambda now: behind["for"])
    shedder = gw.node.shedder
    real_tick = shedder.tick

    def one_tick(connections: Any, behind_for: float) -> int:
        shed = real_tick(connections, behind_for)
        if shed:
            behind["for"] = 0.0  # caught up right after this tick: the next one sheds nobody
        return shed

    monkeypatch.setattr(shedder, "tick", one_tick)
    behind["for"] = 60.0  # the reader has been losing ground for a minute
    async with connect(gw.url) as refused:  # a newcomer is asked to come back later
        assert await closed_with(refused) == 1013
    assert await closed_with(busy.ws) == 4008  # at the next tick: 5% of 5 is one, the busiest
    sent = await pub.publish("quiet", {"n": 1})
    for client in quiet:  # the others still receive
        assert [e["offset"] for e in await client.events_until(1)] == [sent]

    # the shed client comes back and resumes where it was
    missed = [await pub.publish("busy", {"n": n}) for n in range(20, 25)]
    back = await Client.open(gw.url)
    reply = await back.subscribe("busy", since=offsets[-1], epoch=epoch)
    assert reply["recovered"] is True
    got = await back.events_until(5)
    assert [e["offset"] for e in got] == missed
    assert gw.node.metrics.registry.get_sample_value("tickstream_shed_closes_total") == 1
    for client in [*quiet, back]:
        await client.close()
