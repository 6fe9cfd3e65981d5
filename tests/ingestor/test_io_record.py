"""``--record FILE`` captures the exchange as the simulator replays it; stop flushes Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.ingestor.io_support import SYMBOLS, Stack, assert_contiguous, running
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

pytestmark = pytest.mark.integration


async def trades(stack: Stack) -> list[tuple[Any, ...]]:
    return [(d["symbol"], d["trade_id"], d["price"], d["volume"], d["side"], d["timestamp"])
            for _, d in await stack.events("price_update")]


async def test_recorded_capture_replays_in_the_simulator(redis_url: str, tmp_path: Path) -> None:
    capture = tmp_path / "capture.jsonl"
    async with running(redis_url, record=str(capture), key_prefix="live") as live:
        await live.wait_trades("BTCUSDT", 20)
        await until(lambda: live.last_book("BTCUSDT"), 10, "a book")
        await until(lambda: _has_candle(live), 10, "a candle")
        live.pause_market()
        for symbol in SYMBOLS:
            await until(lambda s=symbol: live.caught_up(s), 10, f"{symbol} caught up")
        original = await trades(live)
    lines = [orjson.loads(line) for line in capture.read_bytes().splitlines()]
    assert all(set(line) == {"ts", "stream", "data"} and isinstance(line["ts"], int) for line in lines)
    streams = {line["stream"] for line in lines}
    assert {"btcusdt@aggTrade", "btcusdt@depth@100ms", "btcusdt@kline_1m"} <= streams
    assert sum(line["stream"].endswith("@aggTrade") for line in lines) == len(original)

    replay_sim = {"replay": str(capture), "replay_speed": 0.0, "replay_autostart": False}
    async with running(redis_url, key_prefix="replayed", sim=replay_sim) as replayed:
        await until(lambda: replayed.sim.state.connections() == 1, 10, "subscribed to the replay")
        assert replayed.sim.replay is not None
        replayed.sim.replay.begin()
        await until(replayed.sim.replay.done.is_set, 10, "the replay to finish")

        async def same_trades() -> bool:
            return await trades(replayed) == original

        await until(same_trades, 10, "the replayed trades in Redis")
        assert replayed.sim.replay.skipped == 0


async def test_stop_flushes_what_was_buffered_to_redis(private_redis: RedisServer) -> None:
    async with running(private_redis.url, feeds=("trades",), shutdown_grace=10.0) as stack:
        await stack.wait_trades("BTCUSDT", 5)
        await asyncio.to_thread(private_redis.stop)
        assert stack.sim.market is not None
        stack.sim.market.generate(100, "BTCUSDT")
        stack.pause_market()
        trades_feed = stack.ingestor.trades
        assert trades_feed is not None
        last = stack.sim.state.last_agg_trade_id("BTCUSDT")
        await until(lambda: trades_feed.feeds["BTCUSDT"].tracker.last == last, 10, "all trades read")
        assert stack.ingestor.sink.buffered > 0
        await asyncio.to_thread(private_redis.start)
        await stack.ingestor.stop()  # returns once the buffer is in Redis
        ids = await stack.trade_ids("BTCUSDT")
        assert ids[-1] == last
        assert_contiguous(ids)


async def _has_candle(stack: Stack) -> bool:
    return any(d["kind"] == "candle" for _, d in await stack.events("market_data"))
