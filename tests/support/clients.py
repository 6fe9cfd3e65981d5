"""redis-py clients of any REDIS_URL topology, for tests that inspect Redis directly."""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel

from shared.redisconn import parse_redis_url


def sync_client(url: str) -> Any:
    """A blocking client: ``redis.Redis``, ``RedisCluster`` or the Sentinel primary's."""
    target = parse_redis_url(url)
    if target.kind == "cluster":
        host, port = target.nodes[0]
        return redis.RedisCluster(host=host, port=port)
    if target.kind == "sentinel":
        return redis.sentinel.Sentinel(list(target.nodes)).master_for(target.master_name)
    return redis.Redis.from_url(url)


def async_client(url: str) -> Any:
    target = parse_redis_url(url)
    if target.kind == "cluster":
        host, port = target.nodes[0]
        return redis.asyncio.RedisCluster(host=host, port=port)
    if target.kind == "sentinel":
        return redis.asyncio.sentinel.Sentinel(list(target.nodes)).master_for(target.master_name)
    return redis.asyncio.Redis.from_url(url)
