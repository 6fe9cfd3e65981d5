"""Ingestor throughput and latency: simulator frames in, Redis entries out, one ingestor process.

    .venv/bin/python -m bench.ingest [--latency-seconds 10] [--rates 5000,10000,20000,30000,40000]
                                     [--phase-seconds 4]

Starts a private redis-server, the simulator (in this process, replaying a synthetic capture:
aggTrade and bookTicker frames of BTCUSDT and ETHUSDT, half each) and ``tickstream ingestor``
as a separate process (``--feeds trades,book_ticker``, uvloop), so the ingestor's CPU time is its
own (read from /proc). Every frame becomes one event (price_update or market_data/book_ticker).

1. **Latency** at 1,000 events/s: each frame's ``E`` is its planned send time; this process
   reads the streams with XREAD and measures planned send time to the moment the entry is
   readable (an upper bound on exchange timestamp to Redis: it includes the simulator's own send
   lateness and the XREAD hop). Also shown: Redis entry id minus ``E`` (1 ms resolution).
2. **Throughput**: offered rates in steps of ``--phase-seconds``; per step the events the
   ingestor got acknowledged by Redis per second (from its /metrics), its CPU use, and events
   per CPU-second (the one-core capacity). The ramp stops when the ingestor falls behind.

Bounded in time (about 15 s of setup and teardown plus the phases); Linux only (/proc).

``--takeover [--rounds 3] [--rate 3000] [--idle-seconds 5] [--log-dir DIR]``: an ingestor *group*
instead. Two
``tickstream ingestor`` processes (all feeds, default lease timings) on the simulator's market
model (``--rate`` market events/s; 3000 make about 1,000 aggregate trades/s); per round the
leader is SIGKILLed and a new process started as the next standby. Reported: the CPU of the
leader and of the standby over ``--idle-seconds`` before each kill (from /proc/<pid>/stat),
the time from SIGKILL to the standby leading (/readyz) and to the first event it publishes
(XREAD on price_update), the trades and candles it backfilled, and at the end whether every
trade id in Redis is present once (the market paused, Redis caught up).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import msgpack
import orjson
import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families

from shared.keys import Keys
from simulator import Simulator
from tests.support.redis_server import RedisServer, free_port

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ("BTCUSDT", "ETHUSDT")
PREFIX = "bench"


@dataclass
class Phase:
    rate: int
    seconds: float
    start_ms: int = 0  # offset from T0

    @property
    def end_ms(self) -> int:
        return self.start_ms + int(self.seconds * 1000)


class Capture:
    """Writes the synthetic capture; remembers each event's planned send time."""

    def __init__(self) -> None:
        self.next_agg = {s: 5_000_000 + i * 10_000_000 for i, s in enumerate(SYMBOLS)}
        self.next_u = {s: 70_000_000 + i * 10_000_000 for i, s in enumerate(SYMBOLS)}
        self.planned: dict[tuple[str, str, int], float] = {}  # (kind, symbol, id) -> send time (s)

    def write(self, path: Path, t0_ms: int, phases: list[Phase], track_until_ms: int) -> None:
        n = 0
        with path.open("wb") as out:
            for phase in phases:
                per_ms = phase.rate / 1000
                owed = 0.0
                for offset in range(phase.start_ms, phase.end_ms):
                    owed += per_ms
                    ts = t0_ms + offset
                    while owed >= 1:
                        owed -= 1
                        out.write(self._line(ts, n, track=offset < track_until_ms))
                        n += 1

    def _line(self, ts: int, n: int, *, track: bool) -> bytes:
        symbol = SYMBOLS[(n // 2) % 2]
        low = symbol.lower()
        price = "60000.01000000" if symbol == "BTCUSDT" else "3000.01000000"
        if n % 2 == 0:
            agg = self.next_agg[symbol]
            self.next_agg[symbol] += 1
            if track:
                self.planned[("trade", symbol, agg)] = ts / 1000
            data: dict[str, Any] = {"e": "aggTrade", "E": ts, "s": symbol, "a": agg, "p": price,
                                    "q": "0.01200000", "f": agg * 2, "l": agg * 2, "T": ts,
                                    "m": n % 3 == 0, "M": True}
            stream = f"{low}@aggTrade"
        else:
            u = self.next_u[symbol]
            self.next_u[symbol] += 1
            if track:
                self.planned[("book", symbol, u)] = ts / 1000
            data = {"u": u, "s": symbol, "b": price, "B": "1.50000000", "a": price,
                    "A": "2.25000000"}
            stream = f"{low}@bookTicker"
        return orjson.dumps({"ts": ts, "stream": stream, "data": data}) + b"\n"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def scrape(client: httpx.AsyncClient, port: int) -> dict[str, float]:
    text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


async def read_latencies(url: str, capture: Capture, stop: asyncio.Event,
                         out: list[tuple[float, float]]) -> None:
    """(receive - planned, redis id ms - E ms) in seconds, for tracked events."""
    client = redis.asyncio.Redis.from_url(url)
    keys = Keys(PREFIX)
    streams = {keys.stream("price_update"): b"$", keys.stream("market_data"): b"$"}
    try:
        while not stop.is_set():
            reply = await client.xread(streams, count=1000, block=200)  # type: ignore[arg-type]
            now = time.time()
            for key, entries in reply or []:
                name = key.decode()
                for entry_id, fields in entries:
                    streams[name] = entry_id
                    data = msgpack.unpackb(fields[b"d"], raw=False)
                    if "trade_id" in data:
                        planned = capture.planned.get(("trade", data["symbol"], data["trade_id"]))
                    else:
                        planned = capture.planned.get(("book", data["symbol"], data["update_id"]))
                    if planned is not None:
                        id_ms = int(entry_id.split(b"-")[0])
                        out.append((now - planned, id_ms / 1000 - int(planned * 1000) / 1000))
    finally:
        await client.aclose()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 10) - 1] if len(values) > 1 else values[0]


async def run(args: argparse.Namespace, redis_url: str, workdir: Path) -> None:
    logging.basicConfig(level=logging.WARNING)
    capture_path = workdir / "capture.jsonl"
    placeholder = Capture()
    placeholder.write(capture_path, int(time.time() * 1000), [Phase(1000, 0.01)], 0)
    rates = [int(r) for r in args.rates.split(",")]
    phases = [Phase(1000, args.latency_seconds)] + [Phase(r, args.phase_seconds) for r in rates]
    start = 0
    for phase in phases:
        phase.start_ms = start
        start = phase.end_ms

    async with Simulator(port=0, replay=str(capture_path), replay_autostart=False,
                         ping_interval=0.0) as sim:
        http_port = free_port()
        env = dict(os.environ, LOG_LEVEL="WARNING")
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickstream.cli", "ingestor", "--symbols", ",".join(SYMBOLS),
            "--feeds", "trades,book_ticker", "--binance-ws-url", sim.url_ws,
            "--binance-rest-url", sim.url_rest, "--redis-url", redis_url, "--key-prefix", PREFIX,
            "--port", str(http_port), "--stale-after", "120s", "--node", "bench", cwd=ROOT, env=env,
        )
        try:
            deadline = time.monotonic() + 20
            while sim.state.connections() < 1:
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise SystemExit("the ingestor did not connect")
                await asyncio.sleep(0.05)
            events = sum(p.rate * p.seconds for p in phases)
            margin = 1.0 + events / 100_000  # writing the capture takes about 4 s per million
            while True:
                capture = Capture()
                t0 = time.time() + margin
                capture.write(capture_path, int(t0 * 1000), phases, phases[0].end_ms)
                if time.time() < t0 - 0.2:
                    break
                margin *= 2  # too slow a disk: the planned send times are already past
            latencies: list[tuple[float, float]] = []
            stop_reader = asyncio.Event()
            reader = asyncio.create_task(read_latencies(redis_url, capture, stop_reader, latencies))
            # Everything that blocks this process's loop (the simulator's) happens before t0.
            async with httpx.AsyncClient() as client:
                before = await scrape(client, http_port), cpu_seconds(proc.pid)
                await asyncio.sleep(max(0.0, t0 - time.time()))
                assert sim.replay is not None
                sim.replay.begin()
                results = await measure(client, proc.pid, http_port, t0, phases, stop_reader, before)
            await reader
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
    report(args, phases, latencies, results)


async def measure(client: httpx.AsyncClient, pid: int, http_port: int, t0: float,
                  phases: list[Phase], stop_reader: asyncio.Event,
                  start: tuple[dict[str, float], float]) -> list[dict[str, float]]:
    results = []
    before, cpu_before = start
    for index, phase in enumerate(phases):
        await asyncio.sleep(max(0.0, t0 + phase.end_ms / 1000 + 0.05 - time.time()))
        after = await scrape(client, http_port)
        cpu_after = cpu_seconds(pid)
        published = (after.get("tickstream_ingestor_events_published_total", 0)
                     - before.get("tickstream_ingestor_events_published_total", 0))
        received = (after.get("tickstream_ingestor_messages_received_total", 0)
                    - before.get("tickstream_ingestor_messages_received_total", 0))
        cpu = cpu_after - cpu_before
        results.append({
            "rate": phase.rate, "seconds": phase.seconds, "published": published,
            "received": received, "cpu": cpu, "latency_hist": after,
            "reconnects": after.get("tickstream_ingestor_reconnects_total", 0),
            "dropped": after.get("tickstream_ingestor_messages_dropped_total", 0),
        })
        before, cpu_before = after, cpu_after
        if index == 0:
            await asyncio.sleep(0.5)
            stop_reader.set()
        if index > 0 and published < 0.9 * phase.rate * phase.seconds:
            break  # fell behind: higher rates only pile up more
    return results


def report(args: argparse.Namespace, phases: list[Phase], latencies: list[tuple[float, float]],
           results: list[dict[str, float]]) -> None:
    print(f"\ningestor benchmark (python {sys.version.split()[0]}, 1 ingestor process, uvloop)")
    if latencies:
        read = sorted(1000 * a for a, _ in latencies)
        ids = sorted(1000 * b for _, b in latencies)
        print(f"\nlatency at {phases[0].rate} events/s for {phases[0].seconds:g} s: {len(read)} events")
        print(f"  planned send -> readable in Redis (XREAD): p50 {pct(read, 50):.2f} ms, "
              f"p99 {pct(read, 99):.2f} ms, max {read[-1]:.2f} ms")
        print(f"  Redis entry id - E (1 ms resolution):       p50 {pct(ids, 50):.0f} ms, "
              f"p99 {pct(ids, 99):.0f} ms")
    print("\nthroughput (every frame is one event):")
    print(f"  {'offered/s':>10} {'published/s':>12} {'CPU':>6} {'events/CPU-s':>13}")
    best = 0.0
    capacity: list[float] = []
    for r in results[1:]:
        rate = r["published"] / r["seconds"]
        per_cpu = r["published"] / r["cpu"] if r["cpu"] else 0.0
        print(f"  {r['rate']:>10.0f} {rate:>12.0f} {100 * r['cpu'] / r['seconds']:>5.0f}% "
              f"{per_cpu:>13.0f}")
        if rate >= 0.97 * r["rate"]:
            best = max(best, rate)
        capacity.append(per_cpu)
    print(f"\nhighest rate sustained (>= 97% of offered): {best:.0f} events/s")
    if capacity:
        print(f"one-core capacity (events per CPU-second, best step): {max(capacity):.0f}")
    last = results[-1]
    print(f"messages dropped by the ingestor: {last['dropped']:.0f}; reconnects: {last['reconnects']:.0f}")


# -- the takeover case ----------------------------------------------------------------------------


class Member:
    """One ``tickstream ingestor`` of the benchmark's group."""

    def __init__(self, name: str, redis_url: str, sim: Any, log_dir: str | None) -> None:
        self.name = name
        self.port = free_port()
        self.log = Path(log_dir) / f"{name}.log" if log_dir else None
        self.env = dict(os.environ, LOG_LEVEL="INFO" if log_dir else "WARNING", REDIS_URL=redis_url,
                        KEY_PREFIX=PREFIX, SYMBOLS=",".join(SYMBOLS), KLINE_INTERVALS="1s",
                        PORT=str(self.port), NODE_ID=name, BINANCE_WS_URL=sim.url_ws,
                        BINANCE_REST_URL=sim.url_rest)
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        if self.log is None:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tickstream.cli", "ingestor", cwd=ROOT, env=self.env)
            return
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "tickstream.cli", "ingestor", cwd=ROOT, env=self.env,
                stderr=out)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def ready(self, client: httpx.AsyncClient) -> dict[str, Any] | None:
        try:
            response = await client.get(f"http://127.0.0.1:{self.port}/readyz")
        except httpx.HTTPError:
            return None
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 else None

    async def metric(self, client: httpx.AsyncClient, name: str, **labels: str) -> float:
        text = (await client.get(f"http://127.0.0.1:{self.port}/metrics")).text
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


async def poll(condition: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def roles(members: list[Member], client: httpx.AsyncClient) -> dict[str, Member] | None:
    bodies = [await m.ready(client) for m in members]
    if any(b is None for b in bodies):
        return None
    by_role = {b["role"]: m for b, m in zip(bodies, members, strict=True) if b is not None}
    return by_role if set(by_role) == {"leader", "standby"} else None


async def run_takeover(args: argparse.Namespace, redis_url: str) -> None:
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("tickstream.simulator").setLevel(logging.ERROR)
    keys = Keys(PREFIX)
    stream = keys.stream("price_update")
    streams = [keys.stream(t) for t in ("price_update", "market_data", "orderbook_update")]
    rounds: list[dict[str, float]] = []
    client = redis.asyncio.Redis.from_url(redis_url)
    async with Simulator(port=0, rate=args.rate, ping_interval=0.0, symbols=SYMBOLS) as sim, \
            httpx.AsyncClient(timeout=5.0) as http:
        members = [Member("a", redis_url, sim, args.log_dir), Member("b", redis_url, sim, args.log_dir)]
        serial = 1
        try:
            await asyncio.gather(*(m.start() for m in members))
            for index in range(args.rounds):
                by_role = await poll(lambda ms=members: roles(ms, http), 60, "a leader and a standby")
                leader, standby = by_role["leader"], by_role["standby"]
                await asyncio.sleep(1.0)  # let the new standby's start-up settle out of the window
                cpu = {m.name: cpu_seconds(m.pid) for m in (leader, standby)}
                started = time.monotonic()
                await asyncio.sleep(args.idle_seconds)
                window = time.monotonic() - started
                use = {name: (cpu_seconds(m.pid) - cpu[name]) / window
                       for name, m in ((leader.name, leader), (standby.name, standby))}
                before = {k: await standby.metric(http, "tickstream_ingestor_backfilled_events_total",
                                                  event_type=k) for k in ("price_update", "market_data")}
                assert leader.proc is not None
                killed = time.monotonic()
                leader.proc.kill()
                await leader.proc.wait()
                tails: dict[Any, Any] = {}
                for key in streams:
                    tail = await client.xrevrange(key, count=1)
                    tails[key] = tail[0][0] if tail else b"0-0"
                reply = await client.xread(tails, count=1, block=30_000)
                first_event = time.monotonic() - killed if reply else float("nan")
                await poll(lambda s=standby: s.ready(http), 30, "the standby ready")
                body = await poll(lambda s=standby: _leading(s, http), 30, "the standby leading")
                leading = time.monotonic() - killed
                await poll(lambda s=standby: _caught_up(s, http), 60, "the catch-up")
                after = {k: await standby.metric(http, "tickstream_ingestor_backfilled_events_total",
                                                 event_type=k) for k in ("price_update", "market_data")}
                rounds.append({
                    "leader_cpu": use[leader.name], "standby_cpu": use[standby.name],
                    "first_event": first_event, "leading": leading, "token": body["token"],
                    "trades": after["price_update"] - before["price_update"],
                    "candles": after["market_data"] - before["market_data"],
                })
                print(f"round {index + 1}: {_line(rounds[-1])}", flush=True)
                serial += 1
                replacement = Member(f"n{serial}", redis_url, sim, args.log_dir)
                members = [standby, replacement]
                await replacement.start()
            assert sim.market is not None
            sim.market.pause()
            contiguous = await _check_contiguous(client, stream, sim)
        finally:
            for member in members:
                await member.stop()
            await client.aclose()
    report_takeover(args, rounds, contiguous)


async def _leading(member: Member, http: httpx.AsyncClient) -> dict[str, Any] | None:
    body = await member.ready(http)
    return body if body is not None and body["role"] == "leader" else None


async def _caught_up(member: Member, http: httpx.AsyncClient) -> bool:
    """The takeover's catch-up is over once its report line would be written: no backfill runs.

    Approximated from outside: the backfilled counter stopped moving for half a second."""
    first = await member.metric(http, "tickstream_ingestor_backfilled_events_total")
    await asyncio.sleep(0.5)
    return first == await member.metric(http, "tickstream_ingestor_backfilled_events_total") > 0


async def _check_contiguous(client: redis.asyncio.Redis, stream: str, sim: Any) -> str:
    deadline = time.monotonic() + 30
    while True:
        ids: dict[str, list[int]] = {s: [] for s in SYMBOLS}
        for _, fields in await client.xrange(stream):
            data = msgpack.unpackb(fields[b"d"], raw=False)
            ids[data["symbol"]].append(data["trade_id"])
        if all(ids[s] and ids[s][-1] == sim.state.last_agg_trade_id(s) for s in SYMBOLS):
            break
        if time.monotonic() > deadline:
            return "no: Redis did not catch up with the exchange"
        await asyncio.sleep(0.2)
    problems = []
    for symbol, found in ids.items():
        if found != list(range(found[0], found[0] + len(found))):
            problems.append(f"{symbol}: {len(found)} ids from {found[0]} to {found[-1]}")
    total = sum(len(v) for v in ids.values())
    return f"yes ({total} trades)" if not problems else "no: " + "; ".join(problems)


def _line(r: dict[str, float]) -> str:
    return (f"SIGKILL -> first event {1000 * r['first_event']:.0f} ms, -> leading "
            f"{r['leading']:.2f} s (token {r['token']:.0f}); backfilled {r['trades']:.0f} trades, "
            f"{r['candles']:.0f} candles; CPU before: leader {100 * r['leader_cpu']:.0f}%, "
            f"standby {100 * r['standby_cpu']:.0f}%")


def report_takeover(args: argparse.Namespace, rounds: list[dict[str, float]], contiguous: str) -> None:
    print(f"\ningestor group takeover (python {sys.version.split()[0]}, 2 processes, all feeds, "
          f"simulator rate {args.rate:g} events/s, lease TTL 3 s / renew 1 s / retry 0.5 s)")
    if not rounds:
        return
    first = sorted(r["first_event"] for r in rounds)
    print(f"  SIGKILL -> first event from the standby: median {1000 * statistics.median(first):.0f} ms, "
          f"min {1000 * first[0]:.0f} ms, max {1000 * first[-1]:.0f} ms over {len(rounds)} rounds")
    trades = ", ".join(f"{r['trades']:.0f}" for r in rounds)
    candles = ", ".join(f"{r['candles']:.0f}" for r in rounds)
    print(f"  trades backfilled per takeover: {trades}; candles: {candles}")
    leader = statistics.mean(r["leader_cpu"] for r in rounds)
    standby = statistics.mean(r["standby_cpu"] for r in rounds)
    print(f"  CPU over {args.idle_seconds:g} s before each kill: leader {100 * leader:.0f}%, standby "
          f"{100 * standby:.0f}% of one core ({standby / leader:.0%} of the leader's)")
    print(f"  every trade id in Redis once, in order: {contiguous}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="5000,10000,20000,30000,40000")
    parser.add_argument("--phase-seconds", type=float, default=4.0)
    parser.add_argument("--takeover", action="store_true",
                        help="measure a group takeover instead (see the description)")
    parser.add_argument("--rounds", type=int, default=3, help="takeovers (with --takeover)")
    parser.add_argument("--rate", type=float, default=3000.0,
                        help="simulator market events/s (with --takeover)")
    parser.add_argument("--idle-seconds", type=float, default=5.0,
                        help="CPU window before each kill (with --takeover)")
    parser.add_argument("--log-dir", help="with --takeover: each ingestor's INFO log in DIR/<node>.log")
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            if args.takeover:
                runner.run(run_takeover(args, server.url))
            else:
                runner.run(run(args, server.url, server.dir))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
