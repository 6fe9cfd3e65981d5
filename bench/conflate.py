"""Conflation benchmark: N clients conflating a busy stream, against the same clients unconflated.

    .venv/bin/python -m bench.conflate                        # 1,000 clients, 5,000 ev/s, ~4 min
    .venv/bin/python -m bench.conflate --clients 200 --rate 2000 --seconds 10 --watch 5
    .venv/bin/python -m bench.conflate --mode conflated --watch 0     # every symbol per client

Everything runs on this machine over loopback: a private redis-server, one ``tickstream gateway``
process per run, client processes (``--procs``, default 2) and a publisher process. The
publisher sends ``--rate`` events per second for ``--seconds``, round-robin over ``--symbols``
symbols (50 by default: 100 events per second per symbol at 5,000 ev/s). Client ``i`` watches
``--watch`` consecutive symbols starting at ``i * watch`` (``--watch 0``: every symbol, no
filter). Each run is done twice with the same clients: unconflated, then with
``conflate_ms = --conflate-ms`` (100). Reported per run:

* events published and delivered (all clients together; per second of publishing and drain);
* the gateway's CPU (user + system, from ``/proc/<pid>/stat``, from the first event published
  until every client had what it should) per delivered event and per input event (published);
* unconflated: missing events (per client and symbol, published minus received) and
  duplicates / out-of-order events (an offset not greater than the previous one on the
  connection); both must be 0;
* conflated: stale (client and symbol pairs whose last event is not the newest published) and
  out-of-order events; both must be 0;
* the data's age when it arrives: Redis time of the first event of each frame to the client's
  clock, p50 / p99 (conflated: up to ``conflate_ms`` by design); the same from the gateway's
  ``/metrics`` histogram when it sent the frame (bucket bounds), the largest reader lag seen,
  and events per frame sent: a late client is told apart from a late gateway.

After publishing stops the run waits (bounded) until every client has everything (unconflated)
or the newest event of each of its symbols (conflated), and reports that drain time. The
machine has 2 cores shared by Redis, the gateway, the clients and the publisher: figures are
what one gateway does while the others compete for the same CPU.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from bench.support import Gateway, cpu_seconds, percentile, private_redis

EVENT = re.compile(rb'"offset":"(\d+)-(\d+)","symbol":"([^"]*)","ts":(\d+)')
STALL = 10.0  # a drain with no progress for this long ends


@dataclass
class Result:
    mode: str
    clients: int
    rate: int
    watch: int
    conflate_ms: int | None
    published: int
    seconds: float
    delivered: int
    gateway_cpu: float
    missing: int
    out_of_order: int
    stale: int
    drain: float
    p50: float
    p99: float
    closes: dict[int, int]
    sent_p50: float  # the gateway's own figure: Redis time to sending, oldest event of each frame
    sent_p99: float
    reader_lag: float  # the largest reader lag seen (s): the gateway falling behind Redis
    frames: int  # WebSocket frames the gateway sent

    def line(self) -> str:
        per_delivery = self.gateway_cpu / max(1, self.delivered) * 1e6
        per_input = self.gateway_cpu / max(1, self.published) * 1e6
        checks = (f"missing {self.missing}  dup/out-of-order {self.out_of_order}"
                  if self.conflate_ms is None else
                  f"stale {self.stale}  out-of-order {self.out_of_order}")
        watch = "all" if self.watch == 0 else str(self.watch)
        return (f"{self.mode:<12} N={self.clients} rate={self.rate}/s watch={watch}: published "
                f"{self.published:,}, delivered {self.delivered:,} "
                f"({self.delivered / (self.seconds + self.drain):,.0f}/s)  {checks}  "
                f"drain {self.drain:4.1f} s  "
                f"closed {sum(self.closes.values())} {self.closes or ''}  "
                f"age at client p50 {self.p50:6.1f} ms p99 {self.p99:7.1f} ms, when sent p50 "
                f"{self.sent_p50:4.0f} ms p99 <= {self.sent_p99:5.0f} ms  reader lag max "
                f"{self.reader_lag:5.2f} s  {self.delivered / max(1, self.frames):4.1f} events/frame  "
                f"gateway CPU {per_delivery:6.2f} us/delivery {per_input:7.1f} us/input event "
                f"({self.gateway_cpu / (self.seconds + self.drain):.0%} of a core)")


BUCKET = re.compile(r'^tickstream_publish_to_send_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$', re.M)
SCALAR = r'^{name} ([0-9.e+-]+)$'


def metrics(http: str) -> str:
    try:
        return httpx.get(http + "/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def scalar(text: str, name: str) -> float:
    m = re.search(SCALAR.format(name=re.escape(name)), text, re.M)
    return float(m.group(1)) if m else 0.0


def frames_sent(text: str) -> int:
    return int(scalar(text, "tickstream_frames_sent_total") or scalar(text, "tickstream_frames_sent"))


def histogram_quantiles(before: str, after: str, qs: tuple[float, ...]) -> list[float]:
    """Quantiles (ms, bucket upper bounds) of what a cumulative histogram counted in between."""
    b = {le: float(v) for le, v in BUCKET.findall(before)}
    a = [(float(le), float(v) - b.get(le, 0.0)) for le, v in BUCKET.findall(after)]
    a.sort()
    total = a[-1][1] if a else 0.0
    out = []
    for q in qs:
        bound = next((le for le, count in a if total and count >= q * total), float("nan"))
        out.append(bound * 1000)
    return out


class LagWatch(threading.Thread):
    """Polls the gateway's reader lag while a run lasts; keeps the largest."""

    def __init__(self, http: str) -> None:
        super().__init__(daemon=True)
        self.http, self.most, self.done = http, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            self.most = max(self.most, scalar(metrics(self.http), "tickstream_reader_lag_seconds"))


def symbol_names(count: int) -> list[str]:
    return [f"S{n:03d}USDT" for n in range(count)]


def watched(index: int, watch: int, symbols: list[str]) -> list[str] | None:
    if watch == 0:
        return None
    return [symbols[(index * watch + j) % len(symbols)] for j in range(watch)]


def client_worker(url: str, first: int, count: int, event_type: str, symbols: list[str], watch: int,
                  conflate_ms: int | None, ready: Any, final_q: Any, done_q: Any, stop: Any) -> None:
    """Open ``count`` connections, subscribe, and track every event of every connection."""
    import asyncio

    import uvloop

    async def main() -> None:
        from websockets.asyncio.client import connect

        conns = []
        wanted: list[list[str]] = []
        for k in range(count):
            ws = await connect(url, max_size=None, max_queue=None, ping_interval=None)
            await ws.recv()
            mine = watched(first + k, watch, symbols)
            op: dict[str, Any] = {"op": "subscribe", "event_type": event_type}
            if mine is not None:
                op["symbols"] = mine
            if conflate_ms is not None:
                op["conflate_ms"] = conflate_ms
            await ws.send(orjson.dumps(op).decode())
            reply = orjson.loads(await ws.recv())
            assert reply.get("type") == "subscribed", reply
            conns.append(ws)
            wanted.append(mine if mine is not None else symbols)
        ready.release()
        counts: list[Counter[bytes]] = [Counter() for _ in range(count)]
        lasts: list[dict[bytes, bytes]] = [{} for _ in range(count)]
        disorder = [0] * count
        samples: list[float] = []
        moved = [time.monotonic()]

        async def read(i: int, ws: Any) -> None:
            count_i, last_i = counts[i], lasts[i]
            previous = (0, 0)
            sample = i % 10 == 0
            async for frame in ws:
                data = frame if isinstance(frame, bytes) else frame.encode()
                now = time.time() * 1000
                first_ts = 0
                for m in EVENT.finditer(data):
                    pos = (int(m.group(1)), int(m.group(2)))
                    if pos <= previous:
                        disorder[i] += 1
                    previous = pos
                    symbol = m.group(3)
                    count_i[symbol] += 1
                    last_i[symbol] = m.group(1) + b"-" + m.group(2)
                    if not first_ts:
                        first_ts = int(m.group(4))
                if sample and first_ts:
                    samples.append(now - first_ts)
                moved[0] = time.monotonic()

        tasks = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(conns)]
        loop = asyncio.get_running_loop()
        final: dict[str, tuple[int, str]] = await loop.run_in_executor(None, final_q.get)
        got_final = time.monotonic()
        target = {s.encode(): (n, o.encode()) for s, (n, o) in final.items()}

        def complete(i: int) -> bool:
            for symbol in wanted[i]:
                n, newest = target.get(symbol.encode(), (0, b""))
                if conflate_ms is None and counts[i][symbol.encode()] < n:
                    return False
                if conflate_ms is not None and n and lasts[i].get(symbol.encode()) != newest:
                    return False
            return True

        while True:
            if all(complete(i) for i in range(count)):
                break
            if time.monotonic() - max(moved[0], got_final) > STALL:
                break
            await asyncio.sleep(0.05)
        drain_end = time.monotonic()
        missing = stale = 0
        for i in range(count):
            for symbol in wanted[i]:
                key = symbol.encode()
                n, newest = target.get(key, (0, b""))
                missing += max(0, n - counts[i][key])
                if n and lasts[i].get(key) != newest:
                    stale += 1
        delivered = sum(sum(c.values()) for c in counts)
        closes = [ws.close_code for ws in conns if ws.close_code is not None]
        done_q.put((delivered, missing, sum(disorder), stale, samples, closes, drain_end))
        await loop.run_in_executor(None, stop.wait)
        for t in tasks:
            t.cancel()
        for ws in conns:
            ws.transport.abort()

    uvloop.run(main())


def publisher(redis_url: str, rate: int, seconds: float, event_type: str, symbols: list[str],
              out: Any) -> None:
    import asyncio

    import uvloop

    from shared.events import Event
    from shared.publisher import AsyncPublisher, PublishSettings

    async def main() -> None:
        tick = 0.005
        per_tick = max(1, round(rate * tick))
        total = 0
        counts: Counter[str] = Counter()
        newest: dict[str, str] = {}
        async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as pub:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                due = min(int(elapsed * rate) - total, per_tick * 4)
                if due > 0:
                    batch = [symbols[(total + i) % len(symbols)] for i in range(due)]
                    offsets = await pub.publish_many([
                        Event(event_type, {"symbol": s, "price": 65000.5 + (total + i) % 100,
                                           "volume": 0.01, "timestamp": "2026-11-26T14:00:00.000Z",
                                           "trade_id": total + i, "side": "buy", "source": "bench"},
                              symbol=s)
                        for i, s in enumerate(batch)
                    ])
                    for s, o in zip(batch, offsets, strict=True):
                        counts[s] += 1
                        newest[s] = o
                    total += due
                await asyncio.sleep(tick / 2)
        out.put((total, {s: (counts[s], newest[s]) for s in newest}))

    uvloop.run(main())


def run(redis_url: str, args: argparse.Namespace, conflate_ms: int | None, index: int) -> Result:
    ctx = mp.get_context("spawn")
    symbols = symbol_names(args.symbols)
    event_type = f"conflate{index}"
    # READER_EPOCH_CHECK: the periodic gap check of gateway/reader.py can race the read loop on a
    # stream that is being published to (it compares a stream's tail fetched before an await
    # with the reader's position after it) and report a false "stream went back" (4009 for
    # every subscriber); it is pushed out of the run so the figures measure conflation.
    gateway = Gateway(redis_url, MAX_CONNECTIONS="20000", SLOW_CLIENT_MAX_BYTES="64MiB",
                      READER_EPOCH_CHECK="3600")
    gateway.start()
    assert gateway.proc is not None
    try:
        url = gateway.url + ("?batch=1" if args.batch else "")
        ready, stop, done_q, pub_q = ctx.Semaphore(0), ctx.Event(), ctx.Queue(), ctx.Queue()
        share = [args.clients // args.procs + (1 if i < args.clients % args.procs else 0)
                 for i in range(args.procs)]
        firsts = [sum(share[:i]) for i in range(len(share))]
        final_qs = [ctx.Queue() for _ in share]
        workers = [ctx.Process(target=client_worker,
                               args=(url, f, n, event_type, symbols, args.watch, conflate_ms, ready,
                                     q, done_q, stop))
                   for f, n, q in zip(firsts, share, final_qs, strict=True) if n]
        for w in workers:
            w.start()
        for _ in workers:
            if not ready.acquire(timeout=300):
                raise RuntimeError("clients did not connect")
        http = f"http://127.0.0.1:{gateway.port}"
        before = metrics(http)
        watch = LagWatch(http)
        watch.start()
        cpu0, t0 = cpu_seconds(gateway.proc.pid), time.monotonic()
        pub = ctx.Process(target=publisher,
                          args=(redis_url, args.rate, args.seconds, event_type, symbols, pub_q))
        pub.start()
        published, final = pub_q.get(timeout=args.seconds + 120)
        pub.join()
        publish_done = time.monotonic()
        for q in final_qs[:len(workers)]:
            q.put(final)
        reports = [done_q.get(timeout=600) for _ in workers]
        cpu = cpu_seconds(gateway.proc.pid) - cpu0
        watch.done.set()
        after = metrics(http)
        stop.set()
        for w in workers:
            w.join(60)
    finally:
        gateway.stop()
    delivered = sum(r[0] for r in reports)
    samples = [s for r in reports for s in r[4]]
    closes = [c for r in reports for c in r[5]]
    drain = max(r[6] for r in reports) - publish_done
    return Result("conflated" if conflate_ms else "unconflated", args.clients, args.rate, args.watch,
                  conflate_ms, published, min(publish_done - t0, args.seconds), delivered, cpu,
                  sum(r[1] for r in reports), sum(r[2] for r in reports), sum(r[3] for r in reports),
                  max(0.0, drain), percentile(samples, 50),
                  percentile(samples, 99), dict(sorted(Counter(closes).items())),
                  *histogram_quantiles(before, after, (0.5, 0.99)), watch.most,
                  frames_sent(after) - frames_sent(before))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=5000, help="published events per second")
    parser.add_argument("--symbols", type=int, default=50, help="symbols the events rotate over")
    parser.add_argument("--watch", type=int, default=1,
                        help="symbols each client subscribes to (0: all, no filter)")
    parser.add_argument("--conflate-ms", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=12.0, help="publishing time per run")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--no-batch", dest="batch", action="store_false",
                        help="clients without ?batch=1 (one message per frame)")
    parser.add_argument("--mode", choices=("both", "conflated", "unconflated"), default="both")
    args = parser.parse_args()
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    redis = private_redis()
    try:
        modes = {"both": [None, args.conflate_ms], "conflated": [args.conflate_ms],
                 "unconflated": [None]}[args.mode]
        for index, conflate_ms in enumerate(modes):
            print(run(redis.url, args, conflate_ms, index).line(), flush=True)
    finally:
        redis.cleanup()


if __name__ == "__main__":
    main()
