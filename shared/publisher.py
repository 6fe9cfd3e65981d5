"""Publish events into Redis Streams: :class:`AsyncPublisher` and its blocking twin :class:`Publisher`.

::

    async with AsyncPublisher.from_url("redis://127.0.0.1:6379/0") as pub:
        offset = await pub.publish("signal_generated", {...}, symbol="BTCUSDT")
        offsets = await pub.publish_many([Event(...), Event(...)])

Every event is validated before anything is written: an invalid event raises a
:class:`~shared.errors.ValidationError` and the whole batch is refused. A batch is sent as one
pipeline of script calls (one per event type and 1,000 events).

When the connection to Redis fails, the call is retried with jittered backoff until
``retry_timeout`` has passed, then :class:`~shared.errors.RedisUnavailable` is raised. A retry
never publishes twice: each call carries this publisher's id and a sequence number, and the
script answers a repeated sequence number with the offsets it recorded the first time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Self

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from shared.backoff import delays
from shared.errors import RedisUnavailable
from shared.events import Event, EventPolicy
from shared.keys import Keys
from shared.publish_plan import PUBLISH_SCRIPT, Planner, PublishPlan
from shared.redisconn import CONNECTION_ERRORS, async_client, describe, sync_client
from shared.retention import RetentionPolicy, parse_retention
from shared.settings import CommonSettings, parse_duration, setting

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

    def planner(self) -> Planner:
        return Planner(
            keys=Keys(self.key_prefix),
            retention=self.retention,
            policy=EventPolicy(self.private_types, self.max_event_bytes),
            idempotency_window_ms=int(self.idempotency_window * 1000),
        )


def _needs_script(replies: list[Any]) -> bool:
    """True when a reply says the script is not loaded; any other error is raised."""
    missing = False
    for reply in replies:
        if isinstance(reply, NoScriptError):
            missing = True
        elif isinstance(reply, Exception):
            raise reply
    return missing


def _events(
    event_type: str, data: Mapping[str, Any], symbol: str | None, user: str | None,
    idempotency_key: str | None,
) -> list[Event]:
    return [Event(event_type, data, symbol, user, idempotency_key)]


class AsyncPublisher:
    """Publishes with redis.asyncio; safe to share between tasks of one event loop."""

    def __init__(
        self,
        client: redis.asyncio.Redis,
        settings: PublishSettings | None = None,
        *,
        owns_client: bool = False,
    ) -> None:
        self.settings = settings or PublishSettings()
        self._redis = client
        self._planner = self.settings.planner()
        self._script = client.register_script(PUBLISH_SCRIPT)
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, settings: PublishSettings | None = None) -> AsyncPublisher:
        return cls(async_client(url, name="tickstream-publisher"), settings, owns_client=True)

    @classmethod
    def from_settings(cls, settings: PublishSettings) -> AsyncPublisher:
        return cls.from_url(settings.redis_url, settings)

    async def publish(
        self, event_type: str, data: Mapping[str, Any], symbol: str | None = None,
        user: str | None = None, idempotency_key: str | None = None,
    ) -> str:
        """Publish one event; return its offset."""
        return (await self.publish_many(_events(event_type, data, symbol, user, idempotency_key)))[0]

    async def publish_many(self, events: Iterable[Event]) -> list[str]:
        """Publish a batch in one pipeline; offsets come back in the order of ``events``."""
        plan = self._planner.plan(events)
        if not plan.calls:
            return []
        try:
            return plan.offsets(await self._run(plan))
        finally:
            self._planner.done(plan)

    async def _run(self, plan: PublishPlan) -> list[Any]:
        deadline = time.monotonic() + self.settings.publish_retry_timeout
        waits = delays(0.05, 2.0)
        while True:
            try:
                if len(plan.calls) == 1:
                    call = plan.calls[0]
                    return [await self._script(keys=call.keys, args=call.args)]
                async with self._redis.pipeline(transaction=False) as pipe:
                    for call in plan.calls:
                        pipe.evalsha(self._script.sha, len(call.keys), *call.keys, *call.args)
                    replies = list(await pipe.execute(raise_on_error=False))
                if not _needs_script(replies):
                    return replies
                # Redis lost its script cache (a restart): load it and run the plan again.
                # Calls that did run are answered from their records, so nothing is doubled.
                await self._redis.script_load(PUBLISH_SCRIPT)
            except CONNECTION_ERRORS as exc:
                wait = next(waits)
                if time.monotonic() + wait > deadline:
                    raise RedisUnavailable(
                        f"Redis at {describe(self.settings.redis_url)} unreachable for "
                        f"{self.settings.publish_retry_timeout:g} s: {exc}"
                    ) from exc
                log.warning("publish: Redis connection failed (%s); retrying in %.2f s", exc, wait)
                await asyncio.sleep(wait)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._redis.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Publisher:
    """The blocking publisher, for scripts and synchronous services (thread-safe)."""

    def __init__(
        self, client: redis.Redis, settings: PublishSettings | None = None, *,
        owns_client: bool = False,
    ) -> None:
        self.settings = settings or PublishSettings()
        self._redis = client
        self._planner = self.settings.planner()
        self._script = client.register_script(PUBLISH_SCRIPT)
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, settings: PublishSettings | None = None) -> Publisher:
        return cls(sync_client(url, name="tickstream-publisher"), settings, owns_client=True)

    def publish(
        self, event_type: str, data: Mapping[str, Any], symbol: str | None = None,
        user: str | None = None, idempotency_key: str | None = None,
    ) -> str:
        return self.publish_many(_events(event_type, data, symbol, user, idempotency_key))[0]

    def publish_many(self, events: Iterable[Event]) -> list[str]:
        plan = self._planner.plan(events)
        if not plan.calls:
            return []
        try:
            return plan.offsets(self._run(plan))
        finally:
            self._planner.done(plan)

    def _run(self, plan: PublishPlan) -> list[Any]:
        deadline = time.monotonic() + self.settings.publish_retry_timeout
        waits = delays(0.05, 2.0)
        while True:
            try:
                with self._redis.pipeline(transaction=False) as pipe:
                    for call in plan.calls:
                        pipe.evalsha(self._script.sha, len(call.keys), *call.keys, *call.args)
                    replies = list(pipe.execute(raise_on_error=False))
                if not _needs_script(replies):
                    return replies
                self._redis.script_load(PUBLISH_SCRIPT)  # lost script cache: see AsyncPublisher
            except CONNECTION_ERRORS as exc:
                wait = next(waits)
                if time.monotonic() + wait > deadline:
                    raise RedisUnavailable(
                        f"Redis at {describe(self.settings.redis_url)} unreachable for "
                        f"{self.settings.publish_retry_timeout:g} s: {exc}"
                    ) from exc
                log.warning("publish: Redis connection failed (%s); retrying in %.2f s", exc, wait)
                time.sleep(wait)

    def close(self) -> None:
        if self._owns_client:
            self._redis.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
