"""What the client tests share: a status recorder, a consumer task, a steady publisher."""

from __future__ import annotations

import asyncio
import contextlib

from shared.client import Client, Event, Status, Subscription
from shared.events import Event as NewEvent
from shared.publisher import AsyncPublisher


class Statuses(list[Status]):
    """Every status the client reported, in order."""

    def of(self, state: str) -> list[Status]:
        return [s for s in self if s.state == state]

    def codes(self) -> list[int | None]:
        return [s.code for s in self.of("reconnecting")]


def record_statuses(client: Client) -> Statuses:
    statuses = Statuses()
    client.on_status(statuses.append)
    return statuses


class Consumer:
    """Iterates a subscription in a task, keeping every event (optionally waiting for ``go``)."""

    def __init__(self, sub: Subscription, go: asyncio.Event | None = None) -> None:
        self.events: list[Event] = []
        self.go = go
        self.task = asyncio.create_task(self._run(sub))

    async def _run(self, sub: Subscription) -> None:
        if self.go is not None:
            await self.go.wait()
        async for event in sub:
            self.events.append(event)

    @property
    def offsets(self) -> list[str]:
        return [e.offset for e in self.events]

    async def stop(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


class Producer:
    """Publishes ``batch`` events of ``event_type`` at a steady pace until stopped."""

    def __init__(self, pub: AsyncPublisher, event_type: str = "custom", batch: int = 5,
                 pad: int = 0) -> None:
        self.offsets: list[str] = []
        self._pub, self._type, self._batch, self._pad = pub, event_type, batch, "x" * pad
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            events = [NewEvent(self._type, {"n": n + i, "pad": self._pad}) for i in range(self._batch)]
            self.offsets += await self._pub.publish_many(events)
            n += self._batch
            await asyncio.sleep(0.005)  # the pace of the workload, not a synchronisation

    async def stop(self) -> list[str]:
        self._stop.set()
        await self.task
        return self.offsets
