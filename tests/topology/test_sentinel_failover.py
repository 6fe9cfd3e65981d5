"""A Sentinel-managed primary SIGKILLed under load: nothing acknowledged is lost, nothing is silent.

One primary, 2 replicas, 3 Sentinels; 5 event types, 2 gateways, 3 official clients, a steady
publisher with ``PUBLISH_MIN_REPLICAS=1``. The primary is killed mid-stream, the Sentinels fail
over, publishing goes on; each client must hold every acknowledged offset of every type, in
order, once, or have been told (a reset) for the part it lacks.
"""

from __future__ import annotations

import pytest

from tests.support.redis_topology import RedisSentinelServers
from tests.topology.helpers import run_failover_under_load

pytestmark = pytest.mark.integration

TYPES = [f"sf_{i}" for i in range(5)]
RATE = 100.0  # events per second, all types together


async def test_sentinel_primary_killed_under_load_loses_no_acknowledged_event(
    failover_sentinel: RedisSentinelServers,
) -> None:
    sentinel = failover_sentinel
    old = sentinel.primary()
    assert len(sentinel.replicas()) == 2

    report = await run_failover_under_load(
        sentinel.url, TYPES, TYPES,
        kill=sentinel.kill_primary,
        wait_replaced=lambda: sentinel.wait_failover(old, 30.0),
        rate=RATE, check_readyz=True,
    )
    print(report.summary("sentinel"))
    for rec, resets in report.resets.items():
        for reset in resets:
            print(f"RESET {rec}: {reset}")

    assert report.problems == []
    assert report.publish_errors == []
    assert report.readyz_down is not None and report.readyz_down != 200
    assert report.readyz_down_before_replaced
    assert report.readyz_back_after is not None
    assert all(v is not None for v in report.received_after.values()), report.received_after
