"""Malformed messages, REST rate limits and failures, and the server's keepalive pings."""

from __future__ import annotations

import logging
import time

import pytest

from simulator import Simulator
from tests.ingestor.io_support import SYMBOLS, Stack, assert_contiguous, running
from tests.support.waiting import until

pytestmark = pytest.mark.integration

MALFORMED = "tickstream_ingestor_malformed_messages_total"


async def test_malformed_messages_are_logged_and_skipped_without_losing_other_events(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tickstream.ingestor")
    async with running(redis_url, feeds=("trades", "candles", "orderbook")) as stack:
        await stack.wait_trades("BTCUSDT", 5)
        # A bad frame (not JSON, truncated JSON, binary garbage, wrong field types) before every
        # 3rd good one: the good ones must all get through.
        stack.sim.faults.malformed(every=3, count=16)
        await until(lambda: _at_least(stack, MALFORMED, 16), 15, "16 malformed messages")
        stack.pause_market()
        for symbol in SYMBOLS:
            await until(lambda s=symbol: stack.caught_up(s), 10, f"{symbol} caught up")
            assert_contiguous(await stack.trade_ids(symbol), f"{symbol} trade ids")
        # Nothing was lost, so nothing had to be recovered, and the connection stayed up.
        assert await stack.metric("tickstream_ingestor_backfilled_events_total") == 0
        assert await stack.metric("tickstream_ingestor_reconnects_total") == 0
        assert await stack.metric("tickstream_ingestor_book_resyncs_total") == 0
        assert stack.sim.state.connections() == 1
    lines = [r.getMessage() for r in caplog.records if "malformed message skipped" in r.getMessage()]
    assert len(lines) >= 4
    text = "\n".join(lines)
    for excerpt in ("502 Bad Gateway", "binary", "not valid JSON", "must be"):
        assert excerpt in text, f"no log line shows {excerpt!r}:\n{text}"
    assert all(getattr(r, "conn", "-") != "-" for r in caplog.records
               if "malformed message skipped" in r.getMessage())


async def test_rest_429_is_honoured_for_its_retry_after(redis_url: str) -> None:
    calls: list[tuple[float, str, int]] = []

    def record_requests(sim: Simulator) -> None:
        original = sim.rest.handle

        async def handle(req):  # type: ignore[no-untyped-def]
            response = await original(req)
            calls.append((time.monotonic(), req.path, response.status))
            return response

        sim.rest.handle = handle  # type: ignore[method-assign]
        # The first depth snapshot is refused with 429 and Retry-After: 2.
        sim.faults.rest(status=429, count=1, path="/api/v3/depth", retry_after=2)

    async with running(redis_url, feeds=("orderbook",), symbols=("BTCUSDT",),
                       before_start=record_requests) as stack:
        await until(lambda: stack.last_book("BTCUSDT"), 10, "a BTCUSDT book despite the 429")
        refused = [t for t, path, status in calls if status == 429]
        assert len(refused) == 1
        after = [(t - refused[0], path) for t, path, _ in calls if t > refused[0]]
        assert after, "the snapshot was never asked again"
        assert min(delay for delay, _ in after) >= 2.0, after  # no request at all during the wait
        assert all(status != 418 for _, _, status in calls)
        assert await stack.metric("tickstream_ingestor_rest_rate_limited_total", status="429") == 1


async def test_rest_server_errors_are_retried(redis_url: str) -> None:
    def fail_snapshots(sim: Simulator) -> None:
        sim.faults.rest(status=503, count=2, path="/api/v3/depth")

    async with running(redis_url, feeds=("orderbook",), symbols=("BTCUSDT",),
                       before_start=fail_snapshots) as stack:
        await until(lambda: stack.last_book("BTCUSDT"), 15, "a BTCUSDT book despite two 503s")
        assert await stack.metric("tickstream_ingestor_rest_requests_total", endpoint="depth",
                                  status="503") == 2


async def test_server_pings_are_answered_and_keep_the_connection(redis_url: str) -> None:
    async with running(redis_url, feeds=("trades", "candles"),
                       sim={"ping_interval": 0.3, "pong_timeout": 1.0}) as stack:
        await until(lambda: _pongs(stack) >= 8, 10, "8 pongs matched by the server")
        assert stack.sim.state.connections() == 1
        assert await stack.metric("tickstream_ingestor_reconnects_total") == 0


def _pongs(stack: Stack) -> int:
    return sum(s.pongs_matched for s in stack.sim.server.sessions.values())


async def _at_least(stack: Stack, name: str, value: float) -> bool:
    return await stack.metric(name) >= value
