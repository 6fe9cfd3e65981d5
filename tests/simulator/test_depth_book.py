"""Diff depth continuity, REST snapshot agreement and the book behind every book stream."""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from simulator import Simulator
from tests.simulator.helpers import recv_json


def apply(book: dict[str, dict[Decimal, str]], event: dict[str, Any]) -> None:
    for side, key in (("bids", "b"), ("asks", "a")):
        for price, qty in event[key]:
            if Decimal(qty) == 0:
                book[side].pop(Decimal(price), None)
            else:
                book[side][Decimal(price)] = qty


def as_rows(levels: dict[Decimal, str], reverse: bool) -> list[tuple[str, str]]:
    return [(f"{p:.8f}", q) for p, q in sorted(levels.items(), reverse=reverse)]


@pytest.mark.parametrize("stream", ["btcusdt@depth@100ms", "btcusdt@depth"])
async def test_diff_events_are_contiguous(sim: Simulator, stream: str) -> None:
    count = 25 if stream.endswith("100ms") else 3
    async with connect(f"{sim.url_ws}/ws/{stream}") as ws:
        events = [await recv_json(ws, 3) for _ in range(count)]
    for prev, event in itertools.pairwise(events):
        assert event["U"] == prev["u"] + 1
        assert event["U"] <= event["u"]
    gaps = [b["E"] - a["E"] for a, b in itertools.pairwise(events)]
    expected = 100 if stream.endswith("100ms") else 1000
    assert all(gap >= expected - 20 for gap in gaps), gaps


@pytest.mark.timeout(20)
async def test_snapshot_plus_diffs_rebuilds_the_true_book(sim: Simulator) -> None:
    """The documented procedure: buffer diffs, fetch snapshot, drop old, apply the rest."""
    assert sim.market is not None
    async with connect(f"{sim.url_ws}/ws/btcusdt@depth@100ms") as ws, \
            httpx.AsyncClient(base_url=sim.url_rest) as http:
        first = await recv_json(ws)
        snap = (await http.get("/api/v3/depth",
                               params={"symbol": "BTCUSDT", "limit": 5000})).json()
        assert snap["lastUpdateId"] >= first["U"]
        book = {
            "bids": {Decimal(p): q for p, q in snap["bids"]},
            "asks": {Decimal(p): q for p, q in snap["asks"]},
        }
        local_id = snap["lastUpdateId"]
        event = first
        while event["u"] <= local_id:
            event = await recv_json(ws)
        assert event["U"] <= local_id + 1 <= event["u"]
        apply(book, event)
        local_id = event["u"]
        for _ in range(10):
            event = await recv_json(ws)
            assert event["U"] == local_id + 1
            apply(book, event)
            local_id = event["u"]
        # freeze the market, then drain the diffs up to the true book's id
        sim.market.pause()
        truth = sim.state.book("BTCUSDT")
        while local_id < truth.last_update_id:
            event = await recv_json(ws)
            assert event["U"] == local_id + 1
            apply(book, event)
            local_id = event["u"]
    assert local_id == truth.last_update_id
    assert as_rows(book["bids"], reverse=True) == truth.bids
    assert as_rows(book["asks"], reverse=False) == truth.asks
    assert len(truth.bids) >= 50 and len(truth.asks) >= 50


async def test_snapshot_limit_and_ordering(sim: Simulator) -> None:
    async with httpx.AsyncClient(base_url=sim.url_rest) as http:
        default = (await http.get("/api/v3/depth", params={"symbol": "ETHUSDT"})).json()
        five = (await http.get("/api/v3/depth", params={"symbol": "ETHUSDT", "limit": 5})).json()
    assert len(default["bids"]) == 100 and len(default["asks"]) == 100
    assert len(five["bids"]) == 5
    bids = [Decimal(p) for p, _ in default["bids"]]
    asks = [Decimal(p) for p, _ in default["asks"]]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
    assert bids[0] < asks[0]


async def test_partial_depth_and_book_ticker_match_the_frozen_book(sim: Simulator) -> None:
    assert sim.market is not None
    sim.market.pause()
    truth = sim.state.book("ETHUSDT", depth=10)
    async with connect(f"{sim.url_ws}/ws/ethusdt@depth10@100ms") as ws:
        partial = await recv_json(ws)
    assert partial["lastUpdateId"] == truth.last_update_id
    assert [tuple(x) for x in partial["bids"]] == truth.bids
    assert [tuple(x) for x in partial["asks"]] == truth.asks
    async with connect(f"{sim.url_ws}/ws/ethusdt@bookTicker") as ws:
        sim.market.generate(50, "ETHUSDT")
        # generate() publishes synchronously: every bookTicker precedes this reply
        await ws.send('{"method": "LIST_SUBSCRIPTIONS", "id": 1}')
        tickers = []
        while "result" not in (message := await recv_json(ws)):
            tickers.append(message)
    top = sim.state.book("ETHUSDT", depth=1)
    assert tickers, "50 book actions without a top-of-book change"
    last = tickers[-1]
    assert all(a["u"] < b["u"] for a, b in itertools.pairwise(tickers))
    assert last["u"] <= top.last_update_id
    assert (last["b"], last["B"]) == top.bids[0]
    assert (last["a"], last["A"]) == top.asks[0]
    assert set(last) == {"u", "s", "b", "B", "a", "A"}
