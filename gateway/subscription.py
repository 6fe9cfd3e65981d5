"""One subscription of one connection: its filter, its position and live delivery.

A subscription is what the hub offers live events to (it is a :class:`gateway.hub.Subscriber`).
It queues frames on its connection's :class:`~gateway.writer.Writer` and knows its connection
only through the small :class:`Owner` protocol (who the user is, how to give up on a slow
client, how to close).

While the subscription replays history it is *recovering*: live events are buffered, and
:mod:`gateway.replay` hands them over once the history is out. Afterwards each live batch is
queued directly, dropping any offset at or below the last one delivered.

A subscription with ``conflate_ms`` is a :class:`ConflatedSubscription`: live events go
through its :class:`~gateway.conflate.Conflater` (at most one per symbol per interval, the
newest), released at once or by one timer per subscription. The held events are the hub's
shared :class:`~gateway.values.Encoded` objects: nothing is encoded per subscriber, and an event
that is replaced before it goes out is never encoded for this subscriber at all.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Iterable
from typing import Any, Protocol

from gateway.conflate import Conflater, key_of
from gateway.protocol import CLOSE_RESYNC
from gateway.recovery import position_before
from gateway.values import Batch, Encoded, Frame, StreamEntry
from gateway.writer import Writer
from shared.errors import CodecError
from shared.offsets import Offset

log = logging.getLogger("tickstream.gateway.subscription")


class Owner(Protocol):
    """What a subscription needs from its connection."""

    @property
    def user(self) -> str | None: ...

    @property
    def is_admin(self) -> bool: ...

    def slow_consumer(self, why: str) -> None:
        """Give up on a client that does not keep up (close with 4008)."""

    def close(self, code: int, reason: str) -> None: ...


class Subscription:
    """One event type a connection receives: its filter, delivery position and live buffer."""

    __slots__ = ("buffer", "buffer_bytes", "closed", "event_type", "form", "last", "owner",
                 "recovering", "replied", "symbols", "writer")

    def __init__(self, owner: Owner, writer: Writer, event_type: str,
                 symbols: frozenset[str] | None) -> None:
        self.owner = owner
        self.writer = writer
        self.form = writer.form  # what the writer queues of an event (gateway.values.Form)
        self.event_type = event_type
        self.symbols = symbols
        self.last: Offset = (0, 0)
        self.recovering = True  # live events are buffered until history is delivered
        self.replied = False  # the ``subscribed`` reply was queued
        self.closed = False  # dropped, or its connection ended
        self.buffer: list[Encoded] = []
        self.buffer_bytes = 0

    @property
    def user(self) -> str | None:
        return self.owner.user

    @property
    def is_admin(self) -> bool:
        return self.owner.is_admin

    @property
    def gone(self) -> bool:
        """Nothing more can be delivered: the subscription or its connection was closed."""
        return self.closed or self.writer.closed

    @property
    def position(self) -> Offset:
        """Where a replacement of this subscription continues from (no gap, no duplicate)."""
        return self.last

    def visible(self, entry: StreamEntry) -> bool:
        """Whether the entry is for this subscription: its filter, and a private event's user."""
        if self.symbols is not None and entry.symbol not in self.symbols:
            return False
        return not entry.user or entry.user == self.owner.user or self.owner.is_admin

    def slow(self, why: str) -> None:
        self.owner.slow_consumer(why)

    def resync(self, reason: str) -> None:
        self.owner.close(CLOSE_RESYNC, f"resync needed: {self.event_type} {reason}")

    def offer(self, event: Encoded) -> None:
        """One live event (private events come one by one), in stream order."""
        if self.recovering:
            self._buffer([event])
        elif event.pos > self.last:
            self.last = event.pos
            item = event.wire(self.form)
            if not self.writer.push_many([item], len(item), event.ts):
                self.owner.slow_consumer("outgoing queue full")

    def offer_batch(self, batch: Batch) -> None:
        """A run of live events, in stream order; the frame list is shared with other subscribers."""
        events = batch.events
        if self.recovering:
            self._buffer(events)
            return
        if events[0].pos > self.last:
            items, size = batch.frames(self.form)
        else:  # overlaps what a replay already delivered: keep only the newer ones
            events = [e for e in events if e.pos > self.last]
            if not events:
                return
            items = [e.wire(self.form) for e in events]
            size = sum(map(len, items))
        self.last = events[-1].pos
        if not self.writer.push_many(items, size, events[0].pos[0], len(events)):
            self.owner.slow_consumer("outgoing queue full")

    def close(self) -> None:
        """The subscription was dropped or its connection ended."""
        self.closed = True

    def _buffer(self, events: list[Encoded]) -> None:
        self.buffer.extend(events)
        self.buffer_bytes += sum(len(e.entry.payload) for e in events) + 64 * len(events)
        if self.buffer_bytes > self.writer.max_bytes:
            self.owner.slow_consumer("live events piled up during a replay")


# The newest event of each symbol in the last batch offered to a conflated subscription: the hub
# offers one Batch to every subscriber of it in a row, so this is computed once per batch, not
# once per subscriber. The batch itself is kept (not its id), so its identity cannot be reused.
_newest_cache: list[Any] = [None, []]


def newest_by_symbol(batch: Batch) -> list[Encoded]:
    """The newest event of each symbol in ``batch`` (public events only), in offset order."""
    cache = _newest_cache
    if cache[0] is batch:
        result: list[Encoded] = cache[1]
        return result
    events = batch.events
    if len(events) == 1:
        result = events
    else:
        latest: dict[str, Encoded] = {}
        for event in reversed(events):
            symbol = event.entry.symbol
            if symbol not in latest:
                latest[symbol] = event
        result = list(latest.values())
        result.reverse()
    cache[0], cache[1] = batch, result
    return result


class _Wheel:
    """The timers of one event loop's conflated subscriptions, in millisecond slots.

    One loop timer per millisecond that has a deadline in it, shared by every subscription due
    then: arming costs a list append, not a timer of its own (a busy node arms one per event
    delivered). A deadline fires in the first slot at or after it (the resolution of uvloop's
    clock anyway). A re-armed subscription's old entry stays in its slot and is skipped.
    """

    __slots__ = ("__weakref__", "_loop", "_slots")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._slots: dict[int, list[ConflatedSubscription]] = {}

    def add(self, sub: ConflatedSubscription, when: float) -> int:
        slot = math.ceil(when * 1000)
        group = self._slots.get(slot)
        if group is None:
            group = self._slots[slot] = []
            self._loop.call_at(slot / 1000, self._fire, slot)
        group.append(sub)
        return slot

    def _fire(self, slot: int) -> None:
        for sub in self._slots.pop(slot, ()):
            if sub.slot == slot:
                sub.fire()


_wheels: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Wheel] = weakref.WeakKeyDictionary()


def _wheel(loop: asyncio.AbstractEventLoop) -> _Wheel:
    wheel = _wheels.get(loop)
    if wheel is None:
        wheel = _wheels[loop] = _Wheel(loop)
    return wheel


class ConflatedSubscription(Subscription):
    """A subscription with ``conflate_ms``: see :mod:`gateway.conflate` for the rules.

    ``last`` is the newest offset delivered (during a replay: the position history was read
    up to); the conflater holds only events newer than the last one delivered, so events still
    leave in offset order. A replay puts its events into the same conflater (:meth:`hold`) and
    :meth:`release` sends them when the subscription goes live: the newest of each symbol.
    """

    __slots__ = ("_loop", "_timer_at", "_wheel", "conflate_ms", "conflater", "scanned", "slot")

    def __init__(self, owner: Owner, writer: Writer, event_type: str,
                 symbols: frozenset[str] | None, conflate_ms: int) -> None:
        super().__init__(owner, writer, event_type, symbols)
        self.conflate_ms = conflate_ms
        self.conflater: Conflater[Encoded] = Conflater(conflate_ms / 1000.0)
        self._loop = asyncio.get_running_loop()
        self._wheel = _wheel(self._loop)
        self.slot: int | None = None  # the wheel slot the timer is armed in
        self._timer_at = 0.0  # the deadline it was armed for
        self.scanned = 0  # history entries read by the replay so far

    @property
    def position(self) -> Offset:
        first = self.conflater.first()
        if first is None or first.pos > self.last:
            return self.last
        # during a replay, ``last`` is ahead of what is held: a replacement starts before it
        return position_before(first.pos)

    def offer(self, event: Encoded) -> None:
        if self.recovering:
            self._buffer([event])
        elif event.pos > self.last and self.conflater.put(key_of(event.entry), event):
            self._head_changed()

    def offer_batch(self, batch: Batch) -> None:
        if self.recovering:
            self._buffer(batch.events)
            return
        newest = newest_by_symbol(batch)
        if len(newest) == 1:  # one symbol (the common case of a filtered subscription)
            event = newest[0]
            if event.pos > self.last and self.conflater.put(event.entry.symbol, event):
                self._head_changed()
            return
        # Conflater.put inlined: this loop runs per symbol per subscriber.
        held, last = self.conflater.held, self.last
        changed = not held
        head = next(iter(held)) if held else None
        for event in newest:
            if event.pos > last:
                key = event.entry.symbol
                if key in held:
                    held.move_to_end(key)
                held[key] = event
        if not changed and next(iter(held)) != head:
            changed = True
        # Unless the oldest held event changed, nothing can go out before the armed timer.
        if changed:
            self._head_changed()

    def _head_changed(self) -> None:
        """The oldest held event changed: send now if its window is open, else arm the timer."""
        deadline = self.conflater.deadline()
        if deadline is None:
            return
        now = self._loop.time()
        if deadline <= now:
            self.release(now)
        elif self.slot is None or deadline < self._timer_at:
            self._arm()

    def hold(self, events: Iterable[Encoded]) -> None:
        """Replayed or buffered events, in offset order: held until :meth:`release`."""
        put = self.conflater.put
        for event in events:
            put(key_of(event.entry), event)

    def release(self, now: float | None = None) -> None:
        """Send what may go out now, and arm the timer for what must wait."""
        out = self.conflater.take(self._loop.time() if now is None else now)
        if out:
            self.push(out)
        self._arm()

    def push(self, events: list[Encoded]) -> None:
        items: list[Frame] = []
        form, size = self.form, 0
        for event in events:
            try:
                item = event.wire(form)
            except CodecError as exc:  # the hub skips it for everyone else too
                log.error("skipping undecodable entry: %s", exc)
                continue
            items.append(item)
            size += len(item)
        if events[-1].pos > self.last:
            self.last = events[-1].pos
        if items and not self.writer.push_many(items, size, events[0].ts):
            self.owner.slow_consumer("outgoing queue full")

    def close(self) -> None:
        super().close()
        self.slot = None
        self.conflater.clear()

    def _arm(self) -> None:
        deadline = self.conflater.deadline()
        if deadline is None or (self.slot is not None and self._timer_at <= deadline):
            return  # nothing waits, or the timer fires in time (early is fine: it re-arms)
        self._timer_at = deadline
        self.slot = self._wheel.add(self, deadline)

    def fire(self) -> None:
        """The timer: send what the window ends released (called by the wheel)."""
        self.slot = None
        if self.recovering or self.gone:
            return
        # The loop's clock may be coarser than the deadline (uvloop: milliseconds).
        out = self.conflater.take(max(self._loop.time(), self._timer_at))
        if out:
            self.push(out)
        self._arm()


def make_subscription(owner: Owner, writer: Writer, event_type: str,
                      symbols: frozenset[str] | None, conflate_ms: int | None) -> Subscription:
    if conflate_ms is None:
        return Subscription(owner, writer, event_type, symbols)
    return ConflatedSubscription(owner, writer, event_type, symbols, conflate_ms)
