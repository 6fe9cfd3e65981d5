"""Pure trackers for gapless, duplicate-free delivery across reconnects and rotations.

Binance replays nothing: what was sent while a connection was down is lost and must be fetched
over REST, and during a planned rotation two connections deliver the same events for a while.
These trackers see every id (aggregate trade id, or closed-kline open time) before it is
published and answer with a :data:`Verdict`:

* :data:`NEW` - publish it;
* :data:`DUPLICATE` - already seen (rotation overlap, or backfill overlapping live data): drop it;
* :class:`Gap` - publish it, and backfill ``from_id..to_id`` (inclusive), which is now recorded as
  a hole: ids later observed inside a hole are NEW and fill it, so backfilled rows go through the
  same :meth:`observe` and backfill pages may overlap live data freely.

Holes that backfill cannot fill (e.g. no klines during a market halt) are dropped with
:meth:`SequenceTracker.resolve`. At most ``max_holes`` are remembered; beyond that the oldest is
forgotten (counted in ``holes_dropped``), after which its late ids count as duplicates.
"""

from __future__ import annotations

import calendar
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from ingestor.binance.streams import KLINE_INTERVALS

__all__ = [
    "DUPLICATE",
    "NEW",
    "AggTradeGaps",
    "Duplicate",
    "Gap",
    "KlineGaps",
    "New",
    "SequenceTracker",
    "Verdict",
    "kline_step",
]


@dataclass(frozen=True, slots=True)
class New:
    """Not seen before: publish."""


@dataclass(frozen=True, slots=True)
class Duplicate:
    """Seen before: drop."""


@dataclass(frozen=True, slots=True)
class Gap:
    """New, but the ids ``from_id..to_id`` (inclusive) before it were never seen: backfill them.

    For klines the "ids" are candle open times (ms).
    """

    from_id: int
    to_id: int


NEW: Final = New()
DUPLICATE: Final = Duplicate()
Verdict: TypeAlias = New | Duplicate | Gap

Step: TypeAlias = tuple[Callable[[int], int], Callable[[int], int]]
"""``(next, previous)`` functions of a sequence."""

_UNIT_STEP: Final[Step] = (lambda x: x + 1, lambda x: x - 1)

_FIXED_MS: Final = {
    "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000,
}  # fmt: skip


def _add_months(open_time: int, months: int) -> int:
    year, month = time.gmtime(open_time // 1000)[:2]
    index = year * 12 + (month - 1) + months
    return calendar.timegm((index // 12, index % 12 + 1, 1, 0, 0, 0)) * 1000


def kline_step(interval: str) -> Step:
    """``(next, previous)`` open time of a kline interval; months are calendar months (UTC)."""
    if interval not in KLINE_INTERVALS:
        raise ValueError(f"invalid kline interval {interval!r}")
    if interval == "1M":
        return (lambda t: _add_months(t, 1), lambda t: _add_months(t, -1))
    width = int(interval[:-1]) * _FIXED_MS[interval[-1]]
    return (lambda t: t + width, lambda t: t - width)


def _start(hole: tuple[int, int]) -> int:
    return hole[0]


class SequenceTracker:
    """One increasing sequence (ids or open times) with a high-water mark and holes."""

    __slots__ = ("_holes", "_max_holes", "_next", "_prev", "holes_dropped", "last")

    def __init__(self, step: Step = _UNIT_STEP, *, max_holes: int = 64) -> None:
        self._next, self._prev = step
        self._max_holes = max_holes
        self._holes: list[tuple[int, int]] = []  # sorted, disjoint, inclusive
        self.last: int | None = None  # highest value observed
        self.holes_dropped = 0

    def seed(self, last: int | None) -> None:
        """Start from a known last value (e.g. the last id published before a restart), or
        from nothing (None: the next value observed is taken as it comes)."""
        self.last = last
        self._holes = []

    def resume_from(self) -> int | None:
        """The next value expected (``fromId``/``startTime`` for a backfill), None if unknown."""
        return None if self.last is None else self._next(self.last)

    @property
    def holes(self) -> list[tuple[int, int]]:
        """Ranges still missing, oldest first, inclusive."""
        return list(self._holes)

    def observe(self, value: int) -> Verdict:
        last = self.last
        if last is None:
            self.last = value
            return NEW
        if value > last:
            self.last = value
            expected = self._next(last)
            if value == expected:
                return NEW
            to_id = self._prev(value)
            if to_id < expected:  # off the grid (klines): nothing whole is missing
                return NEW
            self._add_hole(expected, to_id)
            return Gap(expected, to_id)
        return NEW if self._fill(value) else DUPLICATE

    def resolve(self, from_id: int, to_id: int) -> None:
        """Stop waiting for ``from_id..to_id``: backfilled as far as possible, or given up."""
        kept: list[tuple[int, int]] = []
        for start, end in self._holes:
            if end < from_id or start > to_id:
                kept.append((start, end))
                continue
            if start < from_id:
                kept.append((start, self._prev(from_id)))
            if end > to_id:
                kept.append((self._next(to_id), end))
        self._holes = kept

    def _add_hole(self, start: int, end: int) -> None:
        self._holes.append((start, end))
        if len(self._holes) > self._max_holes:
            del self._holes[0]
            self.holes_dropped += 1

    def _fill(self, value: int) -> bool:
        holes = self._holes
        index = bisect_right(holes, value, key=_start) - 1  # the last hole starting <= value
        if index < 0 or holes[index][1] < value:
            return False
        start, end = holes[index]
        pieces = []
        if start < value:
            pieces.append((start, self._prev(value)))
        if value < end:
            pieces.append((self._next(value), end))
        holes[index : index + 1] = pieces
        return True


class AggTradeGaps:
    """Per-symbol aggregate-trade-id trackers (``price_update`` delivery)."""

    def __init__(self, *, max_holes: int = 64) -> None:
        self._max_holes = max_holes
        self._trackers: dict[str, SequenceTracker] = {}

    def tracker(self, symbol: str) -> SequenceTracker:
        tracker = self._trackers.get(symbol)
        if tracker is None:
            tracker = self._trackers[symbol] = SequenceTracker(max_holes=self._max_holes)
        return tracker

    def observe(self, symbol: str, agg_id: int) -> Verdict:
        """Judge one aggregate trade id (live or backfilled)."""
        return self.tracker(symbol).observe(agg_id)

    def resume_from(self, symbol: str) -> int | None:
        """``fromId`` for ``/api/v3/aggTrades`` after a reconnect: last seen id + 1."""
        return self.tracker(symbol).resume_from()


class KlineGaps:
    """Per-(symbol, interval) trackers of closed-candle open times.

    Only closed candles are observed: open candles are updates of one candle, not new items.
    """

    def __init__(self, *, max_holes: int = 64) -> None:
        self._max_holes = max_holes
        self._trackers: dict[tuple[str, str], SequenceTracker] = {}

    def tracker(self, symbol: str, interval: str) -> SequenceTracker:
        key = (symbol, interval)
        tracker = self._trackers.get(key)
        if tracker is None:
            step = kline_step(interval)
            tracker = self._trackers[key] = SequenceTracker(step, max_holes=self._max_holes)
        return tracker

    def observe(self, symbol: str, interval: str, open_time: int) -> Verdict:
        """Judge one closed candle by its open time."""
        return self.tracker(symbol, interval).observe(open_time)

    def resume_from(self, symbol: str, interval: str) -> int | None:
        """``startTime`` for ``/api/v3/klines`` after a reconnect: the next candle's open time."""
        return self.tracker(symbol, interval).resume_from()
