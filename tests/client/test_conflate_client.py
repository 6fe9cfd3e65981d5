"""``conflate_ms`` through the Python client and ``tickstream tail``: passed on, kept on resume."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import pytest

from gateway.subscription import ConflatedSubscription
from shared.client import Event, connect
from shared.events import Event as NewEvent
from shared.offsets import parse_offset
from shared.publisher import AsyncPublisher
from tests.client.helpers import Consumer, record_statuses
from tests.client.test_tail import Tail, start_tail
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.waiting import until

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def burst(n: int, start: int = 0) -> list[NewEvent]:
    return [NewEvent("custom", {"n": i}, symbol=SYMBOLS[i % 2]) for i in range(start, start + n)]


def newest(events: list[NewEvent], offsets: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for event, offset in zip(events, offsets, strict=True):
        out[event.symbol or ""] = offset
    return out


def last_per_symbol(events: list[Event]) -> dict[str, str]:
    out: dict[str, str] = {}
    for event in events:
        out[event.symbol or ""] = event.offset
    return out


def gateway_sub(gw: InProcessGateway, event_type: str = "custom") -> Any:
    subs = [s.subs.get(event_type) for s in gw.node.hub.sessions.values()]
    return next((s for s in subs if s is not None and s.replied), None)


async def test_conflate_ms_is_sent_and_kept_across_a_gateway_restart(
    redis_url: str, pub: AsyncPublisher
) -> None:
    async with running_gateway(redis_url) as gw:
        port = gw.settings.port
        client = connect(gw.url, reconnect_base=0.05, reconnect_cap=0.3)
        statuses = record_statuses(client)
        await client.__aenter__()
        sub = await client.subscribe("custom", symbols=SYMBOLS, conflate_ms=100)
        assert sub.conflate_ms == 100
        server_side = gateway_sub(gw)
        assert isinstance(server_side, ConflatedSubscription) and server_side.conflate_ms == 100
        consumer = Consumer(sub)
        events = burst(100)
        wanted = newest(events, await pub.publish_many(events))
        await until(lambda: last_per_symbol(consumer.events) == wanted, what="the newest of each")
        assert len(consumer.events) < 20
    # the gateway is gone; these are missed, and the resume brings only the newest of each
    events = burst(100, start=100)
    wanted = newest(events, await pub.publish_many(events))
    before = len(consumer.events)
    async with running_gateway(redis_url, port=port) as gw:
        await until(lambda: len(statuses.of("connected")) == 2, what="the reconnect")
        await until(lambda: last_per_symbol(consumer.events) == wanted, what="the newest after resume")
        resumed = consumer.events[before:]
        assert [e.offset for e in resumed] == sorted(wanted.values(), key=parse_offset)
        server_side = gateway_sub(gw)
        assert isinstance(server_side, ConflatedSubscription) and server_side.conflate_ms == 100
        assert not sub.resets and sub.duplicates == 0

        # update() keeps it unless told otherwise; conflate_ms=None turns it off
        await sub.update(["BTCUSDT"])
        assert isinstance(gateway_sub(gw), ConflatedSubscription)
        await sub.update(["BTCUSDT"], conflate_ms=None)
        assert not isinstance(gateway_sub(gw), ConflatedSubscription)
        offsets = await pub.publish_many([NewEvent("custom", {"n": n}, symbol="BTCUSDT")
                                          for n in range(30)])
        await until(lambda: consumer.events[-1].offset == offsets[-1], what="every event")
        assert [e.offset for e in consumer.events[-30:]] == offsets
        await consumer.stop()
        await client.close()


async def test_a_bad_conflate_ms_is_refused_before_anything_is_sent(gw: InProcessGateway) -> None:
    async with connect(gw.url) as client:
        for value in (0, 9, 60001, True, 1.5, "100"):
            with pytest.raises(ValueError, match="conflate_ms"):
                client.subscribe("custom", conflate_ms=value)  # type: ignore[arg-type]
        assert not client.subscriptions


async def test_tail_conflate_ms_prints_the_newest_of_each_symbol(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    tail = await start_tail("custom", "--conflate-ms", "200", "--url", gw.url)
    try:
        await tail.status("connected to")
        await until(lambda: gateway_sub(gw) is not None, what="the subscription")
        assert gateway_sub(gw).conflate_ms == 200
        events = burst(200)
        wanted = newest(events, await pub.publish_many(events))
        printed: list[dict[str, Any]] = []
        last: dict[str, str] = {}
        while last != wanted:
            line = await tail.line(timeout=15)
            printed.append(line)
            last[str(line["symbol"])] = str(line["offset"])
        assert len(printed) < 20
        tail.proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(tail.proc.wait(), 10) == 0
    finally:
        await _kill(tail)


async def test_tail_rejects_a_bad_conflate_ms() -> None:
    tail = await start_tail("custom", "--conflate-ms", "5")
    _, err = await asyncio.wait_for(tail.proc.communicate(), 20)
    assert tail.proc.returncode == 2
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tickstream tail: ") and \
        lines[0].endswith("--conflate-ms must be from 10 to 60000"), lines


async def _kill(tail: Tail) -> None:
    if tail.proc.returncode is None:
        tail.proc.kill()
        await tail.proc.wait()
