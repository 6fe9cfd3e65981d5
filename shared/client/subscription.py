"""One subscription: its filter, its position in the stream, and the events waiting for the app.

The position is the offset of the last event queued for the application (or the ``offset`` of
the ``subscribed`` reply if none came yet) together with the stream's epoch; every resume
sends both, and any event at or before the position is a duplicate and is not delivered again.
While a subscribe is in flight on a connection, events of the type still arriving under the
previous filter are not delivered: the replay that follows the reply starts from the position
the subscribe carried, so they come again if the new filter wants them.

A conflated subscription (``conflate_ms``) sends it with every (re)subscribe: the gateway
delivers at most one event per symbol per interval, the newest, each with its real offset, so
the position and the resume work the same way (a resume brings the newest event of each symbol
that changed while away, not every one).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from types import EllipsisType
from typing import Any, Protocol

from shared.client.buffer import Buffer
from shared.client.checks import check_conflate_ms, check_symbols
from shared.client.errors import ClientClosed, StreamReset
from shared.client.model import Event, Reset
from shared.client.wire import ProtocolError, position
from shared.offsets import Offset, format_offset

log = logging.getLogger("tickstream.client")

Callback = Callable[[Event], Awaitable[None] | None]


class SubscriptionOwner(Protocol):
    """All a subscription needs from whoever owns it (the client): to send it, to drop it."""

    def resubscribe(self, sub: Subscription, /) -> None:
        """Send the subscribe again now (new filter), if a connection is up."""

    def unsubscribe(self, sub: Subscription, /) -> None:
        """Forget ``sub``, tell the gateway, and :meth:`Subscription.end` it."""


class Subscription:
    """Events of one type, in offset order, each exactly once, across reconnects.

    Iterate it (``async for event in sub``) or give the client a ``callback``. ``await sub``
    waits for the gateway's first ``subscribed`` reply (and raises if it refused).
    """

    def __init__(
        self,
        owner: SubscriptionOwner,
        event_type: str,
        symbols: frozenset[str] | None,
        *,
        since: str | None,
        epoch: str | None,
        last: int | None,
        callback: Callback | None,
        raise_on_reset: bool,
        queue_size: int,
        conflate_ms: int | None = None,
    ) -> None:
        self._owner = owner
        self.event_type = event_type
        self.symbols = symbols
        self.conflate_ms = conflate_ms
        self._since, self._last = since, last
        self.epoch = epoch
        self._position: Offset = (0, 0)
        self.subscribed = False  # a subscribed reply fixed the position
        self._pending_id: int | None = None  # the subscribe in flight on this connection
        self._sent_since: str | None = None
        self._callback = callback
        self.raise_on_reset = raise_on_reset
        self._buffer: Buffer[Event | Reset] = Buffer(queue_size)
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None
        self.received = 0  # events queued for the application
        self.duplicates = 0  # events at or before the position: not delivered again
        self.resets: list[Reset] = []
        self.error: BaseException | None = None
        if callback is not None:
            self._task = asyncio.get_running_loop().create_task(
                self._run_callback(callback), name=f"tickstream-callback-{event_type}")

    # --- what the application sees ------------------------------------------------------------

    @property
    def offset(self) -> str | None:
        """The resume position: last queued event (or the subscription's start), None before."""
        return format_offset(self._position) if self.subscribed else None

    @property
    def pending(self) -> int:
        """Events received and not yet taken by the application."""
        return len(self._buffer)

    @property
    def last_reset(self) -> Reset | None:
        return self.resets[-1] if self.resets else None

    @property
    def active(self) -> bool:
        return not self._buffer.closed

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self.wait_subscribed().__await__()

    async def wait_subscribed(self) -> Subscription:
        """Wait for the gateway's first ``subscribed`` reply; raise if it refused or it ended."""
        if not self.subscribed:
            if self.error is not None:
                raise self.error
            if self._buffer.closed:  # unsubscribed or the client closed: no reply will come
                raise ClientClosed(f"the subscription to {self.event_type} ended")
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter
        return self

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        if self._callback is not None:
            raise RuntimeError("this subscription delivers to a callback; it cannot be iterated")
        item = await self._buffer.get()
        if type(item) is Event:
            return item
        assert isinstance(item, Reset)
        raise StreamReset(item)

    async def get(self) -> Event:
        """The next event (same as one step of ``async for``)."""
        return await self.__anext__()

    async def take(self, limit: int) -> list[Event | Reset]:
        """For a consumer on another thread (:mod:`shared.client.blocking`): wait for at least
        one item and return up to ``limit``, in order, a :class:`Reset` marking where a gap is;
        ``[]`` once the subscription ended and is drained (or the error it ended with)."""
        if self._callback is not None:
            raise RuntimeError("this subscription delivers to a callback; it cannot be iterated")
        try:
            first = await self._buffer.get()
        except StopAsyncIteration:
            return []
        return [first, *self._buffer.drain(limit - 1)]

    def take_nowait(self, limit: int) -> list[Event | Reset]:
        """Like :meth:`take`, without waiting: what is queued (``[]`` if nothing is); once the
        subscription ended and is drained, raises the error it ended with, if any. Only for
        when no event loop runs the subscription any more (the buffer is not thread-safe)."""
        items = self._buffer.drain(limit)
        if not items and self._buffer.closed and self._buffer.error is not None:
            raise self._buffer.error
        return items

    async def update(self, symbols: list[str] | None, *,
                     conflate_ms: int | EllipsisType | None = ...) -> None:
        """Change the symbol filter (and, if given, ``conflate_ms``: None turns conflation off);
        events continue from the current position, no gap."""
        if self._buffer.closed:
            raise self.error or ClientClosed(f"the subscription to {self.event_type} ended")
        if conflate_ms is not ...:
            self.conflate_ms = check_conflate_ms(conflate_ms)
        self.symbols = check_symbols(symbols)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._owner.resubscribe(self)
        await waiter

    async def unsubscribe(self) -> None:
        """Stop receiving; an iterator ends once it has drained what was already received."""
        self._owner.unsubscribe(self)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    # --- driven by the connection --------------------------------------------------------------

    def subscribe_message(self, op_id: int) -> dict[str, Any]:
        """The subscribe op for a (re)subscription; marks it in flight."""
        op: dict[str, Any] = {"op": "subscribe", "id": op_id, "event_type": self.event_type}
        if self.symbols is not None:
            op["symbols"] = sorted(self.symbols)
        if self.subscribed:
            op["since"] = format_offset(self._position)
        elif self._since is not None:
            op["since"] = self._since
        elif self._last is not None:
            op["last"] = self._last
        if "since" in op and self.epoch:
            op["epoch"] = self.epoch
        if self.conflate_ms is not None:
            op["conflate_ms"] = self.conflate_ms
        self._pending_id, self._sent_since = op_id, op.get("since")
        return op

    @property
    def pending_id(self) -> int | None:
        """The id of the subscribe in flight on the current connection, if any."""
        return self._pending_id

    def detach(self) -> None:
        """The connection ended: nothing is in flight any more."""
        self._pending_id = None

    def on_subscribed(self, reply: dict[str, Any]) -> Reset | None:
        """Apply a ``subscribed`` reply; a Reset when it says ``recovered: false``."""
        if reply.get("id") != self._pending_id:
            return None  # the reply to a subscribe that was superseded
        self._pending_id = None
        start, epoch = reply.get("offset"), reply.get("epoch")
        self._position = position(start)
        if not isinstance(epoch, str):
            raise ProtocolError(f"subscribed reply without an epoch: {reply}")
        reset = None
        if reply.get("recovered") is False:
            earliest = reply.get("earliest")
            reset = Reset(self.event_type, self._sent_since, str(start), epoch, self.epoch,
                          earliest if isinstance(earliest, str) else None)
            self.resets.append(reset)
            if self.raise_on_reset and self._callback is None:
                self._buffer.mark(reset)
        self.epoch = epoch
        self.subscribed = True
        self._wake(None)
        return reset

    def accept(self, message: dict[str, Any]) -> Event | None:
        """An event message for this type -> the Event to queue, or None (duplicate/stale)."""
        if self._pending_id is not None:
            return None  # old filter, superseded by the subscribe in flight
        offset = message.get("offset")
        pos = position(offset)
        if pos <= self._position:
            self.duplicates += 1
            return None
        self._position = pos
        self.received += 1
        return Event(self.event_type, offset, message.get("symbol"),  # type: ignore[arg-type]
                     message.get("ts") or pos[0], message.get("data") or {}, pos)

    def offer(self, event: Event) -> bool:
        return self._buffer.offer(event)

    async def put(self, event: Event) -> None:
        await self._buffer.put(event)

    def end(self, error: BaseException | None) -> None:
        """No more events: the subscription was dropped, refused, or the client stopped."""
        if error is not None and self.error is None:
            self.error = error
        self._buffer.close(error)
        self._wake(error or ClientClosed(f"the subscription to {self.event_type} ended"))
        if self._task is not None:
            self._task.cancel()  # a callback stops at once; an iterator drains what is queued

    def _wake(self, error: BaseException | None) -> None:
        """Resolve ``await sub`` / ``update()`` waiters (with ``error`` if given)."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)

    async def _run_callback(self, callback: Callback) -> None:
        while True:
            try:
                item = await self._buffer.get()
            except (StopAsyncIteration, Exception):
                return
            if type(item) is not Event:
                continue
            try:
                result = callback(item)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("callback for %s failed on offset %s (delivery continues)",
                              self.event_type, item.offset)
