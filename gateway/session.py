"""One client connection: its identity, subscriptions, limits and the recovery of each.

The session does not own the socket: it is given ``send`` and ``close`` callables (the ASGI
adapter in :mod:`gateway.endpoint`) and is fed frames through :meth:`Session.on_frame`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from gateway import protocol as p
from gateway.auth import AuthError, Principal
from gateway.broker import Entry, StreamState
from gateway.hub import Batch, Encoded
from gateway.recovery import can_recover, merge, position_before
from gateway.writer import Frame, Writer
from shared.backoff import delays
from shared.logsetup import conn_logger
from shared.offsets import Offset, format_offset
from shared.redisconn import CONNECTION_ERRORS

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from gateway.node import Node

log = logging.getLogger("tickstream.gateway.session")

RATE_WINDOW = 10.0  # seconds over which rate-limit violations are counted


class Subscription:
    """One event type a session receives, with its filter and delivery position."""

    __slots__ = ("binary", "buffer", "buffer_bytes", "event_type", "last", "recovering", "session",
                 "symbols", "writer")

    def __init__(self, session: Session, event_type: str, symbols: frozenset[str] | None) -> None:
        self.session = session
        self.writer = session.writer
        self.binary = session.wire.binary
        self.event_type = event_type
        self.symbols = symbols
        self.last: Offset = (0, 0)
        self.recovering = True  # live events are buffered until history is delivered
        self.buffer: list[Encoded] = []
        self.buffer_bytes = 0

    def offer(self, event: Encoded) -> None:
        """One live event (private events come one by one), in stream order."""
        if self.recovering:
            self._buffer([event])
        elif event.pos > self.last:
            self.last = event.pos
            item = event.wire(self.binary)
            if not self.writer.push_many([item], len(item), event.ts):
                self.session.slow_consumer("outgoing queue full")

    def offer_batch(self, batch: Batch) -> None:
        """A run of live events, in stream order; the wire list is shared with other subscribers."""
        events = batch.events
        if self.recovering:
            self._buffer(events)
            return
        if events[0].pos > self.last:
            items, size = batch.frames(self.binary)
        else:  # overlaps what a replay already delivered: keep only the newer ones
            events = [e for e in events if e.pos > self.last]
            if not events:
                return
            items = [e.wire(self.binary) for e in events]
            size = sum(map(len, items))
        self.last = events[-1].pos
        if not self.writer.push_many(items, size, events[0].ts):
            self.session.slow_consumer("outgoing queue full")

    def _buffer(self, events: list[Encoded]) -> None:
        self.buffer.extend(events)
        self.buffer_bytes += sum(len(e.entry.payload) for e in events) + 64 * len(events)
        if self.buffer_bytes > self.writer.max_bytes:
            self.session.slow_consumer("live events piled up during a replay")

    def matches(self, item: Entry) -> bool:
        return self.symbols is None or item.entry.symbol in self.symbols


class Session:
    def __init__(
        self,
        node: Node,
        send: Callable[[Frame], Awaitable[None]],
        close: Callable[[int, str], Coroutine[Any, Any, None]],
        send_now: Callable[[list[Frame]], bool] | None,
        wire: p.Wire,
        *,
        batch: bool,
        batch_ms: float,
        principal: Principal | None,
        remote: str = "",
    ) -> None:
        settings = node.settings
        self.node = node
        self.id = os.urandom(8).hex()
        self.wire = wire
        self.principal = principal
        self.remote = remote
        self.subs: dict[str, Subscription] = {}
        self.writer = Writer(send, wire, max_bytes=settings.slow_client_max_bytes, batch=batch,
                             batch_ms=batch_ms, on_latency=node.metrics.latency.observe,
                             send_now=send_now, flusher=node.flusher)
        self.log = conn_logger(log, self.id)
        self._close = close
        self._pending: dict[str, asyncio.Task[None]] = {}
        self._closing: asyncio.Task[None] | None = None
        self.closed = False
        self.close_code: int | None = None
        # token bucket for client messages
        self._rate = settings.client_rate_limit
        self._tokens = settings.client_rate_limit
        self._refilled = time.monotonic()
        self._violations: list[float] | None = None  # made at the first rate-limit violation

    # --- identity ----------------------------------------------------------------------------

    @property
    def user(self) -> str | None:
        return self.principal.user if self.principal else None

    @property
    def is_admin(self) -> bool:
        return self.principal is not None and self.principal.has_role(self.node.settings.admin_role)

    def can_see(self, entry_user: str) -> bool:
        return not entry_user or entry_user == self.user or self.is_admin

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.send_control({
            "type": "welcome", "session": self.id, "node": self.node.settings.node,
            "protocol": p.PROTOCOL_VERSION, "heartbeat": self.node.settings.heartbeat_interval,
            "user": self.user,
        })

    def send_control(self, message: dict[str, Any]) -> None:
        if not self.writer.closed and not self.writer.push(self.wire.encode(message)):
            self.slow_consumer("outgoing queue full")

    def close(self, code: int, reason: str) -> None:
        """Close the connection with ``code`` (idempotent); pending output is dropped."""
        if self.closed:
            return
        self.closed = True
        self.close_code = code
        self.writer.close()
        self.node.metrics.closes.labels(str(code)).inc()
        self.log.info("closing with %d: %s", code, reason)
        self._closing = asyncio.create_task(self._close(code, reason[:120]))

    def slow_consumer(self, why: str) -> None:
        if not self.closed:
            self.node.metrics.slow_consumers.inc()
            self.close(p.CLOSE_SLOW, f"slow consumer: {why}")

    async def finish(self) -> None:
        """The connection is gone: stop every task and leave the hub."""
        self.closed = True
        self.writer.close()
        self.node.hub.remove(self)
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.writer.wait_closed()

    # --- incoming ----------------------------------------------------------------------------

    async def on_frame(self, frame: str | bytes, binary: bool) -> None:
        if self.closed:
            return
        if not self._take_token():
            return
        if len(frame) > self.node.settings.max_message_bytes:
            self._error(p.ClientError("too_large", f"message of {len(frame)} bytes is over the "
                                      f"{self.node.settings.max_message_bytes} limit"))
            return
        try:
            command = p.parse(frame, binary)
            if isinstance(command, p.Subscribe):
                self._subscribe(command)
            elif isinstance(command, p.Unsubscribe):
                self._unsubscribe(command)
            elif isinstance(command, p.Ping):
                self.send_control(p.with_id({"type": "pong", "ts": p.now_ms()}, command.id))
            else:
                self._auth(command)
        except p.ClientError as exc:
            self._error(exc)

    def _error(self, exc: p.ClientError) -> None:
        self.node.metrics.client_errors.labels(exc.code).inc()
        self.send_control(p.error(exc.code, exc.message, exc.msg_id))

    def _take_token(self) -> bool:
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        violations = [t for t in self._violations or () if now - t < RATE_WINDOW]
        violations.append(now)
        self._violations = violations
        if len(violations) > self._rate * 2:
            self.close(p.CLOSE_POLICY, "sustained rate-limit violations")
        elif len(violations) == 1 or len(violations) % max(1, int(self._rate)) == 0:
            self._error(p.ClientError("rate_limited", f"over {self._rate:g} messages per second; "
                                      "messages are being dropped"))
        return False

    def _auth(self, command: p.Auth) -> None:
        try:
            principal = self.node.auth.verify(command.token)
        except AuthError as exc:
            raise p.ClientError("unauthorized", str(exc), command.id) from None
        if self.principal is not None and principal.user != self.principal.user:
            raise p.ClientError("forbidden", "the token is for another user: reconnect to switch",
                                command.id)
        old_user, was_admin = self.user, self.is_admin
        self.principal = principal
        self.node.hub.user_changed(self, old_user, was_admin)
        self.send_control(p.with_id({"type": "authenticated", "user": principal.user}, command.id))

    def _unsubscribe(self, command: p.Unsubscribe) -> None:
        self._drop(command.event_type)
        self.send_control(p.with_id({"type": "unsubscribed", "event_type": command.event_type},
                                    command.id))

    def _drop(self, event_type: str) -> None:
        task = self._pending.pop(event_type, None)
        if task is not None:
            task.cancel()
        sub = self.subs.pop(event_type, None)
        if sub is not None:
            self.node.hub.unindex(sub)

    def _subscribe(self, command: p.Subscribe) -> None:
        settings = self.node.settings
        if command.event_type not in self.subs and len(self.subs) >= settings.max_subscriptions:
            raise p.ClientError("forbidden", f"at most {settings.max_subscriptions} subscriptions "
                                "per connection", command.id)
        if command.event_type in settings.private_types and self.user is None:
            raise p.ClientError("unauthorized", f"{command.event_type} is private: authenticate "
                                "first", command.id)
        previous = self.subs.get(command.event_type)
        if previous is not None and command.since is None and command.last is None \
                and previous.last != (0, 0):
            # A new filter for a running subscription: continue from where it stands, no gap.
            command = p.Subscribe(command.id, command.event_type, command.symbols, previous.last,
                                  None, None)
        self._drop(command.event_type)
        sub = Subscription(self, command.event_type, command.symbols)
        self.subs[command.event_type] = sub
        self.node.hub.index(sub)  # from here on, live events are captured
        self.node.reader.watch(command.event_type)
        task = asyncio.create_task(self._start(sub, command))
        self._pending[command.event_type] = task
        task.add_done_callback(partial(self._settled, command.event_type))

    def _settled(self, event_type: str, task: asyncio.Task[None]) -> None:
        if self._pending.get(event_type) is task:
            del self._pending[event_type]
        if not task.cancelled() and task.exception() is not None:
            self.log.error("subscription to %s failed: %r", event_type, task.exception())
            self.close(1011, "internal error")

    # --- recovery ----------------------------------------------------------------------------

    async def _start(self, sub: Subscription, command: p.Subscribe) -> None:
        state = await self._with_retry(lambda: self.node.broker.state(sub.event_type))
        self.node.reader.note_epoch(sub.event_type, state.epoch)
        reply: dict[str, Any] = {"type": "subscribed", "event_type": sub.event_type,
                                 "epoch": state.epoch}
        metrics = self.node.metrics
        if command.since is not None:
            if can_recover(command.since, command.epoch, state):
                reply.update(offset=format_offset(command.since), recovered=True)
                self.send_control(p.with_id(reply, command.id))
                delivered = await self._replay_since(sub, command.since)
                if delivered is None:
                    return
                metrics.replays.labels("true").inc()
                metrics.replay_events.observe(delivered)
            else:
                sub.last = state.last
                reply.update(offset=format_offset(state.last), recovered=False,
                             earliest=state.earliest)
                metrics.replays.labels("false").inc()
                self.send_control(p.with_id(reply, command.id))
        elif command.last is not None:
            history = await self._last(sub, command.last, state)
            start = position_before(history[0].pos) if history else state.last
            reply.update(offset=format_offset(start), recovered=True)
            self.send_control(p.with_id(reply, command.id))
            if await self._deliver(sub, history) is None:
                return
            sub.last = history[-1].pos if history else state.last
            metrics.replay_events.observe(len(history))
        else:
            sub.last = state.last
            reply.update(offset=format_offset(sub.last), recovered=True)
            self.send_control(p.with_id(reply, command.id))
        await self._go_live(sub)

    async def _go_live(self, sub: Subscription) -> None:
        """Deliver what was buffered during the replay, then switch to direct delivery.

        Delivering may wait for the client to drain; live events arriving meanwhile join the
        buffer, so the loop runs until it is empty at a moment with nothing left to await.
        """
        while True:
            buffered, sub.buffer, sub.buffer_bytes = sub.buffer, [], 0
            events = merge((), buffered, sub.last)
            if events:
                sub.last = events[-1].pos
                if not await self._push_paced([e.wire(sub.binary) for e in events], events[0].ts):
                    return
            if not sub.buffer:
                sub.recovering = False
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

    async def _replay_since(self, sub: Subscription, since: Offset) -> int | None:
        """Push every visible matching event after ``since``; None if the session was closed."""
        settings = self.node.settings
        after, delivered, scanned = since, 0, 0
        while True:
            page = await self._with_retry(
                partial(self.node.broker.history, sub.event_type, after, settings.replay_page))
            if not page:
                break
            count = await self._deliver(sub, page)
            if count is None or self.closed:
                return None
            delivered += count
            after = sub.last = page[-1].pos
            scanned += len(page)
            if scanned >= settings.replay_max_events:
                # More than one connection may carry: the client resumes from what it got.
                self.slow_consumer(f"replay passed {settings.replay_max_events} events")
                return None
            if len(page) < settings.replay_page:
                break
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
        binary = sub.binary
        frames = [Encoded(item).wire(binary) for item in items
                  if sub.matches(item) and self.can_see(item.entry.user)]
        if frames and not await self._push_paced(frames):
            return None
        return len(frames)

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

    # --- periodic checks (called by the node's ticker) ----------------------------------------

    def tick(self, now_wall: float, now_mono: float) -> None:
        if self.closed:
            return
        if self.principal is not None and self.principal.expired(now_wall):
            self.close(p.CLOSE_UNAUTHORIZED, "token expired")
            return
        if now_mono - self.writer.last_activity >= self.node.settings.heartbeat_interval:
            self.writer.last_activity = now_mono
            self.send_control({"type": "heartbeat", "ts": p.now_ms()})
