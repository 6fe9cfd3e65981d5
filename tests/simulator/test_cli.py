"""``tickstream simulator``: flags, environment, and a real process run until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

from shared.errors import ConfigError
from shared.settings import from_args
from simulator.cli import configure_parser, run
from simulator.config import SimulatorConfig

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


def test_flags_win_over_environment_over_defaults() -> None:
    env = {"SIMULATOR_SYMBOLS": "BTCUSDT,SOLUSDT", "SIMULATOR_RATE": "7", "PORT": "9555",
           "SIMULATOR_LIFETIME": "2h"}
    config = from_args(SimulatorConfig, parse(["--rate", "12.5"]), environ=env)
    assert config.rate == 12.5
    assert config.symbols == ("BTCUSDT", "SOLUSDT")
    assert config.port == 9555 and config.lifetime == 7200.0
    assert from_args(SimulatorConfig, parse([]), environ={}).port == 9443


@pytest.mark.parametrize(
    "env",
    [{"SIMULATOR_RATE": "fast"}, {"SIMULATOR_SYMBOLS": "BTC USDT"}, {"PORT": "70000"},
     {"SIMULATOR_DROP_MODE": "politely"}, {"SIMULATOR_FAULTS": "{oops"},
     {"SIMULATOR_REPLAY": "/nonexistent/capture.jsonl"}],
)
def test_bad_settings_are_config_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        from_args(SimulatorConfig, parse([]), environ=env)


def test_run_reports_bad_configuration_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(parse(["--rate", "-3"])) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SIMULATOR_RATE" in err


@pytest.mark.timeout(30)
async def test_process_serves_until_sigterm() -> None:
    env = {**os.environ, "PORT": "0", "SIMULATOR_RATE": "20", "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulator", "--symbols", "ETHUSDT",
        stderr=asyncio.subprocess.PIPE, env=env, cwd=ROOT,
    )
    assert proc.stderr is not None
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(proc.stderr.readline(), 15)).decode()
            assert line, "simulator exited early"
            match = re.search(r"rest=(http://\S+)", line)
            url = match.group(1) if match else None
        async with httpx.AsyncClient(base_url=url) as http:
            info = (await http.get("/api/v3/exchangeInfo")).json()
        assert [s["symbol"] for s in info["symbols"]] == ["ETHUSDT"]
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
