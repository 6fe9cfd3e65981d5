"""Fan-out benchmark: one publisher at a fixed rate, N WebSocket clients in separate processes.

    .venv/bin/python -m bench.fanout                     # the standard scenarios (about 3 min)
    .venv/bin/python -m bench.fanout --clients 100 --rate 1000 --seconds 10 [--batch]
    .venv/bin/python -m bench.fanout --resume 10000      # catch-up time of a client 10k behind
    .venv/bin/python -m bench.fanout --idle 10000        # memory per idle connection

Everything runs on this machine over loopback: a private redis-server, one ``tickstream gateway``
process, client processes (``--procs``, default 2) and a publisher process. Reported per
scenario: events delivered per second, missing and duplicate events (every client must receive
every event exactly once; after publishing stops the run waits until all clients have
everything, or until nothing moved for 15 s, and reports that drain time: a client process too
slow to keep up shows as drain time and latency, a real loss as missing events), publish-to-
receive latency p50/p99/p99.9 (Redis time of the event to the client's clock, sampled on the
first event of each frame), and the gateway's CPU time per delivered event. The machine has 2
cores shared by all of these processes: the figures are what one gateway does while its
clients and Redis compete for the same CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

from bench.support import Gateway, cpu_seconds, percentile, private_redis, rss_bytes

TS = re.compile(rb'"ts":(\d+)')


@dataclass
class Result:
    clients: int
    rate: int
    batch: bool
    published: int
    delivered: int
    lost: int
    duplicates: int
    seconds: float
    p50: float
    p99: float
    p999: float
    gateway_cpu: float
    drain: float  # seconds after publishing stopped until the clients had everything
    slow_closes: int  # clients the gateway closed with 4008 (they would resume; these do not)
    closes: int  # clients closed for any reason during the run
    close_codes: dict[int, int]  # close code -> clients

    def line(self) -> str:
        per_event = self.gateway_cpu / max(1, self.delivered) * 1e6
        mode = "batch=1" if self.batch else "batch=0"
        return (f"N={self.clients:>5} rate={self.rate:>6}/s {mode}: delivered "
                f"{self.delivered / self.seconds:>9,.0f}/s  missing {self.lost}  dup {self.duplicates}  "
                f"drain {self.drain:4.1f} s  closed {self.closes} {self.close_codes or ''}  "
                f"latency p50 {self.p50:6.1f} ms p99 {self.p99:7.1f} ms p99.9 {self.p999:7.1f} ms  "
                f"gateway CPU {per_event:5.2f} us/delivery "
                f"({self.gateway_cpu / (self.seconds + self.drain):.0%} of a core)")


def client_worker(url: str, count: int, event_type: str, ready: Any, stop: Any, out: Any,
                  progress: Any) -> None:
    """Open ``count`` connections, subscribe, count events and sample latency until told."""
    import uvloop

    async def main() -> None:
        from websockets.asyncio.client import connect

        conns = []
        for _ in range(count):
            ws = await connect(url, max_size=None, max_queue=None, ping_interval=None)
            await ws.recv()
            await ws.send(orjson.dumps({"op": "subscribe", "event_type": event_type}).decode())
            await ws.recv()
            conns.append(ws)
        ready.release()
        received = [0] * count
        offsets_seen: list[set[bytes]] = [set() for _ in range(count)]
        samples: list[float] = []

        async def read(i: int, ws: Any) -> None:
            seen = offsets_seen[i]
            async for frame in ws:
                data = frame if isinstance(frame, bytes) else frame.encode()
                now = time.time() * 1000
                n = data.count(b'"offset"')
                received[i] += n
                progress.value += n
                if i < 4:  # exact duplicate accounting on a few connections
                    for match in re.finditer(rb'"offset":"([0-9-]+)"', data):
                        seen.add(match.group(1))
                m = TS.search(data)
                if m:
                    samples.append(now - int(m.group(1)))

        tasks = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(conns)]
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing.Event cannot be awaited
            await asyncio.sleep(0.05)
        for t in tasks:
            t.cancel()
        closes = [ws.close_code for ws in conns if ws.close_code is not None]
        # exact duplicate count on the first connections of this worker (offsets tracked there)
        dups = sum(received[i] - len(offsets_seen[i]) for i in range(min(4, count)))
        out.put((received, dups, samples, closes))
        for ws in conns:
            ws.transport.abort()

    uvloop.run(main())


def publisher(redis_url: str, rate: int, seconds: float, event_type: str, out: Any) -> None:
    import uvloop

    from shared.events import Event
    from shared.publisher import AsyncPublisher, PublishSettings

    async def main() -> None:
        tick = 0.005 if rate >= 200 else 1.0 / rate
        per_tick = max(1, round(rate * tick))
        total = 0
        async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as pub:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                due = int(elapsed * rate) - total
                if due > 0:
                    await pub.publish_many([
                        Event(event_type, {"symbol": "BTCUSDT", "price": 65000.5 + (total + i) % 100,
                                           "volume": 0.01, "timestamp": "2026-11-26T14:00:00.000Z",
                                           "trade_id": total + i, "side": "buy", "source": "bench"},
                              symbol="BTCUSDT")
                        for i in range(min(due, per_tick * 4))
                    ])
                    total += min(due, per_tick * 4)
                await asyncio.sleep(tick / 2)
        out.put(total)

    uvloop.run(main())


def run_scenario(redis_url: str, gateway: Gateway, clients: int, rate: int, seconds: float,
                 batch: bool, procs: int, scenario: int) -> Result:
    ctx = mp.get_context("spawn")
    event_type = f"bench{scenario}"
    url = gateway.url + ("?batch=1" if batch else "")
    ready, stop, out, pub_out = ctx.Semaphore(0), ctx.Event(), ctx.Queue(), ctx.Queue()
    share = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    counters = [ctx.Value("q", 0, lock=False) for n in share if n]
    workers = [ctx.Process(target=client_worker, args=(url, n, event_type, ready, stop, out, c))
               for n, c in zip([n for n in share if n], counters, strict=True)]
    for w in workers:
        w.start()
    for _ in workers:
        if not ready.acquire(timeout=120):
            raise RuntimeError("clients did not connect")
    assert gateway.proc is not None
    cpu0, t0 = cpu_seconds(gateway.proc.pid), time.monotonic()
    pub = ctx.Process(target=publisher, args=(redis_url, rate, seconds, event_type, pub_out))
    pub.start()
    published = pub_out.get(timeout=seconds + 60)
    pub.join()
    publish_done = time.monotonic()
    # Drain: wait until every client has every event, or nothing moved for 5 s (bounded).
    expected = published * clients
    last, last_change = -1, time.monotonic()
    while time.monotonic() - publish_done < 120:
        total = sum(c.value for c in counters)
        if total >= expected:
            break
        if total != last:
            last, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > 15:
            break
        time.sleep(0.1)
    drain = time.monotonic() - publish_done
    cpu = cpu_seconds(gateway.proc.pid) - cpu0
    elapsed = time.monotonic() - t0
    stop.set()
    received: list[int] = []
    tracked_dups = 0
    samples: list[float] = []
    closes: list[int] = []
    for _ in workers:
        r, d, s, c = out.get(timeout=60)
        received += r
        tracked_dups += d
        samples += s
        closes += c
    for w in workers:
        w.join(30)
    delivered = sum(received)
    lost = sum(max(0, published - r) for r in received)
    duplicates = sum(max(0, r - published) for r in received) + tracked_dups
    return Result(clients, rate, batch, published, delivered, lost, duplicates,
                  min(elapsed, seconds), percentile(samples, 50), percentile(samples, 99),
                  percentile(samples, 99.9), cpu, drain, closes.count(4008), len(closes),
                  dict(sorted(Counter(closes).items())))


async def resume_catch_up(redis_url: str, gateway: Gateway, behind: int) -> str:
    from websockets.asyncio.client import connect

    from shared.events import Event
    from shared.publisher import AsyncPublisher, PublishSettings

    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as pub:
        start = await pub.publish("resume", {"n": -1})
        for i in range(0, behind, 1000):
            await pub.publish_many([Event("resume", {"n": n, "pad": "x" * 100})
                                    for n in range(i, i + 1000)])
    results = []
    for batch in (False, True):
        async with connect(gateway.url + ("?batch=1" if batch else ""), max_size=None, max_queue=None) as ws:
            await ws.recv()
            t0 = time.perf_counter()
            await ws.send(orjson.dumps({"op": "subscribe", "event_type": "resume",
                                        "since": start}).decode())
            got = 0
            while got < behind:
                frame = await ws.recv()
                got += frame.count('"offset"') if isinstance(frame, str) else 0
            results.append(f"batch={int(batch)}: {time.perf_counter() - t0:.3f} s "
                           f"({behind / (time.perf_counter() - t0):,.0f} events/s)")
    return f"resume of a client {behind} events behind: " + "; ".join(results)


async def idle_memory(gateway: Gateway, count: int) -> str:
    from websockets.asyncio.client import connect

    assert gateway.proc is not None
    await asyncio.sleep(1)
    before = rss_bytes(gateway.proc.pid)
    conns = []
    for i in range(count):
        ws = await connect(gateway.url, ping_interval=None, max_queue=4)
        await ws.recv()
        await ws.send(orjson.dumps({"op": "subscribe", "event_type": "idle",
                                    "symbols": [f"S{i % 50}"]}).decode())
        await ws.recv()
        conns.append(ws)
    await asyncio.sleep(2)
    after = rss_bytes(gateway.proc.pid)
    for ws in conns:
        ws.transport.abort()
    return (f"{count} idle connections (one subscription each): gateway RSS {before / 2**20:.1f} MiB -> "
            f"{after / 2**20:.1f} MiB, {(after - before) / count / 1024:.1f} KiB per connection")


SCENARIOS = [(100, 1000, False), (100, 1000, True), (1000, 1000, False), (1000, 1000, True),
             (100, 10000, False), (100, 10000, True)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--resume", type=int, help="measure catch-up of a client this many events behind")
    parser.add_argument("--idle", type=int, help="measure memory of this many idle connections")
    args = parser.parse_args()
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    redis = private_redis()
    gateway = Gateway(redis.url, MAX_CONNECTIONS="20000", SLOW_CLIENT_MAX_BYTES="64MiB")
    gateway.start()
    try:
        if args.resume:
            print(asyncio.run(resume_catch_up(redis.url, gateway, args.resume)))
        elif args.idle:
            print(asyncio.run(idle_memory(gateway, args.idle)))
        elif args.clients:
            print(run_scenario(redis.url, gateway, args.clients, args.rate, args.seconds, args.batch,
                               args.procs, 0).line())
        else:
            for index, (clients, rate, batch) in enumerate(SCENARIOS):
                print(run_scenario(redis.url, gateway, clients, rate, args.seconds, batch, args.procs,
                                   index).line(), flush=True)
            print(asyncio.run(resume_catch_up(redis.url, gateway, 10_000)), flush=True)
            print(asyncio.run(idle_memory(gateway, 10_000)), flush=True)
    finally:
        gateway.stop()
        redis.cleanup()


if __name__ == "__main__":
    main()
