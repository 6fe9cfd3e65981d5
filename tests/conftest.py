"""Fixtures shared by every test: a real Redis per session, flushed before each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
import redis.asyncio

from shared.publisher import AsyncPublisher, PublishSettings
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
async def aredis(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(redis_url)
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
