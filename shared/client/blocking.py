"""The blocking client: the async client on a private event loop, for synchronous code.

::

    from shared.client import connect_sync

    with connect_sync("ws://127.0.0.1:8080/ws", batch=True) as ts:
        for event in ts.subscribe("price_update", symbols=["BTCUSDT"], last=10):
            print(event.offset, event.data["price"])

:class:`BlockingClient` owns a :class:`~shared.client.client.Client` and the daemon thread
whose event loop runs it (:class:`~shared.client.loopthread.LoopThread`). Every method waits
for the result on the loop and raises its exception in the calling thread. Reconnects, resume,
de-duplication and backpressure are the async client's, unchanged. Status and reset callbacks
and token providers run on the client's thread; ``on_event`` callbacks on a thread of their own.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import ParamSpec

from shared.client.blocking_subscription import BlockingSubscription, EventCallback
from shared.client.client import Client, ResetCallback, StatusCallback
from shared.client.errors import ClientClosed
from shared.client.loopthread import LoopThread
from shared.client.model import Status
from shared.client.subscription import Subscription

log = logging.getLogger("tickstream.client")
P = ParamSpec("P")


class BlockingClient:
    """A Tickstream client for synchronous code. Create it with :func:`connect_sync`."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._runner = LoopThread(f"tickstream-{self._client.id}")
        self._subs: list[BlockingSubscription] = []
        self._lock = threading.Lock()
        self._started = False
        self._closed = False
        self._closing: asyncio.Task[None] | None = None

    # --- life cycle ------------------------------------------------------------------------------

    def __enter__(self) -> BlockingClient:
        try:
            self.wait_connected()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Start the client's thread and begin connecting (``with``, ``subscribe()`` do it)."""
        with self._lock:
            if self._closed:
                raise ClientClosed("the client is closed")
            if self._started:
                return
            self._started = True
            self._runner.start()
        self._runner.call(self._start())

    async def _start(self) -> None:
        self._client.start()

    def wait_connected(self, timeout: float | None = None) -> None:
        """Wait until a gateway accepted the connection (starting the client if needed); raise
        the error that stopped the client instead, or TimeoutError after ``timeout`` s."""
        self.start()
        self._runner.call(self._client.wait_connected(), timeout)

    def wait_closed(self, timeout: float | None = None) -> None:
        """Wait until the client stops (it was closed, or refused for good); raise its error."""
        if self._runner.running:
            self._runner.call(self._client.wait_closed(), timeout)
        elif self._client.error is not None:
            raise self._client.error

    def close(self, timeout: float = 10.0) -> None:
        """Close the connection, end every subscription (iterators return what they hold, then
        stop; callbacks make no further call), stop the loop and join the threads. Safe to call
        from any thread, more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs = list(self._subs)
        for sub in subs:
            sub.halt()
        if self._runner.in_loop_thread():  # from a status callback: finish on the loop itself
            # Held on self: the loop keeps only a weak reference to its tasks.
            self._closing = self._runner.loop.create_task(self._close_here())
            return
        if self._runner.running:
            try:
                self._runner.call(self._client.close(), timeout)
            except (TimeoutError, ClientClosed) as exc:
                log.warning("closing the client: %s", exc)
        if not self._runner.stop(timeout):
            log.warning("the client's thread did not stop within %s s", timeout)
        for sub in subs:
            if not sub.join(timeout):
                log.warning("on_event for %s still runs after %s s", sub.event_type, timeout)

    async def _close_here(self) -> None:
        await self._client.close()
        self._runner.stop()

    # --- state (read from any thread) ---------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client.connected

    @property
    def node(self) -> str | None:
        return self._client.node

    @property
    def session(self) -> str | None:
        return self._client.session

    @property
    def latency(self) -> float | None:
        return self._client.latency

    @property
    def status(self) -> Status:
        return self._client.status

    @property
    def connections(self) -> int:
        return self._client.connections

    @property
    def error(self) -> BaseException | None:
        """What stopped the client for good, if anything did."""
        return self._client.error

    @property
    def thread(self) -> threading.Thread:
        """The thread whose event loop runs the client."""
        return self._runner.thread

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The client's private event loop (closed once the client is)."""
        return self._runner.loop

    # --- subscribing and callbacks --------------------------------------------------------------

    def subscribe(
        self,
        event_type: str,
        *,
        symbols: Iterable[str] | None = None,
        since: str | None = None,
        last: int | None = None,
        epoch: str | None = None,
        on_event: EventCallback | None = None,
        raise_on_reset: bool = True,
        queue_size: int | None = None,
        conflate_ms: int | None = None,
        timeout: float | None = None,
    ) -> BlockingSubscription:
        """Subscribe and wait for the gateway's reply (starting the client if needed). The
        arguments are the async ``subscribe()``'s; ``on_event(event)`` is called on a thread of
        the subscription's own instead of iterating. Raises SubscriptionError if the gateway
        refuses; TimeoutError (the subscription dropped) if no reply came within ``timeout`` s."""
        self.start()
        sub = self._runner.call(self._subscribe(
            event_type, symbols=symbols, since=since, last=last, epoch=epoch,
            raise_on_reset=raise_on_reset and on_event is None, queue_size=queue_size,
            conflate_ms=conflate_ms))
        try:
            self._runner.call(sub.wait_subscribed(), timeout)
        except BaseException:
            if self._runner.running:
                self._runner.call(sub.unsubscribe())
            raise
        blocking = BlockingSubscription(sub, self._runner, on_event)
        with self._lock:
            self._subs.append(blocking)
            closed = self._closed
        if not closed:  # closed meanwhile: the subscription has ended; no callback may run
            blocking.start()
        return blocking

    async def _subscribe(self, event_type: str, *, symbols: Iterable[str] | None, since: str | None,
                         last: int | None, epoch: str | None, raise_on_reset: bool,
                         queue_size: int | None, conflate_ms: int | None) -> Subscription:
        return self._client.subscribe(event_type, symbols=symbols, since=since, last=last,
                                      epoch=epoch, raise_on_reset=raise_on_reset,
                                      queue_size=queue_size, conflate_ms=conflate_ms)

    def on_status(self, callback: StatusCallback) -> StatusCallback:
        """Call ``callback(status)`` on the client's thread (keep it short; it cannot call this
        client's blocking methods)."""
        self._client.on_status(callback)
        return callback

    def on_reset(self, callback: ResetCallback) -> ResetCallback:
        """Call ``callback(reset)`` on the client's thread when a resume is impossible."""
        self._client.on_reset(callback)
        return callback


def blocking(connect: Callable[P, Client]) -> Callable[P, BlockingClient]:
    """``connect`` (same arguments, checked at once), giving a :class:`BlockingClient`."""

    @functools.wraps(connect)
    def connect_sync(*args: P.args, **kwargs: P.kwargs) -> BlockingClient:
        return BlockingClient(connect(*args, **kwargs))

    connect_sync.__doc__ = (
        "A blocking client for the gateway(s) at ``url``; use it as ``with connect_sync(...) as ts``"
        " (or call ``ts.subscribe()`` at once: it starts the client). The arguments are"
        " :func:`connect`'s.")
    # help() and IDEs show connect's arguments, returning the blocking client
    connect_sync.__signature__ = inspect.signature(connect).replace(  # type: ignore[attr-defined]
        return_annotation="BlockingClient")
    return connect_sync
