"""The publisher against a real redis-server: what a backend service relies on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading

import msgpack
import pytest
import redis
import redis.asyncio

from shared.codec import decode_entry
from shared.errors import InvalidEventData, NotReplicated, RedisUnavailable
from shared.events import Event
from shared.keys import Keys
from shared.publisher import AsyncPublisher, Publisher, PublishSettings
from shared.retention import Retention, RetentionPolicy
from tests.support.clients import sync_client
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

pytestmark = pytest.mark.topologies

KEYS = Keys()


def settings(url: str, **kw: object) -> PublishSettings:
    return PublishSettings(redis_url=url, **kw)  # type: ignore[arg-type]


Row = tuple[str, dict[str, object], str, str]


async def read_all(client: redis.asyncio.Redis, event_type: str) -> list[Row]:
    raw = await client.xrange(KEYS.stream(event_type))
    out = []
    for entry_id, fields in raw:
        entry = decode_entry(event_type, entry_id, fields)
        out.append((entry.offset, entry.data(), entry.symbol, entry.user))
    return out


async def test_publish_returns_the_offset_it_wrote(
    pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    offset = await pub.publish("custom", {"n": 1}, symbol="btcusdt", user="alice")
    assert await read_all(aredis, "custom") == [(offset, {"n": 1}, "BTCUSDT", "alice")]


async def test_batch_keeps_order_across_types(pub: AsyncPublisher, aredis: redis.asyncio.Redis) -> None:
    events = [Event("alpha" if i % 3 else "beta", {"i": i}) for i in range(2500)]
    offsets = await pub.publish_many(events)
    assert len(offsets) == 2500
    alpha = await read_all(aredis, "alpha")
    beta = await read_all(aredis, "beta")
    assert [d["i"] for _, d, _, _ in alpha] == [i for i in range(2500) if i % 3]
    assert [d["i"] for _, d, _, _ in beta] == [i for i in range(2500) if not i % 3]
    by_index = {d["i"]: off for off, d, _, _ in alpha + beta}
    assert [by_index[i] for i in range(2500)] == offsets


async def test_invalid_event_in_a_batch_writes_nothing(
    pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    with pytest.raises(InvalidEventData):
        await pub.publish_many([Event("custom", {"ok": 1}), Event("price_update", {"price": "x"})])
    assert await aredis.exists(KEYS.stream("custom")) == 0


async def test_epoch_created_with_the_stream_and_renewed_when_it_is_recreated(
    pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    await pub.publish("custom", {"n": 1})
    epoch = await aredis.hget(KEYS.meta("custom"), "epoch")
    assert epoch
    await pub.publish("custom", {"n": 2})
    assert await aredis.hget(KEYS.meta("custom"), "epoch") == epoch
    assert await aredis.smembers(KEYS.types()) == {b"custom"}
    await aredis.delete(KEYS.stream("custom"))
    await pub.publish("custom", {"n": 3})
    renewed = await aredis.hget(KEYS.meta("custom"), "epoch")
    assert renewed and renewed != epoch


async def test_trim_by_count_keeps_the_newest(redis_url: str, aredis: redis.asyncio.Redis) -> None:
    await aredis.config_set("stream-node-max-entries", 1)  # exact trimming for the test
    try:
        policy = RetentionPolicy({"custom": Retention(10, 0)})
        async with AsyncPublisher.from_url(redis_url, settings(redis_url, retention=policy)) as pub:
            for start in range(0, 100, 25):
                await pub.publish_many([Event("custom", {"i": i}) for i in range(start, start + 25)])
        kept = [d["i"] for _, d, _, _ in await read_all(aredis, "custom")]
        assert kept == list(range(90, 100))
    finally:
        await aredis.config_set("stream-node-max-entries", 100)


async def test_trim_by_age_drops_old_entries(redis_url: str, aredis: redis.asyncio.Redis) -> None:
    await aredis.config_set("stream-node-max-entries", 1)
    try:
        stream = KEYS.stream("custom")
        for ms in (1000, 2000, 3000):  # entries from 1970: far older than any retention
            await aredis.xadd(stream, {"d": msgpack.packb({"old": ms}), "s": "", "u": ""}, id=f"{ms}-0")
        policy = RetentionPolicy({"custom": Retention(0, 3_600_000)})
        async with AsyncPublisher.from_url(redis_url, settings(redis_url, retention=policy)) as pub:
            fresh = await pub.publish("custom", {"new": True})
        assert [off for off, *_ in await read_all(aredis, "custom")] == [fresh]
    finally:
        await aredis.config_set("stream-node-max-entries", 100)


async def test_idempotency_key_returns_first_offset_under_20_concurrent_publishers(
    redis_url: str, aredis: redis.asyncio.Redis
) -> None:
    publishers = [AsyncPublisher.from_url(redis_url, settings(redis_url)) for _ in range(20)]
    try:
        async def one(pub: AsyncPublisher, n: int) -> list[str]:
            return [await pub.publish("signal", {"from": n, "k": k}, idempotency_key=f"order-{k}")
                    for k in range(10)]
        results = await asyncio.gather(*(one(p, n) for n, p in enumerate(publishers)))
    finally:
        for p in publishers:
            await p.aclose()
    for k in range(10):
        assert len({result[k] for result in results}) == 1, f"key order-{k} got several offsets"
    entries = await read_all(aredis, "signal")
    assert len(entries) == 10
    assert sorted(d["k"] for _, d, _, _ in entries) == list(range(10))


async def test_idempotency_key_repeated_inside_one_batch(
    pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    offsets = await pub.publish_many([Event("custom", {"n": n}, idempotency_key="same") for n in range(3)])
    assert offsets[0] == offsets[1] == offsets[2]
    assert len(await read_all(aredis, "custom")) == 1


def test_sync_publisher_from_threads(redis_url: str) -> None:
    with Publisher.from_url(redis_url, settings(redis_url)) as pub:
        results: list[str] = []
        lock = threading.Lock()

        def work(n: int) -> None:
            offsets = pub.publish_many([Event("custom", {"t": n, "i": i}) for i in range(50)])
            with lock:
                results.extend(offsets)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    client = sync_client(redis_url)
    assert client.xlen(KEYS.stream("custom")) == 200 == len(set(results))
    client.close()


async def test_unreachable_redis_raises_after_the_retry_budget(redis_url: str) -> None:
    server = RedisServer()  # never started: nothing listens on its port
    s = PublishSettings(publish_retry_timeout=0.3)  # REDIS_URL left at its default
    async with AsyncPublisher.from_url(server.url, s) as pub:
        with pytest.raises(RedisUnavailable, match=r"unreachable for 0.3 s") as info:
            await pub.publish("custom", {"n": 1})
    # The error names the URL this publisher was given, not the default one.
    assert f"127.0.0.1:{server.port}" in str(info.value)


async def test_redis_restart_mid_batch_loses_nothing_and_duplicates_nothing(
    private_redis: RedisServer,
) -> None:
    """Redis is SIGKILLed and restarted (AOF, fsync always) while batches are in flight."""
    url = private_redis.url
    total, batch = 60_000, 500
    async with AsyncPublisher.from_url(url, settings(url, publish_retry_timeout=30.0)) as pub:
        async def produce() -> list[str]:
            offsets: list[str] = []
            for start in range(0, total, batch):
                chunk = [Event("load", {"i": i}) for i in range(start, start + batch)]
                offsets += await pub.publish_many(chunk)
            return offsets

        task = asyncio.create_task(produce())
        probe = redis.asyncio.Redis.from_url(url)
        await until(lambda: _at_least(probe, total // 4), timeout=30, what="a quarter published")
        await probe.aclose()
        await asyncio.to_thread(private_redis.kill)
        await asyncio.to_thread(private_redis.start)
        offsets = await asyncio.wait_for(task, 60)

    client = redis.asyncio.Redis.from_url(url)
    entries = await read_all(client, "load")
    await client.aclose()
    seen = [d["i"] for _, d, _, _ in entries]
    assert len(seen) == len(set(seen)), "an event was written twice"
    assert sorted(seen) == list(range(total)), "an acknowledged event is missing"
    assert sorted(offsets) == sorted(off for off, *_ in entries)


async def _at_least(client: redis.asyncio.Redis, n: int) -> bool:
    return bool(await client.xlen(KEYS.stream("load")) >= n)


def test_cli_publish_prints_offset_and_rejects_bad_input(redis_url: str) -> None:
    env_cmd = [sys.executable, "-m", "tickstream.cli", "publish", "--redis-url", redis_url]
    ok = subprocess.run([*env_cmd, "signal_generated", '{"symbol":"BTCUSDT","signal":"LONG",'
                         '"entry_price":65000,"strategy":"x","confidence":0.7}'],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    offset = ok.stdout.strip()
    client = sync_client(redis_url)
    assert client.xrange(KEYS.stream("signal_generated"))[0][0].decode() == offset
    client.close()
    bad_json = subprocess.run([*env_cmd, "custom", "{nope"], capture_output=True, text=True, timeout=60)
    assert bad_json.returncode == 2
    assert "JSON is not valid" in bad_json.stderr
    private = subprocess.run([*env_cmd, "risk_event", "{}"], capture_output=True, text=True, timeout=60)
    assert private.returncode == 2
    assert private.stderr.count("\n") == 1 and "private" in private.stderr


@pytest.mark.parametrize("batch", [1, 1500])
async def test_lost_reply_is_retried_without_publishing_twice(
    redis_server: RedisServer, redis_url: str, aredis: redis.asyncio.Redis, batch: int
) -> None:
    """The write reaches Redis, the reply is lost: the retry must not write it again."""
    from tests.support.tcp_proxy import TcpProxy

    proxy = TcpProxy(redis_server.port)
    await proxy.start()
    try:
        async with AsyncPublisher.from_url(proxy.url, settings(proxy.url)) as pub:
            await pub.publish("custom", {"warm": True})  # connection and script are ready
            proxy.swallow_reply_after(b"EVALSHA")
            offsets = await pub.publish_many([Event("custom", {"i": i}) for i in range(batch)])
        assert proxy.swallowed == 1, "the fault was not injected"
    finally:
        await proxy.stop()
    entries = await read_all(aredis, "custom")
    written = [d["i"] for _, d, _, _ in entries if "i" in d]
    assert written == list(range(batch)), "each event must be written exactly once"
    assert offsets == [off for off, d, _, _ in entries if "i" in d]


async def test_batch_after_redis_forgot_the_script_publishes_everything_once(
    pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    await pub.publish_many([Event("alpha", {"i": -1}), Event("beta", {"i": -1})])
    await aredis.script_flush()  # what a Redis restart does to the script cache
    await pub.publish_many([Event("alpha" if i % 2 else "beta", {"i": i}) for i in range(10)])
    alpha = [d["i"] for _, d, _, _ in await read_all(aredis, "alpha")]
    beta = [d["i"] for _, d, _, _ in await read_all(aredis, "beta")]
    assert alpha == [-1, 1, 3, 5, 7, 9]
    assert beta == [-1, 0, 2, 4, 6, 8]


async def test_min_replicas_acknowledges_only_what_replicas_hold(
    redis_url: str, redis_topology: str
) -> None:
    budget = 0.5 if redis_topology == "single" else 10.0  # replicas exist: wait for them
    s = settings(redis_url, publish_min_replicas=1, publish_retry_timeout=budget,
                 publish_replica_timeout=0.1)
    async with AsyncPublisher.from_url(redis_url, s) as pub:
        if redis_topology == "single":  # no replica: the write is not acknowledged
            with pytest.raises(NotReplicated, match=r"0 of 1 replicas"):
                await pub.publish("custom", {"n": 1}, idempotency_key="k1")
            # The retry the error asks for publishes nothing twice.
            with pytest.raises(NotReplicated):
                await pub.publish("custom", {"n": 1}, idempotency_key="k1")
            client = sync_client(redis_url)
            assert client.xlen(KEYS.stream("custom")) == 1
            client.close()
        else:
            offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(50)])
            assert len(set(offsets)) == 50


def test_sync_publisher_waits_for_replicas_too(redis_url: str, redis_topology: str) -> None:
    budget = 0.3 if redis_topology == "single" else 10.0
    s = settings(redis_url, publish_min_replicas=1, publish_retry_timeout=budget,
                 publish_replica_timeout=0.1)
    with Publisher.from_url(redis_url, s) as pub:
        if redis_topology == "single":
            with pytest.raises(NotReplicated):
                pub.publish("custom", {"n": 1})
        else:
            assert pub.publish("custom", {"n": 1})
