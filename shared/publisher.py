"""Publish events into Redis Streams: :class:`AsyncPublisher` and its blocking twin :class:`Publisher`.

::

    async with AsyncPublisher.from_url("redis://127.0.0.1:6379/0") as pub:
        offset = await pub.publish("signal_generated", {...}, symbol="BTCUSDT")
        offsets = await pub.publish_many([Event(...), Event(...)])

Every event is validated before anything is written: an invalid event raises a
:class:`~shared.errors.ValidationError` and the whole batch is refused. A batch is sent as one
pipeline of script calls (one per event type and 1,000 events) per Redis node: on a Redis
Cluster the calls are grouped by the node owning each type's hash slot, and a ``MOVED`` reply
or a failover re-reads the slot map and retries.

With ``PUBLISH_MIN_REPLICAS`` = N > 0 each node's pipeline ends with ``WAIT N``: the offsets are
returned only once N replicas hold the events; otherwise the publish is retried within the
retry budget, then :class:`~shared.errors.NotReplicated` is raised.

When the connection to Redis fails, the call is retried with jittered backoff until
``retry_timeout`` has passed, then :class:`~shared.errors.RedisUnavailable` is raised. A retry
never publishes twice: each call carries this publisher's id and a sequence number, and the
script answers a repeated sequence number with the offsets it recorded the first time.

Fencing (the ingestor group): with ``publisher.fence = (group, token)`` every call carries the
lease token, and the script refuses it with :class:`~shared.errors.Fenced` (not retried) once a
newer token of the group has published the type or raised its fence
(:meth:`AsyncPublisher.raise_fence`). Publishers without a fence are never refused.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

from redis.exceptions import NoScriptError, ResponseError

from shared.backoff import delays
from shared.errors import Fenced, NotReplicated, RedisUnavailable
from shared.events import Event, EventPolicy
from shared.keys import Keys
from shared.publish_plan import (
    FENCE_SCRIPT,
    FENCED_PREFIX,
    PUBLISH_SCRIPT,
    Marker,
    Planner,
    PublishPlan,
    ScriptCall,
)
from shared.redisconn import RETRYABLE_ERRORS
from shared.retention import RetentionPolicy, parse_retention
from shared.settings import CommonSettings, Secret, parse_duration, setting
from shared.topology import SyncTopology, Topology

log = logging.getLogger("tickstream.shared.publisher")


def _private_types(text: str) -> frozenset[str]:
    return frozenset(part.strip() for part in text.split(",") if part.strip())


@dataclass(frozen=True, slots=True)
class PublishSettings(CommonSettings):
    """What a writer of events reads (the ingestor, the gateway's HTTP publish, the CLI)."""

    retention: RetentionPolicy = setting(
        RetentionPolicy(), env="RETENTION", parse=parse_retention,
        help="per-type retention, TYPE=COUNT/AGE comma list ('*' = other types)",
    )
    idempotency_window: float = setting(
        86400.0, env="IDEMPOTENCY_WINDOW", parse=parse_duration,
        help="how long an idempotency key is remembered",
    )
    private_types: frozenset[str] = setting(
        frozenset({"trade_executed", "portfolio_update", "risk_event"}), env="PRIVATE_TYPES",
        parse=_private_types, help="event types refused without a user",
    )
    max_event_bytes: int = setting(
        256 * 1024, env="MAX_EVENT_BYTES", help="largest encoded event data accepted",
    )
    publish_retry_timeout: float = setting(
        15.0, env="PUBLISH_RETRY_TIMEOUT", parse=parse_duration,
        help="how long a publish keeps retrying while Redis is unreachable",
    )
    publish_min_replicas: int = setting(
        0, env="PUBLISH_MIN_REPLICAS",
        help="acknowledge a publish only once this many replicas hold it (Redis WAIT)",
    )
    publish_replica_timeout: float = setting(
        1.0, env="PUBLISH_REPLICA_TIMEOUT", parse=parse_duration,
        help="how long one WAIT for PUBLISH_MIN_REPLICAS replicas may take",
    )

    def __post_init__(self) -> None:
        CommonSettings.__post_init__(self)
        if not 0 <= self.publish_min_replicas <= 16:
            raise ValueError("PUBLISH_MIN_REPLICAS: expected 0 to 16")
        if not 0 < self.publish_replica_timeout <= 60:
            raise ValueError("PUBLISH_REPLICA_TIMEOUT: expected more than 0 s and at most 60 s")

    def planner(self) -> Planner:
        return Planner(
            keys=Keys(self.key_prefix),
            retention=self.retention,
            policy=EventPolicy(self.private_types, self.max_event_bytes),
            idempotency_window_ms=int(self.idempotency_window * 1000),
        )


class _Attempt:
    """One try of a plan: the node pipelines' replies, checked (shared by both publishers)."""

    def __init__(self, settings: PublishSettings, script_sha: str) -> None:
        self.settings = settings
        self.sha = script_sha
        self.min_replicas = settings.publish_min_replicas
        self.wait_ms = max(1, int(settings.publish_replica_timeout * 1000))

    def fill(self, pipe: Any, calls: list[ScriptCall]) -> None:
        for call in calls:
            pipe.evalsha(self.sha, len(call.keys), *call.keys, *call.args)
        if self.min_replicas:
            pipe.execute_command("WAIT", self.min_replicas, self.wait_ms)

    def check(self, replies: list[Any], node: str) -> list[Any] | None:
        """The script replies, or None when the script must be loaded; errors are raised."""
        if self.min_replicas:
            replies, acked = replies[:-1], replies[-1]
        missing = False
        for reply in replies:
            if isinstance(reply, NoScriptError):
                missing = True
            elif isinstance(reply, ResponseError) and str(reply).startswith(FENCED_PREFIX):
                raise Fenced.from_reply(str(reply), node)
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(reply, NoScriptError):
                raise reply
        if missing:
            return None
        if self.min_replicas:
            if isinstance(acked, Exception):
                raise acked
            if int(acked) < self.min_replicas:
                raise _Unreplicated(f"{int(acked)} of {self.min_replicas} replicas of {node} "
                                    f"confirmed within {self.wait_ms} ms")
        return replies


class _Unreplicated(Exception):
    """WAIT answered fewer replicas than asked for (retried, then :class:`NotReplicated`)."""


class _Retry:
    """The retry budget of one publish: jittered waits until ``publish_retry_timeout``."""

    def __init__(self, settings: PublishSettings, where: str) -> None:
        self.deadline = time.monotonic() + settings.publish_retry_timeout
        self.waits = delays(0.05, 2.0)
        self.settings = settings
        self.where = where

    def next_wait(self, exc: BaseException) -> float:
        wait = next(self.waits)
        if time.monotonic() + wait > self.deadline:
            budget = f"{self.settings.publish_retry_timeout:g} s"
            if isinstance(exc, _Unreplicated):
                raise NotReplicated(f"publish to {self.where} not replicated within {budget}: "
                                    f"{exc}; retry with the same idempotency keys") from None
            raise RedisUnavailable(f"Redis at {self.where} unreachable for {budget}: {exc}") from exc
        log.warning("publish: %s (%s); retrying in %.2f s",
                    "not replicated yet" if isinstance(exc, _Unreplicated) else "Redis failed",
                    exc, wait)
        return wait


def _events(
    event_type: str, data: Mapping[str, Any], symbol: str | None, user: str | None,
    idempotency_key: str | None,
) -> list[Event]:
    return [Event(event_type, data, symbol, user, idempotency_key)]


_RETRY: tuple[type[BaseException], ...] = (*RETRYABLE_ERRORS, _Unreplicated)
SCRIPT_SHA = hashlib.sha1(PUBLISH_SCRIPT.encode()).hexdigest()


class AsyncPublisher:
    """Publishes with redis.asyncio on any topology; safe to share between tasks of one loop."""

    def __init__(self, topology: Topology, settings: PublishSettings | None = None) -> None:
        self.settings = settings or PublishSettings(redis_url=Secret(topology.url))
        self.topology = topology
        self._planner = self.settings.planner()
        self._keys = Keys(self.settings.key_prefix)
        self._attempt = _Attempt(self.settings, SCRIPT_SHA)
        self._registered: set[str] = set()

    @classmethod
    def from_url(cls, url: str, settings: PublishSettings | None = None) -> AsyncPublisher:
        return cls(Topology(url, name="tickstream-publisher"), settings)

    @classmethod
    def from_settings(cls, settings: PublishSettings) -> AsyncPublisher:
        return cls.from_url(settings.redis_url, settings)

    @property
    def fence(self) -> tuple[str, int] | None:
        """``(group, lease token)`` carried by every publish from now on; None: not fenced."""
        return self._planner.fence

    @fence.setter
    def fence(self, value: tuple[str, int] | None) -> None:
        self._planner.fence = value

    @property
    def marker(self) -> Marker | None:
        """Maps an event to ``(sequence, id)`` for the type's ``last`` hash (see publish_plan)."""
        return self._planner.marker

    @marker.setter
    def marker(self, value: Marker | None) -> None:
        self._planner.marker = value

    async def raise_fence(self, event_types: Iterable[str]) -> dict[str, int]:
        """Store this publisher's token as the fence of each type, without publishing.

        Returns the token each type held before. Raises :class:`~shared.errors.Fenced` when a
        type already holds a newer token, and the Redis error when a node cannot be reached
        (one attempt per type: the caller decides when to try again).
        """
        if self.fence is None:
            raise ValueError("raise_fence needs a fence: set publisher.fence = (group, token)")
        group, token = self.fence
        before: dict[str, int] = {}
        for event_type in event_types:
            key = self._keys.fence(event_type)
            try:
                client = await self.topology.client_for(key)
                reply = await client.eval(FENCE_SCRIPT, 1, key, group, token)
            except ResponseError as exc:
                if str(exc).startswith(FENCED_PREFIX):
                    raise Fenced.from_reply(str(exc), event_type) from None
                raise
            except RETRYABLE_ERRORS:
                await self._refresh()
                raise
            before[event_type] = int(reply)
        return before

    async def publish(
        self, event_type: str, data: Mapping[str, Any], symbol: str | None = None,
        user: str | None = None, idempotency_key: str | None = None,
    ) -> str:
        """Publish one event; return its offset."""
        return (await self.publish_many(_events(event_type, data, symbol, user, idempotency_key)))[0]

    async def publish_many(self, events: Iterable[Event]) -> list[str]:
        """Publish a batch; offsets come back in the order of ``events``."""
        plan = self._planner.plan(events)
        if not plan.calls:
            return []
        try:
            return plan.offsets(await self._run(plan))
        finally:
            self._planner.done(plan)

    async def _run(self, plan: PublishPlan) -> list[Any]:
        retry = _Retry(self.settings, self.topology.describe())
        while True:
            try:
                await self._register(plan.types() - self._registered)
                nodes = {call.keys[0]: await self.topology.node_of(call.keys[0]) for call in plan.calls}
                groups = plan.by_node(nodes.__getitem__)
                parts = await asyncio.gather(
                    *(self._run_node(plan, indexes) for indexes in groups.values()),
                    return_exceptions=True)
                for part in parts:
                    if isinstance(part, BaseException):
                        raise part
                replies: list[Any] = [None] * len(plan.calls)
                for indexes, part in zip(groups.values(), parts, strict=True):
                    for index, reply in zip(indexes, part, strict=True):  # type: ignore[arg-type]
                        replies[index] = reply
                await self._register(plan.created(replies))
                return replies
            except _RETRY as exc:
                wait = retry.next_wait(exc)
                await asyncio.sleep(wait)
                await self._refresh()

    async def _run_node(self, plan: PublishPlan, indexes: list[int]) -> list[Any]:
        calls = [plan.calls[i] for i in indexes]
        client = await self.topology.client_for(calls[0].keys[0])
        while True:
            async with client.pipeline(transaction=False) as pipe:
                self._attempt.fill(pipe, calls)
                raw = list(await pipe.execute(raise_on_error=False))
            replies = self._attempt.check(raw, calls[0].event_type)
            if replies is not None:
                return replies
            # The node lost its script cache (a restart, a failover): load it and run again.
            # Calls that did run are answered from their records, so nothing is doubled.
            await client.script_load(PUBLISH_SCRIPT)

    async def _register(self, event_types: set[str]) -> None:
        if event_types:
            types_key = self._keys.types()
            await (await self.topology.client_for(types_key)).sadd(types_key, *sorted(event_types))
            self._registered |= event_types

    async def _refresh(self) -> None:
        try:
            await self.topology.refresh()
        except RETRYABLE_ERRORS as exc:
            log.warning("publish: could not re-read the Redis topology yet: %s", exc)

    async def aclose(self) -> None:
        await self.topology.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Publisher:
    """The blocking publisher, for scripts and synchronous services (thread-safe)."""

    def __init__(self, topology: SyncTopology, settings: PublishSettings | None = None) -> None:
        self.settings = settings or PublishSettings(redis_url=Secret(topology.url))
        self.topology = topology
        self._planner = self.settings.planner()
        self._keys = Keys(self.settings.key_prefix)
        self._attempt = _Attempt(self.settings, SCRIPT_SHA)
        self._registered: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_url(cls, url: str, settings: PublishSettings | None = None) -> Publisher:
        return cls(SyncTopology(url, name="tickstream-publisher"), settings)

    @property
    def fence(self) -> tuple[str, int] | None:
        """``(group, lease token)`` carried by every publish (see :class:`AsyncPublisher`)."""
        return self._planner.fence

    @fence.setter
    def fence(self, value: tuple[str, int] | None) -> None:
        with self._lock:
            self._planner.fence = value

    def publish(
        self, event_type: str, data: Mapping[str, Any], symbol: str | None = None,
        user: str | None = None, idempotency_key: str | None = None,
    ) -> str:
        return self.publish_many(_events(event_type, data, symbol, user, idempotency_key))[0]

    def publish_many(self, events: Iterable[Event]) -> list[str]:
        with self._lock:  # the planner's sequence and the topology are not thread-safe
            plan = self._planner.plan(events)
            if not plan.calls:
                return []
            try:
                return plan.offsets(self._run(plan))
            finally:
                self._planner.done(plan)

    def _run(self, plan: PublishPlan) -> list[Any]:
        retry = _Retry(self.settings, self.topology.describe())
        while True:
            try:
                self._register(plan.types() - self._registered)
                replies: list[Any] = [None] * len(plan.calls)
                for indexes in plan.by_node(self.topology.node_of).values():
                    for index, reply in zip(indexes, self._run_node(plan, indexes), strict=True):
                        replies[index] = reply
                self._register(plan.created(replies))
                return replies
            except _RETRY as exc:
                time.sleep(retry.next_wait(exc))
                try:
                    self.topology.refresh()
                except RETRYABLE_ERRORS as refresh_exc:
                    log.warning("publish: could not re-read the Redis topology yet: %s", refresh_exc)

    def _run_node(self, plan: PublishPlan, indexes: list[int]) -> list[Any]:
        calls = [plan.calls[i] for i in indexes]
        client = self.topology.client_for(calls[0].keys[0])
        while True:
            with client.pipeline(transaction=False) as pipe:
                self._attempt.fill(pipe, calls)
                raw = list(pipe.execute(raise_on_error=False))
            replies = self._attempt.check(raw, calls[0].event_type)
            if replies is not None:
                return replies
            client.script_load(PUBLISH_SCRIPT)  # lost script cache: see AsyncPublisher

    def _register(self, event_types: set[str]) -> None:
        if event_types:
            types_key = self._keys.types()
            self.topology.client_for(types_key).sadd(types_key, *sorted(event_types))
            self._registered |= event_types

    def close(self) -> None:
        self.topology.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
