"""price_update across every way a connection ends: ids contiguous and unique per symbol.

Each test lets the simulator trade, breaks the connection in one way, lets the ingestor
recover, then pauses the market and reads price_update back from Redis: every aggregate trade
id from the first one published to the simulator's last, each once, in order.
"""

from __future__ import annotations

import pytest

from tests.ingestor.io_support import (
    SYMBOLS,
    Stack,
    assert_book_matches_the_exchange,
    assert_contiguous,
    running,
)
from tests.support.waiting import until

pytestmark = pytest.mark.integration

RECONNECTS = "tickstream_ingestor_reconnects_total"
BACKFILLED = "tickstream_ingestor_backfilled_events_total"


async def settle_and_check(stack: Stack) -> dict[str, list[int]]:
    """Stop trading, wait until Redis has the simulator's last trade, check every symbol."""
    stack.pause_market()
    found = {}
    for symbol in SYMBOLS:
        await until(lambda s=symbol: stack.caught_up(s), 15, f"{symbol} trades caught up")
        found[symbol] = ids = await stack.trade_ids(symbol)
        assert_contiguous(ids, f"{symbol} trade ids")
    return found


async def new_trades_after(stack: Stack, symbol: str, last: int) -> None:
    async def newer() -> bool:
        ids = await stack.trade_ids(symbol)
        return bool(ids) and ids[-1] > last

    await until(newer, 10, f"{symbol} trades after {last}")


@pytest.mark.parametrize("mode", ["reset", "eof", "close"])
async def test_trades_missed_while_disconnected_are_backfilled_in_order(redis_url: str, mode: str) -> None:
    async with running(redis_url, feeds=("trades", "candles"), reconnect_max_delay=1.0) as stack:
        ids = await stack.wait_trades("BTCUSDT", 10)
        for round_ in range(2):
            lost = await stack.metric(RECONNECTS, reason="closed")
            # The exchange drops us and refuses us for a while; the market trades on meanwhile.
            stack.sim.faults.reject_connections(1.0)
            assert stack.sim.faults.drop(mode) == 1
            assert stack.sim.market is not None
            stack.sim.market.generate(60, "BTCUSDT")
            stack.sim.market.generate(60, "ETHUSDT")
            await until(lambda n=lost: _above(stack, RECONNECTS, n, reason="closed"), 10,
                        f"reconnect {round_ + 1}")
            await until(lambda: stack.sim.state.connections() == 1, 10, "connected again")
            ids = await stack.trade_ids("BTCUSDT")
            await new_trades_after(stack, "BTCUSDT", ids[-1])
        await settle_and_check(stack)
        assert await stack.metric(BACKFILLED, event_type="price_update") > 0


async def test_silent_connection_is_replaced_and_its_silence_backfilled(redis_url: str) -> None:
    async with running(redis_url, feeds=("trades", "candles"), stale_after=3.0) as stack:
        ids = await stack.wait_trades("BTCUSDT", 10)
        stack.sim.faults.silence(None, scope="existing")  # open, but sends nothing, for ever
        await until(lambda: _above(stack, RECONNECTS, 0, reason="silent"), 12, "watchdog reconnect")
        await new_trades_after(stack, "BTCUSDT", ids[-1])
        await settle_and_check(stack)
        assert await stack.metric(BACKFILLED, event_type="price_update") > 0


async def test_quiet_symbol_does_not_look_like_a_silent_connection(redis_url: str) -> None:
    # BNBBTC barely trades; its klines still tick every 2 s, and only those count.
    async with running(redis_url, symbols=("BNBBTC",), feeds=("trades", "candles"),
                       stale_after=3.0, sim={"rate": 5.0}) as stack:
        stack.pause_market()
        await until(lambda: _ready(stack), 10, "ready")
        await _kline_updates(stack, 4)  # > 6 s without a single trade on BNBBTC
        assert await stack.metric(RECONNECTS) == 0
        assert (await stack.get("/readyz")).status_code == 200


async def test_planned_rotation_overlaps_connections_without_gaps_or_duplicates(redis_url: str) -> None:
    async with running(redis_url, feeds=("trades", "candles", "book_ticker", "orderbook"),
                       rotate_after=1.0) as stack:
        await stack.wait_trades("BTCUSDT", 5)
        await until(lambda: _above(stack, RECONNECTS, 2, reason="rotation"), 15, "3 rotations")
        found = await settle_and_check(stack)
        assert await stack.metric(RECONNECTS, reason="closed") == 0
        assert await stack.metric(RECONNECTS, reason="silent") == 0
        # The books rode through: no resync, no new snapshot, and they are the exchange's.
        assert await stack.metric("tickstream_ingestor_book_resyncs_total") == 0
        assert await stack.metric("tickstream_ingestor_book_snapshots_total") == 2
        for symbol in SYMBOLS:
            await assert_book_matches_the_exchange(stack, symbol)
        # The connections did overlap: the same trades arrived twice and were published once.
        assert await stack.metric("tickstream_ingestor_duplicates_dropped_total") > 0
        assert len(found["BTCUSDT"]) > 5


async def test_server_shutdown_switches_connections_before_the_server_closes(redis_url: str) -> None:
    async with running(redis_url, feeds=("trades", "candles")) as stack:
        ids = await stack.wait_trades("BTCUSDT", 10)
        assert stack.sim.faults.shutdown(close_after=1.5) == 1
        await until(lambda: _above(stack, RECONNECTS, 0, reason="server_shutdown"), 10, "switch")
        await until(lambda: stack.sim.state.connections() == 1, 10, "old connection closed")
        await new_trades_after(stack, "BTCUSDT", ids[-1])
        await settle_and_check(stack)
        assert await stack.metric(RECONNECTS, reason="closed") == 0


async def _above(stack: Stack, name: str, value: float, **labels: str) -> bool:
    return await stack.metric(name, **labels) > value


async def _ready(stack: Stack) -> bool:
    return (await stack.get("/readyz")).status_code == 200


async def _kline_updates(stack: Stack, count: int) -> None:
    async def enough() -> bool:
        candles = [d for _, d in await stack.events("market_data") if d["kind"] == "candle"]
        return len(candles) >= count

    await until(enough, 15, f"{count} candle updates")
