"""Starting a subscription: history, then live, with nothing lost or doubled.

:class:`Replayer` is built once per node and composed into every session: it is given the
broker, the shared history, the reader's tail (:class:`Tail`), the settings and the metrics,
and each start is given the subscription (its writer, filter and owner) and the connection's
reply function. It knows nothing else of the session.

A subscription is registered with the hub before any history is read, so live events are
buffered from that moment (:class:`~gateway.subscription.Subscription` is *recovering*). Then,
depending on the request:

* ``since``: if :func:`~gateway.recovery.can_recover` says every later event is retained in the
  same epoch, the reply says ``recovered: true`` and history after ``since`` is delivered in
  pages, paced to the client's queue (pages come from :class:`gateway.history.SharedHistory`,
  shared by concurrent replays); otherwise ``recovered: false`` with ``earliest``, and the
  subscription starts live from the stream's newest offset.
* ``last``: the newest N visible matching events, read backwards in pages.
* neither: live from the stream's newest offset.

In every case history is then read up to the stream reader's position
(:meth:`Tail.position`, the stream reader's): the seam between history and live never
depends on when the reader learnt the stream. Finally the buffered live events newer than the
last delivered offset go out (:func:`~gateway.recovery.merge`) and the subscription switches to
direct delivery. A type with no stream yet gets its epoch here (``reserve_epoch``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol, TypeVar

from gateway import protocol as p
from gateway.broker import Broker
from gateway.history import SharedHistory
from gateway.metrics import GatewayMetrics
from gateway.recovery import can_recover, merge, position_before
from gateway.settings import GatewaySettings
from gateway.subscription import ConflatedSubscription, Subscription
from gateway.values import Encoded, Frame, StreamEntry
from shared.backoff import delays
from shared.errors import CodecError
from shared.logsetup import ConnLogger
from shared.offsets import Offset, format_offset
from shared.redisconn import CONNECTION_ERRORS

Reply = Callable[[dict[str, Any]], None]
T = TypeVar("T")
log = logging.getLogger("tickstream.gateway.replay")


class Tail(Protocol):
    """Where live delivery of each type starts: the stream reader, as a replay sees it."""

    def watch(self, event_type: str) -> None:
        """Start reading ``event_type`` (a client subscribed), even if it has no stream yet."""

    async def position(self, event_type: str) -> Offset:
        """The offset after which every entry of the type is dispatched live."""
        ...

    def note_epoch(self, event_type: str, epoch: str) -> None:
        """A subscriber was told ``epoch`` for the type."""


class Replayer:
    """Owns how a subscription starts: the ``subscribed`` reply, the replay, the switch to live.

    It keeps nothing between starts but the epoch reservations in flight; one per node, shared
    by every session.
    """

    def __init__(self, broker: Broker, history: SharedHistory, tail: Tail,
                 settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self._broker = broker
        self._history = history
        self._tail = tail
        self._page = settings.replay_page
        self._max_events = settings.replay_max_events
        self._metrics = metrics
        self._reserving: dict[str, asyncio.Future[str]] = {}  # type -> its reserve_epoch in flight

    def _reserve_epoch(self, event_type: str) -> Awaitable[str]:
        """The broker's reserve_epoch, one call in flight per type: the first subscribers of a
        type nobody published to (thousands at once in a storm) share it instead of each
        taking a Redis connection from the pool."""
        task = self._reserving.get(event_type)
        if task is None or task.done():
            task = asyncio.ensure_future(self._broker.reserve_epoch(event_type))
            self._reserving[event_type] = task
            task.add_done_callback(partial(self._reserved, event_type))
        return asyncio.shield(task)

    def _reserved(self, event_type: str, task: asyncio.Future[str]) -> None:
        if self._reserving.get(event_type) is task:
            del self._reserving[event_type]
        if not task.cancelled():
            task.exception()  # retrieved here too: every waiter may have gone meanwhile

    def watch(self, event_type: str) -> None:
        """A subscription to ``event_type`` is about to start: have the reader learn it now."""
        self._tail.watch(event_type)

    async def start(self, sub: Subscription, command: p.Subscribe, reply: Reply,
                    log: ConnLogger) -> None:
        """Reply to ``command``, deliver what it asks for, then switch ``sub`` to live delivery.

        ``sub`` is indexed with the hub already (live events are buffered). Returns early when
        the connection closes; Redis errors are waited out.
        """
        event_type = sub.event_type
        state = await self._with_retry(log, partial(self._history.state, event_type))
        if not state.epoch:  # no stream yet: subscribing establishes the epoch (CONTRACT 3)
            epoch = await self._with_retry(log, partial(self._reserve_epoch, event_type))
            state = dataclasses.replace(state, epoch=epoch)
        self._tail.note_epoch(sub.event_type, state.epoch)
        base: dict[str, Any] = {"type": "subscribed", "event_type": sub.event_type,
                                "epoch": state.epoch}
        metrics = self._metrics
        if command.since is not None and can_recover(command.since, command.epoch, state):
            # Held for the whole replay, before the reply: a storm queues here, and a client is
            # never told recovered:true for a replay that then waits past its buffer.
            async with self._history.slots:
                if sub.gone:
                    return
                sub.last = command.since
                self._reply(sub, reply, p.with_id(base | {"offset": format_offset(command.since),
                                                          "recovered": True}, command.id))
                delivered = await self._catch_up(sub, log)
            if delivered is None:
                return
            metrics.replays.labels("true").inc()
            metrics.replay_events.observe(delivered)
        elif command.since is not None:
            sub.last = state.last
            self._reply(sub, reply, p.with_id(base | {"offset": format_offset(state.last),
                                                      "recovered": False,
                                                      "earliest": state.earliest}, command.id))
            metrics.replays.labels("false").inc()
            if await self._catch_up(sub, log) is None:
                return
        elif command.last is not None:
            history = await self._last(sub, command.last, log)
            start = position_before(history[0].pos) if history else state.last
            self._reply(sub, reply, p.with_id(base | {"offset": format_offset(start),
                                                      "recovered": True}, command.id))
            if await self._deliver(sub, history) is None:
                return
            sub.last = history[-1].pos if history else state.last
            metrics.replay_events.observe(len(history))
            if await self._catch_up(sub, log) is None:
                return
        else:
            sub.last = state.last
            self._reply(sub, reply, p.with_id(base | {"offset": format_offset(sub.last),
                                                      "recovered": True}, command.id))
            if await self._catch_up(sub, log) is None:
                return
        await self._go_live(sub)

    @staticmethod
    def _reply(sub: Subscription, reply: Reply, message: dict[str, Any]) -> None:
        sub.replied = True
        if isinstance(sub, ConflatedSubscription):
            message["conflate_ms"] = sub.conflate_ms
        reply(message)

    async def _go_live(self, sub: Subscription) -> None:
        """Deliver what was buffered during the replay, then switch to direct delivery.

        Delivering may wait for the client to drain; live events arriving meanwhile join the
        buffer, so the loop runs until it is empty at a moment with nothing left to await.
        A conflated subscription holds the buffered events with the replayed ones and sends
        the newest of each symbol now, as it goes live (nothing is awaited on that path).
        """
        while True:
            buffered, sub.buffer, sub.buffer_bytes = sub.buffer, [], 0
            events = merge((), buffered, sub.last)
            if events:
                sub.last = events[-1].pos
                if isinstance(sub, ConflatedSubscription):
                    sub.hold(events)
                elif not await self._push_paced(sub, [e.wire(sub.form) for e in events]):
                    return
            if not sub.buffer:
                sub.recovering = False
                if isinstance(sub, ConflatedSubscription):
                    sub.release()
                return

    @staticmethod
    async def _push_paced(sub: Subscription, frames: list[Frame]) -> bool:
        """Queue replayed frames in slices, waiting for the client to drain between them.

        (No event time goes with them: the publish-to-send histogram is live delivery's.)

        A replay is as large as the client's backlog, which may be far larger than its queue:
        pacing keeps the queue under its limit, so only a client that stops reading gets 4008.
        """
        writer = sub.writer
        limit = max(1, writer.max_bytes // 4)
        start = acc = 0
        for index, frame in enumerate(frames):
            acc += len(frame)
            if acc < limit and index < len(frames) - 1:
                continue
            await writer.wait_below(0.5)
            if sub.gone:
                return False
            if not writer.push_many(frames[start:index + 1], acc):
                sub.slow("outgoing queue full during replay")
                return False
            start, acc = index + 1, 0
        return True

    async def _catch_up(self, sub: Subscription, log: ConnLogger) -> int | None:
        """Push every visible matching event after ``sub.last`` up to the reader's position.

        The reader dispatches every entry after its position, and the subscription has been
        buffering those since it was registered; history up to that position closes the seam,
        whenever the reader learnt the stream (before or after this subscribe). None if the
        connection was closed.
        """
        target = await self._tail.position(sub.event_type)
        delivered = scanned = 0
        while sub.last < target:
            page = await self._with_retry(
                log, partial(self._history.after, sub.event_type, sub.last, self._page))
            if not page:
                break  # the stream ends before the reader's position: it went back (4009 follows)
            count = await self._deliver(sub, page)
            if count is None or sub.gone:
                return None
            delivered += count
            sub.last = page[-1].pos
            await asyncio.sleep(0)  # pages from shared history never wait: let others run
            scanned += len(page)
            if scanned >= self._max_events:
                # More than one connection may carry: the client resumes from what it got, so
                # what is queued goes out before the close (a close drops pending output).
                await sub.writer.wait_below(0.0)
                if not sub.gone:
                    sub.slow(f"replay passed {self._max_events} events")
                return None
        return delivered

    async def _last(self, sub: Subscription, n: int, log: ConnLogger) -> list[StreamEntry]:
        found: list[StreamEntry] = []
        before: Offset | None = None
        scanned = 0
        while len(found) < n and scanned < self._max_events:
            page = await self._with_retry(
                log, partial(self._broker.history_before, sub.event_type, before, self._page))
            if not page:
                break
            for entry in page:
                if sub.visible(entry):
                    found.append(entry)
                    if len(found) == n:
                        break
            scanned += len(page)
            before = page[-1].pos
        found.reverse()
        return found

    async def _deliver(self, sub: Subscription, entries: list[StreamEntry]) -> int | None:
        """Queue the replayed entries this subscription may see; None if the connection closed."""
        if isinstance(sub, ConflatedSubscription):
            return await self._hold(sub, entries)
        form = sub.form
        frames: list[bytes] = []
        for entry in entries:
            if sub.visible(entry):
                try:
                    frames.append(Encoded.of(entry).wire(form))
                except CodecError as exc:  # as live fan-out does: skip it, or every resume fails here
                    log.error("replay skips undecodable entry %s %s: %s", entry.event_type, entry.offset, exc)
        if frames and not await self._push_paced(sub, frames):
            return None
        return len(frames)

    async def _hold(self, sub: ConflatedSubscription, entries: list[StreamEntry]) -> int | None:
        """A conflated replay holds the entries (the newest per symbol goes out at go-live).

        A replay that reaches ``REPLAY_MAX_EVENTS`` is cut with 4008 after this page, and the
        client resumes from the last event it received: what is held goes out first, and is
        written before the close, so the next connection starts past it instead of again.
        """
        kept = [Encoded.of(entry) for entry in entries if sub.visible(entry)]
        sub.hold(kept)
        sub.scanned += len(entries)
        if sub.scanned >= self._max_events:
            sub.scanned = 0
            held = sub.conflater.flush(asyncio.get_running_loop().time())
            if held:
                if not await self._push_paced(sub, [e.wire(sub.form) for e in held]):
                    return None
                await sub.writer.wait_below(0.0)
                if sub.gone:
                    return None
        return len(kept)

    @staticmethod
    async def _with_retry(log: ConnLogger, call: Callable[[], Awaitable[T]]) -> T:
        """Redis calls made for a subscribe wait out a Redis outage (the connection stays)."""
        waits = delays(0.1, 5.0)
        while True:
            try:
                return await call()
            except CONNECTION_ERRORS as exc:
                wait = next(waits)
                log.warning("subscribe waiting for Redis (%s); retry in %.1f s", exc, wait)
                await asyncio.sleep(wait)
