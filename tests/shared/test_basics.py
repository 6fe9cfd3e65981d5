"""Offsets, keys and backoff: the small rules other parts lean on."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from shared.backoff import Backoff, delays
from shared.errors import InvalidOffset
from shared.keys import Keys
from shared.offsets import format_offset, parse_offset


def test_offsets_parse_and_order() -> None:
    assert parse_offset("1732612345678-3") == (1732612345678, 3)
    assert parse_offset(b"5-0") < parse_offset("5-1") < parse_offset("6-0")
    assert format_offset((7, 2)) == "7-2"
    assert parse_offset("18446744073709551615-18446744073709551615") == (2**64 - 1, 2**64 - 1)
    for bad in ["", "abc", "1-", "-1", "1-2-3", "1.5-0", " 1-0", "99999999999999999999999-0",
                "1-0\n", "+1-0", "1_0-0", "\u0661-\u0660", "\u00b2-0", "18446744073709551616-0",
                b"1-\xff", "0" * 21 + "-0"]:
        with pytest.raises(InvalidOffset):
            parse_offset(bad)
    for wrong in [None, 5, ("1", "0")]:
        with pytest.raises(InvalidOffset):
            parse_offset(wrong)  # type: ignore[arg-type]


def test_keys_share_one_prefix() -> None:
    keys = Keys("ts")
    names = [keys.stream("price_update"), keys.meta("price_update"), keys.types(),
             keys.idempotency("price_update", "k"), keys.producer("price_update", "p"),
             keys.health("gateway", "n1")]
    assert all(name.startswith("ts:") for name in names)
    assert len(set(names)) == len(names)
    assert keys.event_type_of(keys.stream("price_update").encode()) == "price_update"


def test_keys_of_one_type_share_a_cluster_slot_and_types_spread() -> None:
    keys = Keys()
    per_type = [keys.stream("price_update"), keys.meta("price_update"),
                keys.idempotency("price_update", "order-1"), keys.producer("price_update", "p1")]
    assert len({key_slot(k.encode()) for k in per_type}) == 1
    slots = {key_slot(keys.stream(f"type_{i}").encode()) for i in range(20)}
    assert len(slots) == 20  # different types land in different slots


def test_full_jitter_backoff_stays_under_a_growing_ceiling() -> None:
    gen = delays(base=0.5, cap=30.0, rand=lambda: 1.0)
    assert [next(gen) for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    low = delays(base=0.5, cap=30.0, rand=lambda: 0.0)
    assert next(low) == 0.0


def test_backoff_resets_only_after_a_stable_connection() -> None:
    backoff = Backoff(base=1, cap=100, stable_after=60, rand=lambda: 1.0)
    assert [backoff.next_delay(now=0) for _ in range(3)] == [1, 2, 4]
    backoff.connected(now=10)
    assert backoff.next_delay(now=20) == 8  # up 10 s: not stable, keeps growing
    backoff.connected(now=100)
    assert backoff.next_delay(now=200) == 1  # up 100 s: stable, starts over
