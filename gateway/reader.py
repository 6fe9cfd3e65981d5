"""The stream reader: one blocking XREAD over every event type, handing entries to the hub.

* Starts each stream at its newest entry (live from now); event types that appear later are
  read from their beginning, so nothing published to a new type is missed.
* After any Redis error it reconnects with jittered backoff and resumes from the offsets it
  had: nothing is skipped. It then checks every stream for a **gap**: a different epoch (the
  stream was deleted or Redis lost its data) or entries it had not read that were trimmed.
  Subscribers of such a type are closed with 4009: their client resumes and is told whether it
  must rebuild.
* ``last_ok`` (monotonic time of the last completed read) feeds ``/readyz``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from gateway.protocol import CLOSE_RESYNC
from gateway.recovery import position_before
from shared.backoff import Backoff
from shared.offsets import Offset
from shared.redisconn import CONNECTION_ERRORS

if TYPE_CHECKING:
    from gateway.broker import Broker, StreamState
    from gateway.hub import Hub
    from gateway.metrics import GatewayMetrics

log = logging.getLogger("tickstream.gateway.reader")

TYPES_REFRESH = 1.0  # seconds between looks for new event types
EPOCH_CHECK = 5.0  # seconds between epoch checks while all is well
DISPATCH_CHUNK = 128  # entries handed to the hub before writers get a turn


class StreamReader:
    def __init__(
        self, broker: Broker, hub: Hub, metrics: GatewayMetrics, *, count: int = 1000,
        block: float = 1.0, epoch_check: float = EPOCH_CHECK,
    ) -> None:
        self.epoch_check = epoch_check
        self.broker, self.hub, self.metrics = broker, hub, metrics
        self.count = count
        self.block_ms = max(1, int(block * 1000))
        self.positions: dict[str, Offset] = {}
        self.epochs: dict[str, str] = {}
        self.last_ok = 0.0
        self.lag = 0.0
        self.connected = False
        self._started = False
        self._watched = asyncio.Event()

    def watch(self, event_type: str) -> None:
        """A client subscribed to ``event_type``: read it even if no event exists yet.

        XREAD blocks on a stream that does not exist yet, so the first event published to a
        brand-new type is read at once instead of at the next discovery pass. An unknown type
        is read from its beginning: it is new, or at most a discovery interval old.
        """
        if event_type not in self.positions:
            self.positions[event_type] = (0, 0)
            self.epochs.setdefault(event_type, "")
            self._watched.set()

    def note_epoch(self, event_type: str, epoch: str) -> None:
        """A subscriber was told ``epoch``: if the reader had none yet, it is the one to keep."""
        if epoch and not self.epochs.get(event_type):
            self.epochs[event_type] = epoch

    async def run(self) -> None:
        backoff = Backoff(base=0.1, cap=5.0, stable_after=10.0)
        while True:
            try:
                await self._resync()
                backoff.connected(time.monotonic())
                self.connected = True
                await self._loop()
            except asyncio.CancelledError:
                raise
            except CONNECTION_ERRORS as exc:
                self._failed(f"Redis unavailable: {exc}")
            except Exception as exc:  # a bug must not stop event delivery for good
                log.exception("stream reader failed")
                self._failed(repr(exc))
            await asyncio.sleep(backoff.next_delay(time.monotonic()))

    def _failed(self, why: str) -> None:
        if self.connected:
            log.warning("stream reader: %s; reconnecting", why)
        self.connected = False
        self.metrics.reader_errors.inc()

    async def _loop(self) -> None:
        next_types = next_epochs = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= next_types:
                await self._discover()
                next_types = now + TYPES_REFRESH
            if now >= next_epochs:
                await self._check(list(self.positions))
                next_epochs = now + self.epoch_check
            if not self.positions:  # nothing to read yet: wait for a type or a subscriber
                self.last_ok = time.monotonic()
                self._watched.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._watched.wait(), TYPES_REFRESH)
                continue
            block = min(self.block_ms, int(TYPES_REFRESH * 1000))
            batches = await self.broker.read(self.positions, self.count, block)
            self.last_ok = time.monotonic()
            full: list[str] = []
            for event_type, entries in batches:
                if not entries:
                    continue
                if not self.epochs.get(event_type):
                    full.append(event_type)  # read before its epoch was known: learn it now
                self.positions[event_type] = entries[-1].pos
                self.metrics.events_read.labels(event_type).inc(len(entries))
                self.lag = max(0.0, time.time() - entries[-1].pos[0] / 1000)
                for start in range(0, len(entries), DISPATCH_CHUNK):
                    self.hub.dispatch(event_type, entries[start:start + DISPATCH_CHUNK])
                    if len(entries) > DISPATCH_CHUNK:
                        await asyncio.sleep(0)  # writers drain between chunks of a large read
                if len(entries) >= self.count:
                    full.append(event_type)
            if full:  # behind, or epoch unknown: make sure nothing we had not read was lost
                await self._check(full)
            await asyncio.sleep(0)  # let writers run between large reads

    async def _resync(self) -> None:
        """After (re)connecting: learn the streams, and look for gaps in those we read."""
        types = await self.broker.event_types()
        known = [t for t in types if t in self.positions]
        if known:
            await self._check(known)
        new = [t for t in types if t not in self.positions]
        if new:
            states = await self.broker.states(new)
            for event_type, state in states.items():
                # At start-up: live from now. Types that appear later: from their beginning.
                self.positions[event_type] = state.last if not self._started else (0, 0)
                self.epochs[event_type] = state.epoch
        self._started = True
        self.last_ok = time.monotonic()

    async def _discover(self) -> None:
        types = await self.broker.event_types()
        new = [t for t in types if t not in self.positions]
        if new:
            states = await self.broker.states(new)
            for event_type in new:
                self.positions[event_type] = (0, 0)
                self.epochs[event_type] = states[event_type].epoch
                log.info("new event type %s", event_type)

    async def _check(self, event_types: list[str]) -> None:
        states = await self.broker.states(event_types)
        for event_type, state in states.items():
            self._check_one(event_type, state)

    def _check_one(self, event_type: str, state: StreamState) -> None:
        position = self.positions.get(event_type, (0, 0))
        known_epoch = self.epochs.get(event_type, "")
        if known_epoch and state.epoch != known_epoch:
            self._gap(event_type, f"epoch changed from {known_epoch} to {state.epoch or 'none'}")
            self.positions[event_type] = (0, 0)
        elif state.first is not None and position < position_before(state.first) \
                and position != (0, 0):
            self._gap(event_type, "entries the reader had not read were trimmed")
        # "" -> epoch is a stream created (again) after a loss already reported: not a new gap.
        self.epochs[event_type] = state.epoch

    def _gap(self, event_type: str, why: str) -> None:
        log.warning("gap in %s: %s; closing its subscribers with 4009", event_type, why)
        self.metrics.gaps.labels(event_type).inc()
        for session in list(self.hub.subscribers(event_type)):
            session.close(CLOSE_RESYNC, f"resync needed: {event_type} {why}")
