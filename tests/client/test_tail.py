"""``tickstream tail`` as a user runs it: a subprocess printing JSON lines."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator

import orjson
import pytest

from shared.events import Event as NewEvent
from shared.publisher import AsyncPublisher
from tests.support.gateway import InProcessGateway, running_gateway, token

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Tail:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.stderr: list[str] = []

    async def line(self, timeout: float = 10) -> dict[str, object]:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        assert raw, f"tail ended early: {await self.errors()}"
        return orjson.loads(raw)  # type: ignore[no-any-return]

    async def status(self, text: str, timeout: float = 10) -> str:
        """Read stderr until a line containing ``text``."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self.proc.stderr.readline()
                assert raw, f"stderr closed before {text!r}: {self.stderr}"
                self.stderr.append(raw.decode())
                if text in self.stderr[-1]:
                    return self.stderr[-1]

    async def errors(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode()


async def start_tail(*args: str, env: dict[str, str] | None = None) -> Tail:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickstream.cli", "tail", *args, cwd=ROOT,
        env=dict(os.environ, **(env or {})),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return Tail(proc)


@pytest.fixture
async def tail_proc() -> AsyncIterator[list[Tail]]:
    started: list[Tail] = []
    yield started
    for tail in started:
        if tail.proc.returncode is None:
            tail.proc.kill()
            await tail.proc.wait()


def events(n: int, start: int = 0) -> list[NewEvent]:
    return [NewEvent("custom", {"n": i}, symbol="BTCUSDT" if i % 2 else "ETHUSDT")
            for i in range(start, start + n)]


async def test_tail_prints_the_last_events_then_live_ones_and_exits_0_on_sigint(
    gw: InProcessGateway, pub: AsyncPublisher, tail_proc: list[Tail]
) -> None:
    history = await pub.publish_many(events(10))
    tail = await start_tail("custom", "--last", "3", "--format", "msgpack", env={"TICKSTREAM_URL": gw.url})
    tail_proc.append(tail)
    assert "connected to" in await tail.status("connected to")
    first = [await tail.line() for _ in range(3)]
    assert [e["offset"] for e in first] == history[-3:]
    assert first[0] == {"event_type": "custom", "offset": history[7], "symbol": "BTCUSDT",
                        "ts": int(history[7].split("-")[0]), "data": {"n": 7}}
    live = await pub.publish_many(events(2, 10))
    assert [(await tail.line())["offset"] for _ in live] == live
    tail.proc.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(tail.proc.wait(), 10) == 0


async def test_tail_follows_the_gateway_through_a_restart_and_stops_after_count(
    redis_url: str, pub: AsyncPublisher, tail_proc: list[Tail]
) -> None:
    async with running_gateway(redis_url) as gw:
        port = gw.settings.port
        tail = await start_tail("custom", "other", "--symbols", "BTCUSDT", "--count", "6",
                                "--format", "json", "--url", gw.url)
        tail_proc.append(tail)
        await tail.status("connected to")
        before = await pub.publish_many(events(4))
        got = [(await tail.line())["offset"] for _ in range(2)]
        assert got == before[1::2]
    assert "1012" in await tail.status("reconnecting")  # the gateway went away: SIGTERM-style close
    away = await pub.publish_many(events(4, 4))  # published while no gateway runs
    other = await pub.publish_many([NewEvent("other", {"x": 1}, symbol="BTCUSDT")])
    async with running_gateway(redis_url, port=port):
        await tail.status("connected to", timeout=20)
        rest = [await tail.line(timeout=20) for _ in range(3)]
        more = await pub.publish_many(events(2, 8))
        rest.append(await tail.line())
        assert await asyncio.wait_for(tail.proc.wait(), 10) == 0  # --count 6 reached
    assert [e["offset"] for e in rest if e["event_type"] == "custom"] == away[1::2] + more[1::2]
    assert [e["offset"] for e in rest if e["event_type"] == "other"] == other
    assert all(e["symbol"] == "BTCUSDT" for e in rest)


async def test_tail_refuses_a_bad_token_with_one_line(gw: InProcessGateway) -> None:
    tail = await start_tail("custom", "--url", gw.url, "--token", token("bob", ttl=-30))
    out, err = await asyncio.wait_for(tail.proc.communicate(), 20)
    assert tail.proc.returncode == 1
    assert out == b""
    assert err.decode().splitlines() == ["tickstream tail: token refused: token expired"]


@pytest.mark.parametrize(("args", "message"), [
    (["a", "b", "--since", "1-0"], "--since OFFSET needs exactly one EVENT_TYPE"),
    (["custom", "--since", "yesterday"], "offset must look like <ms>-<seq>"),
    (["Bad-Type"], "EVENT_TYPE 'Bad-Type' must match"),
    (["custom", "--url", "http://127.0.0.1:8080/ws"], "is not a ws:// or wss:// URL"),
    (["custom", "--symbols", "BTC USDT"], "invalid symbol"),
])
async def test_tail_rejects_bad_arguments_with_one_line(args: list[str], message: str) -> None:
    tail = await start_tail(*args)
    _, err = await asyncio.wait_for(tail.proc.communicate(), 20)
    assert tail.proc.returncode == 2
    lines = err.decode().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tickstream tail: ") and message in lines[0], lines
