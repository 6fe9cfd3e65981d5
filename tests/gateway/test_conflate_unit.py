"""The conflation rules, sans I/O: events in, decisions out, on a fake clock (seconds)."""

from __future__ import annotations

import random

import pytest

from gateway import protocol as p
from gateway.conflate import Conflater, key_of
from gateway.values import StreamEntry

N = 0.1  # the interval: 100 ms


def test_an_event_whose_window_is_open_goes_out_at_once() -> None:
    c: Conflater[bytes] = Conflater(N)
    c.put("BTC", b"b1")
    assert c.take(0.0) == [b"b1"]
    assert c.deadline() is None and len(c) == 0
    assert not c.open("BTC", 0.05) and c.open("BTC", 0.1)


def test_within_the_window_only_the_newest_is_kept_and_goes_out_when_it_ends() -> None:
    c: Conflater[bytes] = Conflater(N)
    c.put("BTC", b"b1")
    assert c.take(0.0) == [b"b1"]
    for n, t in ((2, 0.01), (3, 0.02), (4, 0.05)):
        c.put("BTC", b"b%d" % n)
        assert c.take(t) == []
    assert c.deadline() == pytest.approx(0.1)
    assert c.take(0.099) == []
    assert c.take(0.1) == [b"b4"]
    # its window closed again when b4 went out
    c.put("BTC", b"b5")
    assert c.take(0.15) == []
    assert c.deadline() == pytest.approx(0.2)
    assert c.take(0.2) == [b"b5"]


def test_a_burst_arriving_at_once_sends_its_newest_per_key() -> None:
    c: Conflater[bytes] = Conflater(N)
    for n in range(100):  # one read from Redis: all put, then one decision
        c.put("BTC" if n % 2 else "ETH", b"%d" % n)
    assert c.take(0.0) == [b"98", b"99"]  # offset order: ETH's newest is older than BTC's


def test_keys_are_independent_when_nothing_older_waits() -> None:
    c: Conflater[bytes] = Conflater(N)
    c.put("BTC", b"b1")
    assert c.take(0.0) == [b"b1"]
    c.put("ETH", b"e1")
    assert c.take(0.03) == [b"e1"]  # BTC's closed window does not matter: nothing held
    c.put("BTC", b"b2")
    assert c.take(0.05) == []
    assert c.take(0.1) == [b"b2"]
    c.put("ETH", b"e2")
    assert c.take(0.12) == []
    assert c.take(0.13) == [b"e2"]


def test_events_leave_in_order_an_open_key_waits_behind_an_older_held_one() -> None:
    c: Conflater[bytes] = Conflater(N)
    c.put("BTC", b"b1")
    assert c.take(0.0) == [b"b1"]
    c.put("BTC", b"b2")  # held until 0.1
    assert c.take(0.02) == []
    c.put("ETH", b"e1")  # its window is open, but b2 is older: it waits for b2
    assert c.take(0.04) == []
    assert c.deadline() == pytest.approx(0.1)
    assert c.take(0.1) == [b"b2", b"e1"]  # never later than 0.1 after it arrived


def test_a_replaced_head_no_longer_holds_the_others_back() -> None:
    c: Conflater[bytes] = Conflater(N)
    c.put("BTC", b"b1")
    assert c.take(0.0) == [b"b1"]
    c.put("BTC", b"b2")
    c.put("ETH", b"e1")
    assert c.take(0.01) == []
    c.put("BTC", b"b3")  # replaces b2 and moves behind e1, whose window is open
    assert c.take(0.02) == [b"e1"]
    assert c.take(0.1) == [b"b3"]


def test_flush_sends_everything_held_in_order() -> None:
    c: Conflater[bytes] = Conflater(N)
    c.put("A", b"a1")
    assert c.take(0.0) == [b"a1"]
    c.put("A", b"a2")
    c.put("B", b"b1")
    assert c.take(0.01) == []
    assert c.flush(0.02) == [b"a2", b"b1"]
    c.put("B", b"b2")  # the flush closed B's window too
    assert c.take(0.03) == []
    assert c.take(0.125) == [b"b2"]


def test_the_clock_never_goes_back() -> None:
    c: Conflater[bytes] = Conflater(N)
    c.put("A", b"a1")
    assert c.take(1.0) == [b"a1"]
    c.put("A", b"a2")
    assert c.take(0.5) == []  # taken as 1.0
    assert c.take(1.1) == [b"a2"]


def test_first_deadline_and_clear() -> None:
    c: Conflater[bytes] = Conflater(N)
    assert c.first() is None and c.deadline() is None
    c.put("A", b"a1")
    assert c.first() == b"a1"
    assert c.deadline() is not None
    c.clear()
    assert len(c) == 0 and c.first() is None


def test_windows_that_ended_are_forgotten() -> None:
    c: Conflater[bytes] = Conflater(N)
    for i in range(1000):
        c.put(f"S{i}", b"x")
    assert len(c.take(0.0)) == 1000
    c.put("S0", b"y")
    assert c.take(0.2) == [b"y"]
    assert len(c._until) == 1 and len(c._closes) == 1  # only S0's new window


@pytest.mark.parametrize("seed", range(20))
def test_the_promises_hold_on_random_traffic(seed: int) -> None:
    """At most one per key per interval, nothing held past the interval, the newest of each key
    always delivered, everything in arrival order, each at most once."""
    rng = random.Random(seed)
    c: Conflater[tuple[str, int]] = Conflater(N)
    keys = [f"K{i}" for i in range(rng.randint(1, 8))]
    sent: list[tuple[float, tuple[str, int]]] = []
    arrived: dict[int, float] = {}
    newest: dict[str, int] = {}
    now, n = 0.0, 0
    timer: float | None = None
    while now < 5.0:
        step = rng.expovariate(1 / 0.004)
        if timer is not None and timer <= now + step:
            now = max(now, timer)  # the timer fires first
        else:
            now += step
            for _ in range(rng.randint(1, 4)):  # one read may bring several events
                key = rng.choice(keys)
                c.put(key, (key, n))
                arrived[n] = now
                newest[key] = n
                n += 1
        sent += [(now, item) for item in c.take(now)]
        timer = c.deadline()
    while timer is not None:
        sent += [(timer, item) for item in c.take(timer)]
        timer = c.deadline()
    numbers = [number for _, (_, number) in sent]
    assert numbers == sorted(set(numbers))
    last_sent: dict[str, float] = {}
    last_number: dict[str, int] = {}
    for t, (key, number) in sent:
        assert t - arrived[number] <= N + 1e-9, "held longer than the interval"
        if key in last_sent:
            assert t - last_sent[key] >= N - 1e-9, "two events of one key within the interval"
        last_sent[key], last_number[key] = t, number
    assert last_number == newest, "the newest event of every key is delivered"
    assert len(sent) < n / 2, "conflation conflated"


def test_key_of_separates_users_and_names_the_symbolless() -> None:
    def entry(symbol: str, user: str) -> StreamEntry:
        return StreamEntry("t", "1-0", (1, 0), symbol, user, b"\x80")

    assert key_of(entry("BTCUSDT", "")) == "BTCUSDT"
    assert key_of(entry("", "")) == ""
    assert key_of(entry("BTCUSDT", "alice")) == ("BTCUSDT", "alice")
    assert key_of(entry("BTCUSDT", "alice")) != key_of(entry("BTCUSDT", "bob"))


@pytest.mark.parametrize("value", [0, 9, 60001, "100", True, 1.5, -10, [100]])
def test_conflate_ms_must_be_an_integer_from_10_to_60000(value: object) -> None:
    import orjson

    frame = orjson.dumps({"op": "subscribe", "id": 5, "event_type": "custom", "conflate_ms": value})
    with pytest.raises(p.ClientError) as info:
        p.parse(frame.decode(), binary=False)
    assert info.value.code == "bad_request" and info.value.msg_id == 5
    assert "conflate_ms" in info.value.message


@pytest.mark.parametrize("value", [10, 100, 60000, None])
def test_conflate_ms_accepted(value: int | None) -> None:
    import msgpack

    frame = msgpack.packb({"op": "subscribe", "event_type": "custom", "conflate_ms": value})
    command = p.parse(frame, binary=True)
    assert isinstance(command, p.Subscribe) and command.conflate_ms == value
