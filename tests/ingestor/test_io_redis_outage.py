"""A Redis outage: the exchange connection stays up, events wait in a bounded buffer.

Within the bound nothing is lost; past it the oldest market data goes, counted per event type:
trades and closed candles are fetched again by id once Redis is back (no hole), superseded
state (books, tickers) is not.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.ingestor.io_support import SYMBOLS, Stack, assert_contiguous, running
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

pytestmark = pytest.mark.integration

DROPPED = "tickstream_ingestor_buffer_dropped_events_total"
BUFFERED = "tickstream_ingestor_buffer_events"


async def trades_made(stack: Stack, count: int) -> None:
    """Let the exchange make ``count`` more BTCUSDT aggregate trades."""
    start = stack.sim.state.last_agg_trade_id("BTCUSDT") or 0
    await until(lambda: (stack.sim.state.last_agg_trade_id("BTCUSDT") or 0) >= start + count, 15,
                f"{count} more trades on the exchange")


async def ready_body(stack: Stack) -> dict[str, Any]:
    response = await stack.get("/readyz")
    body: dict[str, Any] = response.json()
    body["http_status"] = response.status_code
    return body


async def test_redis_restart_loses_no_event_within_the_buffer(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(private_redis.url, feeds=("trades", "candles"),
                       publish_retry_timeout=1.0) as stack:
        await stack.wait_trades("BTCUSDT", 10)
        await asyncio.to_thread(private_redis.stop)
        await trades_made(stack, 40)
        await until(lambda: _logged(caplog, "Redis unreachable for 1 s"), 10, "the outage logged")
        assert await stack.metric(BUFFERED) > 0
        not_ready = await until(lambda: _not_ready(stack), 10, "/readyz to report Redis down")
        assert not_ready["redis"] is False and not_ready["connected"] is True
        assert stack.sim.state.connections() == 1  # the exchange side never noticed
        await asyncio.to_thread(private_redis.start)
        stack.pause_market()
        for symbol in SYMBOLS:
            await until(lambda s=symbol: stack.caught_up(s), 15, f"{symbol} caught up after Redis")
            assert_contiguous(await stack.trade_ids(symbol), f"{symbol} trade ids")
        assert await stack.metric(DROPPED) == 0
        assert await stack.metric("tickstream_ingestor_reconnects_total") == 0
        assert await stack.metric("tickstream_ingestor_backfilled_events_total") == 0
        await until(lambda: _ready(stack), 10, "/readyz green again")


async def test_outage_past_the_buffer_drops_the_oldest_and_refetches_the_trades(
    private_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    async with running(private_redis.url, feeds=("trades",), buffer_max_events=40) as stack:
        await stack.wait_trades("BTCUSDT", 5)
        await asyncio.to_thread(private_redis.stop)
        await until(lambda: _dropped(stack, 30), 15, "30 events dropped from the full buffer")
        assert await stack.metric(BUFFERED) <= 40  # the bound, the batch in flight included
        await asyncio.to_thread(private_redis.start)
        await until(lambda: _logged(caplog, "refetching what the outage buffer dropped"), 15,
                    "the refetch")
        stack.pause_market()
        for symbol in SYMBOLS:
            await until(lambda s=symbol: stack.caught_up(s), 15, f"{symbol} caught up after Redis")
            # What the buffer dropped was fetched again by id: no hole, nothing twice, in order.
            assert_contiguous(await stack.trade_ids(symbol), f"{symbol} trade ids")
        assert await stack.metric(DROPPED, event_type="price_update") >= 30
        assert await stack.metric("tickstream_ingestor_backfilled_events_total",
                                  event_type="price_update") > 0
        assert await stack.metric("tickstream_ingestor_backfill_missing_total") == 0
        assert await stack.metric("tickstream_ingestor_leader") == 1  # no takeover: still leads
        assert await stack.metric("tickstream_ingestor_takeovers_total") == 1


async def _dropped(stack: Stack, n: int) -> bool:
    return await stack.metric(DROPPED) >= n


async def _not_ready(stack: Stack) -> dict[str, Any] | None:
    body = await ready_body(stack)
    return body if body["http_status"] == 503 else None


async def _ready(stack: Stack) -> bool:
    return (await ready_body(stack))["http_status"] == 200


async def test_full_buffer_drops_superseded_book_state_before_any_trade(private_redis: RedisServer) -> None:
    async with running(private_redis.url, feeds=("trades", "book_ticker", "orderbook"),
                       buffer_max_events=300) as stack:
        await stack.wait_trades("BTCUSDT", 5)
        await until(lambda: stack.last_book("BTCUSDT"), 10, "a book")
        await asyncio.to_thread(private_redis.stop)
        await until(lambda: _dropped(stack, 20), 15, "20 events dropped from the full buffer")
        await asyncio.to_thread(private_redis.start)
        stack.pause_market()
        for symbol in SYMBOLS:
            await until(lambda s=symbol: stack.caught_up(s), 15, f"{symbol} caught up after Redis")
            assert_contiguous(await stack.trade_ids(symbol), f"{symbol} trade ids")
        assert await stack.metric(DROPPED, event_type="price_update") == 0
        state_dropped = (await stack.metric(DROPPED, event_type="orderbook_update")
                         + await stack.metric(DROPPED, event_type="market_data"))
        assert state_dropped >= 20
        # What remains of the books is in order, newest last.
        ids = [d["last_update_id"] for _, d in await stack.events("orderbook_update")
               if d["symbol"] == "BTCUSDT"]
        assert ids == sorted(ids)


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in r.getMessage() for r in caplog.records)
