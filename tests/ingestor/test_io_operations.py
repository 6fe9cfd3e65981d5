"""What an operator sees: /healthz, /readyz per-stream staleness, /metrics, the health key,
connection sharding, and candles kept gapless across a reconnect."""

from __future__ import annotations

import itertools
import logging
from datetime import datetime
from typing import Any

import orjson
import pytest

from ingestor.binance.streams import parse_stream
from tests.ingestor.io_support import Stack, running
from tests.support.waiting import until

pytestmark = pytest.mark.integration


async def readyz(stack: Stack) -> tuple[int, dict[str, Any]]:
    response = await stack.get("/readyz")
    return response.status_code, response.json()


async def test_readyz_goes_red_when_streams_are_stale_and_green_when_they_resume(redis_url: str) -> None:
    async with running(redis_url, stale_after=2.5) as stack:
        await until(lambda: _status(stack, 200), 10, "ready")
        _, body = await readyz(stack)
        assert body["stale"] == [] and body["connected"] and body["redis"]
        assert body["streams"]["btcusdt@kline_1m"]["heartbeat"] is True
        assert body["streams"]["btcusdt@aggTrade"]["heartbeat"] is False
        # Every connection, also the replacements the watchdog opens, goes silent.
        stack.sim.faults.silence(None, scope="all")
        await until(lambda: _status(stack, 503), 10, "/readyz to turn red")
        _, body = await readyz(stack)
        assert {"btcusdt@kline_1m", "ethusdt@kline_1m"} <= set(body["stale"])
        assert body["status"] == "not ready"
        health = await stack.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"  # alive, though
        stack.sim.faults.clear_silence()
        await until(lambda: _status(stack, 200), 15, "/readyz green again")


async def test_metrics_and_health_key_describe_the_running_ingestor(redis_url: str) -> None:
    async with running(redis_url, node="ingestor-test-1") as stack:
        await stack.wait_trades("BTCUSDT", 5)
        await until(lambda: stack.last_book("BTCUSDT"), 10, "a book")
        text = (await stack.get("/metrics")).text
        for name in ("tickstream_ingestor_messages_received_total",
                     "tickstream_ingestor_events_published_total",
                     "tickstream_ingestor_publish_latency_seconds_bucket",
                     "tickstream_ingestor_buffer_events", "tickstream_ingestor_reconnects_total",
                     "tickstream_ingestor_stream_age_seconds",
                     "tickstream_ingestor_backfilled_events_total"):
            assert name in text, name
        assert await stack.metric("tickstream_ingestor_events_published_total",
                                  event_type="price_update") >= 5
        assert await stack.metric("tickstream_ingestor_publish_latency_seconds_count") > 0
        raw = await until(lambda: stack.redis.get("ts:health:ingestor:ingestor-test-1"), 10, "health key")
        status = orjson.loads(raw)
        assert status["node"] == "ingestor-test-1" and status["status"] == "ok"
        assert {"connections", "buffered", "redis", "ts", "port"} <= set(status)
        assert 0 < await stack.redis.ttl("ts:health:ingestor:ingestor-test-1") <= 15
    assert await stack.redis.exists("ts:health:ingestor:ingestor-test-1") == 0  # removed on stop


async def test_streams_are_sharded_and_overflow_is_subscribed_paced(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tickstream.ingestor.connection")
    # 5 streams per connection, and URLs that hold only a few of them: the rest go by
    # SUBSCRIBE, paced under the simulator's (Binance's) 5 messages per second.
    async with running(redis_url, symbols=("BTCUSDT", "ETHUSDT", "BNBBTC"),
                       streams_per_connection=5, url_max_length=90) as stack:
        def subscriptions() -> list[set[str]]:
            return [set(s.subscriptions()) for s in stack.sim.server.sessions.values()]

        await until(lambda: sorted(map(len, subscriptions())) == [5, 5, 5], 10,
                    "3 connections of 5 streams each")
        subscribed = subscriptions()
        symbols_per_connection = [{parse_stream(n).symbol for n in s} for s in subscribed]
        assert all(len(symbols) == 1 for symbols in symbols_per_connection)  # a symbol stays together
        await stack.wait_trades("BTCUSDT", 3)
        await until(lambda: stack.last_book("BNBBTC"), 10, "a BNBBTC book")
        await until(lambda: _status(stack, 200), 10, "ready")
        assert await stack.metric("tickstream_ingestor_reconnects_total") == 0
    by_subscribe = [r.getMessage() for r in caplog.records if "by SUBSCRIBE" in r.getMessage()]
    assert len(by_subscribe) == 3 and all(", 0 by SUBSCRIBE" not in m for m in by_subscribe)


async def test_candles_missed_while_disconnected_are_backfilled(redis_url: str) -> None:
    async with running(redis_url, feeds=("candles",), kline_intervals=("1s",)) as stack:
        await until(lambda: _closed_candles(stack, "BTCUSDT", 2), 10, "2 closed candles")
        stack.sim.faults.reject_connections(2.5)
        stack.sim.faults.drop("reset")
        await until(lambda: _backfilled_candles(stack, 2), 15, "2 candles backfilled")
        await until(lambda: _closed_candles(stack, "BTCUSDT", 6), 10, "6 closed candles")
        times = [_ms(d["open_time"]) for d in await _closed(stack, "BTCUSDT")]
        assert len(times) == len(set(times)) and times == sorted(times), times
        assert {b - a for a, b in itertools.pairwise(times)} == {1000}, times


async def _closed(stack: Stack, symbol: str) -> list[dict[str, Any]]:
    return [d for _, d in await stack.events("market_data")
            if d["kind"] == "candle" and d["closed"] and d["symbol"] == symbol]


async def _closed_candles(stack: Stack, symbol: str, n: int) -> bool:
    return len(await _closed(stack, symbol)) >= n


async def _backfilled_candles(stack: Stack, n: int) -> bool:
    return await stack.metric("tickstream_ingestor_backfilled_events_total",
                              event_type="market_data") >= n


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


async def _status(stack: Stack, code: int) -> bool:
    return (await readyz(stack))[0] == code
