"""An ingestor group as operators run it: ``tickstream ingestor`` processes, one simulator, Redis.

Each test starts ingestors as subprocesses (default lease timings: TTL 3 s, renew 1 s, retry
0.5 s), breaks them the way production does (SIGKILL, SIGSTOP, SIGTERM), then pauses the market
and reads ``price_update`` and the closed candles back from Redis: every aggregate trade id from
the first published to the exchange's last, once and in order, across the takeover.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from shared.codec import decode_entry
from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from shared.settings import Secret
from simulator import Simulator
from tests.ingestor.io_support import Stack, assert_contiguous, running, takeover_window
from tests.support.redis_server import free_port
from tests.support.waiting import until

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ("BTCUSDT", "ETHUSDT")
PREFIX = "ts"
KEYS = Keys(PREFIX)
TAKEOVER_WITHIN = takeover_window(3.0, 1.0, 0.5)[1] + 1.5  # the default bound, plus slack: 5 s


class Ingestor:
    """One ``tickstream ingestor`` process of the group, its log in a file."""

    def __init__(self, name: str, redis_url: str, sim: Simulator, log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.log_path = log_dir / f"ingestor-{name}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if k not in ("SYMBOLS", "PORT", "FEEDS")},
            "REDIS_URL": redis_url, "KEY_PREFIX": PREFIX, "SYMBOLS": ",".join(SYMBOLS),
            "FEEDS": "trades,candles", "KLINE_INTERVALS": "1s", "PORT": str(self.port),
            "NODE_ID": name, "LOG_LEVEL": "INFO", "BINANCE_WS_URL": sim.url_ws,
            "BINANCE_REST_URL": sim.url_rest, "SHUTDOWN_GRACE": "5s",
        }
        self.proc: asyncio.subprocess.Process | None = None
        self.http = httpx.AsyncClient(timeout=2.0)

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tickstream.cli", "ingestor", cwd=ROOT, env=self.env,
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )

    def signal(self, sig: int) -> None:
        assert self.proc is not None and self.proc.returncode is None
        self.proc.send_signal(sig)

    async def wait(self, seconds: float = 20.0) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(self.proc.wait(), seconds)

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGCONT)  # in case a test left it stopped
            self.proc.kill()
            await self.proc.wait()
        await self.http.aclose()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def ready(self) -> dict[str, Any] | None:
        """The /readyz body (with its status), None while the endpoint does not answer."""
        try:
            response = await self.http.get(f"http://127.0.0.1:{self.port}/readyz")
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = response.json()
        body["http_status"] = response.status_code
        return body

    async def role_is(self, role: str) -> dict[str, Any] | None:
        """The /readyz body once this process is ready in ``role``."""
        body = await self.ready()
        return body if body and body["http_status"] == 200 and body["role"] == role else None

    async def metric(self, name: str, **labels: str) -> float:
        text = (await self.http.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


class Group:
    """The simulator's truth and what Redis holds, for one test."""

    def __init__(self, sim: Simulator, client: redis.asyncio.Redis, redis_url: str, log_dir: Path) -> None:
        self.sim = sim
        self.redis = client
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.members: list[Ingestor] = []

    def ingestor(self, name: str) -> Ingestor:
        member = Ingestor(name, self.redis_url, self.sim, self.log_dir)
        self.members.append(member)
        return member

    async def entries(self, event_type: str) -> list[dict[str, Any]]:
        raw = await self.redis.xrange(KEYS.stream(event_type))
        return [decode_entry(event_type, entry_id, fields).data() for entry_id, fields in raw]

    async def published(self) -> int:
        return int(await self.redis.xlen(KEYS.stream("price_update")))

    async def more_published(self, count: int, timeout: float = 15.0) -> None:
        start = await self.published()
        await until(lambda: _at_least(self.published(), start + count), timeout,
                    f"{count} more trades in Redis")

    async def closed_candles(self, count: int, timeout: float = 15.0) -> None:
        """Wait until Redis has ``count`` closed candles of every symbol (the sequence started)."""
        async def enough() -> bool:
            closed = [d["symbol"] for d in await self.entries("market_data") if d["closed"]]
            return all(closed.count(s) >= count for s in SYMBOLS)

        await until(enough, timeout, f"{count} closed candles of each symbol")

    async def exchange_traded(self, count: int, timeout: float = 15.0) -> None:
        start = self._exchange_total()
        await until(lambda: self._exchange_total() >= start + count, timeout,
                    f"{count} more trades on the exchange")

    def _exchange_total(self) -> int:
        return sum(self.sim.state.last_agg_trade_id(s) or 0 for s in SYMBOLS)

    async def settle_and_check(self, timeout: float = 20.0) -> dict[str, list[int]]:
        """Pause the market; once Redis has its last trade, check every symbol's ids and candles."""
        assert self.sim.market is not None
        self.sim.market.pause()
        found: dict[str, list[int]] = {}

        async def caught_up() -> bool:
            trades = await self.entries("price_update")
            for symbol in SYMBOLS:
                found[symbol] = [d["trade_id"] for d in trades if d["symbol"] == symbol]
            return all(found[s] and found[s][-1] == self.sim.state.last_agg_trade_id(s)
                       for s in SYMBOLS)

        await until(caught_up, timeout, "Redis caught up with the exchange's last trades")
        for symbol in SYMBOLS:
            assert_contiguous(found[symbol], f"{symbol} trade ids")
        candles = [d for d in await self.entries("market_data") if d["closed"]]
        for symbol in SYMBOLS:
            times = [_ms(d["open_time"]) for d in candles if d["symbol"] == symbol]
            assert len(times) >= 3, f"{symbol}: {len(times)} closed candles"
            assert times == sorted(set(times)), f"{symbol} closed candles twice or out of order"
            assert times == list(range(times[0], times[-1] + 1000, 1000)), f"{symbol} candle gap"
        return found

    async def fence(self) -> dict[bytes, bytes]:
        return dict(await self.redis.hgetall(KEYS.fence("price_update")))


async def _at_least(value: Any, target: int) -> bool:
    return bool(await value >= target)


def _ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.fixture
async def group(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Group]:
    rate = getattr(request, "param", 600.0)
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Simulator(port=0, rate=rate, ping_interval=0.0, symbols=SYMBOLS) as sim:
        made = Group(sim, client, redis_url, tmp_path)
        try:
            yield made
        finally:
            for member in made.members:
                await member.close()
            await client.aclose()


async def leader_and_standby(group: Group) -> tuple[Ingestor, Ingestor]:
    """Two ingestors started together, both ready: ``(leader, standby)``."""
    members = [group.ingestor("a"), group.ingestor("b")]
    await asyncio.gather(*(m.start() for m in members))
    bodies = await until(lambda: all_ready(members), 30, "both ingestors ready")
    by_role = {body["role"]: member for body, member in zip(bodies, members, strict=True)}
    assert set(by_role) == {"leader", "standby"}, [b["role"] for b in bodies]
    return by_role["leader"], by_role["standby"]


async def all_ready(members: list[Ingestor]) -> list[dict[str, Any]] | None:
    bodies = [await m.ready() for m in members]
    if all(b is not None and b["http_status"] == 200 for b in bodies):
        return [b for b in bodies if b is not None]
    return None


# 3000 market events/s make about 1,000 aggregate trades/s over BTCUSDT and ETHUSDT.
@pytest.mark.parametrize("group", [3000.0], indirect=True)
async def test_sigkill_of_the_leader_at_1000_trades_per_second_is_taken_over_without_a_gap(
    group: Group,
) -> None:
    leader, standby = await leader_and_standby(group)
    await group.more_published(1000)
    await group.closed_candles(2)
    leader.signal(signal.SIGKILL)
    killed = time.monotonic()
    await leader.wait()
    body = await until(lambda: standby.role_is("leader"), 15, "the standby leading")
    took = time.monotonic() - killed
    assert took < TAKEOVER_WITHIN, f"takeover took {took:.1f} s"
    assert body["token"] == 2 and body["leader"] == standby.name and body["takeovers"] == 1
    await group.more_published(1000)  # live again, behind the backfilled gap
    await group.settle_and_check()
    # The gap (some 3 s at 1,000 trades/s, and the 1 s candles that closed in it) came over REST.
    assert await standby.metric("tickstream_ingestor_backfilled_events_total",
                                event_type="price_update") > 1000
    assert await standby.metric("tickstream_ingestor_backfilled_events_total",
                                event_type="market_data") >= 2
    assert await standby.metric("tickstream_ingestor_takeovers_total") == 1
    assert await standby.metric("tickstream_ingestor_leader") == 1
    assert await standby.metric("tickstream_ingestor_lease_token") == 2
    assert "filled the gap" in standby.log()
    assert await group.fence() == {b"s-a2ac4f6320d1": b"2"}


async def test_a_leader_paused_past_its_lease_is_fenced_and_steps_down(group: Group) -> None:
    old, new = await leader_and_standby(group)
    await group.more_published(100)
    await group.closed_candles(2)
    old.signal(signal.SIGSTOP)
    await until(lambda: new.role_is("leader"), 15, "the standby leading while the leader is paused")
    await group.more_published(200)  # the new leader publishes while the old one sleeps
    old.signal(signal.SIGCONT)
    await until(lambda: old.role_is("standby"), 15, "the old leader back as a standby")
    await until(lambda: "stepping down to standby" in old.log(), 5, "its step-down logged")
    log = old.log()
    assert "Fenced" in log, log[-3000:]
    assert await old.metric("tickstream_ingestor_step_downs_total") == 1
    assert await old.metric("tickstream_ingestor_leader") == 0
    await group.more_published(100)
    # Nothing of a's landed after b took over: no duplicate, nothing out of order, no hole.
    await group.settle_and_check()
    assert await group.fence() == {b"s-a2ac4f6320d1": b"2"}
    assert (await new.ready() or {}).get("role") == "leader"


async def test_a_restart_after_sigterm_resumes_where_the_last_process_stopped(group: Group) -> None:
    first = group.ingestor("a")
    await first.start()
    await until(lambda: first.role_is("leader"), 30, "a leading")
    await group.more_published(200)
    await group.closed_candles(2)
    first.signal(signal.SIGTERM)
    assert await first.wait() == 0
    stopped_at = {s: group.sim.state.last_agg_trade_id(s) for s in SYMBOLS}
    await group.exchange_traded(600)  # about 3 s of trading (and three 1 s candles) unseen
    again = group.ingestor("a2")
    await again.start()
    await until(lambda: again.role_is("leader"), 30, "the new process leading")
    await group.more_published(100)
    found = await group.settle_and_check()
    for symbol in SYMBOLS:
        assert stopped_at[symbol] in found[symbol]  # the stop is inside the contiguous run
    assert await again.metric("tickstream_ingestor_backfilled_events_total",
                              event_type="price_update") >= 600
    assert "resuming from Redis: BTCUSDT after trade" in again.log()
    assert "lease of group s-a2ac4f6320d1 released" in first.log()


async def test_two_ingestors_started_at_once_elect_exactly_one_leader(group: Group) -> None:
    members = [group.ingestor("a"), group.ingestor("b")]
    await asyncio.gather(*(m.start() for m in members))
    await until(lambda: all_ready(members), 30, "both ingestors ready")
    # Watch them for three renewals: one leader all along, the same one, the other standing by.
    leaders = set()
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        bodies = await all_ready(members)
        assert bodies is not None
        roles = sorted(b["role"] for b in bodies)
        assert roles == ["leader", "standby"], roles
        leaders |= {b["node"] for b in bodies if b["role"] == "leader"}
        assert {b["leader"] for b in bodies} == leaders  # both name the same leader
        await asyncio.sleep(0.1)  # sampling interval of the observation, not a synchronisation
    assert len(leaders) == 1
    assert sum([await m.metric("tickstream_ingestor_takeovers_total") for m in members]) == 1
    (leader,) = leaders
    assert await group.redis.get(KEYS.ingestor_lease("s-a2ac4f6320d1")) == f"1:{leader}".encode()
    await group.closed_candles(3)
    await group.settle_and_check()


async def test_a_publish_refused_by_a_newer_fence_steps_the_leader_down(redis_url: str) -> None:
    # In one process, with renewals far apart: the refused publish, not a renewal, finds out.
    async with running(redis_url, feeds=("trades",), lease_ttl=60.0, lease_renew=30.0) as stack:
        await stack.wait_trades("BTCUSDT", 5)
        name = stack.settings.group
        # What a takeover by another process does: take the lease (token 7), raise the fence.
        await stack.redis.set(KEYS.ingestor_token(name), 7)
        await stack.redis.set(KEYS.ingestor_lease(name), "7:intruder", px=60_000)
        settings = PublishSettings(redis_url=Secret(redis_url), key_prefix=PREFIX)
        async with AsyncPublisher.from_url(redis_url, settings) as intruder:
            intruder.fence = (name, 7)
            await intruder.raise_fence(["price_update"])
        await until(lambda: _metric_at_least(stack, "tickstream_ingestor_fenced_publishes_total", 1),
                    10, "a publish refused")
        await until(lambda: _role(stack, "standby"), 5, "standing by")
        assert await stack.metric("tickstream_ingestor_step_downs_total", reason="fenced") == 1
        assert await stack.metric("tickstream_ingestor_leader") == 0
        written = await stack.redis.xlen(KEYS.stream("price_update"))
        await stack.wait_exchange_trades(100)
        assert await stack.redis.xlen(KEYS.stream("price_update")) == written  # nothing lands
        body = (await stack.get("/readyz")).json()
        assert body["role"] == "standby" and body["leader"] == "intruder" and body["token"] is None


async def _metric_at_least(stack: Stack, name: str, value: float) -> bool:
    return await stack.metric(name) >= value


async def _role(stack: Stack, role: str) -> bool:
    return bool((await stack.get("/readyz")).json()["role"] == role)
