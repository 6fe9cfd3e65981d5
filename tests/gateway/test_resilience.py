"""What happens when things go wrong: slow clients, dead peers, Redis outages, dying gateways."""

from __future__ import annotations

import asyncio
import signal

import httpx
import orjson
import redis.asyncio
from websockets.asyncio.client import connect

from shared.events import Event
from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from tests.support.gateway import Client, GatewayProcess, closed_with, running_gateway
from tests.support.raw_ws import DeafClient
from tests.support.redis_server import RedisServer
from tests.support.waiting import until


async def test_slow_consumer_is_closed_with_4008_and_others_get_everything(
    redis_url: str, pub: AsyncPublisher
) -> None:
    async with running_gateway(redis_url, slow_client_max_bytes=1024 * 1024) as gw:
        fast = await Client.open(gw.url)
        await fast.subscribe("custom")
        slow = await connect(gw.url, max_queue=1)  # reads nothing from here on
        await slow.recv()
        await slow.send(orjson.dumps({"op": "subscribe", "event_type": "custom"}).decode())
        pad = "x" * 4000
        offsets: list[str] = []
        for start in range(0, 4000, 200):
            offsets += await pub.publish_many([Event("custom", {"n": n, "pad": pad})
                                               for n in range(start, start + 200)])
            await fast.events_until(len(offsets), timeout=20)  # the fast one keeps up
        assert [e["offset"] for e in fast.events] == offsets
        assert await closed_with(slow, timeout=20) == 4008
        metrics = (await httpx.AsyncClient().get(gw.http.replace("ws", "http") + "/metrics")).text
        assert "tickstream_slow_consumer_closes_total 1.0" in metrics
        await fast.close()


async def test_idle_connection_gets_heartbeats_and_a_deaf_one_is_closed_with_4001(
    redis_url: str,
) -> None:
    async with running_gateway(redis_url, heartbeat_interval=1.0, heartbeat_timeout=1.0) as gw:
        client = await Client.open(gw.url)
        heartbeat = await client.control("heartbeat", timeout=5)
        assert isinstance(heartbeat["ts"], int)
        deaf = DeafClient(gw.url)
        assert await deaf.run_until_closed(timeout=10) == 4001
        assert deaf.pings >= 1
        await client.send({"op": "ping"})  # the live client is still served
        await client.control("pong")
        await client.close()


async def test_redis_restart_under_load_readyz_red_then_green_and_nothing_lost(
    private_redis: RedisServer,
) -> None:
    url = private_redis.url
    async with running_gateway(url, reader_stale_after=2.0) as gw, AsyncPublisher.from_url(
        url, PublishSettings(redis_url=url, publish_retry_timeout=30.0)  # type: ignore[arg-type]
    ) as pub:
        client = await Client.open(gw.url)
        await client.subscribe("custom", since="0-0")
        http = httpx.AsyncClient(base_url=gw.http)
        assert (await http.get("/readyz")).status_code == 200
        stop = asyncio.Event()

        async def produce() -> list[str]:
            out: list[str] = []
            n = 0
            while not stop.is_set():
                out += await pub.publish_many([Event("custom", {"n": n + i}) for i in range(10)])
                n += 10
                await asyncio.sleep(0.01)
            return out

        producer = asyncio.create_task(produce())
        await client.events_until(50)
        await asyncio.to_thread(private_redis.stop)
        await until(lambda: _status(http, 503), timeout=15, what="readyz to go red")
        await asyncio.to_thread(private_redis.start)
        await until(lambda: _status(http, 200), timeout=15, what="readyz to go green")
        await client.events_until(len(client.events) + 50, timeout=15)
        stop.set()
        offsets = await producer
        await client.events_until(len(offsets), timeout=15)
        assert [e["offset"] for e in client.events] == offsets
        await client.close()
        await http.aclose()


async def _status(http: httpx.AsyncClient, code: int) -> bool:
    return (await http.get("/readyz")).status_code == code


async def test_resume_on_another_gateway_misses_nothing_and_doubles_nothing(
    redis_url: str, pub: AsyncPublisher
) -> None:
    async with running_gateway(redis_url) as a, running_gateway(redis_url) as b:
        client = await Client.open(a.url)
        reply = await client.subscribe("custom")
        first = await pub.publish_many([Event("custom", {"n": n}) for n in range(10)])
        await client.events_until(10)
        await client.close()
        missed = await pub.publish_many([Event("custom", {"n": n}) for n in range(10, 20)])
        resumed = await Client.open(b.url)
        reply2 = await resumed.subscribe("custom", since=client.events[-1]["offset"],
                                         epoch=reply["epoch"])
        assert reply2["recovered"] is True
        later = await pub.publish_many([Event("custom", {"n": n}) for n in range(20, 25)])
        await resumed.events_until(15)
        seen = [e["offset"] for e in client.events + resumed.events]
        assert seen == first + missed + later
        await resumed.close()


async def test_gateway_sigkill_mid_stream_clients_resume_elsewhere(
    redis_url: str, pub: AsyncPublisher
) -> None:
    doomed, survivor = GatewayProcess(redis_url), GatewayProcess(redis_url)
    await asyncio.gather(doomed.start(), survivor.start())
    try:
        clients = [await Client.open(doomed.url) for _ in range(5)]
        for c in clients:
            await c.subscribe("custom")
        stop = asyncio.Event()

        async def produce() -> list[str]:
            out: list[str] = []
            while not stop.is_set():
                out += await pub.publish_many([Event("custom", {"i": len(out) + i}) for i in range(5)])
                await asyncio.sleep(0.005)
            return out

        producer = asyncio.create_task(produce())
        for c in clients:
            await c.events_until(20)
        doomed.signal(signal.SIGKILL)
        resumed = []
        for c in clients:
            await until(lambda c=c: _closed(c), timeout=10, what="the client to notice")
            r = await Client.open(survivor.url)
            reply = await r.subscribe("custom", since=c.events[-1]["offset"])
            assert reply["recovered"] is True
            resumed.append(r)
        for r in resumed:
            await r.events_until(20)
        stop.set()
        offsets = await producer
        for c, r in zip(clients, resumed, strict=True):
            await r.events_until(len(offsets) - len(c.events), timeout=20)
            got = [e["offset"] for e in c.events + r.events]
            start = offsets.index(got[0])
            assert got == offsets[start:], "a resumed client missed or doubled an event"
            await r.close()
    finally:
        await doomed.stop()
        await survivor.stop()


async def _closed(client: Client) -> bool:
    try:
        await asyncio.wait_for(client.recv(), 0.05)
    except TimeoutError:
        return False
    except Exception:
        return True
    return False


async def test_sigterm_drains_with_1012_and_exits(redis_url: str) -> None:
    gateway = GatewayProcess(redis_url, SHUTDOWN_GRACE="5")
    await gateway.start()
    try:
        client = await Client.open(gateway.url)
        await client.subscribe("custom")
        gateway.signal(signal.SIGTERM)
        assert await closed_with(client.ws) == 1012
        assert await gateway.wait(timeout=20) == 0
        async with httpx.AsyncClient() as http:
            try:
                await http.get(f"http://127.0.0.1:{gateway.port}/healthz")
                refused = False
            except httpx.TransportError:
                refused = True
        assert refused, "the port still answers after the gateway exited"
    finally:
        await gateway.stop()


async def test_lost_stream_closes_subscribers_with_4009(
    redis_url: str, pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    async with running_gateway(redis_url, reader_epoch_check=0.2) as gw:
        client = await Client.open(gw.url)
        await pub.publish("custom", {"n": 1})
        reply = await client.subscribe("custom")
        keys = Keys()
        await aredis.delete(keys.stream("custom"), keys.meta("custom"))  # Redis lost the stream
        await pub.publish("custom", {"n": 2})  # a new stream, a new epoch
        assert await closed_with(client.ws) == 4009
        again = await Client.open(gw.url)
        reply2 = await again.subscribe("custom", since=reply["offset"], epoch=reply["epoch"])
        assert reply2["recovered"] is False and reply2["epoch"] != reply["epoch"]
        await again.close()
