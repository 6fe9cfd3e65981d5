"""Fencing in the publish script, against real Redis (one server, Redis Cluster, Sentinel).

A publisher with ``fence = (group, token)`` is an ingestor leader: the script keeps, per event
type and group, the newest token seen, refuses older ones (``Fenced``, nothing written) and
stores newer ones. Publishers without a fence, and other groups, are never refused. The
producer records that make retries exactly-once keep working under a fence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.errors import Fenced
from shared.events import Event
from shared.keys import Keys
from shared.publish_plan import PUBLISH_SCRIPT, Planner
from shared.publisher import AsyncPublisher, PublishSettings

pytestmark = pytest.mark.topologies

KEYS = Keys()
TRADE = {"symbol": "BTCUSDT", "price": 1.0, "volume": 1.0, "timestamp": "2026-01-01T00:00:00.000Z",
         "trade_id": 1, "side": "buy", "source": "binance"}


def trade(trade_id: int, symbol: str = "BTCUSDT") -> Event:
    return Event("price_update", {**TRADE, "symbol": symbol, "trade_id": trade_id}, symbol)


def trade_mark(event: Event) -> tuple[str, int] | None:
    if event.event_type == "price_update":
        return str(event.data["symbol"]), int(event.data["trade_id"])
    return None


@pytest.fixture
async def publishers(redis_url: str) -> AsyncIterator[list[AsyncPublisher]]:
    made = [AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) for _ in range(3)]
    yield made
    for publisher in made:
        await publisher.aclose()


async def entries(aredis: Any, event_type: str = "price_update") -> int:
    return int(await aredis.xlen(KEYS.stream(event_type)))


async def test_an_older_token_is_refused_and_a_newer_one_raises_the_fence(
    publishers: list[AsyncPublisher], aredis: Any
) -> None:
    old, new, _ = publishers
    old.fence, new.fence = ("g1", 1), ("g1", 2)
    await old.publish_many([trade(1)])
    await new.publish_many([trade(2)])
    with pytest.raises(Fenced) as refused:
        await old.publish_many([trade(3), Event("alpha", {"n": 1}, "BTCUSDT")])
    assert (refused.value.group, refused.value.fence, refused.value.token) == ("g1", 2, 1)
    assert "Fenced" in str(refused.value) and "older than the fence" in str(refused.value)
    assert await entries(aredis) == 2
    assert await aredis.hgetall(KEYS.fence("price_update")) == {b"g1": b"2"}
    new.fence = ("g1", 5)  # a later leader: accepted, and the fence follows it
    await new.publish_many([trade(4)])
    assert await aredis.hget(KEYS.fence("price_update"), "g1") == b"5"


async def test_raise_fence_refuses_a_stale_leader_on_every_type_before_any_publish(
    publishers: list[AsyncPublisher], aredis: Any
) -> None:
    old, new, _ = publishers
    old.fence, new.fence = ("g1", 3), ("g1", 4)
    await old.publish_many([trade(1), Event("alpha", {"n": 1}, "BTCUSDT")])
    assert await new.raise_fence(["price_update", "alpha", "beta"]) == {
        "price_update": 3, "alpha": 3, "beta": 0}
    for event in (trade(2), Event("alpha", {"n": 2}, "BTCUSDT"),
                  Event("beta", {"n": 1}, "BTCUSDT")):
        with pytest.raises(Fenced):
            await old.publish_many([event])
    assert await entries(aredis) == 1 and await entries(aredis, "alpha") == 1
    assert await entries(aredis, "beta") == 0
    with pytest.raises(Fenced):
        await old.raise_fence(["price_update"])
    assert await new.raise_fence(["price_update"]) == {"price_update": 4}  # idempotent


async def test_unfenced_publishers_and_other_groups_are_never_refused(
    publishers: list[AsyncPublisher], aredis: Any
) -> None:
    leader, other_group, plain = publishers
    leader.fence, other_group.fence = ("g1", 9), ("g2", 1)
    await leader.publish_many([trade(1)])
    await other_group.publish_many([trade(1, "ETHUSDT")])
    await plain.publish("price_update", TRADE, symbol="BTCUSDT")
    assert await entries(aredis) == 3
    assert await aredis.hgetall(KEYS.fence("price_update")) == {b"g1": b"9", b"g2": b"1"}


async def test_a_retry_is_answered_from_its_record_even_after_the_fence_moved(
    publishers: list[AsyncPublisher], aredis: Any
) -> None:
    planner = Planner(fence=("g1", 1))
    plan = planner.plan([trade(1), trade(2)])
    (call,) = plan.calls
    first = await aredis.eval(PUBLISH_SCRIPT, len(call.keys), *call.keys, *call.args)
    _, new, _ = publishers
    new.fence = ("g1", 2)
    await new.raise_fence(["price_update"])
    # The reply of the first run was lost: the retry (same sequence number) gets the same
    # offsets from the producer record, and nothing is written again.
    again = await aredis.eval(PUBLISH_SCRIPT, len(call.keys), *call.keys, *call.args)
    assert again[1:] == first[1:] and await entries(aredis) == 2
    later = planner.plan([trade(3)]).calls[0]  # a new call of the stale leader: refused
    with pytest.raises(Exception, match=r"^FENCED g1 2 1$"):
        await aredis.eval(PUBLISH_SCRIPT, len(later.keys), *later.keys, *later.args)
    assert await entries(aredis) == 2


async def test_marks_keep_the_highest_id_of_each_sequence_in_the_last_hash(
    publishers: list[AsyncPublisher], aredis: Any
) -> None:
    pub, _, plain = publishers
    pub.marker = trade_mark
    await pub.publish_many([trade(7), trade(8), trade(3, "ETHUSDT"), Event("custom", {"n": 1})])
    await pub.publish_many([trade(5)])  # lower than the mark (never happens in order): kept at 8
    await plain.publish_many([trade(100)])  # no marker: no mark
    assert await aredis.hgetall(KEYS.last("price_update")) == {b"BTCUSDT": b"8", b"ETHUSDT": b"3"}
    assert await aredis.exists(KEYS.last("custom")) == 0
