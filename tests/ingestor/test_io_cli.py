"""``tickstream ingestor`` as a user runs it: a process, its exit status and its stderr."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
import redis.asyncio

from simulator import Simulator
from tests.support.waiting import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def start_ingestor(*args: str) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if k not in ("SYMBOLS", "PORT", "REDIS_URL")}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickstream.cli", "ingestor", "--port", "0", *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, seconds: float = 30.0) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), seconds)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


async def test_unknown_symbol_at_start_is_one_clear_line_and_status_2(redis_url: str) -> None:
    async with Simulator(port=0, rate=0.0, ping_interval=0.0) as sim:
        proc = await start_ingestor("--symbols", "BTCUSDT,NOPEUSDT", "--redis-url", redis_url,
                                    "--binance-ws-url", sim.url_ws, "--binance-rest-url", sim.url_rest)
        code, err = await finish(proc)
        assert sim.state.connections() == 0  # it never subscribed to anything
    assert code == 2, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if "NOPEUSDT" in line]
    assert errors == [
        f"tickstream ingestor: configuration error: SYMBOLS: NOPEUSDT is not listed by "
        f"{sim.url_rest}/api/v3/exchangeInfo"
    ]


@pytest.mark.parametrize(("flag", "value", "variable"), [
    ("--rotate-after", "24h", "ROTATE_AFTER"),
    ("--symbols", "BTC-USDT", "SYMBOLS"),
    ("--feeds", "trades,gossip", "FEEDS"),
    ("--binance-ws-url", "http://example.org", "BINANCE_WS_URL"),
])
async def test_bad_setting_is_one_clear_line_and_status_2(flag: str, value: str, variable: str) -> None:
    code, err = await finish(await start_ingestor(flag, value))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tickstream ingestor: configuration error: "
                                                   f"{variable}"), err


async def test_sigterm_stops_reading_flushes_and_exits_0(redis_url: str) -> None:
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Simulator(port=0, rate=200.0, ping_interval=0.0) as sim:
        proc = await start_ingestor(
            "--symbols", "BTCUSDT", "--feeds", "trades,candles", "--node", "cli-sigterm",
            "--redis-url", redis_url, "--binance-ws-url", sim.url_ws,
            "--binance-rest-url", sim.url_rest,
        )
        try:
            await until(lambda: client.xlen("tickstream:{price_update}:stream"), 20, "trades in Redis")
            await until(lambda: client.exists("tickstream:health:ingestor:cli-sigterm"), 10, "health")
            proc.send_signal(signal.SIGTERM)
            code, err = await finish(proc, 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await until(lambda: sim.state.connections() == 0, 5, "the exchange connection closed")
    assert code == 0, err
    assert "Traceback" not in err
    assert "ingestor cli-sigterm stopped" in err
    assert await client.exists("tickstream:health:ingestor:cli-sigterm") == 0
    await client.aclose()
