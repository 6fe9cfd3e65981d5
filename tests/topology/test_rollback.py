"""A forced rollback (a failover to replicas that lack acknowledged writes) is detected, never silent.

The replicas of the primary owning a type are cut off (``lag_replica``); events published with
``PUBLISH_MIN_REPLICAS=0`` are acknowledged and delivered, but exist only on the primary; the
primary is SIGKILLed and a lagging replica promoted. The gateway must find that the stream went
back: its subscribers are closed with 4009, ``tickstream_reader_rollbacks`` counts it, and a
resume from the last offset received (with its epoch) is answered ``recovered: false``.
Publishing (with ``PUBLISH_MIN_REPLICAS=1`` too) works on the new primary afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from shared.keys import Keys
from shared.offsets import parse_offset
from shared.publisher import AsyncPublisher, PublishSettings
from shared.settings import Secret
from tests.support.gateway import Client, closed_with, running_gateway
from tests.support.redis_topology import RedisClusterServers, RedisSentinelServers
from tests.topology.helpers import metric_value

pytestmark = pytest.mark.integration

KEPT = 5  # published with PUBLISH_MIN_REPLICAS=1 before the replicas are cut off
LOST = 20  # published with PUBLISH_MIN_REPLICAS=0 after: only the doomed primary has them


async def _forced_rollback_is_detected(
    url: str, event_type: str, cut_off: Callable[[], None], fail_over: Callable[[], None],
) -> None:
    """``cut_off`` lags the replicas; ``fail_over`` kills the primary, resumes them, waits."""
    safe = PublishSettings(redis_url=Secret(url), publish_min_replicas=1, publish_retry_timeout=30.0)
    unsafe = PublishSettings(redis_url=Secret(url), publish_min_replicas=0, publish_retry_timeout=30.0)
    async with AsyncPublisher.from_url(url, safe) as safe_pub, \
            AsyncPublisher.from_url(url, unsafe) as unsafe_pub, running_gateway(url) as gw:
        client = await Client.open(gw.url)
        epoch = (await client.subscribe(event_type))["epoch"]
        kept = [await safe_pub.publish(event_type, {"n": n}) for n in range(KEPT)]
        await client.events_until(KEPT)

        await asyncio.to_thread(cut_off)
        lost = [await unsafe_pub.publish(event_type, {"n": n}) for n in range(KEPT, KEPT + LOST)]
        received = await client.events_until(KEPT + LOST)
        assert [e["offset"] for e in received] == kept + lost
        last = received[-1]["offset"]
        assert await metric_value(gw.http, "tickstream_reader_rollbacks_total",
                                  event_type=event_type) == 0

        started = time.monotonic()
        await asyncio.to_thread(fail_over)
        promoted = time.monotonic() - started
        assert await closed_with(client.ws, timeout=30) == 4009
        told = time.monotonic() - started
        print(f"ROLLBACK {url.split(':')[0]}: promoted after {promoted:.2f} s (from the SIGKILL), "
              f"subscriber closed with 4009 after {told:.2f} s")
        assert await metric_value(gw.http, "tickstream_reader_rollbacks_total",
                                  event_type=event_type) > 0

        resumed = await Client.open(gw.url)
        reply = await resumed.subscribe(event_type, since=last, epoch=epoch)
        assert reply["recovered"] is False, reply
        assert reply["epoch"] != epoch
        assert parse_offset(reply["offset"]) < parse_offset(lost[0])  # the stream ends before them

        # Publishing goes on, on the new primary, and reaches the resumed subscription live.
        after = [await unsafe_pub.publish(event_type, {"n": -1}),
                 await safe_pub.publish(event_type, {"n": -2})]
        events = await resumed.events_until(2, timeout=15)
        assert [e["offset"] for e in events] == after
        await resumed.close()


async def test_cluster_forced_rollback_is_detected(failover_cluster: RedisClusterServers) -> None:
    cluster = failover_cluster
    event_type = "rb_cluster"
    primary = cluster.primary_for_key(Keys().stream(event_type))
    replicas = cluster.replicas_of(primary)
    assert len(replicas) == 2

    def cut_off() -> None:
        for replica in replicas:
            cluster.lag_replica(replica)

    def fail_over() -> None:
        cluster.kill_primary(primary)
        for replica in replicas:
            cluster.resume(replica)
        assert cluster.wait_promoted(primary, 30.0) in replicas

    await _forced_rollback_is_detected(cluster.url, event_type, cut_off, fail_over)


async def test_sentinel_forced_rollback_is_detected(failover_sentinel: RedisSentinelServers) -> None:
    sentinel = failover_sentinel
    event_type = "rb_sentinel"
    replicas = sentinel.replicas()
    assert len(replicas) == 2

    def cut_off() -> None:
        for replica in replicas:  # Sentinel promotes the most up-to-date replica: lag them all
            sentinel.lag_replica(replica)

    def fail_over() -> None:
        old = sentinel.kill_primary()
        for replica in replicas:
            sentinel.resume(replica)
        assert sentinel.wait_failover(old, 30.0) in replicas

    await _forced_rollback_is_detected(sentinel.url, event_type, cut_off, fail_over)
