"""One WebSocket connection to a gateway, from the handshake to the close frame.

It reads the ``welcome``, re-sends every subscription (with ``since`` and ``epoch`` once known),
then reads frames until the connection ends, and returns why (:class:`Ended`); its owner (the
client) decides whether and when to connect again. What it needs from that owner and from each
subscription is spelled out below (:class:`ConnectionOwner`, :class:`Stream`): this module
imports neither the client nor the subscription. Beside the reader run a writer (client
messages, paced under the gateway's rate limit), a latency pinger and the token refresher.

Dead-connection detection: waiting for a frame longer than the gateway's ``heartbeat`` plus
``heartbeat_timeout`` ends the connection (the gateway sends a ``heartbeat`` message on every
idle interval). Time spent waiting for the application to make room in a full subscription
queue does not count: that is backpressure, not a dead peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Origin, Subprotocol

from shared import __version__
from shared.client.errors import SubscriptionError
from shared.client.model import Event, Reset
from shared.client.options import ClientOptions
from shared.client.tokens import TokenProvider
from shared.client.wire import (
    CLOSE_ABNORMAL,
    SUBPROTOCOL_JSON,
    SUBPROTOCOL_MSGPACK,
    ProtocolError,
    decode,
    encode,
    redact,
    ws_url,
)
from shared.logsetup import ConnLogger, conn_logger

log = logging.getLogger("tickstream.client")

SEND_RATE = 20.0  # client messages per second (the gateway's default limit is 50)
SEND_BURST = 20.0
RATE_LIMITED_RETRY = 1.0  # seconds before a request dropped by the gateway's rate limit goes again
CLOSE_TIMEOUT = 2.0


class Ended(NamedTuple):
    """Why a connection ended: the close code (None without a close frame) and a reason."""

    code: int | None
    reason: str
    welcomed: bool


class Stream(Protocol):
    """One subscription as a connection sees it: where its events go, how it is (re)sent."""

    @property
    def event_type(self) -> str: ...

    @property
    def pending_id(self) -> int | None:
        """The id of the subscribe in flight on this connection, if any."""

    def subscribe_message(self, op_id: int, /) -> dict[str, Any]:
        """The subscribe op to send (from the stream's position); marks it in flight."""

    def on_subscribed(self, reply: dict[str, Any], /) -> Reset | None:
        """Apply a ``subscribed`` reply; the Reset when it says ``recovered: false``."""

    def accept(self, message: dict[str, Any], /) -> Event | None:
        """An event message -> the Event to queue, or None (a duplicate, or a stale filter)."""

    def offer(self, event: Event, /) -> bool:
        """Queue ``event`` if there is room (False: full, nothing queued)."""

    async def put(self, event: Event, /) -> None:
        """Queue ``event``, waiting for room (the reader stops reading meanwhile)."""

    def detach(self) -> None:
        """The connection ended: nothing is in flight any more."""


class ConnectionOwner(Protocol):
    """What a connection needs from the client that owns it."""

    @property
    def options(self) -> ClientOptions: ...

    @property
    def tokens(self) -> TokenProvider: ...

    @property
    def subscriptions(self) -> Mapping[str, Stream]:
        """The live subscriptions by event type (re-sent on every welcome)."""

    def next_id(self) -> int:
        """A fresh id for a client message (unique across the owner's connections)."""

    def welcomed(self, conn: Connection, /) -> None:
        """The gateway's ``welcome`` arrived on ``conn``."""

    def measured(self, conn: Connection, /) -> None:
        """A ``pong`` updated ``conn.latency``."""

    def refused(self, event_type: str, error: BaseException, /) -> None:
        """The gateway refused the subscribe in flight for ``event_type``: drop it with ``error``."""

    def notify_reset(self, reset: Reset, /) -> None:
        """A resume came back ``recovered: false``."""


class Connection:
    """One WebSocket connection of ``owner``; :meth:`run` it once, it returns why it ended."""

    def __init__(self, owner: ConnectionOwner, url: str, token: str | None, conn_id: str) -> None:
        self.owner = owner
        self.options = owner.options
        self.url = url
        self.token = token
        self.log: ConnLogger = conn_logger(log, conn_id)
        self.binary = False
        self.node: str | None = None
        self.session: str | None = None
        self.heartbeat = 30.0
        self.ready = False  # welcomed: subscriptions go straight out
        self.latency: float | None = None
        self._outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._ops: dict[int, tuple[str, Any]] = {}  # id -> (kind, subscription or ping time)
        self._tasks: list[asyncio.Task[None]] = []
        self._timers: set[asyncio.TimerHandle] = set()
        self._loop = asyncio.get_running_loop()

    # --- life cycle ------------------------------------------------------------------------------

    async def run(self) -> Ended:
        opts = self.options
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
        protocol = SUBPROTOCOL_MSGPACK if opts.format == "msgpack" else SUBPROTOCOL_JSON
        self.log.debug("connecting to %s", redact(self.url))
        try:
            ws = await ws_connect(
                ws_url(self.url, batch=opts.batch, batch_ms=opts.batch_ms),
                subprotocols=[Subprotocol(protocol)], additional_headers=headers,
                open_timeout=opts.open_timeout, ping_interval=None, close_timeout=CLOSE_TIMEOUT,
                max_size=None, user_agent_header=f"tickstream-python/{__version__}",
                origin=Origin(opts.origin) if opts.origin else None)
        except (OSError, InvalidHandshake, TimeoutError) as exc:
            return Ended(None, f"cannot connect: {exc or type(exc).__name__}", False)
        self.binary = ws.subprotocol == SUBPROTOCOL_MSGPACK
        ended: Ended | None = None
        try:
            ended = await self._serve(ws)
            return ended
        except ProtocolError as exc:
            ended = Ended(None, f"protocol error: {exc}", self.node is not None)
            return ended
        finally:
            self.ready = False
            for sub in self.owner.subscriptions.values():
                sub.detach()
            for task in self._tasks:
                task.cancel()
            for timer in self._timers:
                timer.cancel()
            self._timers.clear()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            if ended is not None and ended.code is None:
                ws.transport.abort()  # dead or misbehaving: no closing handshake
            await ws.close()

    async def _serve(self, ws: ClientConnection) -> Ended:
        try:
            async with asyncio.timeout(self.options.open_timeout):
                first = await ws.recv()
        except TimeoutError:
            return Ended(None, "no welcome from the gateway", False)
        except ConnectionClosed as exc:
            return self._closed(exc, welcomed=False)
        messages = decode(first)
        welcome = messages[0]
        if welcome.get("type") != "welcome":
            raise ProtocolError(f"expected a welcome message, got {str(welcome)[:120]}")
        self.node, self.session = str(welcome.get("node")), str(welcome.get("session"))
        heartbeat = welcome.get("heartbeat")
        if isinstance(heartbeat, int | float) and heartbeat > 0:
            self.heartbeat = float(heartbeat)
        self.log.info("connected to %s: node=%s session=%s user=%s", redact(self.url), self.node,
                      self.session, welcome.get("user"))
        self.log = conn_logger(log, self.session)  # the gateway logs this connection under it
        self.owner.welcomed(self)
        spawn = self._loop.create_task
        self._tasks.append(spawn(self._write(ws), name=f"tickstream-writer-{self.session}"))
        self.ping()
        self.ready = True
        for sub in list(self.owner.subscriptions.values()):
            self.subscribe(sub)
        self._tasks.append(spawn(self._ping_every(), name=f"tickstream-pinger-{self.session}"))
        if self.owner.tokens.refreshable:
            self._tasks.append(spawn(self._refresh_token(), name=f"tickstream-auth-{self.session}"))
        for message in messages[1:]:
            await self._dispatch(message)
        return await self._read(ws)

    def _closed(self, exc: ConnectionClosed, welcomed: bool) -> Ended:
        if exc.rcvd is None:
            return Ended(CLOSE_ABNORMAL, "no close frame", welcomed)
        return Ended(exc.rcvd.code, exc.rcvd.reason, welcomed)

    # --- reading -------------------------------------------------------------------------------

    async def _read(self, ws: ClientConnection) -> Ended:
        limit = self.heartbeat + self.options.heartbeat_timeout
        subs = self.owner.subscriptions
        recv = ws.recv
        while True:
            try:
                async with asyncio.timeout(limit):
                    frame = await recv()
            except TimeoutError:
                self.log.warning("no frame for %.1f s: connection presumed dead", limit)
                return Ended(None, f"heartbeat timeout: no frame for {limit:g} s", True)
            except ConnectionClosed as exc:
                return self._closed(exc, welcomed=True)
            for message in decode(frame):
                if "type" in message:
                    self._control(message)
                    continue
                sub = subs.get(message.get("event_type"))  # type: ignore[arg-type]
                if sub is None:
                    continue
                event = sub.accept(message)
                if event is not None and not sub.offer(event):
                    # Full: stop reading until the application makes room (TCP backpressure).
                    self.log.debug("%s queue full: reading paused", sub.event_type)
                    await sub.put(event)

    async def _dispatch(self, message: dict[str, Any]) -> None:
        if "type" in message:
            self._control(message)
            return
        sub = self.owner.subscriptions.get(message.get("event_type"))  # type: ignore[arg-type]
        if sub is not None and (event := sub.accept(message)) is not None:
            await sub.put(event)

    def _control(self, message: dict[str, Any]) -> None:
        kind, op_id = message.get("type"), message.get("id")
        op = self._ops.pop(op_id, None) if isinstance(op_id, int) else None
        if kind == "subscribed":
            sub = self.owner.subscriptions.get(message.get("event_type"))  # type: ignore[arg-type]
            if sub is not None and (reset := sub.on_subscribed(message)) is not None:
                self.owner.notify_reset(reset)
        elif kind == "pong":
            if op is not None and op[0] == "ping":
                self.latency = self._loop.time() - op[1]
                self.owner.measured(self)
        elif kind == "error":
            self._error(message, op_id, op)
        elif kind == "authenticated":
            self.log.info("token refreshed on the connection (user %s)", message.get("user"))
        elif kind not in ("heartbeat", "unsubscribed"):
            self.log.debug("ignoring message of type %r", kind)

    def _error(self, message: dict[str, Any], op_id: Any, op: tuple[str, Any] | None) -> None:
        code, text = str(message.get("code")), str(message.get("message"))
        kind = op[0] if op is not None else None
        if code == "rate_limited" and op is not None and kind != "ping":
            # Dropped, not refused: the same request goes again a second later.
            self.log.warning("%s dropped by the gateway's rate limit; retrying in %g s", kind,
                             RATE_LIMITED_RETRY)
            self._later(RATE_LIMITED_RETRY, self._retry, op_id, op)
        elif op is not None and kind == "subscribe":
            sub: Stream = op[1]
            # Only the answer to the subscribe in flight counts: one superseded by a later
            # subscribe of the same type (update()) is answered with an error by the gateway
            # when it was cancelled before it started, and the later one's reply follows.
            if self.owner.subscriptions.get(sub.event_type) is sub and sub.pending_id == op_id:
                self.owner.refused(sub.event_type, SubscriptionError(sub.event_type, code, text))
        elif kind == "auth":
            self.log.warning("token refresh refused (%s): %s", code, text)
        else:
            self.log.warning("gateway error %s: %s", code, text)

    def _later(self, delay: float, callback: Callable[..., None], *args: Any) -> None:
        """``callback(*args)`` in ``delay`` seconds, unless the connection ends first."""
        def fire() -> None:
            self._timers.discard(handle)
            callback(*args)

        handle = self._loop.call_later(delay, fire)
        self._timers.add(handle)

    def _retry(self, op_id: Any, op: tuple[str, Any]) -> None:
        """Send again a request the gateway dropped under its rate limit, if still wanted."""
        if not self.ready:
            return  # a new connection sends what is still wanted
        kind, ref = op
        if kind == "subscribe":
            sub: Stream = ref
            if self.owner.subscriptions.get(sub.event_type) is sub and sub.pending_id == op_id:
                self.subscribe(sub)
        elif kind == "unsubscribe":
            if isinstance(ref, str) and ref not in self.owner.subscriptions:
                self.send({"op": "unsubscribe", "event_type": ref}, "unsubscribe", ref)
        elif kind == "auth" and isinstance(ref, str) and ref == self.owner.tokens.current:
            self.send({"op": "auth", "token": ref}, "auth", ref)  # unless a newer one replaced it

    # --- writing -------------------------------------------------------------------------------

    def send(self, message: dict[str, Any], kind: str, ref: Any = None) -> None:
        op_id = self.owner.next_id()
        message["id"] = op_id
        self._ops[op_id] = (kind, ref)
        self._outbox.put_nowait(message)

    def subscribe(self, sub: Stream) -> None:
        op_id = self.owner.next_id()
        self._ops[op_id] = ("subscribe", sub)
        self._outbox.put_nowait(sub.subscribe_message(op_id))

    def ping(self) -> None:
        self.send({"op": "ping"}, "ping", self._loop.time())

    async def _write(self, ws: ClientConnection) -> None:
        """Send queued messages in order, at most SEND_RATE per second after a burst."""
        loop, allowance, last = self._loop, SEND_BURST, self._loop.time()
        while True:
            message = await self._outbox.get()
            now = loop.time()
            allowance, last = min(SEND_BURST, allowance + (now - last) * SEND_RATE), now
            if allowance < 1:
                await asyncio.sleep((1 - allowance) / SEND_RATE)  # pacing, not synchronisation
                allowance, last = 1.0, loop.time()
            allowance -= 1
            try:
                await ws.send(encode(message, self.binary))
            except ConnectionClosed:
                return

    async def _ping_every(self) -> None:
        while True:
            await asyncio.sleep(self.options.ping_interval)
            self.ping()

    async def _refresh_token(self) -> None:
        tokens = self.owner.tokens
        while (delay := tokens.refresh_delay()) is not None:
            await asyncio.sleep(delay)
            try:
                token = await tokens.fetch()
            except Exception as exc:
                self.log.warning("token provider failed: %s; trying again in 1 s", exc)
                await asyncio.sleep(1.0)
                continue
            if token:
                self.log.debug("sending a fresh token")
                self.send({"op": "auth", "token": token}, "auth", token)
