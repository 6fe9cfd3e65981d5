"""The subscribe-time half of a session: history, then live, with nothing lost or doubled.

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
(:meth:`~gateway.reader.StreamReader.position`): the seam between history and live never
depends on when the reader learnt the stream. Finally the buffered live events newer than the
last delivered offset go out (:func:`~gateway.recovery.merge`) and the subscription switches to
direct delivery. A type with no stream yet gets its epoch here (``reserve_epoch``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from gateway import protocol as p
from gateway.broker import Entry, StreamState
from gateway.hub import Encoded
from gateway.recovery import can_recover, merge, position_before
from gateway.subscription import ConflatedSubscription, Subscription
from gateway.writer import Frame, Writer
from shared.backoff import delays
from shared.logsetup import ConnLogger
from shared.offsets import Offset, format_offset
from shared.redisconn import CONNECTION_ERRORS

if TYPE_CHECKING:
    from gateway.node import Node


class ReplayMixin:
    """Mixed into :class:`~gateway.session.Session`, which provides what is declared here."""

    node: Node
    writer: Writer
    closed: bool
    log: ConnLogger

    def send_control(self, message: dict[str, Any]) -> None:
        raise NotImplementedError

    def slow_consumer(self, why: str) -> None:
        raise NotImplementedError

    def can_see(self, entry_user: str) -> bool:
        raise NotImplementedError

    async def _start(self, sub: Subscription, command: p.Subscribe) -> None:
        node = self.node
        state = await self._with_retry(lambda: node.history.state(sub.event_type))
        if not state.epoch:  # no stream yet: subscribing establishes the epoch (CONTRACT 3)
            epoch = await self._with_retry(lambda: node.broker.reserve_epoch(sub.event_type))
            state = dataclasses.replace(state, epoch=epoch)
        node.reader.note_epoch(sub.event_type, state.epoch)
        reply: dict[str, Any] = {"type": "subscribed", "event_type": sub.event_type,
                                 "epoch": state.epoch}
        metrics = node.metrics
        if command.since is not None and can_recover(command.since, command.epoch, state):
            # Held for the whole replay, before the reply: a storm queues here, and a client is
            # never told recovered:true for a replay that then waits past its buffer.
            async with node.history.slots:
                if self.closed:
                    return
                sub.last = command.since
                self._reply(sub, p.with_id(reply | {"offset": format_offset(command.since),
                                                    "recovered": True}, command.id))
                delivered = await self._catch_up(sub)
            if delivered is None:
                return
            metrics.replays.labels("true").inc()
            metrics.replay_events.observe(delivered)
        elif command.since is not None:
            sub.last = state.last
            self._reply(sub, p.with_id(reply | {"offset": format_offset(state.last),
                                                "recovered": False, "earliest": state.earliest},
                                       command.id))
            metrics.replays.labels("false").inc()
            if await self._catch_up(sub) is None:
                return
        elif command.last is not None:
            history = await self._last(sub, command.last, state)
            start = position_before(history[0].pos) if history else state.last
            self._reply(sub, p.with_id(reply | {"offset": format_offset(start), "recovered": True},
                                       command.id))
            if await self._deliver(sub, history) is None:
                return
            sub.last = history[-1].pos if history else state.last
            metrics.replay_events.observe(len(history))
            if await self._catch_up(sub) is None:
                return
        else:
            sub.last = state.last
            self._reply(sub, p.with_id(reply | {"offset": format_offset(sub.last), "recovered": True},
                                       command.id))
            if await self._catch_up(sub) is None:
                return
        await self._go_live(sub)

    def _reply(self, sub: Subscription, reply: dict[str, Any]) -> None:
        sub.replied = True
        if isinstance(sub, ConflatedSubscription):
            reply["conflate_ms"] = sub.conflate_ms
        self.send_control(reply)

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
                elif not await self._push_paced([e.wire(sub.binary) for e in events], events[0].ts):
                    return
            if not sub.buffer:
                sub.recovering = False
                if isinstance(sub, ConflatedSubscription):
                    sub.release()
                return

    async def _push_paced(self, frames: list[Frame], ts: int = 0) -> bool:
        """Queue replayed frames in slices, waiting for the client to drain between them.

        A replay is as large as the client's backlog, which may be far larger than its queue:
        pacing keeps the queue under its limit, so only a client that stops reading gets 4008.
        """
        writer = self.writer
        limit = max(1, writer.max_bytes // 4)
        start = acc = 0
        for index, frame in enumerate(frames):
            acc += len(frame)
            if acc < limit and index < len(frames) - 1:
                continue
            await writer.wait_below(0.5)
            if self.closed:
                return False
            if not writer.push_many(frames[start:index + 1], acc, ts):
                self.slow_consumer("outgoing queue full during replay")
                return False
            start, acc = index + 1, 0
        return True

    async def _catch_up(self, sub: Subscription) -> int | None:
        """Push every visible matching event after ``sub.last`` up to the reader's position.

        The reader dispatches every entry after its position, and the subscription has been
        buffering those since it was registered; history up to that position closes the seam,
        whenever the reader learnt the stream (before or after this subscribe). None if the
        session was closed.
        """
        node, settings = self.node, self.node.settings
        target = await node.reader.position(sub.event_type)
        delivered = scanned = 0
        while sub.last < target:
            page = await self._with_retry(
                partial(node.history.after, sub.event_type, sub.last, settings.replay_page))
            if not page:
                break  # the stream ends before the reader's position: it went back (4009 follows)
            count = await self._deliver(sub, page)
            if count is None or self.closed:
                return None
            delivered += count
            sub.last = page[-1].pos
            await asyncio.sleep(0)  # pages from shared history never wait: let others run
            scanned += len(page)
            if scanned >= settings.replay_max_events:
                # More than one connection may carry: the client resumes from what it got.
                self.slow_consumer(f"replay passed {settings.replay_max_events} events")
                return None
        return delivered

    async def _last(self, sub: Subscription, n: int, state: StreamState) -> list[Entry]:
        settings = self.node.settings
        found: list[Entry] = []
        before: Offset | None = None
        scanned = 0
        while len(found) < n and scanned < settings.replay_max_events:
            page = await self._with_retry(
                partial(self.node.broker.history_before, sub.event_type, before, settings.replay_page))
            if not page:
                break
            for item in page:
                if sub.matches(item) and self.can_see(item.entry.user):
                    found.append(item)
                    if len(found) == n:
                        break
            scanned += len(page)
            before = page[-1].pos
        found.reverse()
        return found

    async def _deliver(self, sub: Subscription, items: list[Entry]) -> int | None:
        """Queue the replayed entries this subscription may see; None if the session closed."""
        if isinstance(sub, ConflatedSubscription):
            return await self._hold(sub, items)
        binary = sub.binary
        frames = [Encoded.of(item).wire(binary) for item in items
                  if sub.matches(item) and self.can_see(item.entry.user)]
        if frames and not await self._push_paced(frames):
            return None
        return len(frames)

    async def _hold(self, sub: ConflatedSubscription, items: list[Entry]) -> int | None:
        """A conflated replay holds the entries (the newest per symbol goes out at go-live).

        A replay that reaches ``REPLAY_MAX_EVENTS`` is cut with 4008 after this page, and the
        client resumes from the last event it received: what is held goes out first, and is
        written before the close, so the next connection starts past it instead of again.
        """
        kept = [Encoded.of(item) for item in items if sub.matches(item) and self.can_see(item.entry.user)]
        sub.hold(kept)
        sub.scanned += len(items)
        if sub.scanned >= self.node.settings.replay_max_events:
            sub.scanned = 0
            held = sub.conflater.flush(asyncio.get_running_loop().time())
            if held:
                if not await self._push_paced([e.wire(sub.binary) for e in held], held[0].ts):
                    return None
                await self.writer.wait_below(0.0)
                if self.closed:
                    return None
        return len(kept)

    async def _with_retry(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Redis calls made for a subscribe wait out a Redis outage (the connection stays)."""
        waits = delays(0.1, 5.0)
        while True:
            try:
                return await call()
            except CONNECTION_ERRORS as exc:
                wait = next(waits)
                self.log.warning("subscribe waiting for Redis (%s); retry in %.1f s", exc, wait)
                await asyncio.sleep(wait)
