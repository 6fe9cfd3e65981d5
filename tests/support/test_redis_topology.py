"""The Redis Cluster and Redis Sentinel launchers themselves: real processes, real failovers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from tests.support.redis_server import RedisServer
from tests.support.redis_topology import HOST, SLOTS, RedisClusterServers, RedisSentinelServers

pytestmark = pytest.mark.integration

FAILOVER_TIMEOUT = 20.0


def _client(server: RedisServer) -> redis.Redis:
    return redis.Redis(host=HOST, port=server.port, decode_responses=True, socket_timeout=2.0)


def _role(server: RedisServer) -> str:
    with _client(server) as client:
        return str(client.execute_command("ROLE")[0])


@pytest.fixture(scope="module")
def cluster_servers() -> Iterator[RedisClusterServers]:
    with RedisClusterServers() as servers:
        yield servers


@pytest.fixture
def cluster(cluster_servers: RedisClusterServers) -> RedisClusterServers:
    """The module's cluster, healed and emptied for this test."""
    cluster_servers.flushall()
    return cluster_servers


@pytest.fixture(scope="module")
def sentinel_servers() -> Iterator[RedisSentinelServers]:
    with RedisSentinelServers() as servers:
        yield servers


@pytest.fixture
def sentinel(sentinel_servers: RedisSentinelServers) -> RedisSentinelServers:
    sentinel_servers.flushall()
    return sentinel_servers


def test_cluster_covers_every_slot_and_serves_keys(cluster: RedisClusterServers) -> None:
    primaries, replicas = cluster.primaries(), cluster.replicas()
    assert len(primaries) == 3
    assert len(replicas) == 3
    assert cluster.url == "redis+cluster://" + ",".join(f"127.0.0.1:{s.port}" for s in primaries)
    assert {cluster.primary_for_slot(slot).port for slot in (0, SLOTS // 2, SLOTS - 1)} == {
        s.port for s in primaries}
    for primary in primaries:
        assert [_role(replica) for replica in cluster.replicas_of(primary)] == ["slave"]

    client = redis.RedisCluster(host=HOST, port=primaries[0].port, decode_responses=True)
    try:
        for key in ("a", "b", "{stream}:BTCUSDT", "c"):
            client.set(key, key.upper())
            assert client.get(key) == key.upper()
            with _client(cluster.primary_for_key(key)) as owner:
                assert owner.get(key) == key.upper()  # the node that owns the slot, no redirection
    finally:
        client.close()


def test_cluster_promotes_a_replica_of_a_killed_primary_and_the_old_one_rejoins(
    cluster: RedisClusterServers,
) -> None:
    old = cluster.primary_for_key("k")
    (replica,) = cluster.replicas_of(old)
    with _client(old) as client:
        client.set("k", "kept")
        assert client.wait(1, 2000) == 1
    cluster.kill_primary(old)
    started = time.monotonic()
    new = cluster.wait_promoted(old, FAILOVER_TIMEOUT)
    assert time.monotonic() - started < FAILOVER_TIMEOUT
    assert new is replica
    assert cluster.primary_for_key("k") is new
    assert old not in cluster.primaries() + cluster.replicas()
    with _client(new) as client:
        assert client.get("k") == "kept"

    cluster.restart(old)
    assert cluster.replicas_of(new) == [old]
    assert _role(old) == "slave"


def test_cluster_forced_rollback_promotes_a_lagging_replica(cluster: RedisClusterServers) -> None:
    old = cluster.primary_for_key("k")
    (replica,) = cluster.replicas_of(old)
    with _client(old) as client:
        client.set("k", "replicated")
        assert client.wait(1, 2000) == 1
        cluster.lag_replica(replica)
        client.set("k", "lost")
    cluster.kill_primary(old)
    cluster.resume(replica)
    assert cluster.wait_promoted(old, FAILOVER_TIMEOUT) is replica
    with _client(replica) as client:
        assert client.get("k") == "replicated"


def test_cluster_flushall_heals_and_empties(cluster: RedisClusterServers) -> None:
    original = cluster.primaries()
    with _client(cluster.primary_for_key("x")) as client:
        client.set("x", "1")
    victim = cluster.primary_for_key("x")
    cluster.kill_primary(victim)
    cluster.pause(cluster.replicas()[0])

    cluster.flushall()

    assert all(server.running and not server.paused for server in cluster.nodes)
    assert cluster.primaries() == original  # the original primaries have their role back
    assert cluster.health_problem() is None
    for server in cluster.nodes:
        with _client(server) as client:
            assert client.dbsize() == 0


def test_sentinel_reports_the_primary_and_its_replicas(sentinel: RedisSentinelServers) -> None:
    seeds = ",".join(f"127.0.0.1:{s.port}" for s in sentinel.sentinels)
    assert sentinel.url == f"redis+sentinel://{seeds}?sentinel_master_name=tickstream"
    primary = sentinel.primary()
    assert _role(primary) == "master"
    replicas = sentinel.replicas()
    assert len(replicas) == 2
    with _client(primary) as client:
        client.set("k", "v")
        assert client.wait(2, 2000) == 2
    for replica in replicas:
        assert _role(replica) == "slave"
        with _client(replica) as client:
            assert client.get("k") == "v"


def test_sentinel_fails_over_to_a_replica_that_every_sentinel_reports(
    sentinel: RedisSentinelServers,
) -> None:
    old = sentinel.kill_primary()
    new = sentinel.wait_failover(old, FAILOVER_TIMEOUT)
    assert new is not old
    assert _role(new) == "master"
    for server in sentinel.sentinels:
        with _client(server) as client:
            assert client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "tickstream") == [
                HOST, str(new.port)]

    sentinel.restart(old, follow_current=True)
    assert _role(old) == "slave"
    assert old in sentinel.replicas()
    assert sentinel.primary() is new
