"""The health key ``<prefix>:health:ingestor:<node>``: a JSON status with a short TTL.

Refreshed every ``EVERY`` seconds with a TTL of three periods, so it disappears within 15 s of
the process dying or losing Redis; deleted on a clean stop. A container healthcheck or an
operator reads it with ``GET``; ``KEYS <prefix>:health:ingestor:*`` lists running ingestors.
It uses its own Redis connection, so a publish retrying during an outage does not delay it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import orjson

from shared.keys import Keys
from shared.redisconn import RETRYABLE_ERRORS
from shared.topology import Topology

log = logging.getLogger("tickstream.ingestor.health")

EVERY = 5.0


class HealthKey:
    def __init__(self, redis_url: str, keys: Keys, node: str, status: Callable[[], dict[str, Any]],
                 every: float = EVERY) -> None:
        self.key = keys.health("ingestor", node)
        self._topology = Topology(redis_url, name="tickstream-ingestor-health", socket_timeout=2.0)
        self._status = status
        self._every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="health-key")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*RETRYABLE_ERRORS, TimeoutError):
            await asyncio.wait_for(self._delete(), 2.0)
        await self._topology.aclose()

    async def _delete(self) -> None:
        await (await self._topology.client_for(self.key)).delete(self.key)

    async def _run(self) -> None:
        while True:
            try:
                client = await self._topology.client_for(self.key)
                await client.set(self.key, orjson.dumps(self._status()), ex=int(self._every * 3))
            except RETRYABLE_ERRORS as exc:
                log.debug("health key not written: %s", exc)
                with contextlib.suppress(*RETRYABLE_ERRORS):
                    await self._topology.refresh()
            await asyncio.sleep(self._every)
