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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument("--rates", default="5000,10000,20000,30000,40000")
    parser.add_argument("--phase-seconds", type=float, default=4.0)
    args = parser.parse_args()
    server = RedisServer()
    server.start()
    try:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(run(args, server.url, server.dir))
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
