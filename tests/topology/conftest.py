"""Topologies of this directory's own, which its tests break on purpose (SIGKILL, lagged replicas).

They are not the session's ``redis_cluster`` / ``redis_sentinel`` (other tests expect those
healthy). Each is started once for the directory and healed and emptied before every test.

The cluster has two replicas per primary: after a failover the promoted replica still has one
replica (the other follows it), so ``PUBLISH_MIN_REPLICAS=1`` keeps working without restarting
the killed node, as in a real deployment.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.redis_topology import RedisClusterServers, RedisSentinelServers


@pytest.fixture(scope="package")
def failover_cluster_servers() -> Iterator[RedisClusterServers]:
    with RedisClusterServers(primaries=3, replicas_per_primary=2) as servers:
        yield servers


@pytest.fixture
def failover_cluster(failover_cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """The directory's cluster, healed (original primaries back) and emptied for this test."""
    failover_cluster_servers.flushall()
    return failover_cluster_servers


@pytest.fixture(scope="package")
def failover_sentinel_servers() -> Iterator[RedisSentinelServers]:
    with RedisSentinelServers(replicas=2, sentinels=3) as servers:
        yield servers


@pytest.fixture
def failover_sentinel(failover_sentinel_servers: RedisSentinelServers) -> RedisSentinelServers:
    """The directory's Sentinel setup, healed and emptied for this test."""
    failover_sentinel_servers.flushall()
    return failover_sentinel_servers
