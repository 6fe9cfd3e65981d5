"""A Redis Cluster primary SIGKILLed under load: nothing acknowledged is lost, nothing is silent.

20 event types over the 3 primaries, 2 gateways, 3 official clients (two JSON, one msgpack,
each with both gateways' URLs), a steady publisher with ``PUBLISH_MIN_REPLICAS=1``. The primary
owning some of the types is killed mid-stream; a replica is promoted; publishing goes on. Each
client must then hold every acknowledged offset of every type, in order, once, or have been
told (a reset) for the part it lacks. ``/readyz`` fails while the primary is dead and not
replaced, and comes back after the promotion.
"""

from __future__ import annotations

import pytest

from shared.keys import Keys
from tests.support.redis_topology import RedisClusterServers
from tests.topology.helpers import run_failover_under_load

pytestmark = pytest.mark.integration

TYPES = [f"fo_{i:02d}" for i in range(20)]
RATE = 200.0  # events per second, all types together


async def test_cluster_primary_killed_under_load_loses_no_acknowledged_event(
    failover_cluster: RedisClusterServers,
) -> None:
    cluster = failover_cluster
    keys = Keys()
    owners = {t: cluster.primary_for_key(keys.stream(t)) for t in TYPES}
    assert {o.port for o in owners.values()} == {p.port for p in cluster.primaries()}
    assert len({o.port for o in owners.values()}) == 3  # every primary owns some of the types
    victim = owners[TYPES[0]]
    affected = [t for t in TYPES if owners[t] is victim]
    assert len(cluster.replicas_of(victim)) == 2

    report = await run_failover_under_load(
        cluster.url, TYPES, affected,
        kill=lambda: cluster.kill_primary(victim),
        wait_replaced=lambda: cluster.wait_promoted(victim, 30.0),
        rate=RATE, check_readyz=True,
    )
    print(report.summary(f"cluster ({len(affected)} of {len(TYPES)} types on the killed primary)"))
    for rec, resets in report.resets.items():
        for reset in resets:
            print(f"RESET {rec}: {reset}")

    assert report.problems == []
    assert report.publish_errors == []
    assert report.readyz_down is not None and report.readyz_down != 200
    assert report.readyz_down_before_replaced
    assert report.readyz_back_after is not None
    # Every affected type was delivered again after the promotion, to every client.
    assert all(v is not None for v in report.received_after.values()), report.received_after
