"""Gap and duplicate trackers: what to publish, what to drop, what to backfill."""

from __future__ import annotations

import calendar
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingestor.gaps import DUPLICATE, NEW, AggTradeGaps, Gap, KlineGaps, SequenceTracker, kline_step

MINUTE = 60_000


def test_consecutive_ids_are_new_and_repeats_are_duplicates() -> None:
    tracker = SequenceTracker()
    assert [tracker.observe(i) for i in (100, 101, 102)] == [NEW, NEW, NEW]
    assert tracker.observe(102) is DUPLICATE
    assert tracker.observe(7) is DUPLICATE  # before the first id seen: never published here
    assert tracker.resume_from() == 103


def test_a_jump_is_a_gap_to_backfill_and_the_event_itself_is_new() -> None:
    tracker = SequenceTracker()
    tracker.observe(100)
    assert tracker.observe(110) == Gap(101, 109)
    assert tracker.holes == [(101, 109)]
    assert tracker.observe(111) is NEW


def test_backfilled_ids_fill_the_hole_exactly_once() -> None:
    tracker = SequenceTracker()
    tracker.observe(100)
    tracker.observe(110)
    assert tracker.observe(105) is NEW
    assert tracker.holes == [(101, 104), (106, 109)]
    assert tracker.observe(105) is DUPLICATE
    verdicts = [tracker.observe(i) for i in range(101, 111)]  # a backfill page reaching live ids
    assert verdicts == [NEW] * 4 + [DUPLICATE] + [NEW] * 4 + [DUPLICATE]
    assert tracker.holes == []
    assert tracker.observe(111) is NEW


def test_resolve_stops_waiting_for_part_or_all_of_a_hole() -> None:
    tracker = SequenceTracker()
    tracker.observe(0)
    tracker.observe(20)  # hole 1..19
    tracker.resolve(5, 9)
    assert tracker.holes == [(1, 4), (10, 19)]
    assert tracker.observe(7) is DUPLICATE
    tracker.resolve(0, 100)
    assert tracker.holes == []


def test_too_many_holes_forget_the_oldest() -> None:
    tracker = SequenceTracker(max_holes=2)
    for value in (0, 2, 4, 6):  # holes 1, 3, 5
        tracker.observe(value)
    assert tracker.holes == [(3, 3), (5, 5)]
    assert tracker.holes_dropped == 1
    assert tracker.observe(1) is DUPLICATE


def test_seed_resumes_after_a_restart() -> None:
    tracker = SequenceTracker()
    assert tracker.resume_from() is None
    tracker.seed(500)
    assert tracker.resume_from() == 501
    assert tracker.observe(500) is DUPLICATE
    assert tracker.observe(503) == Gap(501, 502)


def test_rotation_overlap_publishes_every_trade_once() -> None:
    """Old and new connections both deliver 105..110 during a planned rotation."""
    gaps = AggTradeGaps()
    old = list(range(100, 111))
    new = list(range(105, 121))
    published = []
    for agg_id in [*old[:6], *new[:3], *old[6:], *new[3:]]:
        if gaps.observe("BTCUSDT", agg_id) is not DUPLICATE:
            published.append(agg_id)
    assert published == list(range(100, 121))
    assert gaps.resume_from("BTCUSDT") == 121


def test_symbols_are_tracked_independently() -> None:
    gaps = AggTradeGaps()
    gaps.observe("BTCUSDT", 1000)
    assert gaps.observe("ETHUSDT", 5) is NEW
    assert gaps.observe("ETHUSDT", 8) == Gap(6, 7)
    assert gaps.observe("BTCUSDT", 1001) is NEW
    assert gaps.resume_from("SOLUSDT") is None


@given(st.integers(min_value=1, max_value=300), st.integers(min_value=0, max_value=2**32))
def test_any_order_with_duplicates_publishes_each_id_exactly_once(n: int, seed: int) -> None:
    rnd = random.Random(seed)
    deliveries = list(range(1, n + 1)) + rnd.choices(range(1, n + 1), k=n // 2)
    rnd.shuffle(deliveries)
    tracker = SequenceTracker(max_holes=10**6)
    tracker.seed(0)
    published: list[int] = []
    backfill: set[int] = set()
    for value in deliveries:
        verdict = tracker.observe(value)
        if verdict is not DUPLICATE:
            published.append(value)
        if isinstance(verdict, Gap):
            backfill.update(range(verdict.from_id, verdict.to_id + 1))
    assert sorted(published) == list(range(1, n + 1))
    assert tracker.holes == []
    assert backfill <= set(range(1, n + 1))


# -- klines ---------------------------------------------------------------------------------------


def test_closed_klines_by_open_time() -> None:
    gaps = KlineGaps()
    assert gaps.observe("BTCUSDT", "1m", 10 * MINUTE) is NEW
    assert gaps.observe("BTCUSDT", "1m", 11 * MINUTE) is NEW
    assert gaps.observe("BTCUSDT", "1m", 11 * MINUTE) is DUPLICATE
    assert gaps.observe("BTCUSDT", "1m", 15 * MINUTE) == Gap(12 * MINUTE, 14 * MINUTE)
    assert gaps.observe("BTCUSDT", "1m", 13 * MINUTE) is NEW  # backfilled
    assert gaps.resume_from("BTCUSDT", "1m") == 16 * MINUTE
    assert gaps.observe("BTCUSDT", "5m", 15 * MINUTE) is NEW  # each interval on its own


def test_off_grid_open_time_is_new_without_a_gap() -> None:
    tracker = SequenceTracker(kline_step("1m"))
    tracker.observe(0)
    assert tracker.observe(90_000) is NEW
    assert tracker.holes == []


def _month(year: int, month: int) -> int:
    return calendar.timegm((year, month, 1, 0, 0, 0)) * 1000


def test_monthly_klines_step_by_calendar_month() -> None:
    next_open, previous_open = kline_step("1M")
    assert next_open(_month(2024, 1)) == _month(2024, 2)
    assert next_open(_month(2024, 2)) == _month(2024, 3)  # 29 days in a leap February
    assert next_open(_month(2024, 12)) == _month(2025, 1)
    assert previous_open(_month(2025, 1)) == _month(2024, 12)
    gaps = KlineGaps()
    gaps.observe("BTCUSDT", "1M", _month(2023, 11))
    assert gaps.observe("BTCUSDT", "1M", _month(2024, 3)) == Gap(_month(2023, 12), _month(2024, 2))


@pytest.mark.parametrize(
    ("interval", "width"),
    [("1s", 1000), ("3m", 180_000), ("12h", 43_200_000), ("3d", 259_200_000), ("1w", 604_800_000)],
)
def test_fixed_interval_widths(interval: str, width: int) -> None:
    next_open, previous_open = kline_step(interval)
    assert next_open(width * 10) == width * 11
    assert previous_open(width * 10) == width * 9


def test_unknown_interval() -> None:
    with pytest.raises(ValueError, match="interval"):
        kline_step("2m")
