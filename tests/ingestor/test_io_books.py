"""orderbook_update: the published book is the exchange's book, also after a sequence gap."""

from __future__ import annotations

import itertools

import pytest

from tests.ingestor.io_support import DEPTH, Stack, assert_book_matches_the_exchange, running
from tests.support.waiting import until

pytestmark = pytest.mark.integration

RESYNCS = "tickstream_ingestor_book_resyncs_total"


async def test_book_resyncs_only_the_gapped_symbol_and_matches_the_exchange(redis_url: str) -> None:
    async with running(redis_url, feeds=("orderbook",), book_interval=0.0, depth_levels=DEPTH) as stack:
        await until(lambda: stack.last_book("BTCUSDT"), 10, "a BTCUSDT book")
        await until(lambda: stack.last_book("ETHUSDT"), 10, "an ETHUSDT book")
        stack.sim.faults.depth_gap("BTCUSDT", 2)  # two diffs never sent: U jumps past u + 1
        await until(lambda: _resyncs(stack, "BTCUSDT"), 10, "the BTCUSDT resync")
        snapshots = await stack.metric("tickstream_ingestor_book_snapshots_total", symbol="BTCUSDT")
        assert snapshots >= 2  # the initial one and the resync's
        stack.pause_market()
        await assert_book_matches_the_exchange(stack, "BTCUSDT")
        await assert_book_matches_the_exchange(stack, "ETHUSDT")
        assert await stack.metric(RESYNCS, symbol="ETHUSDT") == 0
        assert await stack.metric("tickstream_ingestor_book_snapshots_total", symbol="ETHUSDT") == 1


async def test_book_is_rebuilt_after_a_reconnect(redis_url: str) -> None:
    async with running(redis_url, feeds=("orderbook", "candles")) as stack:
        await until(lambda: stack.last_book("BTCUSDT"), 10, "a BTCUSDT book")
        stack.sim.faults.reject_connections(0.5)
        stack.sim.faults.drop("reset")
        assert stack.sim.market is not None
        stack.sim.market.generate(200, "BTCUSDT")  # the book moves while nobody listens
        await until(lambda: _snapshots(stack, "BTCUSDT", 2), 10, "a new BTCUSDT snapshot")
        stack.pause_market()
        await assert_book_matches_the_exchange(stack, "BTCUSDT")


async def test_book_updates_are_rate_limited_per_symbol(redis_url: str) -> None:
    async with running(redis_url, feeds=("orderbook",), book_interval=0.5,
                       sim={"rate": 2000.0}) as stack:
        await until(lambda: stack.last_book("BTCUSDT"), 10, "a BTCUSDT book")
        first = await stack.events("orderbook_update")
        await until(lambda: _book_count(stack, "BTCUSDT", 8), 10, "8 BTCUSDT books")
        books = [(o, d) for o, d in await stack.events("orderbook_update")
                 if d["symbol"] == "BTCUSDT" and (o, d) not in first]
        times = [int(o.split("-")[0]) for o, _ in books]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 450, gaps  # at most one per 500 ms (Redis ms clock, a little slack)
        ids = [d["last_update_id"] for _, d in books]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def _resyncs(stack: Stack, symbol: str) -> bool:
    return await stack.metric(RESYNCS, symbol=symbol) >= 1


async def _snapshots(stack: Stack, symbol: str, n: int) -> bool:
    return await stack.metric("tickstream_ingestor_book_snapshots_total", symbol=symbol) >= n


async def _book_count(stack: Stack, symbol: str, n: int) -> bool:
    return sum(d["symbol"] == symbol for _, d in await stack.events("orderbook_update")) >= n
