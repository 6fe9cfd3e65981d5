"""The group lease, resuming from Redis and the sink's refetch rules, piece by piece.

Pure rules first (names, replies, timings, marks), then the lease scripts and the
:class:`~ingestor.group.Group` loop against real Redis (one server, Redis Cluster and Sentinel:
the lease and token keys share the group's hash slot), then the in-process pieces the takeover
relies on (the sink's broken sequences; feeds started over: tests/ingestor/test_backfill.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import pytest
from redis.crc import key_slot

from ingestor.group import Group
from ingestor.lease import (
    ACQUIRE_SCRIPT,
    GROUP_NAME,
    RELEASE_SCRIPT,
    RENEW_SCRIPT,
    Holder,
    LeaseReply,
    check_timings,
    default_group,
)
from ingestor.metrics import IngestorMetrics
from ingestor.normalize import iso_ms
from ingestor.resume import Resume, iso_to_ms, mark_of
from ingestor.settings import IngestorSettings
from ingestor.sink import Sink, is_sequenced, sequence_of
from shared.errors import ConfigError
from shared.events import Event
from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from shared.settings import from_args
from shared.topology import Topology
from tests.support.waiting import until

pytestmark = pytest.mark.topologies

KEYS = Keys("ts")


# -- pure rules ----------------------------------------------------------------------------------


def test_the_default_group_is_a_hash_of_the_sorted_symbols() -> None:
    assert default_group(["BTCUSDT", "ETHUSDT"]) == default_group(["ethusdt", "BTCUSDT"])
    assert default_group(["BTCUSDT"]) != default_group(["BTCUSDT", "ETHUSDT"])
    assert default_group(["BTCUSDT", "ETHUSDT"]) == "s-a2ac4f6320d1"  # the tests' group
    assert GROUP_NAME.fullmatch(default_group(["X"]))
    settings = IngestorSettings(symbols=("ETHUSDT", "BTCUSDT"))
    assert settings.group == "s-a2ac4f6320d1"


def test_lease_and_token_share_the_groups_cluster_slot() -> None:
    assert key_slot(KEYS.ingestor_lease("g").encode()) == key_slot(KEYS.ingestor_token("g").encode())
    per_type = [KEYS.stream("price_update"), KEYS.fence("price_update"), KEYS.last("price_update")]
    assert len({key_slot(k.encode()) for k in per_type}) == 1


def test_lease_values_and_replies_parse() -> None:
    assert Holder.parse(b"7:host-1:2") == Holder(7, "host-1:2")
    assert Holder.parse("x:host") is None and Holder.parse(None) is None
    assert str(Holder(3, "a")) == "a (token 3)"
    assert LeaseReply.parse([1, b"4:a"]) == LeaseReply(True, Holder(4, "a"))
    assert LeaseReply.parse([0, b""]) == LeaseReply(False, None)


def test_lease_timings_are_checked() -> None:
    assert check_timings(3.0, 1.0, 0.5) is None
    assert "LEASE_RENEW" in (check_timings(3.0, 2.0, 0.5) or "")
    assert "LEASE_RETRY" in (check_timings(3.0, 1.0, 4.0) or "")
    with pytest.raises(ConfigError, match=r"^LEASE_RENEW"):
        from_args(IngestorSettings, environ={"LEASE_TTL": "2s", "LEASE_RENEW": "1500ms"})
    with pytest.raises(ConfigError, match=r"^INGESTOR_GROUP"):
        from_args(IngestorSettings, environ={"INGESTOR_GROUP": "two words"})
    assert from_args(IngestorSettings, environ={"INGESTOR_GROUP": "eu-1"}).group == "eu-1"


def test_marks_name_a_trade_and_a_closed_candle() -> None:
    for ms in (0, 1_767_225_600_123, 1_700_000_000_999):
        assert iso_to_ms(iso_ms(ms)) == ms
    trade = Event("price_update", {"symbol": "BTCUSDT", "trade_id": 42}, "BTCUSDT")
    assert mark_of(trade) == ("BTCUSDT", 42)
    candle = {"symbol": "BTCUSDT", "kind": "candle", "interval": "1m",
              "open_time": iso_ms(1_767_225_600_000), "closed": True}
    assert mark_of(Event("market_data", candle, "BTCUSDT")) == ("BTCUSDT:candle:1m", 1_767_225_600_000)
    assert mark_of(Event("market_data", {**candle, "closed": False}, "BTCUSDT")) is None
    assert mark_of(Event("market_data", {"kind": "ticker"}, "BTCUSDT")) is None
    assert sequence_of(Event("market_data", {**candle, "closed": False}, "BTCUSDT")) == (
        "candles", "BTCUSDT", "1m")
    assert not is_sequenced(Event("market_data", {**candle, "closed": False}, "BTCUSDT"))
    assert is_sequenced(trade)


# -- the lease scripts and the group loop, against Redis -----------------------------------------


@pytest.fixture
async def topology(redis_url: str) -> AsyncIterator[Topology]:
    made = Topology(redis_url)
    yield made
    await made.aclose()


async def lease(topology: Topology, script: str, *args: str | int) -> Any:
    client = await topology.client_for(KEYS.ingestor_lease("g"))
    return await client.eval(script, 2, KEYS.ingestor_lease("g"), KEYS.ingestor_token("g"), *args)


async def test_the_lease_scripts_acquire_renew_take_back_and_release(topology: Topology) -> None:
    assert LeaseReply.parse(await lease(topology, ACQUIRE_SCRIPT, "a", 60_000, 0)) == \
        LeaseReply(True, Holder(1, "a"))
    assert LeaseReply.parse(await lease(topology, ACQUIRE_SCRIPT, "b", 60_000, 0)) == \
        LeaseReply(False, Holder(1, "a"))
    assert LeaseReply.parse(await lease(topology, RENEW_SCRIPT, "1:a", 60_000, 1)).ours
    assert await lease(topology, RELEASE_SCRIPT, "1:b") == 0  # not b's to release
    assert await lease(topology, RELEASE_SCRIPT, "1:a") == 1
    # Lapsed, and nobody took it since (the counter still says 1): a takes it back, same token.
    assert LeaseReply.parse(await lease(topology, RENEW_SCRIPT, "1:a", 60_000, 1)).ours
    await lease(topology, RELEASE_SCRIPT, "1:a")
    assert LeaseReply.parse(await lease(topology, ACQUIRE_SCRIPT, "b", 60_000, 0)).holder == Holder(2, "b")
    # Someone acquired meanwhile: a's renewal finds it lost.
    assert LeaseReply.parse(await lease(topology, RENEW_SCRIPT, "1:a", 60_000, 1)) == \
        LeaseReply(False, Holder(2, "b"))
    await lease(topology, RELEASE_SCRIPT, "2:b")
    # A floor (a fence newer than the counter) puts the next token past it.
    assert LeaseReply.parse(await lease(topology, ACQUIRE_SCRIPT, "c", 60_000, 10)).holder == \
        Holder(11, "c")


class Hooks:
    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.reasons: list[str] = []

    async def take_over(self, token: int) -> None:
        self.tokens.append(token)

    def step_down(self, reason: str) -> None:
        self.reasons.append(reason)


def group_of(redis_url: str, node: str, topology: Topology, hooks: Hooks, ttl: float = 0.6) -> Group:
    settings = IngestorSettings(redis_url=redis_url, key_prefix="ts", node=node, group="g",  # type: ignore[arg-type]
                                lease_ttl=ttl, lease_renew=0.2, lease_retry=0.1)
    return Group(settings, topology, KEYS, hooks, IngestorMetrics())


async def pause(group: Group) -> None:
    task = group._task
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def wake(group: Group) -> None:
    group._task = asyncio.create_task(group._run())


async def test_a_standby_takes_over_a_lapsed_lease_and_the_old_leader_steps_down(
    redis_url: str, topology: Topology
) -> None:
    hooks_a, hooks_b = Hooks(), Hooks()
    a, b = group_of(redis_url, "a", topology, hooks_a), group_of(redis_url, "b", topology, hooks_b)
    await a.start()
    await b.start()
    try:
        assert a.leader and not b.leader and hooks_a.tokens == [1] and b.holder == Holder(1, "a")
        await pause(a)  # its loop stops (SIGSTOP, a GC pause): it still thinks it leads
        await until(lambda: b.leader, 3, "b leading")
        assert hooks_b.tokens == [2] and b.status()["leader"] == "b"
        wake(a)  # its next renewal finds the lease taken
        await until(lambda: not a.leader, 3, "a standing by")
        assert hooks_a.reasons == ["Fenced: lease lost to b (token 2); our token 1 is stale"]
        assert a.holder == Holder(2, "b") and a.token is None
        await b.stop()  # a clean stop releases the lease: a takes over without waiting for the TTL
        await until(lambda: a.leader, 1, "a leading again")
        assert hooks_a.tokens == [1, 3]
    finally:
        await a.stop()
        await b.stop()


async def test_after_a_redis_outage_the_leader_takes_its_lease_back_before_a_standby(
    redis_url: str, topology: Topology
) -> None:
    hooks_a, hooks_b = Hooks(), Hooks()
    a = group_of(redis_url, "a", topology, hooks_a, ttl=2.0)
    b = group_of(redis_url, "b", topology, hooks_b, ttl=2.0)
    await a.start()
    await b.start()
    try:
        await pause(a)
        await pause(b)
        # Redis was away for both, longer than the TTL: the lease expired, b's calls failed.
        client = await topology.client_for(KEYS.ingestor_lease("g"))
        await client.delete(KEYS.ingestor_lease("g"))
        b._failing = True
        wake(b)
        wake(a)
        await until(lambda: _lease_is(topology, b"1:a"), 1.5, "a's lease back, same token")
        assert a.leader and a.token == 1 and hooks_a.tokens == [1]  # no takeover: buffer kept
        assert not b.leader and hooks_b.tokens == []
    finally:
        await a.stop()
        await b.stop()


async def _lease_is(topology: Topology, value: bytes) -> bool:
    client = await topology.client_for(KEYS.ingestor_lease("g"))
    return bool(await client.get(KEYS.ingestor_lease("g")) == value)


# -- resuming from Redis -------------------------------------------------------------------------


def trade(trade_id: int, symbol: str = "BTCUSDT") -> Event:
    return Event("price_update", {"symbol": symbol, "price": 1.0, "volume": 1.0,
                                  "timestamp": iso_ms(0), "trade_id": trade_id, "side": "buy",
                                  "source": "binance"}, symbol)


def candle(open_ms: int, closed: bool = True, symbol: str = "BTCUSDT") -> Event:
    return Event("market_data", {
        "symbol": symbol, "kind": "candle", "interval": "1m", "open_time": iso_ms(open_ms),
        "close_time": iso_ms(open_ms + 59_999), "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0,
        "volume": 1.0, "quote_volume": 1.0, "trades": 1, "closed": closed}, symbol)


async def test_resume_reads_the_last_hash_and_falls_back_to_the_stream_tail(
    redis_url: str, topology: Topology
) -> None:
    settings = PublishSettings(redis_url=redis_url, key_prefix="ts")  # type: ignore[arg-type]
    async with AsyncPublisher.from_url(redis_url, settings) as plain:  # a release without marks
        await plain.publish_many([trade(5), trade(6), trade(9, "ETHUSDT"), candle(60_000),
                                  candle(120_000, closed=False)])
    resume = Resume(topology, KEYS, ["BTCUSDT", "ETHUSDT", "BNBBTC"],
                    [("BTCUSDT", "1m"), ("ETHUSDT", "1m")])
    marks = await resume.read()
    assert marks.trades == {"BTCUSDT": 6, "ETHUSDT": 9}
    assert marks.candles == {("BTCUSDT", "1m"): 60_000}
    async with AsyncPublisher.from_url(redis_url, settings) as marked:
        marked.marker = mark_of
        await marked.publish_many([trade(7), candle(120_000)])
    last_key = KEYS.last("price_update")
    assert await (await topology.client_for(last_key)).hget(last_key, "BTCUSDT") == b"7"
    marks = await resume.read()
    assert marks.trades == {"BTCUSDT": 7, "ETHUSDT": 9}
    assert marks.candles == {("BTCUSDT", "1m"): 120_000}
    assert "BTCUSDT after trade 7" in marks.describe()


# -- the sink's broken sequences -----------------------------------------------------------------


class StuckPublisher:
    """A publisher whose Redis is down until ``back`` is set."""

    def __init__(self) -> None:
        self.back = asyncio.Event()
        self.written: list[Event] = []

    async def publish_many(self, events: list[Event]) -> list[str]:
        await self.back.wait()
        self.written.extend(events)
        return ["0-1"] * len(events)


def put_trade(sink: Sink, symbol: str, trade_id: int) -> None:
    sink.put(trade(trade_id, symbol))


async def test_a_trade_dropped_by_the_full_buffer_holds_its_symbol_back_until_refetched() -> None:
    publisher = StuckPublisher()
    refetch: list[frozenset[tuple[str, ...]]] = []
    sink = Sink(cast(AsyncPublisher, publisher), IngestorMetrics(), max_events=10,
                on_refetch=refetch.append)
    sink.start()
    try:
        put_trade(sink, "ETHUSDT", 1)
        await until(lambda: sink.buffered == 1 and sink._in_flight == 1, 2, "a batch in flight")
        for trade_id in range(1, 11):
            put_trade(sink, "BTCUSDT", trade_id)  # the 10th overflows: BTCUSDT 1 is dropped ...
        put_trade(sink, "ETHUSDT", 2)
        assert sink.broken == {("trades", "BTCUSDT")}
        assert sink.buffered == 2  # ... with the BTCUSDT trades after it; ETHUSDT goes on
        put_trade(sink, "BTCUSDT", 11)  # a broken sequence takes nothing until it is refetched
        assert sink.buffered == 2
        publisher.back.set()
        await until(lambda: refetch, 2, "the refetch asked for")
        assert refetch == [frozenset({("trades", "BTCUSDT")})]
        assert [e.data["trade_id"] for e in publisher.written] == [1, 2]  # ETHUSDT only
        sink.repair(refetch[0])
        put_trade(sink, "BTCUSDT", 1)
        await until(lambda: len(publisher.written) == 3, 2, "BTCUSDT published again")
    finally:
        await sink.stop()


async def test_stepping_down_abandons_the_batch_in_flight_and_takes_nothing() -> None:
    publisher = StuckPublisher()
    sink = Sink(cast(AsyncPublisher, publisher), IngestorMetrics(), max_events=100)
    sink.start()
    try:
        put_trade(sink, "BTCUSDT", 1)
        await until(lambda: sink._in_flight == 1, 2, "a batch in flight")
        sink.deactivate()
        put_trade(sink, "BTCUSDT", 2)
        assert sink.buffered == 0
        publisher.back.set()
        assert await sink.flush(1.0)
        assert publisher.written == []
        sink.activate()
        put_trade(sink, "BTCUSDT", 3)
        await until(lambda: len(publisher.written) == 1, 2, "published after activation")
    finally:
        await sink.stop()
