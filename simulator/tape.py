"""Bounded in-memory history of trades and aggregate trades, for REST backfill."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable
from typing import Generic, TypeVar

from simulator.market import AggTrade, Trade

T = TypeVar("T")


class BoundedLog(Generic[T]):
    """An append-only list keeping at least the last ``capacity`` items.

    Items are trimmed in chunks so appends stay amortised O(1) while the list stays
    indexable and bisectable.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self.items: list[T] = []

    def append(self, item: T) -> None:
        self.items.append(item)
        if len(self.items) > self.capacity + max(16, self.capacity // 4):
            del self.items[: len(self.items) - self.capacity]

    def __len__(self) -> int:
        return len(self.items)

    def window(self) -> list[T]:
        """The retained items (at most ``capacity``), oldest first."""
        return self.items[-self.capacity :]


class _IdLog(Generic[T]):
    """History of objects with increasing integer ids and non-decreasing times."""

    def __init__(self, capacity: int, id_of: Callable[[T], int], time_of: Callable[[T], int]):
        self.log: BoundedLog[T] = BoundedLog(capacity)
        self._id = id_of
        self._time = time_of

    def append(self, item: T) -> None:
        self.log.append(item)

    def last(self) -> T | None:
        return self.log.items[-1] if self.log.items else None

    def query(
        self,
        limit: int,
        from_id: int | None = None,
        start: int | None = None,
        end: int | None = None,
    ) -> list[T]:
        """Up to ``limit`` items, oldest first.

        ``from_id`` (inclusive) and ``start`` pick the first item; ``end`` (inclusive)
        bounds the last; with neither ``from_id`` nor ``start`` the most recent items
        are returned.
        """
        items = self.log.items
        lo = max(0, len(items) - self.log.capacity)
        hi = len(items)
        if lo >= hi:
            return []
        if end is not None:
            hi = bisect_right(items, end, lo, hi, key=self._time)
        if from_id is not None:
            lo = max(lo, bisect_left(items, from_id, lo, hi, key=self._id))
        if start is not None:
            lo = max(lo, bisect_left(items, start, lo, hi, key=self._time))
        if lo >= hi:
            return []
        if from_id is None and start is None:
            return items[max(lo, hi - limit) : hi]
        return items[lo : min(hi, lo + limit)]


class Tape:
    """Trades and aggregate trades of one symbol."""

    def __init__(self, capacity: int) -> None:
        self.trades: _IdLog[Trade] = _IdLog(capacity, lambda t: t.id, lambda t: t.time)
        self.aggs: _IdLog[AggTrade] = _IdLog(capacity, lambda a: a.id, lambda a: a.time)

    def last_trade_id(self) -> int | None:
        last = self.trades.last()
        return None if last is None else last.id

    def last_agg_id(self) -> int | None:
        last = self.aggs.last()
        return None if last is None else last.id
