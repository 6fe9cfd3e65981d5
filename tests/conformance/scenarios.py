"""The conformance scenarios: one list, run against every client driver (test_conformance.py).

Each scenario starts a real gateway (in process, or as a process it can kill) on the test's
Redis, drives a client through the :class:`~tests.conformance.drivers.Driver` interface, and
counts exactly what arrived: the offsets delivered, in order, none missing, none twice.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from shared.events import Event
from shared.keys import Keys
from shared.publisher import AsyncPublisher
from tests.conformance.drivers import Driver, Format, Snapshot, TokenSpec
from tests.conformance.relay import DuplicatingRelay
from tests.support.gateway import running_gateway, running_gateway_process
from tests.support.waiting import until


@dataclass
class Env:
    redis_url: str
    pub: AsyncPublisher
    aredis: redis.asyncio.Redis


Scenario = Callable[[Driver, Env], Awaitable[None]]


def custom(n: int, start: int = 0, symbol: str | None = None) -> list[Event]:
    return [Event("custom", {"n": i}, symbol=symbol) for i in range(start, start + n)]


async def wait_for(driver: Driver, check: Callable[[Snapshot], bool], what: str,
                   timeout: float = 20) -> Snapshot:
    """Poll the driver's snapshot until it passes ``check`` (at most ``timeout`` s); that snapshot."""
    deadline = time.monotonic() + timeout
    while True:
        snap = await driver.snapshot()
        if check(snap):
            return snap
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({driver.name})")
        await asyncio.sleep(0.05)


async def arrived(driver: Driver, event_type: str, n: int, timeout: float = 20) -> Snapshot:
    """Wait until ``n`` events of ``event_type`` were delivered; the snapshot then."""
    return await wait_for(driver, lambda s: len(s.offsets(event_type)) >= n, f"{n} {event_type} events",
                          timeout)


class Producer:
    """Publishes ``custom`` events in small batches until stopped."""

    def __init__(self, pub: AsyncPublisher, symbols: tuple[str | None, ...] = (None,)) -> None:
        self.pub, self.symbols = pub, symbols
        self.published: list[tuple[str, str | None]] = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            batch = [Event("custom", {"n": n + i}, symbol=self.symbols[(n + i) % len(self.symbols)])
                     for i in range(5)]
            offsets = await self.pub.publish_many(batch)
            self.published += [(o, e.symbol) for o, e in zip(offsets, batch, strict=True)]
            n += len(batch)
            await asyncio.sleep(0.01)  # pacing of the producer, not synchronisation

    @property
    def offsets(self) -> list[str]:
        return [o for o, _ in self.published]

    async def stop(self) -> list[tuple[str, str | None]]:
        self._stop.set()
        await self._task
        return self.published


# --- the scenarios ----------------------------------------------------------------------------


async def resume_across_gateway_kill(driver: Driver, env: Env) -> None:
    """SIGKILL the gateway under a steady flow, restart it: every offset once, in order."""
    async with running_gateway_process(env.redis_url) as gateway:
        await driver.start(gateway.url)
        await driver.subscribe("custom")
        producer = Producer(env.pub)
        await arrived(driver, "custom", 50)
        gateway.signal(signal.SIGKILL)
        await gateway.wait()
        down = len(producer.published)
        await until(lambda: len(producer.published) >= down + 50, what="events published while down")
        await gateway.start()  # same port
        published = [o for o, _ in await stop_after(producer, driver)]
        snap = await arrived(driver, "custom", len(published))
        assert snap.offsets("custom") == published
        assert snap.codes[0] == 1006 and set(snap.codes) <= {1006}
        assert snap.resets == []


async def stop_after(producer: Producer, driver: Driver, more: int = 50) -> list[tuple[str, str | None]]:
    """Let ``more`` events arrive after now, then stop the producer."""
    mark = len(producer.published)
    await arrived(driver, "custom", mark + more)
    return await producer.stop()


async def slow_4008_then_resume(driver: Driver, env: Env) -> None:
    """Bursts overflow a small outgoing queue: 4008, and the resumes bring everything."""
    pad = "x" * 1000
    # a replay page (20 events of 1 KB) fits in half the queue, so a resume does not overflow it
    async with running_gateway(env.redis_url, slow_client_max_bytes=64 * 1024, replay_page=20) as gw:
        await driver.start(gw.url)
        await driver.subscribe("custom")
        published: list[str] = []
        for burst in range(3):
            published += await env.pub.publish_many(
                [Event("custom", {"n": n, "pad": pad}) for n in range(burst * 600, burst * 600 + 600)])
        snap = await arrived(driver, "custom", len(published), timeout=40)
        assert snap.offsets("custom") == published
        assert 4008 in snap.codes and set(snap.codes) == {4008}
        assert snap.resets == []


async def resync_4009_reset(driver: Driver, env: Env) -> None:
    """The stream is re-created under the gateway: 4009, the resume says recovered:false."""
    async with running_gateway(env.redis_url, reader_epoch_check=0.2) as gw:
        before = await env.pub.publish_many(custom(5))
        await driver.start(gw.url)
        first = await driver.subscribe("custom", since="0-0")
        await arrived(driver, "custom", len(before))
        keys = Keys()
        await env.aredis.delete(keys.stream("custom"), keys.meta("custom"))  # Redis lost the stream
        lost = await env.pub.publish_many(custom(3, 100))  # a new stream, a new epoch

        snap = await wait_for(driver, lambda s: bool(s.resets), "the reset")
        (reset,) = snap.resets
        assert reset["event_type"] == "custom" and reset["previous_epoch"] == first["epoch"]
        assert reset["epoch"] != first["epoch"]
        assert 4009 in snap.codes
        after = await env.pub.publish_many(custom(4, 200))
        snap = await arrived(driver, "custom", len(before) + len(after))
        got = snap.offsets("custom")
        # Events of the new stream may reach the old subscription before the gateway notices
        # (they are real events, in order); from the reset's offset on, nothing is missing.
        new = [o for o in lost + after if offset_key(o) > offset_key(reset["offset"])]
        early = got[len(before):len(got) - len(new)]
        assert got == before + early + new, (got, before, lost, after, reset)
        assert early == lost[:len(early)]


def offset_key(offset: str) -> tuple[int, int]:
    ms, seq = offset.split("-")
    return int(ms), int(seq)


async def token_expiry_and_refresh(driver: Driver, env: Env) -> None:
    """An expired first token costs one 4401; then 3 s tokens are refreshed on the connection."""
    async with running_gateway(env.redis_url) as gw:
        await driver.start(gw.url, token=TokenSpec("alice", ttl=3, first_ttl=-10))
        await driver.subscribe("trade_executed")

        await wait_for(driver, lambda s: s.token_calls >= 4, "two refreshes", timeout=15)
        offset = await env.pub.publish("trade_executed", {"trade_id": 1, "symbol": "BTCUSDT", "type": "LONG",
                                                          "entry_price": 1.0, "quantity": 1.0, "leverage": 1},
                                       user="alice")
        snap = await arrived(driver, "trade_executed", 1)
        assert snap.offsets("trade_executed") == [offset]
        assert snap.codes == [4401]  # the expired first token only
        assert snap.connected == 1 and snap.state == "connected"


async def filter_change(driver: Driver, env: Env) -> None:
    """Widening a filter while events flow: nothing newly wanted is lost, nothing twice."""
    async with running_gateway(env.redis_url) as gw:
        await driver.start(gw.url)
        await driver.subscribe("custom", symbols=["AAA"])
        producer = Producer(env.pub, ("AAA", "BBB", "CCC"))
        await arrived(driver, "custom", 30)
        await driver.update("custom", ["AAA", "BBB"])
        published = await stop_after(producer, driver, 60)
        snap = await driver.snapshot()
        got = snap.received["custom"]
        first_b = next(i for i, (_, symbol, _) in enumerate(got) if symbol == "BBB")
        position = offset_key(got[first_b - 1][0])  # where the change took over
        expected = [o for o, s in published if s == "AAA" and offset_key(o) <= position]
        expected += [o for o, s in published if s in ("AAA", "BBB") and offset_key(o) > position]
        snap = await arrived(driver, "custom", len(expected))
        assert snap.offsets("custom") == expected


async def duplicate_suppression(driver: Driver, env: Env) -> None:
    """Every frame arrives twice (a relay): every offset is delivered once, in order."""
    history = await env.pub.publish_many(custom(20))
    async with running_gateway(env.redis_url) as gw:
        relay = DuplicatingRelay(gw.settings.port)
        await relay.start()
        try:
            await driver.start(relay.url)
            await driver.subscribe("custom", since=history[9])
            live = await env.pub.publish_many(custom(30, 100))
            snap = await arrived(driver, "custom", 10 + len(live))
            more = await env.pub.publish_many(custom(1, 500))  # anything extra would have come by now
            snap = await arrived(driver, "custom", 10 + len(live) + 1)
            assert snap.offsets("custom") == history[10:] + live + more
            assert relay.frames > 2
        finally:
            await relay.stop()


def batch_and_format(fmt: Format, batch: bool) -> Scenario:
    async def scenario(driver: Driver, env: Env) -> None:
        """A burst in the given wire format: the same events, the same data, each once."""
        data: list[dict[str, Any]] = [
            {"n": n, "price": 65000.5 + n / 8, "text": "ü€\u2028", "nested": {"a": [1, None, True]}}
            for n in range(800)]
        async with running_gateway(env.redis_url) as gw:
            await driver.start(gw.url, format=fmt, batch=batch)
            await driver.subscribe("custom", symbols=["BTCUSDT"])
            offsets = await env.pub.publish_many([Event("custom", d, symbol="BTCUSDT") for d in data])
            snap = await arrived(driver, "custom", len(offsets))
            assert snap.offsets("custom") == offsets
            assert [d for _, _, d in snap.received["custom"]] == data
            assert {s for _, s, _ in snap.received["custom"]} == {"BTCUSDT"}

    scenario.__doc__ = f"{fmt}, batch={batch}"
    return scenario


SCENARIOS: dict[str, Scenario] = {
    "resume-across-gateway-kill": resume_across_gateway_kill,
    "4008-then-resume": slow_4008_then_resume,
    "4009-reset": resync_4009_reset,
    "token-expiry-and-refresh": token_expiry_and_refresh,
    "filter-change": filter_change,
    "duplicate-suppression": duplicate_suppression,
    "msgpack-batch": batch_and_format("msgpack", True),
    "json-no-batch": batch_and_format("json", False),
}
