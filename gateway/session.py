"""One client connection: its identity, its subscriptions, its limits and its messages.

The session does not own the socket: it is given ``send`` and ``close`` callables (the ASGI
adapter in :mod:`gateway.endpoint`) and is fed frames through :meth:`Session.on_frame`. How a
subscription starts (history, then live) is in :mod:`gateway.replay`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from functools import partial
from typing import TYPE_CHECKING, Any

from gateway import protocol as p
from gateway.auth import AuthError, Principal
from gateway.replay import ReplayMixin
from gateway.subscription import Subscription, make_subscription
from gateway.writer import Frame, Writer
from shared.logsetup import conn_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from gateway.node import Node

log = logging.getLogger("tickstream.gateway.session")

NOTICE_INTERVAL = 1.0  # at most one id-less rate_limited error per this many seconds


class RateLimiter:
    """The client-message rate rule, on a clock the caller passes in (monotonic seconds).

    A token bucket: ``rate`` messages per second with a burst of one second's worth
    (``max(1, rate)``). A message that finds no token is dropped (:meth:`take` says False).
    Drops are grouped in runs of one-second windows counted from the first drop of the run;
    a window without a drop ends the run. :attr:`abusive` turns true when a run covers
    ``abuse_seconds`` consecutive windows: the client kept violating the limit for that long
    (at least ``abuse_seconds - 1`` seconds), which a burst, however large, does not.
    """

    __slots__ = ("_last_window", "_next_notice", "_refilled", "_run_start", "_tokens",
                 "abuse_seconds", "burst", "dropped", "rate")

    def __init__(self, rate: float, abuse_seconds: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.abuse_seconds = abuse_seconds
        self.dropped = 0
        self._tokens = self.burst
        self._refilled = now
        self._run_start: float | None = None  # when the current run of drops began
        self._last_window = -1  # the run's last window (0 = the second after its first drop)
        self._next_notice = float("-inf")

    def take(self, now: float) -> bool:
        """One message arrives at ``now``: True to handle it, False to drop it."""
        tokens = min(self.burst, self._tokens + max(0.0, now - self._refilled) * self.rate)
        self._refilled = now
        if tokens >= 1:
            self._tokens = tokens - 1
            return True
        self._tokens = tokens
        self.dropped += 1
        start = self._run_start
        window = -1 if start is None else int((now - start) // 1.0)
        if start is None or window > self._last_window + 1:  # no run, or a quiet window: a new run
            self._run_start, self._last_window = now, 0
        elif window > self._last_window:
            self._last_window = window
        return False

    @property
    def run_seconds(self) -> int:
        """Consecutive one-second windows with drops in the current run (0: none yet)."""
        return 0 if self._run_start is None else self._last_window + 1

    @property
    def abusive(self) -> bool:
        return self.run_seconds >= self.abuse_seconds

    def notice_due(self, now: float) -> bool:
        """Whether an id-less ``rate_limited`` error may go out now (at most one per second)."""
        if now < self._next_notice:
            return False
        self._next_notice = now + NOTICE_INTERVAL
        return True


class Session(ReplayMixin):
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
        # subscribe tasks still running, with the id of the subscribe each one answers
        self._pending: dict[str, tuple[asyncio.Task[None], p.MsgId]] = {}
        self._closing: asyncio.Task[None] | None = None
        self.closed = False
        self.close_code: int | None = None
        self.limiter = RateLimiter(settings.client_rate_limit, settings.client_rate_abuse_seconds,
                                   time.monotonic())

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
        for sub in self.subs.values():
            sub.close()
        tasks = [task for task, _ in self._pending.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.writer.wait_closed()

    # --- incoming ----------------------------------------------------------------------------

    async def on_frame(self, frame: str | bytes, binary: bool) -> None:
        if self.closed:
            return
        if not self._take_token(frame, binary):
            return
        if len(frame) > self.node.settings.max_message_bytes:
            # still answered with its id (the frame is at most MAX_FRAME_BYTES)
            self._error(p.ClientError("too_large", f"message of {len(frame)} bytes is over the "
                                      f"{self.node.settings.max_message_bytes} limit",
                                      p.message_id(frame, binary)))
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

    def _take_token(self, frame: str | bytes, binary: bool) -> bool:
        """Apply the rate limit: False when the message is dropped (it is answered here)."""
        limiter, now = self.limiter, time.monotonic()
        if limiter.take(now):
            return True
        if limiter.abusive:
            self.close(p.CLOSE_POLICY, f"rate limit exceeded in each of {limiter.run_seconds} "
                       "consecutive seconds")
            return False
        # A dropped request with an id is still answered, so every request gets one reply;
        # messages without one share at most one error per second.
        msg_id = p.message_id(frame, binary) if len(frame) <= self.node.settings.max_message_bytes \
            else None
        if msg_id is not None or limiter.notice_due(now):
            self._error(p.ClientError("rate_limited", f"over {limiter.rate:g} messages per second: "
                                      "message dropped", msg_id))
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
        """End the subscription to ``event_type``, if any (for an unsubscribe or a replacement).

        A subscribe still waiting for its ``subscribed`` reply is answered now, with an error,
        so that every request gets exactly one reply, and before the reply to the request that
        cancelled it.
        """
        pending = self._pending.pop(event_type, None)
        sub = self.subs.pop(event_type, None)
        if pending is not None:
            task, msg_id = pending
            task.cancel()  # it cannot queue its reply any more: _reply is not reached
            if sub is not None and not sub.replied:
                self._error(p.ClientError("bad_request", f"subscription to {event_type} was "
                                          "cancelled by a later request before it started", msg_id))
        if sub is not None:
            self.node.hub.unindex(sub)
            sub.close()

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
                and previous.position != (0, 0):
            # A new filter for a running subscription: continue from where it stands, no gap.
            # (The new request's conflate_ms applies: subscribing again without it turns it off.)
            command = dataclasses.replace(command, since=previous.position, epoch=None, last=None)
        self._drop(command.event_type)
        sub = make_subscription(self, command.event_type, command.symbols, command.conflate_ms)
        self.subs[command.event_type] = sub
        self.node.hub.index(sub)  # from here on, live events are captured
        self.node.reader.watch(command.event_type)
        task = asyncio.create_task(self._start(sub, command))
        self._pending[command.event_type] = (task, command.id)
        task.add_done_callback(partial(self._settled, command.event_type))

    def _settled(self, event_type: str, task: asyncio.Task[None]) -> None:
        pending = self._pending.get(event_type)
        if pending is not None and pending[0] is task:
            del self._pending[event_type]
        if not task.cancelled() and task.exception() is not None:
            self.log.error("subscription to %s failed: %r", event_type, task.exception())
            self.close(1011, "internal error")

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
