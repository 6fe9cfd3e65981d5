"""The ingestor group: one leader publishes, the others stand by and take over when it stops.

Every ``tickstream ingestor`` with the same ``SYMBOLS`` (and ``KEY_PREFIX``) belongs to one group
(``INGESTOR_GROUP``, default a hash of the sorted symbols) sharing one lease in Redis
(:mod:`ingestor.lease`). All of them keep their exchange connections and order books warm;
only the lease holder publishes.

* **Standby**: tries to take the lease every ``LEASE_RETRY``. When it gets it (with a new,
  larger token) it *takes over* (:meth:`Leadership.take_over`): raise the fence of every event
  type it publishes to its token (a stale leader is refused everywhere at once), read where
  Redis stands (the last trade id and closed candle per sequence), then publish, backfilling
  over REST what was missed. A takeover that fails (Redis gone again, a fence newer than our
  token) gives the lease back.
* **Leader**: renews the lease every ``LEASE_RENEW``. Renewal failing because Redis is
  unreachable changes nothing (events wait in the outage buffer; a lease that expired meanwhile
  is taken back with the same token if nobody acquired it since). Renewal finding the lease held
  by someone else, or a publish refused by the fence, means another ingestor leads: step down to
  standby at once (:meth:`Leadership.step_down`: forget what is buffered, the new leader resumes
  from Redis).
* **Stop** (SIGTERM): the leader releases its lease after its last events are in Redis, so a
  standby takes over within ``LEASE_RETRY`` instead of waiting for the lease to lapse.
* **Redis outage**: a standby that could not reach Redis waits one ``LEASE_TTL`` after it can
  again before it tries for the lease, so a leader that rode the outage out with a buffer takes
  its (maybe expired) lease back first and loses nothing.

A leader that dies is replaced within ``LEASE_TTL`` + ``LEASE_RETRY`` (3.5 s by default).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Protocol

import redis

from ingestor.lease import (
    ACQUIRE_SCRIPT,
    LEADER,
    PEEK_SCRIPT,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
    STANDBY,
    Holder,
    LeaseReply,
    lease_value,
)
from ingestor.metrics import IngestorMetrics
from ingestor.settings import IngestorSettings
from shared.errors import Fenced
from shared.keys import Keys
from shared.topology import Topology

log = logging.getLogger("tickstream.ingestor.group")

REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError, TimeoutError)
OK_WITHIN = 3.0
"""A lease call succeeded this recently: Redis counts as reachable (for /readyz)."""


class Leadership(Protocol):
    async def take_over(self, token: int) -> None:
        """Become the publisher with ``token``: fence, resume from Redis, publish.

        Raises :class:`~shared.errors.Fenced` or a Redis error if that cannot be done now.
        """

    def step_down(self, reason: str) -> None:
        """Stop publishing at once and forget what is buffered (idempotent)."""


class Group:
    def __init__(self, settings: IngestorSettings, topology: Topology, keys: Keys,
                 hooks: Leadership, metrics: IngestorMetrics) -> None:
        self.name = settings.group
        self.node = settings.node
        self.ttl = settings.lease_ttl
        self.renew_every = settings.lease_renew
        self.retry_every = settings.lease_retry
        self.lease_key = keys.ingestor_lease(self.name)
        self.token_key = keys.ingestor_token(self.name)
        self._ttl_ms = max(1, int(self.ttl * 1000))
        self._op_timeout = max(0.1, min(1.0, self.ttl / 3))
        self._topology = topology
        self._hooks = hooks
        self._metrics = metrics
        self.role = STANDBY
        self.token: int | None = None
        """Our lease token while we lead."""
        self.holder: Holder | None = None
        """The leader as last seen (us, while we lead)."""
        self.takeovers = 0
        self.floor = 0
        """The newest fence we were refused by: the next token must be past it."""
        self._value: str | None = None
        self._renewed_at: float | None = None  # when the last renewal that worked was sent
        self._last_ok: float | None = None
        self._failing = False
        self._back_at: float | None = None  # when Redis answered again after failing
        self._lapse_logged = False
        self._release_value: str | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- state -----------------------------------------------------------------------------------

    @property
    def leader(self) -> bool:
        return self.role == LEADER

    @property
    def redis_ok(self) -> bool:
        last = self._last_ok
        return last is not None and time.monotonic() - last < max(OK_WITHIN, 3 * self.renew_every)

    def status(self) -> dict[str, Any]:
        holder = self.holder
        return {"role": self.role, "group": self.name, "token": self.token,
                "leader": holder.node if holder else None, "takeovers": self.takeovers}

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Try for the lease once (a lone ingestor leads before it connects), then keep at it."""
        await self._step()
        self._task = asyncio.create_task(self._run(), name="ingestor-group")

    async def stop(self) -> None:
        """Stop; a leader releases its lease (call once its last events are in Redis)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._value is not None:  # leading, or stopped in the middle of a takeover
            value = self._value
            self.role, self.token, self._value = STANDBY, None, None
            if await self._call(RELEASE_SCRIPT, value) is not None:
                log.info("lease of group %s released (a standby takes over at once)", self.name)

    def fenced(self, exc: Fenced) -> None:
        """A publish was refused by a newer fence: another ingestor leads."""
        if not self.leader:
            return
        self.floor = max(self.floor, exc.fence)
        self._release_value = self._value  # ours still if Redis lost the token counter
        self._demote("fenced", str(exc))
        self._wake.set()

    # -- the loop --------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(),
                                       self.renew_every if self.leader else self.retry_every)
            self._wake.clear()
            await self._step()

    async def _step(self) -> None:
        if self._release_value is not None:
            value, self._release_value = self._release_value, None
            await self._call(RELEASE_SCRIPT, value)
        if self.leader:
            await self._renew()
        else:
            await self._acquire()

    async def _call(self, script: str, *args: str | int) -> Any:
        """One lease script; None when Redis could not answer (logged once per episode)."""
        try:
            async with asyncio.timeout(self._op_timeout):
                client = await self._topology.client_for(self.lease_key)
                reply = await client.eval(script, 2, self.lease_key, self.token_key, *args)
        except REDIS_ERRORS as exc:
            if not self._failing:
                log.warning("lease of group %s: Redis did not answer (%s); trying again",
                            self.name, exc or type(exc).__name__)
                self._failing = True
            with contextlib.suppress(*REDIS_ERRORS):
                await self._topology.refresh()
            return None
        if self._failing:
            log.info("lease of group %s: Redis answers again", self.name)
            self._failing = False
        self._last_ok = time.monotonic()
        return reply

    async def _acquire(self) -> None:
        if self._failing:
            # Redis was unreachable, for the leader too, maybe: its lease may have expired
            # meanwhile though it still holds the outage's events. Give it one TTL to take the
            # lease back (it renews more often than that) before trying for it.
            if await self._call(PEEK_SCRIPT) is not None:
                self._back_at = time.monotonic()
            return
        if self._back_at is not None and time.monotonic() - self._back_at < self.ttl:
            return
        sent = time.monotonic()
        reply = await self._call(ACQUIRE_SCRIPT, self.node, self._ttl_ms, self.floor)
        if reply is None:
            return
        answer = LeaseReply.parse(reply)
        if not answer.ours or answer.holder is None:
            if answer.holder != self.holder:
                log.info("group %s is led by %s: standing by", self.name, answer.holder)
            self.holder = answer.holder
            return
        token = answer.holder.token
        value = lease_value(token, self.node)
        self.token, self._value, self._renewed_at = token, value, sent
        try:
            async with asyncio.timeout(max(self._op_timeout, self.ttl / 2)):
                await self._hooks.take_over(token)
        except Fenced as exc:
            self.floor = max(self.floor, exc.fence)
            log.warning("lease token %d of group %s is older than the fence %d (did Redis lose "
                        "the token counter?): releasing it; the next token passes the fence",
                        token, self.name, exc.fence)
            await self._abandon(value, "fenced at takeover")
            return
        except REDIS_ERRORS as exc:
            log.warning("takeover of group %s with token %d failed (%s): releasing the lease",
                        self.name, token, exc or type(exc).__name__)
            await self._abandon(value, "takeover failed")
            return
        self.role = LEADER
        self.holder = answer.holder
        self._lapse_logged = False
        self.takeovers += 1
        self._metrics.takeovers.inc()

    async def _abandon(self, value: str, reason: str) -> None:
        self.token, self._value = None, None
        self._hooks.step_down(reason)
        await self._call(RELEASE_SCRIPT, value)

    async def _renew(self) -> None:
        value, token = self._value, self.token
        assert value is not None and token is not None
        sent = time.monotonic()
        reply = await self._call(RENEW_SCRIPT, value, self._ttl_ms, token)
        if reply is None:
            since = self._renewed_at or sent
            if sent - since > self.ttl and not self._lapse_logged:
                log.warning("lease of group %s not renewed for %.1f s (Redis unreachable): it may "
                            "have lapsed; if another ingestor takes over, our writes are fenced",
                            self.name, sent - since)
                self._lapse_logged = True
            return
        if not self.leader or self._value != value:
            return  # stepped down while the renewal was under way
        answer = LeaseReply.parse(reply)
        if answer.ours:
            self._renewed_at = sent
            self._lapse_logged = False
            return
        self.holder = answer.holder
        taker = f"to {answer.holder}" if answer.holder else "(it lapsed and the token moved on)"
        self._demote("lease_lost", f"Fenced: lease lost {taker}; our token {token} is stale")

    def _demote(self, kind: str, reason: str) -> None:
        log.warning("%s; stepping down to standby (group %s)", reason, self.name)
        self.role, self.token, self._value = STANDBY, None, None
        self._metrics.step_downs.labels(kind).inc()
        self._hooks.step_down(reason)
