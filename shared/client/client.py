"""The client: subscriptions that outlive connections, and the reconnect loop that keeps them fed.

One background task connects (rotating through the given URLs), lets a
:class:`~shared.client.connection.Connection` run until it ends, then decides: close codes
4403, 1008 and 1009 stop the client with :class:`ConnectionRefused`; 4401 fetches a fresh token
from the provider (a fixed token stops the client with :class:`AuthError`); anything else
(1006, 1012, 1013, 4001, 4008, 4009, a refused TCP connect, a dead connection) waits a
full-jitter exponential delay (``[0, min(cap, base * 2**n)]``, reset after a connection that
stayed up ``stable_after`` seconds) and connects again. Each new connection resumes every
subscription from its position.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import os
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from shared.backoff import Backoff
from shared.client.checks import check_conflate_ms, check_event_type, check_last, check_symbols
from shared.client.connection import Connection, Ended
from shared.client.errors import AuthError, ClientClosed, ConnectionRefused
from shared.client.model import Reset, Status
from shared.client.options import ClientOptions
from shared.client.subscription import Callback, Subscription
from shared.client.tokens import TokenProvider, TokenSource
from shared.client.wire import CLOSE_UNAUTHORIZED, FATAL_CODES, check_offset, describe, redact, ws_url
from shared.logsetup import ConnLogger, conn_logger

log = logging.getLogger("tickstream.client")

StatusCallback = Callable[[Status], Awaitable[None] | None]
ResetCallback = Callable[[Reset], Awaitable[None] | None]


class Client:
    """A Tickstream WebSocket client. Create it with :func:`shared.client.connect`.

    It is the owner its connections and subscriptions are written against
    (:class:`~shared.client.connection.ConnectionOwner`,
    :class:`~shared.client.subscription.SubscriptionOwner`): they never import this module.
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        token: TokenSource = None,
        options: ClientOptions | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("give at least one gateway URL")
        self.options = opts = options or ClientOptions()
        for one in self.urls:
            ws_url(one, batch=opts.batch, batch_ms=opts.batch_ms)  # raises ValueError if bad
        self.tokens = TokenProvider(token)
        self.id = os.urandom(3).hex()
        self.log = conn_logger(log, self.id)
        self.backoff = Backoff(opts.reconnect_base, opts.reconnect_cap, opts.stable_after, rand)
        self.subscriptions: dict[str, Subscription] = {}
        self.connection: Connection | None = None
        self.status = Status("disconnected", redact(self.urls[0]))
        self.error: BaseException | None = None
        self.connections = 0  # connections welcomed so far
        self._status_callbacks: list[StatusCallback] = []
        self._reset_callbacks: list[ResetCallback] = []
        self._ids = itertools.count(1)
        self._url_index = 0
        self._auth_failures = 0
        self._task: asyncio.Task[None] | None = None
        self._announced: Connection | None = None
        self._up = asyncio.Event()
        self._done = asyncio.Event()
        self._background: set[asyncio.Task[Any]] = set()

    # --- life cycle ------------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        self.start()
        try:
            await self.wait_connected()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def start(self) -> None:
        """Start connecting in the background (``async with`` does this and waits)."""
        if self._task is None and not self._done.is_set():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"tickstream-{self.id}")

    async def wait_connected(self) -> None:
        """Wait until a gateway accepted the connection; raise if the client stopped instead."""
        if not self._up.is_set():
            waits = [asyncio.ensure_future(self._up.wait()), asyncio.ensure_future(self._done.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for wait in waits:
                    wait.cancel()
        if self._done.is_set():
            raise self.error or ClientClosed("the client is closed")

    async def wait_closed(self) -> None:
        """Wait until the client stops; raise the error that stopped it, if any."""
        await self._done.wait()
        if self.error is not None:
            raise self.error

    async def close(self) -> None:
        """Close the connection and end every subscription (iterators drain what they hold)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._finish(None)
        for task in list(self._background):
            task.cancel()

    @property
    def connected(self) -> bool:
        return self._up.is_set()

    @property
    def node(self) -> str | None:
        return self.connection.node if self.connection else None

    @property
    def session(self) -> str | None:
        return self.connection.session if self.connection else None

    @property
    def latency(self) -> float | None:
        """Round trip of the last ``ping`` on the current connection, in seconds."""
        return self.connection.latency if self.connection else None

    # --- the application's side --------------------------------------------------------------

    def subscribe(
        self,
        event_type: str,
        *,
        symbols: Iterable[str] | None = None,
        since: str | None = None,
        last: int | None = None,
        epoch: str | None = None,
        callback: Callback | None = None,
        raise_on_reset: bool = True,
        queue_size: int | None = None,
        conflate_ms: int | None = None,
    ) -> Subscription:
        """Subscribe to ``event_type``; ``await`` the result to wait for the gateway's reply.

        ``conflate_ms``: at most one event per symbol per that many milliseconds (10 to 60,000),
        always the newest; kept on every resume.
        """
        if self._done.is_set():
            raise self.error or ClientClosed("the client is closed")
        check_event_type(event_type)
        if event_type in self.subscriptions:
            raise ValueError(f"already subscribed to {event_type}: use update() on that subscription")
        if since is not None and last is not None:
            raise ValueError("give since or last, not both")
        if since is not None:
            check_offset(since)
        check_last(last)
        sub = Subscription(self, event_type, check_symbols(symbols), since=since, epoch=epoch,
                           last=last, callback=callback, raise_on_reset=raise_on_reset,
                           queue_size=queue_size or self.options.queue_size,
                           conflate_ms=check_conflate_ms(conflate_ms))
        self.subscriptions[event_type] = sub
        if self.connection is not None and self.connection.ready:
            self.connection.subscribe(sub)
        return sub

    def on_status(self, callback: StatusCallback) -> StatusCallback:
        """Call ``callback(status)`` on connected / reconnecting / disconnected."""
        self._status_callbacks.append(callback)
        return callback

    def on_reset(self, callback: ResetCallback) -> ResetCallback:
        """Call ``callback(reset)`` when a subscription could not resume (``recovered: false``)."""
        self._reset_callbacks.append(callback)
        return callback

    check_symbols = staticmethod(check_symbols)  # kept as names of the class, for callers
    check_conflate_ms = staticmethod(check_conflate_ms)

    # --- what subscriptions and connections need (SubscriptionOwner, ConnectionOwner) ---------

    def next_id(self) -> int:
        return next(self._ids)

    def resubscribe(self, sub: Subscription) -> None:
        if self.connection is not None and self.connection.ready:
            self.connection.subscribe(sub)

    def unsubscribe(self, sub: Subscription) -> None:
        if self.subscriptions.get(sub.event_type) is sub:
            del self.subscriptions[sub.event_type]
            if self.connection is not None and self.connection.ready:
                self.connection.send({"op": "unsubscribe", "event_type": sub.event_type}, "unsubscribe",
                                     sub.event_type)
        sub.end(None)

    def refused(self, event_type: str, error: BaseException) -> None:
        self.log.error("%s", error)
        sub = self.subscriptions.pop(event_type, None)
        if sub is not None:
            sub.end(error)

    def welcomed(self, conn: Connection) -> None:
        self.backoff.connected(asyncio.get_running_loop().time())
        self._auth_failures = 0
        self.connections += 1

    def measured(self, conn: Connection) -> None:
        if self._announced is not conn and conn is self.connection:
            self._announced = conn
            self._up.set()
            self._set_status(Status("connected", redact(conn.url), conn.node, conn.session,
                                    conn.latency))

    def notify_reset(self, reset: Reset) -> None:
        self.log.warning("%s: resume from %s impossible (earliest retained %s, epoch %s -> %s); "
                         "live from %s", reset.event_type, reset.since, reset.earliest,
                         reset.previous_epoch, reset.epoch, reset.offset)
        self._call(self._reset_callbacks, reset)

    # --- the reconnect loop --------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            url = self.urls[self._url_index % len(self.urls)]
            self._url_index += 1
            ended, conn_log = await self._connect_once(url)
            self._up.clear()
            error = self._fatal(ended)
            if error is not None:
                conn_log.error("%s", error)
                self._finish(error, Status("disconnected", redact(url), code=ended.code,
                                           reason=ended.reason, error=error))
                return
            delay = self.backoff.next_delay(loop.time())
            conn_log.warning("disconnected from %s (%s); reconnecting in %.2f s", redact(url),
                             describe(ended.code, ended.reason), delay)
            self._set_status(Status("reconnecting", redact(url), code=ended.code, reason=ended.reason,
                                    delay=delay, attempt=self.backoff.failures))
            await asyncio.sleep(delay)

    async def _connect_once(self, url: str) -> tuple[Ended, ConnLogger]:
        attempt_log = conn_logger(log, f"{self.id}.{self._url_index}")
        try:
            token = await self.tokens.fetch()
        except Exception as exc:
            return Ended(None, f"the token provider failed: {exc!r}", False), attempt_log
        conn = Connection(self, url, token, f"{self.id}.{self._url_index}")
        self.connection = conn
        try:
            return await conn.run(), conn.log
        except Exception as exc:  # a bug must cost a reconnect, never the client
            conn.log.exception("connection failed unexpectedly")
            return Ended(None, f"internal error: {exc!r}", conn.node is not None), conn.log
        finally:
            self.connection = None

    def _fatal(self, ended: Ended) -> BaseException | None:
        code = ended.code
        if code in FATAL_CODES:
            return ConnectionRefused(f"the gateway refused the connection: {code} {FATAL_CODES[code]}"
                                     f"{': ' + ended.reason if ended.reason else ''}", code)
        if code != CLOSE_UNAUTHORIZED:
            return None
        reason = ended.reason or "unauthorized"
        if not self.tokens.refreshable:
            return AuthError(f"token refused: {reason}", code)
        if not ended.welcomed:
            self._auth_failures += 1
            if self._auth_failures >= self.options.max_auth_failures:
                return AuthError(f"token refused {self._auth_failures} times in a row: {reason}", code)
        return None

    def _finish(self, error: BaseException | None, status: Status | None = None) -> None:
        if self._done.is_set():
            return
        self.error = error
        self._up.clear()
        for sub in list(self.subscriptions.values()):
            sub.end(error)
        self._done.set()
        self._set_status(status or Status("disconnected", self.status.url, reason="closed"))

    # --- callbacks -----------------------------------------------------------------------------

    def _set_status(self, status: Status) -> None:
        self.status = status
        self._call(self._status_callbacks, status)

    def _call(self, callbacks: Sequence[Callable[[Any], Awaitable[None] | None]], arg: Any) -> None:
        for callback in callbacks:
            try:
                result = callback(arg)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._background.add(task)
                    task.add_done_callback(self._background.discard)
            except Exception:
                self.log.exception("%s callback failed", type(arg).__name__.lower())
