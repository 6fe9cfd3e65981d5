"""The node: one gateway process's moving parts, started and stopped together.

It owns the broker, the hub, the stream reader, the authenticator, the publisher used by
``POST /api/publish``, the metrics, a ticker (heartbeats, token expiry) and the health key
(``<prefix>:health:gateway:<node>``, refreshed every few seconds with a TTL, for container
healthchecks and operators).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import orjson

from gateway.auth import Authenticator
from gateway.broker import Broker, RedisBroker
from gateway.history import SharedHistory
from gateway.hub import Hub
from gateway.metrics import GatewayMetrics
from gateway.reader import StreamReader
from gateway.settings import GatewaySettings
from gateway.writer import Flusher
from shared.keys import Keys
from shared.publisher import AsyncPublisher
from shared.redisconn import RETRYABLE_ERRORS
from shared.topology import Topology

log = logging.getLogger("tickstream.gateway.node")

TICK = 1.0
HEALTH_EVERY = 5.0
STOP_TASKS_WAIT = 2.0  # seconds the node's own tasks get to end after cancel


class Node:
    def __init__(self, settings: GatewaySettings, broker: Broker | None = None) -> None:
        self.settings = settings
        self.keys = Keys(settings.key_prefix)
        self.broker: Broker = broker or RedisBroker(settings.redis_url, self.keys)
        self.hub = Hub()
        self.flusher = Flusher()
        self.auth = Authenticator(settings)
        self.metrics = GatewayMetrics(self._live_values)
        self.history = SharedHistory(self.broker)
        self.reader = StreamReader(self.broker, self.hub, self.metrics,
                                   count=settings.reader_count, block=settings.reader_block,
                                   epoch_check=settings.reader_epoch_check,
                                   on_gap=self.history.forget)
        self.publisher: AsyncPublisher | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.started_at = time.monotonic()
        self.accepting = True
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
            for session in list(self.hub.sessions.values()):
                session.tick(now_wall, now_mono)

    async def _health(self) -> None:
        topology = Topology(self.settings.redis_url, socket_timeout=2.0)
        key = self.keys.health("gateway", self.settings.node)
        try:
            while True:
                status = {
                    "node": self.settings.node, "port": self.settings.port,
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
