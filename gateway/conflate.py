"""Conflation, sans I/O: at most one event per key per interval, always the newest one.

A conflated subscription (``conflate_ms`` on ``subscribe``) keeps one :class:`Conflater`. The
caller puts events in, in stream order, and asks what to send at a given time; it owns the
clock, the timer and the socket (:mod:`gateway.subscription`). The rules:

* Each key (a symbol; see :func:`key_of`) has a *window*: after an event of the key is sent
  at ``t``, the key's window is closed until ``t + interval``.
* An event put for a key replaces the one held for that key, if any: only the newest counts.
* Events leave in the order they were put (offset order): an event is sent when its key's
  window is open *and* no older event is still held. Offsets of one type must increase on a
  connection (clients de-duplicate by offset and resume from the last one), so an event whose
  window is open may wait behind an older held event of another key.
* Nothing waits longer than ``interval``: every closed window closes by ``now + interval``,
  and a held event only waits for windows that were closed when it arrived (a key sent after
  it arrived is no longer ahead of it). So the newest event of a key reaches the client at
  most ``interval`` after it arrived, and a burst costs one event per key, not one per event.

:meth:`Conflater.take` answers "what goes out now", :meth:`Conflater.deadline` "when to ask
again": one timer per subscription, whatever the number of keys. Everything is O(1) per
event put and per event sent (plus the per-key dictionaries); nothing is encoded here, the
held items are the caller's shared objects.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from gateway.values import StreamEntry

T = TypeVar("T")

_NEVER = float("-inf")

Key = str | tuple[str, str]


def key_of(entry: StreamEntry) -> Key:
    """What an event is conflated by: its symbol ("" when it has none); for a private event,
    its symbol and its user, so one user's event never replaces another user's."""
    return (entry.symbol, entry.user) if entry.user else entry.symbol


class Conflater(Generic[T]):
    """The held events and the key windows of one conflated subscription.

    ``interval`` and every ``now`` are in the same unit (the gateway uses seconds of the event
    loop's monotonic clock). A ``now`` smaller than an earlier one is taken as that one.
    """

    __slots__ = ("_closes", "_now", "_until", "held", "interval")

    def __init__(self, interval: float) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive")
        self.interval = interval
        # key -> its newest event, oldest first (read-only outside; put() is inlined by callers)
        self.held: OrderedDict[Hashable, T] = OrderedDict()
        self._until: dict[Hashable, float] = {}  # key -> when its window opens again
        self._closes: deque[tuple[float, Hashable]] = deque()  # (until, key), in time order
        self._now = _NEVER

    def __len__(self) -> int:
        """How many events are held."""
        return len(self.held)

    def put(self, key: Hashable, item: T) -> bool:
        """An event arrives (in stream order): it replaces the one held for ``key``.

        True when the oldest held event changed (nothing was held, or it was ``key``'s): only
        then may :meth:`take` have something new to send before :meth:`deadline`.
        """
        held = self.held
        if not held:
            held[key] = item
            return True
        if key in held:
            head = next(iter(held)) == key
            held.move_to_end(key)
            held[key] = item
            return head
        held[key] = item
        return False

    def put_many(self, pairs: Iterable[tuple[Hashable, T]]) -> bool:
        changed = False
        for key, item in pairs:
            changed = self.put(key, item) or changed
        return changed

    def take(self, now: float) -> list[T]:
        """The held events to send at ``now``, oldest first (their windows close)."""
        now = self._clock(now)
        held = self.held
        if not held:
            return []
        until, closes, end = self._until, self._closes, now + self.interval
        out: list[T] = []
        while held:
            key = next(iter(held))
            if key in until:  # its window is still closed: it, and everything newer, waits
                break
            out.append(held.popitem(last=False)[1])
            until[key] = end
            closes.append((end, key))
        return out

    def flush(self, now: float) -> list[T]:
        """Every held event, oldest first, whatever the windows (their windows close)."""
        now = self._clock(now)
        end = now + self.interval
        out: list[T] = []
        held = self.held
        while held:
            key, item = held.popitem(last=False)
            out.append(item)
            self._until[key] = end
            self._closes.append((end, key))
        return out

    def deadline(self) -> float | None:
        """From when :meth:`take` returns something: the end of the oldest held event's window
        (-inf when it is open already); None when nothing is held."""
        held = self.held
        if not held:
            return None
        return self._until.get(next(iter(held)), _NEVER)

    def first(self) -> T | None:
        """The oldest held event, if any."""
        held = self.held
        return held[next(iter(held))] if held else None

    def open(self, key: Hashable, now: float) -> bool:
        """Whether ``key``'s window is open at ``now`` (for tests and introspection)."""
        self._clock(now)
        return key not in self._until

    def clear(self) -> None:
        self.held.clear()
        self._until.clear()
        self._closes.clear()

    def _clock(self, now: float) -> float:
        """Advance the clock to ``now`` and open the windows that ended by then."""
        if now < self._now:
            now = self._now
        self._now = now
        closes, until = self._closes, self._until
        while closes and closes[0][0] <= now:
            end, key = closes.popleft()
            if until.get(key) == end:
                del until[key]
        return now
