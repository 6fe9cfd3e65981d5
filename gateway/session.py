"""One client connection: its identity, its subscriptions, its limits and its messages.

The session does not own the socket: it is given ``send`` and ``close`` callables (the ASGI
adapter in :mod:`gateway.endpoint`) and is fed frames through :meth:`Session.on_frame`. How a
subscription starts (history, then live) is in :mod:`gateway.replay`.
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
from gateway.replay import ReplayMixin
from gateway.subscription import Subscription
from gateway.writer import Frame, Writer
from shared.logsetup import conn_logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from gateway.node import Node

log = logging.getLogger("tickstream.gateway.session")

RATE_WINDOW = 10.0  # seconds over which rate-limit violations are counted


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
