"""One client connection: its identity, its subscriptions, its limits and its messages.

The session does not own the socket: it is given ``send`` and ``close`` callables (the ASGI
adapter in :mod:`gateway.endpoint`) and is fed frames through :meth:`Session.on_frame`. What
it uses of the node is exactly its :class:`SessionContext`: the settings, the metrics, where
subscriptions are indexed for live events (:class:`Routes`, the hub), the
:class:`~gateway.replay.Replayer` that starts them (history, then live), the token check and
the flusher its writer uses.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

from gateway import protocol as p
from gateway.auth import AuthError, Principal
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from gateway.replay import Replayer
from gateway.settings import GatewaySettings
from gateway.subscription import Subscription, make_subscription
from gateway.values import Frame
from gateway.writer import Flusher, Sink, Writer
from shared.logsetup import conn_logger

log = logging.getLogger("tickstream.gateway.session")

class Routes(Protocol):
    """Where a session's subscriptions are indexed for live events (the hub)."""

    def index(self, sub: Subscription) -> None:
        """Start (or, after its user changed, re-route) live delivery to ``sub``."""

    def unindex(self, sub: Subscription) -> None:
        """Stop live delivery to ``sub``."""


@dataclass(frozen=True, slots=True)
class SessionContext:
    """What every session of a node is given: built once by the node, shared by all."""

    settings: GatewaySettings
    metrics: GatewayMetrics
    routes: Routes
    replayer: Replayer
    verify: Callable[[str], Principal]  # a token's principal; raises AuthError
    flusher: Flusher


class Session:
    """Owns one connection: its principal, its subscriptions, its rate limit and its writer.

    It parses the client's messages and answers them, registers subscriptions with the routes
    and has the replayer start them, and closes the connection (4008 slow consumer, 1008 abuse,
    4401 expired token, 4009 through a subscription's resync).
    """

    def __init__(
        self,
        ctx: SessionContext,
        send: Callable[[Frame], Awaitable[None]],
        close: Callable[[int, str], Coroutine[Any, Any, None]],
        sink: Sink | None,
        wire: p.Wire,
        *,
        batch: bool,
        batch_ms: float,
        principal: Principal | None,
        remote: str = "",
    ) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.id = os.urandom(8).hex()
        self.wire = wire
        self.principal = principal
        self.remote = remote
        self.subs: dict[str, Subscription] = {}
        # on_latency: writes of the slow path (the flusher reports the fast path's, per round).
        # batch_ms bounds how long an event is held: the paced reader held it up to
        # WRITE_COALESCE_MS already, so the writer waits only for the rest.
        self.writer = Writer(send, wire, max_bytes=settings.slow_client_max_bytes, batch=batch,
                             batch_ms=max(0.0, batch_ms - settings.write_coalesce_ms),
                             on_latency=ctx.metrics.latency.observe,
                             sink=sink, flusher=ctx.flusher,
                             on_failure=lambda: self.close(p.CLOSE_INTERNAL, "send failed"))
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
        return self.principal is not None and self.principal.has_role(self.ctx.settings.admin_role)

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        self.send_control({
            "type": "welcome", "session": self.id, "node": self.ctx.settings.node,
            "protocol": p.PROTOCOL_VERSION, "heartbeat": self.ctx.settings.heartbeat_interval,
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
        self.ctx.metrics.closes.labels(str(code)).inc()
        self.log.info("closing with %d: %s", code, reason)
        self._closing = asyncio.create_task(self._close(code, reason[:120]))

    # --- as the node's shedder sees it (gateway.shedding.Sheddable) -----------------------------

    @property
    def queued_bytes(self) -> int:
        return self.writer.queued_bytes

    @property
    def messages_sent(self) -> int:
        return self.writer.messages_sent

    def shed(self) -> bool:
        if self.closed:
            return False
        self.ctx.metrics.shed.inc()
        self.close(p.CLOSE_SLOW, "server overloaded: reconnect and resume")
        return True

    def slow_consumer(self, why: str) -> None:
        if not self.closed:
            self.ctx.metrics.slow_consumers.inc()
            self.close(p.CLOSE_SLOW, f"slow consumer: {why}")

    async def finish(self) -> None:
        """The connection is gone: stop every task and every subscription."""
        self.closed = True
        self.writer.close()
        for sub in self.subs.values():
            self.ctx.routes.unindex(sub)
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
        if len(frame) > self.ctx.settings.max_message_bytes:
            # still answered with its id (the frame is at most MAX_FRAME_BYTES)
            self._error(p.ClientError("too_large", f"message of {len(frame)} bytes is over the "
                                      f"{self.ctx.settings.max_message_bytes} limit",
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
        self.ctx.metrics.client_errors.labels(exc.code).inc()
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
        msg_id = p.message_id(frame, binary) if len(frame) <= self.ctx.settings.max_message_bytes \
            else None
        if msg_id is not None or limiter.notice_due(now):
            self._error(p.ClientError("rate_limited", f"over {limiter.rate:g} messages per second: "
                                      "message dropped", msg_id))
        return False

    def _auth(self, command: p.Auth) -> None:
        try:
            principal = self.ctx.verify(command.token)
        except AuthError as exc:
            raise p.ClientError("unauthorized", str(exc), command.id) from None
        if self.principal is not None and principal.user != self.principal.user:
            raise p.ClientError("forbidden", "the token is for another user: reconnect to switch",
                                command.id)
        self.principal = principal
        for sub in self.subs.values():  # a new user or new roles: private events re-routed
            self.ctx.routes.index(sub)
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
            self.ctx.routes.unindex(sub)
            sub.close()

    def _subscribe(self, command: p.Subscribe) -> None:
        settings, replayer = self.ctx.settings, self.ctx.replayer
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
        sub = make_subscription(self, self.writer, command.event_type, command.symbols,
                                command.conflate_ms)
        self.subs[command.event_type] = sub
        self.ctx.routes.index(sub)  # from here on, live events are captured
        replayer.watch(command.event_type)
        task = asyncio.create_task(replayer.start(sub, command, self.send_control, self.log))
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
        if now_mono - self.writer.last_activity >= self.ctx.settings.heartbeat_interval:
            self.writer.last_activity = now_mono
            self.send_control({"type": "heartbeat", "ts": p.now_ms()})
