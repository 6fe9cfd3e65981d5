"""One subscription of the blocking client, consumed by ordinary threads.

A :class:`BlockingSubscription` wraps an async :class:`~shared.client.subscription.Subscription`
that lives on the client's private loop and adds no queue of its own: each time the consumer
needs events it takes the ones waiting in the subscription's bounded queue, at most
:data:`HANDOFF` at a time. The async client's rules therefore hold unchanged: position,
de-duplication and resume are the subscription's; when the consumer is slow the queue fills,
the connection stops reading, the gateway closes it with 4008 and the client resumes from its
position. Nothing is dropped; memory stays within ``queue_size`` + :data:`HANDOFF` events.

The callback form runs ``on_event`` on a dedicated daemon thread (one per subscription), one
event at a time, in order.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from types import EllipsisType

from shared.client.errors import ClientClosed, StreamReset
from shared.client.loopthread import LoopThread
from shared.client.model import Event, Reset
from shared.client.subscription import Subscription

log = logging.getLogger("tickstream.client")

HANDOFF = 256  # events handed to the consumer's thread at once, at most
LOOP_STOP_TIMEOUT = 30.0
EventCallback = Callable[[Event], object]


class BlockingSubscription:
    """Events of one type, in offset order, each exactly once, across reconnects.

    Iterate it (``for event in sub``), or ``sub.get(timeout)``; or give ``on_event`` to
    :meth:`~shared.client.blocking.BlockingClient.subscribe`. Safe to use from any thread.
    """

    def __init__(self, sub: Subscription, runner: LoopThread, on_event: EventCallback | None) -> None:
        self._sub = sub
        self._runner = runner
        self._held: deque[Event | Reset] = deque()  # taken from the loop, not yet returned
        self._request: concurrent.futures.Future[list[Event | Reset]] | None = None
        self._lock = threading.Lock()  # one consumer step at a time: order is kept
        self._halted = threading.Event()  # a callback makes no call once this is set
        self.error: BaseException | None = None  # what stopped the callback thread
        self.thread: threading.Thread | None = None
        if on_event is not None:  # started by the client, once it has registered the subscription
            self.thread = threading.Thread(target=self._deliver, args=(on_event,), daemon=True,
                                           name=f"tickstream-callback-{sub.event_type}")

    # --- what the async subscription knows ------------------------------------------------------

    @property
    def event_type(self) -> str:
        return self._sub.event_type

    @property
    def symbols(self) -> frozenset[str] | None:
        return self._sub.symbols

    @property
    def offset(self) -> str | None:
        """The resume position: the last event received (see the async ``Subscription``)."""
        return self._sub.offset

    @property
    def epoch(self) -> str | None:
        return self._sub.epoch

    @property
    def pending(self) -> int:
        """Events received and not yet returned to the application."""
        request = self._request
        taken = (len(request.result()) if request is not None and request.done()
                 and not request.cancelled() and request.exception() is None else 0)
        return self._sub.pending + len(self._held) + taken

    @property
    def duplicates(self) -> int:
        return self._sub.duplicates

    @property
    def resets(self) -> list[Reset]:
        return list(self._sub.resets)

    @property
    def last_reset(self) -> Reset | None:
        return self._sub.last_reset

    @property
    def active(self) -> bool:
        return self._sub.active

    # --- iterating ------------------------------------------------------------------------------

    def __iter__(self) -> BlockingSubscription:
        return self

    def __next__(self) -> Event:
        self._check_iterable()
        return self._next(None)

    def get(self, timeout: float | None = None) -> Event:
        """The next event; TimeoutError after ``timeout`` s (nothing is lost: a later call gets
        it), ClientClosed once the subscription ended and everything received was returned."""
        self._check_iterable()
        try:
            return self._next(timeout)
        except StopIteration:
            raise ClientClosed(f"the subscription to {self.event_type} ended") from None

    def _check_iterable(self) -> None:
        if self.thread is not None:
            raise RuntimeError("this subscription delivers to on_event; it cannot be iterated")
        if self._runner.in_loop_thread():
            raise RuntimeError("a blocking subscription cannot be read on the client's own thread "
                               "(a status or reset callback): it would wait for itself forever")

    def _next(self, timeout: float | None) -> Event:
        """The next event; StopIteration once ended and drained; StreamReset at a gap."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(f"no event of {self.event_type} within {timeout} s")
        try:
            while not self._held:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    items = self._fetch(left)
                except TimeoutError:
                    raise TimeoutError(f"no event of {self.event_type} within {timeout} s") from None
                if not items:
                    raise StopIteration
                self._held.extend(items)
            item = self._held.popleft()
        finally:
            self._lock.release()
        if type(item) is Event:
            return item
        assert isinstance(item, Reset)
        raise StreamReset(item)

    def _fetch(self, timeout: float | None) -> list[Event | Reset]:
        """Items from the subscription's queue (waiting for one); [] once ended and drained."""
        if self._request is None:
            if not self._runner.running:
                return self._leftovers()
            try:
                self._request = self._runner.submit(self._sub.take(HANDOFF))
            except ClientClosed:
                return self._leftovers()
        request = self._request
        try:
            items = request.result(timeout)
        except concurrent.futures.CancelledError:  # the loop shut down under the request
            self._request = None
            return self._leftovers()
        except BaseException as exc:
            if request.done() and not request.cancelled() and request.exception() is exc:
                self._request = None  # the error that ended the subscription
            raise  # otherwise a timeout or an interrupt: the next call collects the same request
        self._request = None
        return items

    def _leftovers(self) -> list[Event | Reset]:
        """What the subscription still holds once the loop is gone (then nothing touches it)."""
        if not self._runner.stop(LOOP_STOP_TIMEOUT):
            raise ClientClosed("the client's event loop did not stop")
        items = self._sub.take_nowait(HANDOFF)  # raises the error it ended with, once drained
        if not items and self._sub.active:
            raise ClientClosed(f"the subscription to {self.event_type} was not ended")
        return items

    # --- changing it ----------------------------------------------------------------------------

    def update(self, symbols: list[str] | None, *, conflate_ms: int | EllipsisType | None = ...,
               timeout: float | None = None) -> None:
        """Change the filter (and ``conflate_ms``), continuing from the position: no gap."""
        self._runner.call(self._sub.update(symbols, conflate_ms=conflate_ms), timeout)

    def unsubscribe(self, timeout: float | None = 10.0) -> None:
        """Stop receiving: an iterator returns what was received, then ends; a callback makes
        no further call (this waits for the one in progress, unless called from it)."""
        self.halt()
        if self._runner.running:
            try:
                self._runner.call(self._sub.unsubscribe(), timeout)
            except ClientClosed:
                pass  # closed meanwhile: that ended the subscription too
        self.join(timeout)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the callback thread ends (unsubscribed, client closed or stopped); raise
        the error that stopped it, if any (e.g. :class:`~shared.client.AuthError`)."""
        if self.thread is None:
            raise RuntimeError("only a subscription with on_event has a thread to wait for")
        if not self.join(timeout):
            raise TimeoutError(f"the callback of {self.event_type} still runs after {timeout} s")
        if self.error is not None:
            raise self.error

    # --- the client's side ----------------------------------------------------------------------

    def start(self) -> None:
        """Start delivering to ``on_event`` (nothing to do for an iterator)."""
        if self.thread is not None and self.thread.ident is None:
            self.thread.start()

    def halt(self) -> None:
        self._halted.set()

    def join(self, timeout: float | None) -> bool:
        """Wait for the callback thread (not from itself); True once it has ended."""
        if self.thread is None or self.thread.ident is None or self.thread is threading.current_thread():
            return True
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _deliver(self, on_event: EventCallback) -> None:
        while not self._halted.is_set():
            try:
                event = self._next(None)
            except StopIteration:
                return
            except StreamReset:
                continue  # not queued for a callback subscription; seen by on_reset
            except BaseException as exc:
                self.error = exc
                log.error("%s: deliveries to on_event stopped: %s", self.event_type, exc)
                return
            if self._halted.is_set():
                return
            try:
                on_event(event)
            except Exception:
                log.exception("on_event for %s failed on offset %s (delivery continues)",
                              self.event_type, event.offset)
