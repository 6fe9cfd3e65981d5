"""Fan-out benchmark: one publisher at a fixed rate, N WebSocket clients in separate processes.

    .venv/bin/python -m bench.fanout                     # the standard scenarios (about 4 min)
    .venv/bin/python -m bench.fanout --clients 100 --rate 1000 --seconds 10 [--batch]
    .venv/bin/python -m bench.fanout --clients-list 100,1000 --rates 100,1000 --out r.jsonl --label x
    .venv/bin/python -m bench.fanout --sweep --out r.jsonl --label x   # 16 runs (about 8 min)
    .venv/bin/python -m bench.fanout --clients 100 --rate 1000 --client websockets
    .venv/bin/python -m bench.fanout --clients 100 --workers 2 --env WRITE_COALESCE_MS=2
    .venv/bin/python -m bench.fanout --clients 100 --server floor   # bench.floor's FloorServer
    .venv/bin/python -m bench.fanout --resume 10000      # catch-up time of a client 10k behind
    .venv/bin/python -m bench.fanout --idle 10000        # memory per idle connection

Everything runs on this machine over loopback: a private redis-server, one ``tickstream gateway``
(``--workers N``: N processes on one port; CPU and RSS are summed over the parent and its
children), client processes (``--procs``, default 2) and a publisher process. The clients are
:mod:`bench.rawclient` connections (``--client raw``, the default: a few microseconds per
frame, so the figures measure the server), ``bench/nodeclient.mjs`` processes (``--client
node``: the same protocol by hand in Node, cheaper per frame; needs ``node`` on PATH, which
``scripts/ensure-node.sh`` installs) or ``websockets`` library clients (``--client
websockets``, the earlier baseline, which saturates near 100k frames/s). Reported per
scenario: events delivered per second, missing and duplicate events (every client must receive
every event exactly once; after publishing stops the run waits until all clients have
everything, or until nothing moved for 15 s, and reports that drain time: a client process too
slow to keep up shows as drain time and latency, a real loss as missing events), publish-to-
receive latency p50/p99/p99.9 (Redis time of the event to the client's clock, sampled on the
first event of each chunk read), the server's CPU time per delivered event, and its RSS (and
RSS growth per connection while the clients connected). ``--out FILE`` appends one JSON
record per scenario (the fields: :func:`record`). The machine has 2 cores shared by all of
these processes: the figures are what one gateway does while its clients and Redis compete
for the same CPU.

``--sweep`` runs clients 100 and 1,000 x rates 100, 400, 1,000, 4,000 events/s x one event per
frame and ``batch=1``, each ``--seconds`` long (``--clients-list`` / ``--rates`` replace either
axis). The standard scenarios include 10,000 connections x 100 events/s one event per frame.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import multiprocessing as mp
import os
import re
import shutil
import subprocess
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson

from bench.support import Gateway, cpu_seconds, percentile, private_redis, rss_bytes
from shared.settings import Secret

TS = re.compile(rb'"ts":(\d+)')
TRACKED = 4  # connections per client process whose every offset is kept (exact dup/missing)
MAX_SAMPLES = 500_000  # latency samples a client process hands back (a uniform stride beyond)
ENV_ITEM = re.compile(r"([A-Z][A-Z0-9_]{0,63})=(.{0,256})")
NODE_CLIENT = Path(__file__).resolve().parent / "nodeclient.mjs"
ClientOutput = tuple[list[int], int, list[float], list[int]]  # received, dups, samples, closes


class Server(Protocol):
    """What a scenario needs of the server under test (``Gateway`` or ``bench.floor``'s)."""

    @property
    def url(self) -> str: ...

    @property
    def proc(self) -> subprocess.Popen[bytes] | None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from each process's parent in ``/proc/<pid>/stat``)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    tree = [pid]
    for parent in tree:  # grows while iterated: breadth first
        tree += children.get(parent, [])
    return tree


def tree_cpu(pids: list[int]) -> dict[int, float]:
    cpu = {}
    for pid in pids:
        try:
            cpu[pid] = cpu_seconds(pid)
        except OSError:  # exited
            pass
    return cpu


def tree_rss(pid: int) -> int:
    total = 0
    for member in process_tree(pid):
        try:
            total += rss_bytes(member)
        except OSError:
            pass
    return total


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
    rss_before: int = 0  # server RSS (bytes, all its processes) before the clients connected
    rss_connected: int = 0  # ... once every client had subscribed
    rss_end: int = 0  # ... when the scenario ended
    meta: dict[str, Any] = field(default_factory=dict)  # server, client, workers, coalesce_ms
    redis: dict[str, float] = field(default_factory=dict)  # see redis_load()

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_connected - self.rss_before) / max(1, self.clients) / 1024

    def line(self) -> str:
        per_event = self.gateway_cpu / max(1, self.delivered) * 1e6
        mode = "batch=1" if self.batch else "batch=0"
        return (f"N={self.clients:>5} rate={self.rate:>6}/s {mode}: delivered "
                f"{self.delivered / self.seconds:>9,.0f}/s  missing {self.lost}  dup {self.duplicates}  "
                f"drain {self.drain:4.1f} s  closed {self.closes} {self.close_codes or ''}  "
                f"latency p50 {self.p50:6.1f} ms p99 {self.p99:7.1f} ms p99.9 {self.p999:7.1f} ms  "
                f"gateway CPU {per_event:5.2f} us/delivery "
                f"({self.gateway_cpu / (self.seconds + self.drain):.0%} of a core)  "
                f"RSS {self.rss_end / 2**20:.0f} MiB ({self.kib_per_connection:.1f} KiB/conn)  "
                f"[{self.meta.get('client', 'raw')} client]"
                + (f"  redis {self.redis['cpu_share']:.0%} of a core, {self.redis['xread_per_s']:,.0f} "
                   f"XREAD/s at {self.redis['xread_us_per_call']:.0f} us" if self.redis else ""))


def _number(value: float) -> float | None:
    return None if value != value else round(value, 3)  # NaN -> null


def record(result: Result, label: str, commit: str) -> dict[str, Any]:
    """The JSON record of one scenario run (one line of ``--out``)."""
    elapsed = result.seconds + result.drain
    return {
        "label": label, "server": result.meta.get("server", "gateway"),
        "client": result.meta.get("client", "raw"), "clients": result.clients,
        "rate": result.rate, "batch": result.batch, "workers": result.meta.get("workers", 1),
        "seconds": round(result.seconds, 3), "published": result.published,
        "delivered": result.delivered,
        "delivered_per_s": round(result.delivered / max(result.seconds, 1e-9), 1),
        "missing": result.lost, "dup": result.duplicates, "drain_s": round(result.drain, 3),
        "p50_ms": _number(result.p50), "p99_ms": _number(result.p99),
        "p999_ms": _number(result.p999),
        "cpu_us_per_delivery": _number(result.gateway_cpu / max(1, result.delivered) * 1e6),
        "cpu_share": _number(result.gateway_cpu / elapsed if elapsed > 0 else float("nan")),
        "rss_mib": round(result.rss_end / 2**20, 1),
        "rss_kib_per_conn": round(result.kib_per_connection, 2),
        "close_codes": {str(code): n for code, n in result.close_codes.items()},
        "coalesce_ms": result.meta.get("coalesce_ms"), "commit": commit,
        **{f"redis_{k}": round(v, 3) for k, v in result.redis.items()},
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def redis_snapshot(url: str) -> tuple[float, dict[str, tuple[int, int]]]:
    """Redis's CPU seconds so far and, per command, (calls, microseconds) from INFO."""
    import redis as redis_sync

    client = redis_sync.Redis.from_url(url)
    try:
        cpu = client.info("cpu")
        stats = client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
             for name, v in stats.items() if isinstance(v, dict)}
    return float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]), calls


def redis_load(before: tuple[float, dict[str, tuple[int, int]]],
               after: tuple[float, dict[str, tuple[int, int]]], elapsed: float,
               delivered: int) -> dict[str, float]:
    """Redis during a run: its CPU (publishing included), and what the gateways' reads cost it."""
    calls = {c: (n - before[1].get(c, (0, 0))[0], us - before[1].get(c, (0, 0))[1])
             for c, (n, us) in after[1].items()}
    xread_calls, xread_us = calls.get("xread", (0, 0))
    return {
        "cpu_share": (after[0] - before[0]) / elapsed,
        "calls_per_s": sum(n for n, _ in calls.values()) / elapsed,
        "xread_per_s": xread_calls / elapsed,
        "xread_us_per_call": xread_us / max(1, xread_calls),
        "read_calls_per_delivery": sum(n for c, (n, _) in calls.items()
                                       if c in ("xread", "xrange", "xrevrange", "xinfo|stream",
                                                "hget", "exists", "scan", "smembers"))
        / max(1, delivered),
    }


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True,
                              cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def client_worker(kind: str, url: str, count: int, event_type: str, ready: Any, stop: Any,
                  out: Any, progress: Any) -> None:
    """Open ``count`` connections, subscribe, count events and sample latency until told.

    Puts ``(received per connection, duplicates among the tracked ones, latency samples,
    close codes)`` on ``out``. ``kind`` is ``raw`` (:mod:`bench.rawclient`) or ``websockets``.
    """
    import uvloop

    uvloop.run(raw_clients(url, count, event_type, ready, stop, out, progress) if kind == "raw"
               else websockets_clients(url, count, event_type, ready, stop, out, progress))


async def raw_clients(url: str, count: int, event_type: str, ready: Any, stop: Any, out: Any,
                      progress: Any) -> None:
    from bench.rawclient import RawClient

    samples: array[float] = array("d")

    async def one(i: int) -> RawClient:
        conn = await RawClient.open(url, track_offsets=i < TRACKED, samples=samples, timeout=120)
        if (await conn.next_message()).get("type") != "welcome":
            raise RuntimeError("no welcome")
        conn.send_json({"op": "subscribe", "event_type": event_type})
        while (reply := await conn.next_message(timeout=120)).get("type") != "subscribed":
            if reply.get("type") != "heartbeat":
                raise RuntimeError(f"subscribe answered {reply}")
        conn.start_counting()
        return conn

    conns: list[RawClient] = []
    for first in range(0, count, 100):  # 100 handshakes at a time: under any listen backlog
        conns += await asyncio.gather(*(one(i) for i in range(first, min(count, first + 100))))
    ready.release()
    while not stop.is_set():  # a multiprocessing.Event cannot be awaited
        progress.value = sum(conn.received for conn in conns)
        await asyncio.sleep(0.05)
    received = [conn.received for conn in conns]
    dups = sum(len(c.offsets) - len(set(c.offsets)) for c in conns if c.offsets is not None)
    closes = [conn.close_code for conn in conns if conn.close_code is not None]
    stride = len(samples) // MAX_SAMPLES + 1
    out.put((received, dups, samples[::stride], closes))
    for conn in conns:
        conn.abort()


async def websockets_clients(url: str, count: int, event_type: str, ready: Any, stop: Any,
                             out: Any, progress: Any) -> None:
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
            if i < TRACKED:  # exact duplicate accounting on a few connections
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
    dups = sum(received[i] - len(offsets_seen[i]) for i in range(min(TRACKED, count)))
    out.put((received, dups, samples, closes))
    for ws in conns:
        ws.transport.abort()


class NodeClients:
    """One ``node bench/nodeclient.mjs`` process of ``count`` connections, seen as a client worker.

    Its stdout lines (``ready``, ``progress`` every 100 ms, the final results after ``stop`` on
    stdin) are read by a thread; :attr:`value` is the events counted so far, like the shared
    counter of a Python worker, and :meth:`finish` returns what a worker puts on its queue.
    """

    def __init__(self, url: str, count: int, event_type: str) -> None:
        node = shutil.which("node")
        if node is None:
            raise SystemExit("--client node: no node on PATH (scripts/ensure-node.sh installs it)")
        self.value = 0
        self.ready = threading.Event()
        self.error = ""
        self.output: dict[str, Any] | None = None
        self.proc = subprocess.Popen(
            [node, str(NODE_CLIENT), "--url", url, "--count", str(count), "--event-type",
             event_type, "--tracked", str(TRACKED)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:  # the process writes synchronously: keep the pipe drained
            message = orjson.loads(line)
            if "progress" in message:
                self.value = int(message["progress"])
            elif message.get("ready"):
                self.ready.set()
            elif "received" in message:
                self.output = message
            elif "error" in message:
                self.error = str(message["error"])[:500]

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"node clients did not connect: {self.error or 'timed out'}")

    def finish(self, timeout: float) -> ClientOutput:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"stop\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout)
        self._reader.join(timeout)
        out = self.output
        if out is None:
            raise RuntimeError(f"node clients exited ({self.proc.returncode}) without results")
        return ([int(n) for n in out["received"]], int(out["dups"]),
                [float(v) for v in out["samples"]], [int(c) for c in out["closes"]])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def publisher(redis_url: str, rate: int, seconds: float, event_type: str, out: Any) -> None:
    import uvloop

    from shared.events import Event
    from shared.publisher import AsyncPublisher, PublishSettings

    async def main() -> None:
        tick = 0.005 if rate >= 200 else 1.0 / rate
        per_tick = max(1, round(rate * tick))
        total = 0
        async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=Secret(redis_url))) as pub:
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


@dataclass
class Run:
    """What every scenario of one invocation shares."""

    redis_url: str
    server: Server
    client: str  # raw | node | websockets
    procs: int
    seconds: float
    meta: dict[str, Any]


def run_scenario(run: Run, clients: int, rate: int, batch: bool, scenario: int) -> Result:
    event_type = f"bench{scenario}"
    url = run.server.url + (("&" if "?" in run.server.url else "?") + "batch=1" if batch else "")
    procs = run.procs
    share = [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]
    assert run.server.proc is not None
    root = run.server.proc.pid
    rss_before = tree_rss(root)
    nodes: list[NodeClients] = []
    try:
        return _measure(run, clients, rate, batch, event_type, url, share, nodes, rss_before)
    finally:
        for node in nodes:
            node.kill()


def _measure(run: Run, clients: int, rate: int, batch: bool, event_type: str, url: str,
             share: list[int], nodes: list[NodeClients], rss_before: int) -> Result:
    """One scenario once its clients' shares are known; ``nodes`` collects the Node processes."""
    ctx = mp.get_context("spawn")
    ready, stop, out, pub_out = ctx.Semaphore(0), ctx.Event(), ctx.Queue(), ctx.Queue()
    assert run.server.proc is not None
    root = run.server.proc.pid
    counters: list[Any]
    workers = []
    if run.client == "node":
        nodes += [NodeClients(url, n, event_type) for n in share if n]
        counters = list(nodes)
        for node in nodes:
            node.wait_ready(300)
    else:
        counters = [ctx.Value("q", 0, lock=False) for n in share if n]
        workers = [ctx.Process(target=client_worker,
                               args=(run.client, url, n, event_type, ready, stop, out, c))
                   for n, c in zip([n for n in share if n], counters, strict=True)]
        for w in workers:
            w.start()
        for _ in workers:
            if not ready.acquire(timeout=300):
                raise RuntimeError("clients did not connect")
    rss_connected = tree_rss(root)
    pids = process_tree(root)
    redis0 = redis_snapshot(run.redis_url)
    cpu0, t0 = tree_cpu(pids), time.monotonic()
    pub = ctx.Process(target=publisher, args=(run.redis_url, rate, run.seconds, event_type, pub_out))
    pub.start()
    published = pub_out.get(timeout=run.seconds + 60)
    pub.join()
    publish_done = time.monotonic()
    # Drain: wait until every client has every event, or nothing moved for 15 s (bounded).
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
    cpu1 = tree_cpu(process_tree(root))
    cpu = sum(value - cpu0.get(pid, 0.0) for pid, value in cpu1.items())
    rss_end = tree_rss(root)
    elapsed = time.monotonic() - t0
    redis1 = redis_snapshot(run.redis_url)
    stop.set()
    received: list[int] = []
    tracked_dups = 0
    samples: list[float] = []
    closes: list[int] = []
    outputs: list[ClientOutput] = ([node.finish(120) for node in nodes] if nodes
                                   else [out.get(timeout=120) for _ in workers])
    for r, d, s, c in outputs:
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
                  min(elapsed, run.seconds), percentile(samples, 50), percentile(samples, 99),
                  percentile(samples, 99.9), cpu, drain, closes.count(4008), len(closes),
                  dict(sorted(Counter(closes).items())), rss_before, rss_connected, rss_end,
                  dict(run.meta, client=run.client),
                  redis_load(redis0, redis1, elapsed, delivered))


async def resume_catch_up(redis_url: str, gateway: Gateway, behind: int) -> str:
    from websockets.asyncio.client import connect

    from shared.events import Event
    from shared.publisher import AsyncPublisher, PublishSettings

    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=Secret(redis_url))) as pub:
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
             (100, 10000, False), (100, 10000, True), (10000, 100, False)]
SWEEP_CLIENTS = [100, 1000]
SWEEP_RATES = [100, 400, 1000, 4000]


def int_list(text: str) -> list[int]:
    if not re.fullmatch(r"[1-9][0-9]{0,6}(,[1-9][0-9]{0,6}){0,31}", text):
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas: {text!r}")
    return [int(part) for part in text.split(",")]


def env_item(text: str) -> tuple[str, str]:
    match = ENV_ITEM.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (KEY in capitals): {text!r}")
    return match.group(1), match.group(2)


def grid(args: argparse.Namespace) -> list[tuple[int, int, bool]]:
    """The scenarios asked for: the sweep grid, a --clients(-list) x --rate(s) grid, or the standard ones."""
    if args.sweep or args.clients or args.clients_list:
        clients = args.clients_list or ([args.clients] if args.clients else SWEEP_CLIENTS)
        rates = args.rates or ([args.rate] if not args.sweep else SWEEP_RATES)
        batches = [False, True] if args.sweep else [args.batch]
        return [(n, r, b) for n in clients for r in rates for b in batches]
    return SCENARIOS


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int)
    parser.add_argument("--clients-list", type=int_list, help="e.g. 100,1000: one run per value")
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--rates", type=int_list, help="e.g. 100,400,1000: one run per value")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", action="store_true")
    parser.add_argument("--sweep", action="store_true",
                        help="clients 100,1000 x rates 100,400,1000,4000 x batch 0 and 1")
    parser.add_argument("--procs", type=int, default=2, help="client processes")
    parser.add_argument("--client", choices=["raw", "node", "websockets"], default="raw")
    parser.add_argument("--server", choices=["gateway", "floor"], default="gateway")
    parser.add_argument("--workers", type=int, default=1, help="gateway processes (WORKERS)")
    parser.add_argument("--env", type=env_item, action="append", default=[], metavar="KEY=VALUE",
                        help="a gateway setting (repeatable), e.g. WRITE_COALESCE_MS=2")
    parser.add_argument("--out", type=Path, help="append one JSON record per scenario to this file")
    parser.add_argument("--label", default="", help="names this run in the --out records")
    parser.add_argument("--resume", type=int, help="measure catch-up of a client this many events behind")
    parser.add_argument("--idle", type=int, help="measure memory of this many idle connections")
    args = parser.parse_args()
    if not 1 <= args.workers <= 64 or not 1 <= args.procs <= 64 or not 0 < args.seconds <= 3600:
        parser.error("--workers and --procs: 1 to 64; --seconds: up to 3600")
    if args.server == "floor" and (args.workers != 1 or args.env or args.resume or args.idle):
        parser.error("--server floor takes no --workers, --env, --resume or --idle")
    return args


def make_server(args: argparse.Namespace, redis_url: str) -> tuple[Server, dict[str, Any]]:
    if args.server == "floor":
        floor = importlib.import_module("bench.floor")  # written separately; needed only here
        server: Server = floor.FloorServer(redis_url)
        return server, {"server": "floor", "workers": 1, "coalesce_ms": None}
    env = {"MAX_CONNECTIONS": "20000", "SLOW_CLIENT_MAX_BYTES": "64MiB", **dict(args.env)}
    if args.workers > 1:
        env["WORKERS"] = str(args.workers)  # the same setting as ``tickstream gateway --workers N``
    coalesce = env.get("WRITE_COALESCE_MS")
    return Gateway(redis_url, **env), {"server": "gateway", "workers": args.workers,
                                       "coalesce_ms": float(coalesce) if coalesce else None}


def main() -> None:
    args = parse_args()
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    redis = private_redis()
    server, meta = make_server(args, redis.url)
    server.start()
    commit = git_commit() if args.out else ""
    try:
        if args.resume and isinstance(server, Gateway):
            print(asyncio.run(resume_catch_up(redis.url, server, args.resume)))
        elif args.idle and isinstance(server, Gateway):
            print(asyncio.run(idle_memory(server, args.idle)))
        else:
            run = Run(redis.url, server, args.client, args.procs, args.seconds, meta)
            for index, (clients, rate, batch) in enumerate(grid(args)):
                result = run_scenario(run, clients, rate, batch, index)
                print(result.line(), flush=True)
                if args.out:
                    with args.out.open("ab") as handle:
                        handle.write(orjson.dumps(record(result, args.label, commit)) + b"\n")
            if not (args.sweep or args.clients or args.clients_list) and isinstance(server, Gateway):
                print(asyncio.run(resume_catch_up(redis.url, server, 10_000)), flush=True)
                print(asyncio.run(idle_memory(server, 10_000)), flush=True)
    finally:
        server.stop()
        redis.cleanup()


if __name__ == "__main__":
    main()
