"""The node: one gateway process's moving parts, built, wired, started and stopped together.

It owns the broker, the hub, the stream reader, the shared history, the replayer, the
authenticator, the publisher used by ``POST /api/publish``, the metrics, a ticker (heartbeats,
token expiry) and the health key (``<prefix>:health:gateway:<node>``, refreshed every few
seconds with a TTL, for container healthchecks and operators). It builds each piece with only
what that piece uses (see :mod:`gateway`), and it is the reader's
:class:`~gateway.reader.Dispatcher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import orjson

from gateway.auth import Authenticator, Principal
from gateway.broker import Broker, RedisBroker
from gateway.history import SharedHistory
from gateway.hub import Hub
from gateway.metrics import GatewayMetrics
from gateway.protocol import Wire
from gateway.reader import StreamReader
from gateway.replay import Replayer
from gateway.session import Session, SessionContext
from gateway.settings import GatewaySettings
from gateway.shedding import Shedder
from gateway.values import Frame, StreamEntry
from gateway.writer import Flusher, Sink
from shared.keys import Keys
from shared.publisher import AsyncPublisher
from shared.redisconn import RETRYABLE_ERRORS
from shared.topology import Topology

log = logging.getLogger("tickstream.gateway.node")

TICK = 1.0
HEALTH_EVERY = 5.0
STOP_TASKS_WAIT = 2.0  # seconds the node's own tasks get to end after cancel


class Node:
    """Owns one gateway process's core: builds it, wires it, starts and stops it.

    The chain it wires: broker -> :class:`StreamReader` -> (this node, the reader's dispatcher)
    -> :class:`Hub` -> subscriptions of each :class:`Session` -> their writers.
    """

    def __init__(self, settings: GatewaySettings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.broker: Broker = broker or RedisBroker(settings.redis_url, self.keys)
        self.hub: Hub[Session] = Hub()
        self.auth = Authenticator(settings)
        self.metrics = GatewayMetrics(self._live_values)
        self.flusher = Flusher(self.metrics.latency.observe)
        self.history = SharedHistory(self.broker)
        self.reader = StreamReader(self.broker, self, self.metrics,
                                   count=settings.reader_count, block=settings.reader_block,
                                   epoch_check=settings.reader_epoch_check,
                                   pace=settings.write_coalesce_ms / 1000.0)
        self.replayer = Replayer(self.broker, self.history, self.reader, settings, self.metrics)
        self.session_context = SessionContext(settings, self.metrics, self.hub, self.replayer,
                                              self.auth.verify, self.flusher)
        self.publisher: AsyncPublisher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.monotonic()
        self.accepting = True
        self.shedder = Shedder(settings.shed_after)
        # Totals of connections that are gone, so the counters never go down.
        self.closed_totals = {"messages_sent": 0, "frames_sent": 0, "bytes_sent": 0}

    async def start(self) -> None:
        self.publisher = AsyncPublisher.from_settings(self.settings)
        self._tasks = [
            asyncio.create_task(self.reader.run(), name="stream-reader"),
            asyncio.create_task(self._ticker(), name="ticker"),
            asyncio.create_task(self._health(), name="health-key"),
        ]
        log.info("node %s started (redis %s)", self.settings.node,
                 self.settings.redis_url.redacted())

    async def stop(self) -> None:
        self.accepting = False
        for task in self._tasks:
            task.cancel()
        # Bounded: a task that swallowed its cancellation must not hold the process up.
        _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TASKS_WAIT)
        for task in stuck:
            log.warning("node %s: task %s did not stop within %g s", self.settings.node,
                        task.get_name(), STOP_TASKS_WAIT)
        if self.publisher is not None:
            await self.publisher.aclose()
        topology = Topology(self.settings.redis_url, socket_timeout=1.0)
        with contextlib.suppress(*RETRYABLE_ERRORS):
            key = self.keys.health("gateway", self.settings.node)
            await (await topology.client_for(key)).delete(key)
        await topology.aclose()
        await self.broker.close()
        log.info("node %s stopped", self.settings.node)

    # --- the reader's dispatcher -------------------------------------------------------------

    def dispatch(self, event_type: str, entries: list[StreamEntry]) -> None:
        self.hub.dispatch(event_type, entries)

    def reset(self, event_type: str, reason: str) -> None:
        self.history.forget(event_type)  # cached blocks may hold entries that are gone
        self.hub.resync(event_type, reason)

    # --- connections -------------------------------------------------------------------------

    def connect(
        self,
        send: Callable[[Frame], Awaitable[None]],
        close: Callable[[int, str], Coroutine[Any, Any, None]],
        sink: Sink | None,
        wire: Wire,
        *,
        batch: bool,
        batch_ms: float,
        principal: Principal | None,
        remote: str = "",
    ) -> Session:
        """A new connection's session, registered with the hub (not started)."""
        session = Session(self.session_context, send, close, sink, wire, batch=batch,
                          batch_ms=batch_ms, principal=principal, remote=remote)
        self.hub.add(session)
        return session

    async def disconnect(self, session: Session) -> None:
        """The connection is gone: the session leaves the hub and stops; its counts are kept."""
        self.hub.remove(session)
        await session.finish()
        w = session.writer
        self.forget(w.messages_sent, w.frames_sent, w.bytes_sent)

    def forget(self, messages: int, frames: int, size: int) -> None:
        totals = self.closed_totals
        totals["messages_sent"] += messages
        totals["frames_sent"] += frames
        totals["bytes_sent"] += size

    def reader_fresh(self) -> bool:
        return (self.reader.connected
                and time.monotonic() - self.reader.last_ok < self.settings.reader_stale_after)

    def _live_values(self) -> dict[str, float]:
        sessions = list(self.hub.sessions.values())
        totals = dict(self.closed_totals)
        for s in sessions:
            totals["messages_sent"] += s.writer.messages_sent
            totals["frames_sent"] += s.writer.frames_sent
            totals["bytes_sent"] += s.writer.bytes_sent
        return {
            "connections": len(sessions),
            "subscriptions": sum(len(s.subs) for s in sessions),
            "deliveries": self.hub.deliveries,
            "reader_lag": self.reader.lag,
            "reader_age": time.monotonic() - self.reader.last_ok if self.reader.last_ok else -1,
            **totals,
        }

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            now_wall, now_mono = time.time(), time.monotonic()
            sessions = list(self.hub.sessions.values())
            for session in sessions:
                session.tick(now_wall, now_mono)
            behind = self.reader.behind_for(now_mono)
            if shed := self.shedder.tick(sessions, behind):
                log.warning("node %s: the stream reader has read only full batches for %.1f s: "
                            "shed %d of %d connections (4008: they resume)", self.settings.node,
                            behind, shed, len(sessions),
                            extra={"event": "shed"})

    @property
    def overloaded(self) -> bool:
        """Shedding load: new connections are refused with 1013 (gateway.shedding)."""
        return self.shedder.overloaded(self.reader.behind_for(time.monotonic()))

    async def _health(self) -> None:
        topology = Topology(self.settings.redis_url, socket_timeout=2.0)
        key = self.keys.health("gateway", self.settings.node)
        try:
            while True:
                status = {
                    "node": self.settings.node, "port": self.settings.port,
                    "metrics_port": self.settings.metrics_port,
                    "connections": len(self.hub.sessions), "reader_ok": self.reader_fresh(),
                    "ts": int(time.time() * 1000),
                }
                try:
                    await (await topology.client_for(key)).set(key, orjson.dumps(status),
                                                               ex=int(HEALTH_EVERY * 3))
                except RETRYABLE_ERRORS:
                    with contextlib.suppress(*RETRYABLE_ERRORS):
                        await topology.refresh()
                await asyncio.sleep(HEALTH_EVERY)
        finally:
            await topology.aclose()
