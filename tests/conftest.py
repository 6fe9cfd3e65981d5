"""Fixtures shared by every test: a real Redis per session, flushed before each test.

A test module marked ``pytestmark = pytest.mark.topologies`` runs each test that uses
``redis_url`` three times: on one ``redis-server``, on a 3-primary Redis Cluster (3 replicas) and
on a Sentinel-managed primary with 2 replicas and 3 sentinels, all real processes started once
per session on loopback ports (:mod:`tests.support.redis_topology`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis
import redis.asyncio

from shared.publisher import AsyncPublisher, PublishSettings
from tests.support.clients import async_client
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.redis_server import RedisServer
from tests.support.redis_topology import RedisClusterServers, RedisSentinelServers

TOPOLOGIES = ("single", "cluster", "sentinel")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "topologies: run on one server, Redis Cluster and Sentinel")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "redis_topology" in metafunc.fixturenames:
        marked = metafunc.definition.get_closest_marker("topologies") is not None
        # A test that needs the single server itself (a proxy in front of it, a restart) stays there.
        marked = marked and not {"redis_server", "private_redis"} & set(metafunc.fixturenames)
        metafunc.parametrize("redis_topology", TOPOLOGIES if marked else ("single",),
                             indirect=True, scope="session")


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers()
    cluster.start()
    yield cluster
    cluster.cleanup()


@pytest.fixture(scope="session")
def redis_sentinel() -> Iterator[RedisSentinelServers]:
    servers = RedisSentinelServers()
    servers.start()
    yield servers
    servers.cleanup()


@pytest.fixture(scope="session")
def redis_topology(request: pytest.FixtureRequest) -> str:
    """Which topology this test runs on (parametrized by ``pytest_generate_tests``; a test that
    asks for ``redis_url`` only at run time gets the single server)."""
    return str(getattr(request, "param", "single"))


@pytest.fixture
def redis_url(redis_topology: str, request: pytest.FixtureRequest) -> str:
    """The session's Redis of this test's topology, emptied for this test."""
    if redis_topology == "cluster":
        cluster: RedisClusterServers = request.getfixturevalue("redis_cluster")
        cluster.flushall()
        return cluster.url
    if redis_topology == "sentinel":
        sentinel: RedisSentinelServers = request.getfixturevalue("redis_sentinel")
        sentinel.flushall()
        return sentinel.url
    redis_server: RedisServer = request.getfixturevalue("redis_server")
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[Any]:
    """A plain redis-py client of the test's Redis (cluster-aware on a cluster)."""
    client = async_client(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own, for tests that stop or restart it."""
    server = RedisServer(appendonly=True, appendfsync="always")
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
async def pub(redis_url: str) -> AsyncIterator[AsyncPublisher]:
    """A publisher on the test's Redis."""
    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as publisher:
        yield publisher


@pytest.fixture
async def gw(redis_url: str) -> AsyncIterator[InProcessGateway]:
    """A gateway (uvicorn, in this process) on a free loopback port, on the test's Redis."""
    async with running_gateway(redis_url) as gateway:
        yield gateway
