"""OrderedFeed with a fake REST: started over from Redis, and pages racing live items."""

from __future__ import annotations

import asyncio
import contextlib

from ingestor.backfill import OrderedFeed, Page
from ingestor.gaps import SequenceTracker
from ingestor.metrics import IngestorMetrics
from tests.support.waiting import until


def feed_of(fetch: object, emitted: list[int], max_wait: float = 60.0) -> OrderedFeed[int]:
    return OrderedFeed("t", SequenceTracker(), int, fetch,  # type: ignore[arg-type]
                       lambda item, _: emitted.append(item), IngestorMetrics(), "t",
                       max_wait=max_wait)


async def test_a_feed_started_over_forgets_its_hole_and_fetches_after_the_mark() -> None:
    asked: list[int] = []
    hold = asyncio.Event()
    emitted: list[int] = []

    async def fetch(from_id: int) -> Page[int]:
        asked.append(from_id)
        if from_id < 100:
            await hold.wait()  # the backfill of the old hole never returns
        return Page([i for i in range(from_id, 105)], True)

    feed = feed_of(fetch, emitted)
    feed.on_live(1)
    feed.on_live(5)  # a hole: 2..4 being fetched
    await until(lambda: asked == [2], 1, "the backfill started")
    old_task = feed.task
    feed.reset(100)  # a takeover: Redis says 100 is the last published
    assert feed.held == 0 and feed.tracker.last == 100 and feed.task is None
    feed.catch_up()
    await until(lambda: not feed.filling, 2, "the catch-up done")
    assert emitted == [1, 101, 102, 103, 104] and feed.filled == 4 and feed.filled_range == (101, 104)
    assert old_task is not None and old_task.cancelled()
    with contextlib.suppress(asyncio.CancelledError):
        await old_task


async def test_a_live_item_published_while_its_page_was_on_the_way_is_not_held_again() -> None:
    arrived = asyncio.Event()
    gate = asyncio.Event()
    emitted: list[int] = []

    async def fetch(from_id: int) -> Page[int]:
        arrived.set()
        await gate.wait()
        return Page(list(range(from_id, 13)), True)  # REST has 11 and 12

    feed = feed_of(fetch, emitted, max_wait=1.0)
    feed.on_live(10)
    feed.catch_up()  # after a takeover: fetch from 11
    await until(arrived.is_set, 1, "the page asked for")
    feed.on_live(11)  # live, while the page is on its way: published at once
    gate.set()
    await until(lambda: not feed.filling, 3, "the catch-up done")
    assert emitted == [10, 11, 12]  # 11 once: the page's copy is not kept (nor published later)
    assert feed.held == 0 and feed.tracker.last == 12
