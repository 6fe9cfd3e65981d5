"""Redis topologies: publish throughput, fan-out and failover recovery, one server vs a Redis Cluster.

    .venv/bin/python -m bench.cluster                          # all three parts (about 2 min)
    .venv/bin/python -m bench.cluster --only publish --seconds 1
    .venv/bin/python -m bench.cluster --only fanout --fanout-seconds 5 --clients 50
    .venv/bin/python -m bench.cluster --only failover
    .venv/bin/python -m bench.cluster --epoch-check 3600         # gateways' READER_EPOCH_CHECK

Everything runs on this machine over loopback, started by this command and stopped at the end
(only the processes it started are ever signalled, by their PIDs):

1. **publish**: an ``AsyncPublisher`` in this process, on one redis-server, the same server with
   one replica (``--replicaof``), and a 3-primary Redis Cluster with one replica per primary,
   with ``PUBLISH_MIN_REPLICAS`` 0 and 1 (1 needs a replica). Events go to ``--types`` event
   types, so every primary of the cluster gets some. Three modes, each for ``--seconds`` per
   level, in ``--rounds`` interleaved rounds (the levels compared share the machine's state):
   *batched* (``--tasks`` concurrent tasks, each publishing ``--batch`` events of one type per
   ``publish_many``, the type rotating), *one-by-one* (the same tasks, one event per call) and
   *sequential* (one task, one event per call: its latency p50/p99 is what a publish costs
   end to end, and the difference between 0 and 1 is what ``WAIT`` costs).
2. **fanout**: one ``tickstream gateway`` process, ``--clients`` WebSocket clients (``?batch=1``,
   in ``--procs`` processes) each subscribed to every type, a publisher process at ``--rate``
   events/s spread over the types for ``--fanout-seconds``; the single server (its replica still
   attached) vs the cluster. Reported:
   deliveries/s, missing and duplicate events (both must be 0), latency p50/p99 (Redis time of
   the event to the client's clock, first event of each frame) and gateway CPU per delivery.
3. **failover**: a cluster with ``--failover-replicas`` replicas per primary, a gateway, and
   ``--failover-clients`` clients (one process) recording the arrival time of every event; a
   publisher process (``PUBLISH_MIN_REPLICAS=1``, one task per type, one event per call at a
   steady rate) on ``--victim-types`` types owned by one primary plus one *control* type on
   another primary. After ``--kill-after`` seconds that primary is SIGKILLed. Reported: time to
   promotion (the slot map of a surviving primary names a new owner; and ``wait_promoted``,
   which also waits for a healthy cluster), time from the kill to the first acknowledged publish
   written after it, time from the kill and from the promotion to the clients receiving again
   (the first event written after the kill), the longest silence of the control type, events
   acknowledged but never delivered (must be 0), duplicates, and close codes (4009 = resync).
   With one replica per primary the promoted replica has none left, so ``WAIT 1`` cannot be
   satisfied until the killed node is restarted (the bench then restarts it after promotion).

All processes share the machine's cores: figures are what each part does while competing with
the others. The load average is printed at the start of each part. ``--epoch-check 3600`` sets
the gateways' ``READER_EPOCH_CHECK`` (their periodic stream check then never runs during a part);
``--topology single|cluster`` limits parts 1 and 2 to one topology.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing as mp
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import orjson
import redis
from redis.crc import key_slot

from bench.support import Gateway, cpu_seconds, percentile
from shared.events import Event
from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from shared.settings import Secret
from tests.support.redis_server import RedisServer
from tests.support.redis_topology import RedisClusterServers

KEYS = Keys()
TS = re.compile(rb'"ts":(\d+)')
TYPE_OFFSET = re.compile(rb'"event_type":"([a-z0-9_]+)","offset":"([0-9-]+)"')
T = TypeVar("T")


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def data(n: int) -> dict[str, Any]:
    return {"symbol": "BTCUSDT", "price": 65000.5 + n % 100, "volume": 0.01,
            "timestamp": "2026-11-26T14:00:00.000Z", "trade_id": n, "side": "buy", "source": "bench"}


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def offset_ms(offset: str) -> int:
    return int(offset.split("-", 1)[0])


# ---------------------------------------------------------------- processes this bench starts


class LoggedGateway(Gateway):
    """A ``tickstream gateway`` process whose log (stderr) goes to a file, not to the terminal."""

    def __init__(self, redis_url: str, **env: str) -> None:
        super().__init__(redis_url, **env)
        handle, name = tempfile.mkstemp(prefix="tickstream-bench-gateway-", suffix=".log")
        os.close(handle)
        self.log_path = Path(name)

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tickstream.cli", "gateway"],
                                         env=self.env, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start: {self.log()[-2000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def warnings(self) -> list[str]:
        return [line for line in self.log().splitlines() if " WARNING " in line or " ERROR " in line]

    def cleanup(self) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)


@dataclass
class Target:
    """A Redis topology under test: its URL and the primaries (for their CPU time)."""

    name: str
    url: str
    primaries: list[RedisServer]

    def redis_cpu(self) -> float:
        return sum(cpu_seconds(s.proc.pid) for s in self.primaries if s.proc is not None)


def start_single() -> RedisServer:
    server = RedisServer(extra=["--maxclients", "20000", "--repl-diskless-sync-delay", "0"])
    server.start()
    return server


def start_replica(primary: RedisServer, timeout: float = 30.0) -> RedisServer:
    replica = RedisServer(extra=["--replicaof", "127.0.0.1", str(primary.port)])
    replica.start()
    client = redis.Redis(port=replica.port, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while client.info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise RuntimeError("the replica did not connect to its primary")
            time.sleep(0.05)  # polling a condition
    finally:
        client.close()
    return replica


def flush(target: Target) -> None:
    for server in target.primaries:
        client = redis.Redis(port=server.port)
        client.flushall()
        client.close()


def end_children(children: Sequence[Any]) -> None:
    """Terminate those of our own client and publisher processes still running (after an error)."""
    for child in children:
        if child.pid is not None and child.is_alive():
            child.terminate()
            child.join(10)


def start_cluster(replicas: int) -> RedisClusterServers:
    cluster = RedisClusterServers(3, replicas)
    try:
        cluster.start()
    except BaseException:
        cluster.cleanup()
        raise
    return cluster


# ---------------------------------------------------------------- 1. publish throughput


@dataclass
class PublishRow:
    target: str
    min_replicas: int
    batched: float  # events/s
    per_node: list[float]  # batched events/s per primary
    redis_cpu: float  # batched: CPU of all primaries together, fraction of one core
    client_cpu: float  # batched: CPU of this process, fraction of one core
    one_by_one: float  # events/s, ``tasks`` tasks
    sequential: float  # events/s, one task
    p50: float  # ms, sequential
    p99: float
    load: str
    types_per_node: list[int] = field(default_factory=list)

    def line(self) -> str:
        nodes = "/".join(f"{r / 1000:.1f}k" for r in self.per_node)
        owned = "/".join(map(str, self.types_per_node))
        return (f"  {self.target:<15} MIN_REPLICAS={self.min_replicas}: batched {self.batched:>8,.0f}/s "
                f"(per primary {nodes}, holding {owned} types; redis CPU {self.redis_cpu:.0%}, publisher CPU "
                f"{self.client_cpu:.0%})  one-by-one {self.one_by_one:>6,.0f}/s  sequential "
                f"{self.sequential:>5,.0f}/s p50 {self.p50:.2f} ms p99 {self.p99:.2f} ms  [{self.load}]")


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Tally:
    """What one mode at one PUBLISH_MIN_REPLICAS level did, summed over the rounds."""

    wall: float = 0.0
    counts: Counter[str] = field(default_factory=Counter)
    redis_cpu: float = 0.0
    client_cpu: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def rate(self) -> float:
        return sum(self.counts.values()) / self.wall if self.wall else float("nan")


async def publish_modes(target: Target, levels: Sequence[int], types: list[str], seconds: float, tasks: int,
                        batch: int, rounds: int) -> list[PublishRow]:
    """Each mode for ``seconds`` per level, in ``rounds`` interleaved rounds (0, 1, 0, 1, ...), so
    that the levels compared share whatever else the machine is doing at the time."""
    load_now = load()
    batches = {t: [Event(t, data(i), symbol="BTCUSDT") for i in range(batch)] for t in types}
    singles = {t: [Event(t, data(0), symbol="BTCUSDT")] for t in types}
    pubs = {level: AsyncPublisher.from_url(target.url, PublishSettings(
        redis_url=Secret(target.url), publish_min_replicas=level)) for level in levels}
    modes = {"batched": (batches, tasks), "one-by-one": (singles, tasks), "sequential": (singles, 1)}
    tallies = {(mode, level): Tally() for mode in modes for level in levels}
    try:
        for pub in pubs.values():
            for t in types:  # warm-up: streams created, types registered, script loaded on every node
                await pub.publish_many(singles[t])
        any_pub = next(iter(pubs.values()))
        node_of = {t: await any_pub.topology.node_of(KEYS.stream(t)) for t in types}

        async def worker(pub: AsyncPublisher, index: int, step: int, events: dict[str, list[Event]],
                         deadline: float, tally: Tally) -> None:
            turn = index
            while time.perf_counter() < deadline:
                event_type = types[turn % len(types)]
                turn += step
                t0 = time.perf_counter()
                await pub.publish_many(events[event_type])
                tally.latencies.append((time.perf_counter() - t0) * 1000)
                tally.counts[event_type] += len(events[event_type])

        for _ in range(rounds):
            for mode, (events, workers) in modes.items():
                for level in levels:
                    tally = tallies[mode, level]
                    redis0, cpu0, t0 = target.redis_cpu(), process_cpu(), time.perf_counter()
                    deadline = t0 + seconds / rounds
                    await asyncio.gather(*(worker(pubs[level], i, workers, events, deadline, tally)
                                           for i in range(workers)))
                    tally.wall += time.perf_counter() - t0
                    tally.redis_cpu += target.redis_cpu() - redis0
                    tally.client_cpu += process_cpu() - cpu0
    finally:
        for pub in pubs.values():
            await pub.aclose()
    rows = []
    for level in levels:
        b, o, q = (tallies[mode, level] for mode in modes)
        per_node: Counter[str] = Counter()
        for t, n in b.counts.items():
            per_node[node_of[t]] += n
        rows.append(PublishRow(target.name, level, b.rate(), [per_node[n] / b.wall for n in sorted(per_node)],
                               b.redis_cpu / b.wall, b.client_cpu / b.wall, o.rate(), q.rate(),
                               percentile(q.latencies, 50), percentile(q.latencies, 99), load_now,
                               [list(node_of.values()).count(n) for n in sorted(per_node)]))
    return rows


# ---------------------------------------------------------------- 2. fan-out


async def open_subscribed(url: str, types: Sequence[str]) -> Any:
    """A connected client subscribed to every one of ``types`` (the replies read)."""
    from websockets.asyncio.client import connect

    ws = await connect(url, max_size=None, max_queue=None, ping_interval=None)
    await ws.recv()  # welcome
    for t in types:
        await ws.send(orjson.dumps({"op": "subscribe", "event_type": t}).decode())
    replies = 0
    while replies < len(types):
        frame = await ws.recv()
        data = frame if isinstance(frame, bytes) else frame.encode()
        if b'"type":"error"' in data:
            raise RuntimeError(f"subscribe refused: {data[:300]!r}")
        replies += data.count(b'"type":"subscribed"')
    return ws


def fanout_clients(url: str, count: int, types: list[str], ready: Any, stop: Any, out: Any,
                   progress: Any) -> None:
    """``count`` connections subscribed to every type; count events, sample latency, until told."""

    async def main() -> None:
        conns = [await open_subscribed(url, types) for _ in range(count)]
        ready.release()
        received = [0] * count
        seen: list[set[bytes]] = [set() for _ in range(count)]
        samples: list[float] = []

        async def read(i: int, ws: Any) -> None:
            async for frame in ws:
                chunk = frame if isinstance(frame, bytes) else frame.encode()
                now = time.time() * 1000
                n = chunk.count(b'"offset"')
                received[i] += n
                progress.value += n
                if i < 4:  # exact duplicate accounting on a few connections
                    seen[i].update(m.group(1) + b" " + m.group(2) for m in TYPE_OFFSET.finditer(chunk))
                m = TS.search(chunk)
                if m:
                    samples.append(now - int(m.group(1)))

        tasks = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(conns)]
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing.Event cannot be awaited
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        closes = [ws.close_code for ws in conns if ws.close_code is not None]
        dups = sum(received[i] - len(seen[i]) for i in range(min(4, count)))
        out.put((received, dups, samples, closes))
        for ws in conns:
            ws.transport.abort()

    run_loop(main())


def fanout_publisher(redis_url: str, rate: int, seconds: float, types: list[str], out: Any) -> None:
    """``rate`` events/s for ``seconds``, event n of type n % len(types), in 5 ms ticks."""

    async def main() -> None:
        tick = 0.005
        total = 0
        settings = PublishSettings(redis_url=Secret(redis_url))
        async with AsyncPublisher.from_url(redis_url, settings) as pub:
            start = time.monotonic()
            while (elapsed := time.monotonic() - start) < seconds:
                due = min(int(elapsed * rate) - total, max(1, round(rate * tick)) * 4)
                if due > 0:
                    await pub.publish_many([Event(types[n % len(types)], data(n), symbol="BTCUSDT")
                                            for n in range(total, total + due)])
                    total += due
                await asyncio.sleep(tick / 2)
        out.put(total)

    run_loop(main())


@dataclass
class FanoutRow:
    target: str
    clients: int
    rate: int
    published: int
    delivered: int
    missing: int
    duplicates: int
    seconds: float
    drain: float
    p50: float
    p99: float
    gateway_cpu: float
    closes: dict[int, int]
    warnings: list[str]
    load: str

    def line(self) -> str:
        per = self.gateway_cpu / max(1, self.delivered) * 1e6
        return (f"  {self.target:<15} {self.clients} clients x {self.rate}/s (published "
                f"{self.published / self.seconds:,.0f}/s): delivered "
                f"{self.delivered / self.seconds:>9,.0f}/s  missing {self.missing}  dup {self.duplicates}  "
                f"drain {self.drain:.1f} s  latency p50 {self.p50:.1f} ms p99 {self.p99:.1f} ms  "
                f"gateway CPU {per:.2f} us/delivery ({self.gateway_cpu / (self.seconds + self.drain):.0%} "
                f"of a core)  closed {sum(self.closes.values())} {self.closes or ''}  "
                f"gateway warnings {len(self.warnings)}  [{self.load}]"
                + "".join(f"\n    {w[:240]}" for w in self.warnings[:6]))


def run_fanout(target: Target, clients: int, rate: int, seconds: float, types: list[str],
               procs: int, gateway_env: dict[str, str]) -> FanoutRow:
    load_now = load()
    gateway = LoggedGateway(target.url, MAX_CONNECTIONS="20000", SLOW_CLIENT_MAX_BYTES="64MiB",
                            CLIENT_RATE_LIMIT="1000", **gateway_env)
    ctx = mp.get_context("spawn")
    children: list[Any] = []
    try:
        gateway.start()
        assert gateway.proc is not None
        url = gateway.url + "?batch=1"
        ready, stop, out, pub_out = ctx.Semaphore(0), ctx.Event(), ctx.Queue(), ctx.Queue()
        share = [n for n in (clients // procs + (1 if i < clients % procs else 0) for i in range(procs)) if n]
        counters = [ctx.Value("q", 0, lock=False) for _ in share]
        workers = [ctx.Process(target=fanout_clients, args=(url, n, types, ready, stop, out, c))
                   for n, c in zip(share, counters, strict=True)]
        children += workers
        for w in workers:
            w.start()
        for _ in workers:
            if not ready.acquire(timeout=120):
                raise RuntimeError("clients did not connect")
        cpu0, t0 = cpu_seconds(gateway.proc.pid), time.monotonic()
        pub = ctx.Process(target=fanout_publisher, args=(target.url, rate, seconds, types, pub_out))
        children.append(pub)
        pub.start()
        published = pub_out.get(timeout=seconds + 60)
        pub.join()
        done = time.monotonic()
        expected = published * clients
        last, last_change = -1, time.monotonic()
        while time.monotonic() - done < 60:  # drain: all delivered, or 10 s without progress
            total = sum(c.value for c in counters)
            if total >= expected:
                break
            if total != last:
                last, last_change = total, time.monotonic()
            elif time.monotonic() - last_change > 10:
                break
            time.sleep(0.05)
        drain = time.monotonic() - done
        cpu = cpu_seconds(gateway.proc.pid) - cpu0
        elapsed = done - t0
        stop.set()
        received: list[int] = []
        dups, samples, closes = 0, [], []
        for _ in workers:
            r, d, s, c = out.get(timeout=60)
            received += r
            dups += d
            samples += s
            closes += c
        for w in workers:
            w.join(30)
        warnings = gateway.warnings()
    finally:
        end_children(children)
        gateway.cleanup()
    missing = sum(max(0, published - r) for r in received)
    dups += sum(max(0, r - published) for r in received)
    return FanoutRow(target.name, clients, rate, published, sum(received), missing, dups,
                     min(elapsed, seconds), drain, percentile(samples, 50), percentile(samples, 99), cpu,
                     dict(sorted(Counter(closes).items())), warnings, load_now)


# ---------------------------------------------------------------- 3. failover


def failover_clients(url: str, count: int, types: list[str], ready: Any, stop: Any, out: Any,
                     progress: Any) -> None:
    """``count`` connections recording (type, offset, arrival time) of every event."""

    async def main() -> None:
        conns = [await open_subscribed(url, types) for _ in range(count)]
        ready.release()
        arrivals: list[list[tuple[str, str, float]]] = [[] for _ in range(count)]

        async def read(i: int, ws: Any) -> None:
            async for frame in ws:
                now = time.time()
                message = orjson.loads(frame)
                for m in message if isinstance(message, list) else [message]:
                    if "offset" in m and "type" not in m:
                        arrivals[i].append((m["event_type"], m["offset"], now))
                        progress.value += 1

        tasks = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(conns)]
        while not stop.is_set():  # noqa: ASYNC110 - a multiprocessing.Event cannot be awaited
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        out.put((arrivals, [ws.close_code for ws in conns]))
        for ws in conns:
            ws.transport.abort()

    run_loop(main())


def failover_publisher(redis_url: str, rate: float, seconds: float, types: list[str], started: Any,
                       out: Any) -> None:
    """One task per type, one event per call every 1/``rate`` s (no catch-up after a stall),
    ``PUBLISH_MIN_REPLICAS=1``; records (type, sent, acknowledged, offset) or the error."""
    import logging

    from shared.errors import NotReplicated, RedisUnavailable

    logging.getLogger("tickstream").setLevel(logging.ERROR)  # its retry warnings: expected here

    async def main() -> None:
        acked: list[tuple[str, float, float, str]] = []
        errors: list[tuple[str, float, float, str]] = []
        settings = PublishSettings(redis_url=Secret(redis_url), publish_min_replicas=1)
        async with AsyncPublisher.from_url(redis_url, settings) as pub:
            for t in types:  # warm-up, acknowledged like the others (the clients receive it)
                sent = time.time()
                acked.append((t, sent, time.time(), await pub.publish(t, data(0), symbol="BTCUSDT")))
            start = time.monotonic()
            started.release()

            async def one_type(event_type: str) -> None:
                n = 0
                next_at = time.monotonic()
                while (now := time.monotonic()) - start < seconds:
                    if now < next_at:
                        await asyncio.sleep(next_at - now)
                    sent = time.time()
                    try:
                        offset = await pub.publish(event_type, data(n), symbol="BTCUSDT")
                        acked.append((event_type, sent, time.time(), offset))
                    except (NotReplicated, RedisUnavailable) as exc:
                        errors.append((event_type, sent, time.time(), repr(exc)[:200]))
                    n += 1
                    next_at = max(next_at + 1 / rate, time.monotonic() - 1 / rate)

            await asyncio.gather(*(one_type(t) for t in types))
        out.put((acked, errors))

    run_loop(main())


class Poller:
    """Calls ``probe`` every 10 ms in a thread; records (wall time, value) whenever the value changes."""

    def __init__(self, probe: Callable[[], object]) -> None:
        self.probe = probe
        self.changes: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.probe()
            if not self.changes or self.changes[-1][1] != value:
                self.changes.append((time.time(), value))
            self._stop.wait(0.01)

    def first(self, after: float, condition: Callable[[object], bool]) -> float | None:
        """When the value first met ``condition`` at or after ``after`` (the value then current counts)."""
        current = [c for c in self.changes if c[0] <= after][-1:]
        for at, value in current + [c for c in self.changes if c[0] > after]:
            if condition(value):
                return max(at, after)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def slot_owner(client: redis.Redis, slot: int) -> int | None:
    """The port of the primary serving ``slot`` according to ``client``'s node (None: no answer)."""
    try:
        slots: Any = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
    except redis.RedisError:
        return None
    return next((int(e[2][1]) for e in slots if int(e[0]) <= slot <= int(e[1])), None)


def readiness(client: httpx.Client, url: str) -> int:
    """The gateway's /readyz status (0: no answer)."""
    try:
        return client.get(url, timeout=1.0).status_code
    except httpx.HTTPError:
        return 0


@dataclass
class FailoverResult:
    replicas: int
    clients: int
    rate: float
    victim_types: list[str]
    control: str
    promoted_slots: float  # s from the kill to a new owner in the slot map
    promoted_healthy: float  # s from the kill to wait_promoted returning
    first_ack: float  # s from the kill to the first acknowledged publish written after the kill
    receive_again: list[float]  # per client: s from the kill to the first event written after it
    first_event_lag: list[float]  # per client: that event's Redis time to its arrival, s
    control_gap: list[float]  # per client: longest silence of the control type, s
    longest_publish: float  # s, the longest publish call (victim types)
    acked: int
    publish_errors: int
    lost_pairs: int  # (client, acknowledged event) pairs never delivered
    lost_events: int  # acknowledged events some client never got
    duplicates: int
    closes: dict[int, int]
    gateway_warnings: list[str] = field(default_factory=list)
    rejoined: float | None = None  # replicas == 1: s from the kill to the killed node back as a replica
    load: str = ""
    ready_down: float | None = None  # s from the kill to the gateway's /readyz failing
    ready_up: float | None = None  # s from the kill to /readyz answering 200 again


def _summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    ordered = sorted(values)
    return f"median {percentile(ordered, 50):.2f} s, max {ordered[-1]:.2f} s"


def run_failover(replicas: int, clients: int, rate: float, victim_count: int, kill_after: float,
                 after_kill: float, gateway_env: dict[str, str]) -> FailoverResult:
    load_now = load()
    cluster = start_cluster(replicas)
    ctx = mp.get_context("spawn")
    gateway: LoggedGateway | None = None
    pollers: list[Poller] = []
    children: list[Any] = []
    http = httpx.Client()
    survivor_client: redis.Redis | None = None
    try:
        victim = cluster.primaries()[0]
        owner: dict[str, int] = {}
        mine: list[str] = []
        others: list[str] = []
        for i in range(500):
            t = f"fo{i:03d}"
            owner[t] = cluster.primary_for_key(KEYS.stream(t)).port
            mine = [t for t, p in owner.items() if p == victim.port]
            others = [t for t, p in owner.items() if p != victim.port]
            if len(mine) >= victim_count and others:
                break
        victim_types, control = mine[:victim_count], others[0]
        types = [*victim_types, control]
        gateway = LoggedGateway(cluster.url, CLIENT_RATE_LIMIT="1000", **gateway_env)
        gateway.start()
        assert gateway.proc is not None
        ready, stop, out, started, pub_out = (ctx.Semaphore(0), ctx.Event(), ctx.Queue(), ctx.Semaphore(0),
                                              ctx.Queue())
        progress = ctx.Value("q", 0, lock=False)
        worker = ctx.Process(target=failover_clients,
                             args=(gateway.url + "?batch=1", clients, types, ready, stop, out, progress))
        children.append(worker)
        worker.start()
        if not ready.acquire(timeout=60):
            raise RuntimeError("clients did not connect")
        seconds = kill_after + after_kill
        pub = ctx.Process(target=failover_publisher,
                          args=(cluster.url, rate, seconds, types, started, pub_out))
        children.append(pub)
        pub.start()
        if not started.acquire(timeout=60):
            raise RuntimeError("the publisher did not start")
        time.sleep(kill_after)  # steady state before the kill
        survivor = next(s for s in cluster.primaries() if s is not victim)
        slot = key_slot(KEYS.stream(victim_types[0]).encode())
        survivor_client = redis.Redis(port=survivor.port, socket_timeout=1.0)
        client = survivor_client
        owner_poll = Poller(lambda: slot_owner(client, slot))
        ready_url = gateway.url.replace("ws://", "http://").replace("/ws", "/readyz")
        ready_poll = Poller(lambda: readiness(http, ready_url))
        pollers = [owner_poll, ready_poll]
        for poller in pollers:
            poller.start()
        cluster.kill_primary(victim)
        killed = time.time()
        cluster.wait_promoted(victim, timeout=30)
        promoted = time.time()
        rejoined = None
        if replicas == 1:  # WAIT 1 needs a replica again: the killed node rejoins as one
            cluster.restart(victim)
            rejoined = time.time() - killed
        acked, errors = pub_out.get(timeout=seconds + 60)
        pub.join(30)
        expected = (len(acked) + len(errors)) * clients
        last, last_change = -1, time.monotonic()
        while progress.value < expected and time.monotonic() - last_change < 5:
            if progress.value != last:
                last, last_change = progress.value, time.monotonic()
            time.sleep(0.05)
        stop.set()
        arrivals, codes = out.get(timeout=60)
        worker.join(30)
        warnings = gateway.warnings()
    finally:
        end_children(children)
        for poller in pollers:
            poller.stop()
        http.close()
        if survivor_client is not None:
            survivor_client.close()
        if gateway is not None:
            gateway.cleanup()
        cluster.cleanup()
    kill_ms = killed * 1000
    victims = set(victim_types)
    after = [a for a in acked if a[0] in victims and offset_ms(a[3]) > kill_ms]
    first_ack = min((a[2] for a in after), default=float("nan")) - killed
    acked_keys = {(a[0], a[3]) for a in acked}
    receive_again, first_lag, control_gap = [], [], []
    lost_pairs, duplicates = 0, 0
    lost: set[tuple[str, str]] = set()
    for conn in arrivals:
        got = {(t, o) for t, o, _ in conn}
        duplicates += len(conn) - len(got)
        missing = acked_keys - got
        lost_pairs += len(missing)
        lost |= missing
        # Per victim type, the first event written after the kill: when it arrived, and how long
        # after Redis accepted it. The client receives again once every type does.
        firsts: dict[str, tuple[str, float]] = {}
        for t, o, at in conn:
            if t in victims and offset_ms(o) > kill_ms and (t not in firsts or at < firsts[t][1]):
                firsts[t] = (o, at)
        if len(firsts) == len(victims):
            receive_again.append(max(at for _, at in firsts.values()) - killed)
            first_lag.append(max(at - offset_ms(o) / 1000 for o, at in firsts.values()))
        times = [at for t, _, at in conn if t == control]
        control_gap.append(max((b - a for a, b in itertools.pairwise(times)), default=0.0))
    longest = max((a[2] - a[1] for a in acked if a[0] in victims), default=0.0)
    moved_at = owner_poll.first(killed, lambda port: port not in (None, victim.port))
    moved = (moved_at or promoted) - killed
    down_at = ready_poll.first(killed, lambda status: status != 200)
    up_at = ready_poll.first(down_at, lambda status: status == 200) if down_at is not None else None
    ready_down = None if down_at is None else down_at - killed
    ready_up = None if up_at is None else up_at - killed
    return FailoverResult(replicas, clients, rate, victim_types, control, moved, promoted - killed, first_ack,
                          receive_again, first_lag, control_gap, longest, len(acked), len(errors),
                          lost_pairs, len(lost), duplicates,
                          dict(sorted(Counter(c for c in codes if c is not None).items())), warnings,
                          rejoined, load_now, ready_down, ready_up)


def failover_lines(r: FailoverResult) -> list[str]:
    promoted = r.promoted_slots
    again_after_promotion = [x - promoted for x in r.receive_again]
    lines = [
        f"  cluster 3 primaries x {r.replicas} replicas, {r.clients} clients, "
        f"{len(r.victim_types)} type(s) on the killed primary + 1 control type, {r.rate:g} publishes/s per "
        f"type, PUBLISH_MIN_REPLICAS=1  [{r.load}]",
        f"  SIGKILL -> new owner in the slot map          {r.promoted_slots:6.2f} s",
        f"  SIGKILL -> wait_promoted (healthy cluster)    {r.promoted_healthy:6.2f} s",
        f"  SIGKILL -> first ack of an event written after {r.first_ack:6.2f} s "
        f"(longest publish call {r.longest_publish:.2f} s)",
        f"  SIGKILL -> clients receive again (all types) {_summary(r.receive_again)}",
        f"  promotion -> clients receive again           {_summary(again_after_promotion)}",
        f"  first event per type after: Redis -> client  {_summary(r.first_event_lag)} (worst type)",
        "  gateway /readyz: " + ("stayed 200 throughout" if r.ready_down is None else
                                 f"failing {r.ready_down:.2f} s after SIGKILL, 200 again after "
                                 + ("never" if r.ready_up is None else
                                    f"{r.ready_up:.2f} s ({r.ready_up - promoted:+.2f} s after promotion)")),
        f"  control type (other primary), longest silence {_summary(r.control_gap)}",
        f"  acknowledged {r.acked}, publish errors {r.publish_errors}, acknowledged never delivered "
        f"{r.lost_events} events ({r.lost_pairs} client-event pairs), duplicates {r.duplicates}, "
        f"close codes {r.closes or 'none'}",
    ]
    if r.rejoined is not None:
        lines.append(f"  SIGKILL -> killed node back as a replica      {r.rejoined:6.2f} s")
    lines.append(f"  gateway log: {len(r.gateway_warnings)} warnings/errors")
    gaps = [w for w in r.gateway_warnings if "gap in" in w]  # the 4009s first
    lines += [f"    {w[:300]}" for w in (gaps + [w for w in r.gateway_warnings if w not in gaps])[:8]]
    return lines


# ---------------------------------------------------------------- main


def timed_part(name: str, fn: Callable[[], T]) -> T:
    print(f"-- {name} ({load()})", flush=True)
    t0 = time.monotonic()
    result = fn()
    print(f"   {name} took {time.monotonic() - t0:.0f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=["publish", "fanout", "failover"],
                        help="run only this part (repeatable)")
    parser.add_argument("--types", type=int, default=30, help="event types (publish and fan-out)")
    parser.add_argument("--seconds", type=float, default=2.5, help="seconds per publish mode")
    parser.add_argument("--tasks", type=int, default=4, help="concurrent publisher tasks")
    parser.add_argument("--batch", type=int, default=100, help="events per publish_many")
    parser.add_argument("--rounds", type=int, default=5,
                        help="publish: interleaved rounds over which --seconds is split")
    parser.add_argument("--clients", type=int, default=200, help="fan-out clients")
    parser.add_argument("--rate", type=int, default=2000, help="fan-out events/s, all types together")
    parser.add_argument("--fanout-seconds", type=float, default=10.0)
    parser.add_argument("--procs", type=int, default=2, help="fan-out client processes")
    parser.add_argument("--failover-replicas", type=int, default=2, help="replicas per primary")
    parser.add_argument("--failover-clients", type=int, default=20)
    parser.add_argument("--failover-rate", type=float, default=50.0, help="publishes/s per type")
    parser.add_argument("--victim-types", type=int, default=3, help="types on the killed primary")
    parser.add_argument("--kill-after", type=float, default=3.0,
                        help="seconds of steady state before the kill")
    parser.add_argument("--after-kill", type=float, default=9.0,
                        help="seconds of publishing after the kill")
    parser.add_argument("--epoch-check", type=float,
                        help="READER_EPOCH_CHECK of the gateways, seconds (default: the gateway's)")
    parser.add_argument("--topology", action="append", choices=["single", "cluster"],
                        help="publish and fan-out on this topology only (repeatable)")
    args = parser.parse_args()
    parts = set(args.only or ["publish", "fanout", "failover"])
    topologies = set(args.topology or ["single", "cluster"])
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    types = [f"bench{i:02d}" for i in range(args.types)]
    victim_types = args.victim_types
    gateway_env = {} if args.epoch_check is None else {"READER_EPOCH_CHECK": str(args.epoch_check)}
    started = time.monotonic()
    publish_rows: list[PublishRow] = []
    fanout_rows: list[FanoutRow] = []
    failover: FailoverResult | None = None
    print(f"bench.cluster: {os.cpu_count()} cores, python {sys.version.split()[0]}, {load()}", flush=True)

    def publish(target: Target, levels: Sequence[int]) -> None:
        rows = run_loop(publish_modes(target, levels, types, args.seconds, args.tasks, args.batch,
                                      args.rounds))
        for row in rows:
            print(row.line(), flush=True)
        publish_rows.extend(rows)
        flush(target)

    def fanout(target: Target) -> None:
        flush(target)
        row = run_fanout(target, args.clients, args.rate, args.fanout_seconds, types, args.procs,
                         gateway_env)
        print(row.line(), flush=True)
        fanout_rows.append(row)

    if parts & {"publish", "fanout"}:
        def single() -> None:
            primary = start_single()
            replica = None
            try:
                if "publish" in parts:
                    publish(Target("single", primary.url, [primary]), [0])
                replica = start_replica(primary)
                target = Target("single+replica", primary.url, [primary])
                if "publish" in parts:
                    publish(target, [0, 1])
                if "fanout" in parts:
                    fanout(target)
            finally:
                if replica is not None:
                    replica.cleanup()
                primary.cleanup()

        def cluster() -> None:
            servers = start_cluster(1)
            try:
                target = Target("cluster 3x1", servers.url, servers.primaries())
                if "publish" in parts:
                    publish(target, [0, 1])
                if "fanout" in parts:
                    fanout(target)
            finally:
                servers.cleanup()

        if "single" in topologies:
            timed_part("one redis-server", single)
        if "cluster" in topologies:
            timed_part("Redis Cluster, 3 primaries x 1 replica", cluster)
    if "failover" in parts:
        failover = timed_part("failover", lambda: run_failover(
            args.failover_replicas, args.failover_clients, args.failover_rate, victim_types,
            args.kill_after, args.after_kill, gateway_env))

    print(f"\n== bench.cluster summary ({time.monotonic() - started:.0f} s, {os.cpu_count()} cores, "
          f"{load()})")
    if publish_rows:
        print(f"publish ({args.tasks} tasks; batched = {args.batch} events of one type per call; "
              f"{args.types} types; sequential = one task, one event per call):")
        print(f"  {'topology':<15} {'MIN_REPL':>8} {'batched/s':>10} {'per primary/s':>22} "
              f"{'one-by-one/s':>12} {'seq/s':>7} {'p50 ms':>7} {'p99 ms':>7}")
        for r in publish_rows:
            nodes = "/".join(f"{x:,.0f}" for x in r.per_node) if len(r.per_node) > 1 else "-"
            print(f"  {r.target:<15} {r.min_replicas:>8} {r.batched:>10,.0f} {nodes:>22} "
                  f"{r.one_by_one:>12,.0f} {r.sequential:>7,.0f} {r.p50:>7.2f} {r.p99:>7.2f}")
        for name in dict.fromkeys(r.target for r in publish_rows):
            by = {r.min_replicas: r for r in publish_rows if r.target == name}
            if 0 in by and 1 in by:
                print(f"  WAIT cost on {name}: sequential p50 +{by[1].p50 - by[0].p50:.2f} ms, "
                      f"p99 +{by[1].p99 - by[0].p99:.2f} ms; batched throughput "
                      f"{by[1].batched / by[0].batched - 1:+.0%}")
    if fanout_rows:
        print(f"fan-out ({args.clients} clients, batch=1, each subscribed to {len(types)} types, "
              f"{args.rate} events/s for {args.fanout_seconds:g} s):")
        print(f"  {'topology':<15} {'published/s':>11} {'delivered/s':>12} {'missing':>8} {'dup':>5} "
              f"{'drain s':>7} {'p50 ms':>7} {'p99 ms':>7} {'us CPU/delivery':>16} {'closes':>7}")
        for f in fanout_rows:
            per = f.gateway_cpu / max(1, f.delivered) * 1e6
            print(f"  {f.target:<15} {f.published / f.seconds:>11,.0f} {f.delivered / f.seconds:>12,.0f} "
                  f"{f.missing:>8} {f.duplicates:>5} "
                  f"{f.drain:>7.1f} {f.p50:>7.1f} {f.p99:>7.1f} {per:>16.2f} {sum(f.closes.values()):>7}")
    if failover is not None:
        print("failover:")
        print("\n".join(failover_lines(failover)))


if __name__ == "__main__":
    main()
