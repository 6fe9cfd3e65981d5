"""Which Redis node holds a key: one server, a Sentinel-managed primary, or a Redis Cluster.

:class:`Topology` (asyncio) and :class:`SyncTopology` (blocking) give every Tickstream part the
same three answers, whatever ``REDIS_URL`` names:

* :meth:`~Topology.client_for` — a client of the primary that owns a key (on a cluster, the
  node owning the key's hash slot; all keys of one event type share a slot, see
  :mod:`shared.keys`);
* :meth:`~Topology.primaries` — every primary with its client, to run one blocking ``XREAD``
  per primary or to pipeline commands node by node;
* :meth:`~Topology.refresh` — re-read the cluster's slot map after ``MOVED``/``ASK``, a lost
  connection or a failover. A Sentinel client finds the new primary by itself on reconnect.

Why not redis-py's ``RedisCluster``: a publish must run its script and ``WAIT`` on the same
connection (``WAIT`` counts the replicas that have *this connection's* writes), and the gateway
reads with one long-blocking ``XREAD`` per primary; both need plain per-node clients, which
this module keeps, one per node, created on first use. The slot map itself comes from
``CLUSTER SLOTS`` (:class:`SlotMap`, pure).
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import redis.asyncio.retry
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from shared.errors import RedisUnavailable
from shared.redisconn import (
    PROBE_ERRORS,
    RedisTarget,
    client_options,
    describe,
    parse_redis_url,
)

SINGLE_NODE = "primary"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True, slots=True)
class SlotRange:
    start: int
    end: int
    primary: str  # "host:port"
    replicas: tuple[str, ...]


class SlotMap:
    """The cluster's slot ranges, from a ``CLUSTER SLOTS`` reply (pure: bytes in, names out)."""

    def __init__(self, ranges: Sequence[SlotRange]) -> None:
        self.ranges = sorted(ranges, key=lambda r: r.start)
        self._starts = [r.start for r in self.ranges]

    @classmethod
    def parse(cls, reply: Sequence[Any], seed_host: str) -> SlotMap:
        """``seed_host`` stands in for a node that announces an empty host."""
        ranges = []
        for item in reply:
            start, end, primary, *replicas = item

            def name(node: Sequence[Any]) -> str:
                host = _text(node[0]) or seed_host
                return f"{host}:{int(node[1])}"

            ranges.append(SlotRange(int(start), int(end), name(primary),
                                    tuple(name(r) for r in replicas)))
        return cls(ranges)

    def covers_all(self) -> bool:
        expected = 0
        for r in self.ranges:
            if r.start != expected:
                return False
            expected = r.end + 1
        return expected == 16384

    def primary_for_slot(self, slot: int) -> str:
        index = bisect.bisect_right(self._starts, slot) - 1
        if index < 0 or not self.ranges[index].start <= slot <= self.ranges[index].end:
            raise RedisUnavailable(f"no Redis Cluster node serves hash slot {slot}")
        return self.ranges[index].primary

    def primary_for(self, key: str | bytes) -> str:
        return self.primary_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def primaries(self) -> list[str]:
        return sorted({r.primary for r in self.ranges})

    def nodes(self) -> list[str]:
        return sorted({r.primary for r in self.ranges} | {n for r in self.ranges for n in r.replicas})


def _split(name: str) -> tuple[str, int]:
    host, _, port = name.rpartition(":")
    return host, int(port)


class _Base:
    """What both twins share: the target, the options and the node names."""

    def __init__(self, url: str, name: str, socket_timeout: float | None, extra: dict[str, Any]) -> None:
        self.target: RedisTarget = parse_redis_url(url)
        self.url = str(url)
        self.kind = self.target.kind
        self.options = client_options(name, socket_timeout, extra)
        self.slots: SlotMap | None = None
        self.generation = 0  # bumped whenever the slot map changes

    def describe(self) -> str:
        return describe(self.url)

    def _node_options(self) -> dict[str, Any]:
        t = self.target
        options = dict(self.options)
        options.update(username=t.username, password=t.password, ssl=t.tls)
        return options

    def _seeds(self) -> list[str]:
        known = self.slots.nodes() if self.slots else []
        seeds = [f"{h}:{p}" for h, p in self.target.nodes]
        return known + [s for s in seeds if s not in known]

    def _adopted(self, name: str, reply: Any, errors: list[str]) -> bool:
        """Take the slot map ``name`` answered, if it covers every slot."""
        slots = SlotMap.parse(reply, _split(name)[0])
        if not slots.covers_all():
            errors.append(f"{name}: slots not fully covered")
            return False
        if self.slots is None or slots.ranges != self.slots.ranges:
            self.generation += 1
        self.slots = slots
        return True


def _no_map(errors: list[str]) -> redis.ConnectionError:
    return redis.ConnectionError("no Redis Cluster node answered CLUSTER SLOTS: " + "; ".join(errors))


class Topology(_Base):
    """The asyncio view of ``REDIS_URL`` (see the module docstring)."""

    def __init__(self, url: str, *, name: str = "tickstream", socket_timeout: float | None = 10.0,
                 **extra: Any) -> None:
        super().__init__(url, name, socket_timeout, extra)
        self._clients: dict[str, redis.asyncio.Redis] = {}
        self._main: redis.asyncio.Redis | None = None
        self._refreshing: asyncio.Lock | None = None
        retry = redis.asyncio.retry.Retry(NoBackoff(), 0)
        if self.kind == "single":
            self._main = redis.asyncio.Redis.from_url(self.url, **self.options, retry=retry)
        elif self.kind == "sentinel":
            t = self.target
            sentinel = redis.asyncio.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(t.nodes),
                sentinel_kwargs={"password": t.sentinel_password, "socket_timeout": 2.0,
                                 "socket_connect_timeout": 2.0},
                **self._node_options(), db=t.db, retry=retry,
            )
            self._main = sentinel.master_for(t.master_name)

    async def refresh(self) -> None:
        """Re-read the slot map (cluster); nothing to do for the other kinds.

        Callers that ask while a refresh runs share it."""
        if self.kind != "cluster":
            return
        if self._refreshing is None:
            self._refreshing = asyncio.Lock()
        if self._refreshing.locked():
            async with self._refreshing:
                return  # the refresh we waited for is as new as ours would be
        async with self._refreshing:
            await self._refresh()

    async def _refresh(self) -> None:
        errors: list[str] = []
        for name in self._seeds():
            try:
                reply = await self._node(name).execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER", "SLOTS")
            except PROBE_ERRORS as exc:
                errors.append(f"{name}: {exc}")
                continue
            if self._adopted(name, reply, errors):
                await self._forget_gone()
                return
        raise _no_map(errors)

    async def _ready(self) -> SlotMap:
        if self.slots is None:
            await self.refresh()
        assert self.slots is not None
        return self.slots

    def _node(self, name: str) -> redis.asyncio.Redis:
        client = self._clients.get(name)
        if client is None:
            host, port = _split(name)
            client = redis.asyncio.Redis(host=host, port=port, **self._node_options(),
                                         retry=redis.asyncio.retry.Retry(NoBackoff(), 0))
            self._clients[name] = client
        return client

    async def _forget_gone(self) -> None:
        keep = set(self.slots.nodes()) if self.slots else set()
        for name in [n for n in self._clients if n not in keep]:
            await self._clients.pop(name).aclose()

    async def client_for(self, key: str) -> redis.asyncio.Redis:
        """A client of the primary that owns ``key``."""
        if self._main is not None:
            return self._main
        return self._node((await self._ready()).primary_for(key))

    async def node_of(self, key: str) -> str:
        if self._main is not None:
            return SINGLE_NODE
        return (await self._ready()).primary_for(key)

    async def primaries(self) -> dict[str, redis.asyncio.Redis]:
        """Every primary by name (one entry for a single server or Sentinel)."""
        if self._main is not None:
            return {SINGLE_NODE: self._main}
        return {name: self._node(name) for name in (await self._ready()).primaries()}

    async def any(self) -> redis.asyncio.Redis:
        """Some primary, for commands that read or write no event type (PING, health keys)."""
        return next(iter((await self.primaries()).values()))

    async def aclose(self) -> None:
        if self._main is not None:
            await self._main.aclose()
        for client in self._clients.values():
            await client.aclose()
        self._clients.clear()


class SyncTopology(_Base):
    """The blocking twin of :class:`Topology`, for :class:`shared.publisher.Publisher`."""

    def __init__(self, url: str, *, name: str = "tickstream", socket_timeout: float | None = 10.0,
                 **extra: Any) -> None:
        super().__init__(url, name, socket_timeout, extra)
        self._clients: dict[str, redis.Redis] = {}
        self._main: redis.Redis | None = None
        if self.kind == "single":
            self._main = redis.Redis.from_url(self.url, **self.options, retry=Retry(NoBackoff(), 0))
        elif self.kind == "sentinel":
            t = self.target
            sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
                list(t.nodes),
                sentinel_kwargs={"password": t.sentinel_password, "socket_timeout": 2.0,
                                 "socket_connect_timeout": 2.0},
                **self._node_options(), db=t.db, retry=Retry(NoBackoff(), 0),
            )
            self._main = sentinel.master_for(t.master_name)  # type: ignore[no-untyped-call]

    def refresh(self) -> None:
        if self.kind != "cluster":
            return
        errors: list[str] = []
        for name in self._seeds():
            try:
                reply = self._node(name).execute_command(  # type: ignore[no-untyped-call]
                    "CLUSTER", "SLOTS")
            except PROBE_ERRORS as exc:
                errors.append(f"{name}: {exc}")
                continue
            if self._adopted(name, reply, errors):
                return
        raise _no_map(errors)

    def _node(self, name: str) -> redis.Redis:
        client = self._clients.get(name)
        if client is None:
            host, port = _split(name)
            client = redis.Redis(host=host, port=port, **self._node_options(),
                                 retry=Retry(NoBackoff(), 0))
            self._clients[name] = client
        return client

    def client_for(self, key: str) -> redis.Redis:
        if self._main is not None:
            return self._main
        if self.slots is None:
            self.refresh()
        assert self.slots is not None
        return self._node(self.slots.primary_for(key))

    def node_of(self, key: str) -> str:
        if self._main is not None:
            return SINGLE_NODE
        if self.slots is None:
            self.refresh()
        assert self.slots is not None
        return self.slots.primary_for(key)

    def close(self) -> None:
        if self._main is not None:
            self._main.close()
        for client in self._clients.values():
            client.close()
        self._clients.clear()
