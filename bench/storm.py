"""Reconnect-storm benchmark: thousands of clients resume on one gateway at the same moment.

    .venv/bin/python -m bench.storm                       # 5,000 clients, 5 types, 1,000 behind
    .venv/bin/python -m bench.storm --clients 1000 --procs 2 --live-rate 0
    .venv/bin/python -m bench.storm --gateway-url ws://127.0.0.1:8080/ws \\
        --redis-url redis://127.0.0.1:6379/0 [--gateway-pid PID]

When a gateway restarts, its clients resume on its peers within seconds, each from its own
offset. This starts (on loopback) a private ``redis-server`` and one ``tickstream gateway``,
publishes ``--history`` events on each of ``--types`` event types, starts a live publisher
(``--live-rate`` events per second per type, 0 for none), and then, at one instant, has
``--clients`` raw WebSocket clients (``websockets``, no de-duplication, spread over ``--procs``
processes) connect and subscribe to every type with ``since`` about ``--behind`` events before
the tail of the stream at that instant (``±--jitter``, different for every client and type) and
the type's epoch.

A client is **live** when it has every event up to the tail that existed when the storm began
and ``recovered: true`` for each subscription. Reported: time from the start of the storm until
every client is live (and the distribution), Redis commands issued during it (``INFO
commandstats`` before and after, so the gateway's, the live publisher's and nothing else),
gateway peak RSS and CPU seconds, the CPU of Redis and the client processes, and per client
duplicates and missing events: every offset after ``since`` must arrive exactly once and in
order, per type, the live ones included (the live publisher hands the offsets it gets to the
client processes, so they know every offset of the stream without asking Redis). After the
storm the live publisher stops and the run waits for every client to have every event.

The run is bounded: ``--seconds`` for everything (setup included); it stops what it started (by
PID) and exits non-zero when a client missed or doubled an event, was not told
``recovered: true``, or was not live in time. The machine this was written for has 2 cores
shared by Redis, the gateway, the client processes and the publisher.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import queue
import random
import re
import resource
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import redis

from bench.support import CLK_TCK, Gateway, cpu_seconds, percentile, private_redis, rss_bytes
from shared.events import Event
from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from shared.settings import Secret

EVENT = re.compile(rb'"event_type":"([a-z0-9_]+)","offset":"([0-9]+-[0-9]+)"')
CONTROL = b'"type":"'  # only control messages carry "type" (the payloads below do not)
POLL = 0.02  # seconds between looks at a worker's control queue
HISTORY_COMMANDS = ("xrange", "xrevrange")
REPORTED_COMMANDS = ("xrange", "xrevrange", "xread", "evalsha", "xinfo|stream", "hget", "eval")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def payload(n: int) -> dict[str, Any]:
    """A trade-like event of about 150 bytes (no key named ``type``: see CONTROL)."""
    return {"symbol": "BTCUSDT", "price": 65000.5 + n % 100, "volume": 0.01,
            "timestamp": "2026-11-26T14:00:00.000Z", "trade_id": n, "side": "buy",
            "source": "bench"}


# --- client processes ----------------------------------------------------------------------


@dataclass
class Plan:
    """What one client process needs: where to connect and every offset published so far."""

    url: str
    types: list[str]
    offsets: list[list[str]]  # per type, oldest first: the history published before the storm
    behind: int
    jitter: int
    first: int  # global index of this process's first client
    count: int
    seed: int
    deadline: float  # time.monotonic() after which the process gives up and reports


class Sub:
    """One client's subscription to one type: how far it has got in the type's offset list."""

    __slots__ = ("dup", "early", "gaps", "idx", "live", "pending", "recovered", "replied",
                 "since")

    def __init__(self, since: int) -> None:
        self.since = since  # index in the type's offset list of the client's ``since``
        self.idx = since  # index of the last offset received in order
        self.pending: list[bytes] = []  # offsets not (yet) known: ahead of the publisher's feed
        self.gaps: set[int] = set()  # indexes skipped (missing unless they come late)
        self.dup = self.early = 0
        self.recovered: bool | None = None  # None until the ``subscribed`` reply
        self.replied = False
        self.live = False


@dataclass
class ClientState:
    subs: list[Sub]
    connect_at: float = -1.0  # seconds after the storm began
    replied_at: float = -1.0  # all ``subscribed`` replies received
    live_at: float = -1.0
    attempts: int = 0
    events: int = 0
    frames: int = 0
    bytes: int = 0
    close_code: int | None = None
    failure: str = ""
    errors: list[str] = field(default_factory=list)
    not_live: int = 0  # subscriptions not yet live


class Stream:
    """The offsets of one event type as this process knows them (history, then the feed)."""

    __slots__ = ("index", "offsets", "tail")

    def __init__(self, offsets: list[bytes]) -> None:
        self.offsets = offsets
        self.index = {o: i for i, o in enumerate(offsets)}
        self.tail = 1 << 62  # index of the tail when the storm began (unknown until then)

    def extend(self, more: list[bytes]) -> None:
        for o in more:
            self.index[o] = len(self.offsets)
            self.offsets.append(o)


class Checker:
    """Exact accounting of what each client receives, per type, against the stream's offsets."""

    def __init__(self, streams: list[Stream], clients: list[ClientState], t0: float) -> None:
        self.streams = streams
        self.clients = clients
        self.t0 = t0
        self.live = 0
        self.waiting: set[tuple[int, int]] = set()  # (client, type) with pending offsets

    def run(self, ci: int, client: ClientState, k: int, run: list[bytes]) -> None:
        """Consecutive events of one type in one frame (compared as one slice when in order)."""
        sub = client.subs[k]
        if not sub.replied:
            sub.early += len(run)
        start = sub.idx + 1
        if not sub.pending and self.streams[k].offsets[start:start + len(run)] == run:
            sub.idx += len(run)
        else:
            offsets = self.streams[k].offsets
            for o in run:
                i = sub.idx + 1
                if sub.pending or i >= len(offsets) or offsets[i] != o:
                    self.slow(ci, k, sub, o)
                else:
                    sub.idx = i
        if not sub.live and sub.idx >= self.streams[k].tail and sub.recovered:
            self.sub_live(client, sub)

    def slow(self, ci: int, k: int, sub: Sub, o: bytes) -> None:
        pos = self.streams[k].index.get(o)
        if sub.pending or pos is None:
            sub.pending.append(o)  # ahead of the feed: settled when the feed catches up
            self.waiting.add((ci, k))
            return
        self.place(sub, pos)

    @staticmethod
    def place(sub: Sub, pos: int) -> None:
        if pos == sub.idx + 1:
            sub.idx = pos
        elif pos > sub.idx:
            sub.gaps.update(range(sub.idx + 1, pos))
            sub.idx = pos
        elif pos in sub.gaps:
            sub.gaps.discard(pos)  # late, out of order: not missing, but not in order either
            sub.dup += 1
        else:
            sub.dup += 1  # received before, or at or before ``since``

    def settle(self) -> None:
        """The feed grew: place the offsets that were ahead of it."""
        for ci, k in list(self.waiting):
            client = self.clients[ci]
            sub = client.subs[k]
            index = self.streams[k].index
            while sub.pending and sub.pending[0] in index:
                self.place(sub, index[sub.pending.pop(0)])
            if not sub.pending:
                self.waiting.discard((ci, k))
            if not sub.live and sub.idx >= self.streams[k].tail and sub.recovered:
                self.sub_live(client, sub)

    def recheck(self) -> None:
        """A tail became known: subscriptions already past it are live."""
        for client in self.clients:
            for k, sub in enumerate(client.subs):
                if not sub.live and sub.idx >= self.streams[k].tail and sub.recovered:
                    self.sub_live(client, sub)

    def sub_live(self, client: ClientState, sub: Sub) -> None:
        sub.live = True
        client.not_live -= 1
        if client.not_live == 0:
            client.live_at = time.monotonic() - self.t0
            self.live += 1

    def complete(self, client: ClientState) -> bool:
        return all(not s.pending and s.idx == len(self.streams[k].offsets) - 1
                   for k, s in enumerate(client.subs))


def client_worker(plan: Plan, ready: Any, control: Any, progress: Any, out: Any) -> None:
    """``plan.count`` raw clients: connect at the go signal, resume every type, check everything."""
    import uvloop

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def main() -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        streams = [Stream([o.encode() for o in offsets]) for offsets in plan.offsets]
        type_index = {t.encode(): k for k, t in enumerate(plan.types)}
        clients: list[ClientState] = []
        ready.release()

        ended = False  # the live publisher sent its last offsets

        def take(block: bool) -> list[Any]:
            nonlocal ended
            got: list[Any] = []
            try:
                while True:
                    message = control.get(timeout=0.5) if block and not got else control.get_nowait()
                    got.append(message)
            except queue.Empty:
                pass
            for message in got:
                if message[0] == "feed":
                    for k, more in message[1].items():
                        streams[k].extend(more)
                elif message[0] == "end":
                    ended = True
            return got

        # Wait for the go signal (feeding the offsets published meanwhile).
        go: Any = None
        while go is None:
            if time.monotonic() > plan.deadline:
                out.put({"failed": "no go signal"})
                return
            for message in await asyncio.to_thread(take, True):
                if message[0] == "go":
                    go = message
        t0, tails, epochs = go[1], go[2], go[3]
        rng = random.Random(plan.seed * 1_000_003 + plan.first)
        give_up = time.monotonic() + 2.0
        while any(tail.encode() not in s.index for s, tail in zip(streams, tails, strict=True)):
            if time.monotonic() > give_up:  # the feed is late: count back from what is known
                break
            take(False)
            await asyncio.sleep(0.002)
        tail_idx = [s.index.get(tail.encode(), len(s.offsets) - 1)
                    for s, tail in zip(streams, tails, strict=True)]
        for _ in range(plan.count):
            subs = [Sub(max(0, tail_idx[k] - plan.behind + rng.randint(-plan.jitter, plan.jitter)))
                    for k in range(len(streams))]
            clients.append(ClientState(subs, not_live=len(subs)))
        checker = Checker(streams, clients, t0)
        for s, tail in zip(streams, tails, strict=True):
            if tail.encode() in s.index:
                s.tail = s.index[tail.encode()]

        async def run(ci: int) -> None:
            client = clients[ci]
            subs = client.subs
            requests = [orjson.dumps({"op": "subscribe", "id": k, "event_type": t,
                                      "since": streams[k].offsets[subs[k].since].decode(),
                                      "epoch": epochs[k]}).decode()
                        for k, t in enumerate(plan.types)]
            ws: Any = None
            while ws is None:
                client.attempts += 1
                try:
                    ws = await connect(plan.url, max_size=None, max_queue=None, ping_interval=None,
                                       compression=None, open_timeout=30, close_timeout=1)
                except Exception as exc:  # refused, reset, timed out, handshake failed: retry
                    client.errors.append(f"connect: {exc!r}"[:200])
                    if time.monotonic() > plan.deadline:
                        client.failure = "could not connect"
                        return
                    await asyncio.sleep(min(2.0, 0.1 * client.attempts))
            client.connect_at = time.monotonic() - t0
            replies = 0
            try:
                for request in requests:
                    await ws.send(request)
                while True:
                    data = await ws.recv(decode=False)
                    client.frames += 1
                    client.bytes += len(data)
                    if CONTROL in data:
                        replies += control_frame(ci, client, orjson.loads(data))
                        if replies == len(subs) and client.replied_at < 0:
                            client.replied_at = time.monotonic() - t0
                        continue
                    pairs = EVENT.findall(data)
                    client.events += len(pairs)
                    for t, group in groupby(pairs, key=itemgetter(0)):
                        checker.run(ci, client, type_index[t], list(map(itemgetter(1), group)))
                    if client.frames % 16 == 0:
                        await asyncio.sleep(0)  # queued frames return at once: let others run
            except ConnectionClosed as exc:
                client.close_code = exc.rcvd.code if exc.rcvd is not None else 1006
            except asyncio.CancelledError:
                ws.transport.abort()
                raise

        def control_frame(ci: int, client: ClientState, message: Any) -> int:
            replies = 0
            for m in message if isinstance(message, list) else [message]:
                kind = m.get("type")
                if kind is None:
                    client.events += 1
                    checker.run(ci, client, type_index[m["event_type"].encode()],
                                [m["offset"].encode()])
                elif kind == "subscribed":
                    k = type_index[m["event_type"].encode()]
                    sub = client.subs[k]
                    sub.replied = True
                    sub.recovered = bool(m.get("recovered")) and m.get("epoch") == epochs[k] \
                        and m.get("offset") == streams[k].offsets[sub.since].decode()
                    if not sub.recovered:
                        client.errors.append(f"subscribed: {m}"[:200])
                    replies += 1
                    if not sub.live and sub.idx >= streams[k].tail and sub.recovered:
                        checker.sub_live(client, sub)
                elif kind == "error":
                    client.errors.append(f"error: {m}"[:200])
            return replies

        tasks = [asyncio.create_task(run(ci)) for ci in range(plan.count)]
        stopped = False
        incomplete = list(range(plan.count))  # clients without every offset (once ended)
        next_complete = 0.0
        while not stopped and time.monotonic() < plan.deadline:
            await asyncio.sleep(POLL)
            before = [len(s.offsets) for s in streams]
            for message in take(False):
                if message[0] == "stop":
                    stopped = True
            if checker.waiting and before != [len(s.offsets) for s in streams]:
                checker.settle()
            for s, tail in zip(streams, tails, strict=True):
                if s.tail > len(s.offsets) and tail.encode() in s.index:
                    s.tail = s.index[tail.encode()]
                    checker.recheck()
            progress[0] = checker.live
            progress[1] = sum(c.events for c in clients)  # about 1250 additions: cheap enough
            if ended and time.monotonic() >= next_complete:  # no more offsets: monotonic
                next_complete = time.monotonic() + 0.5
                incomplete = [ci for ci in incomplete
                              if not (clients[ci].live_at >= 0 and checker.complete(clients[ci]))]
                progress[2] = plan.count - len(incomplete)
        checker.settle()
        out.put(summarize(clients, streams, ended))  # first: tearing down takes a while
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    uvloop.run(main())


def summarize(clients: list[ClientState], streams: list[Stream], ended: bool) -> dict[str, Any]:
    """Per-client figures. ``skipped``: offsets passed over (a later one arrived first);
    ``outstanding``: offsets of the stream (as known here) not received when the process stopped."""
    rows = []
    for client in clients:
        dup = skipped = outstanding = early = unknown = no_reply = not_recovered = 0
        for k, sub in enumerate(client.subs):
            dup += sub.dup
            early += sub.early
            unknown += len(sub.pending)
            skipped += len(sub.gaps)
            outstanding += len(streams[k].offsets) - 1 - sub.idx
            if sub.recovered is None:
                no_reply += 1
            elif not sub.recovered:
                not_recovered += 1
        rows.append({"connect": client.connect_at, "replied": client.replied_at,
                     "live": client.live_at, "attempts": client.attempts, "events": client.events,
                     "frames": client.frames, "bytes": client.bytes, "dup": dup,
                     "skipped": skipped, "outstanding": outstanding, "early": early,
                     "unknown": unknown, "no_reply": no_reply, "not_recovered": not_recovered,
                     "close": client.close_code, "failure": client.failure,
                     "errors": client.errors[:3]})
    expected = sum(streams[k].tail - sub.since for c in clients for k, sub in enumerate(c.subs))
    return {"rows": rows, "ended": ended, "expected_to_tail": expected}


def probe(url: str, started: Any, stop: Any, out: Any, deadline: float) -> None:
    """One idle connection that pings the gateway every 0.25 s: how long its loop keeps a
    client's request waiting during the storm (the pong goes through the same writer path)."""
    import uvloop

    async def main() -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        rtts: list[float] = []
        try:
            async with connect(url, max_size=None, ping_interval=None, compression=None) as ws:
                await ws.recv()
                started.set()
                n = 0
                while not stop.is_set() and time.monotonic() < deadline:
                    n += 1
                    sent = time.monotonic()
                    await ws.send(orjson.dumps({"op": "ping", "id": n}).decode())
                    while not stop.is_set():
                        try:
                            reply = orjson.loads(await asyncio.wait_for(ws.recv(), 0.5))
                        except TimeoutError:
                            continue
                        if isinstance(reply, dict) and reply.get("id") == n:
                            rtts.append(time.monotonic() - sent)
                            break
                    await asyncio.sleep(0.25)
        except ConnectionClosed:
            pass
        out.put(rtts)

    uvloop.run(main())


# --- live publisher ------------------------------------------------------------------------


def live_publisher(redis_url: str, types: list[str], rate: int, controls: list[Any], started: Any,
                   stop: Any, out: Any, deadline: float) -> None:
    """``rate`` events per second on each type until told to stop; every offset goes to the
    client processes (so they can check the live part exactly)."""
    import uvloop

    async def main() -> None:
        tick = 0.01
        total = 0
        async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=Secret(redis_url))) as pub:
            start = time.monotonic()
            started.set()
            while not stop.is_set() and time.monotonic() < deadline:
                due = int((time.monotonic() - start) * rate) - total
                if due > 0:
                    due = min(due, max(1, rate // 10))
                    events = [Event(t, payload(total + i), symbol="BTCUSDT")
                              for t in types for i in range(due)]
                    offsets = await pub.publish_many(events)
                    feed = {k: [o.encode() for o in offsets[k * due:(k + 1) * due]]
                            for k in range(len(types))}
                    for control in controls:
                        control.put(("feed", feed))
                    total += due
                await asyncio.sleep(tick)
        for control in controls:
            control.put(("end",))
        out.put(total * len(types))

    uvloop.run(main())


# --- the run -------------------------------------------------------------------------------


async def publish_history(redis_url: str, types: list[str], count: int) -> list[list[str]]:
    offsets: list[list[str]] = [[] for _ in types]
    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=Secret(redis_url))) as pub:
        for start in range(0, count, 1000):
            n = min(1000, count - start)
            for k, t in enumerate(types):
                offsets[k] += await pub.publish_many(
                    [Event(t, payload(start + i), symbol="BTCUSDT") for i in range(n)])
    return offsets


def command_calls(client: redis.Redis) -> dict[str, int]:
    stats: Any = client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def hwm_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def machine_jiffies() -> tuple[int, int, int]:
    """(busy, idle, steal) clock ticks of every CPU together, from /proc/stat."""
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    steal = fields[7] if len(fields) > 7 else 0
    return sum(fields[:8]) - idle - steal, idle, steal


def scrape(http: str) -> dict[str, float]:
    """The gateway's replay and close counters (empty if /metrics does not answer)."""
    wanted = ("tickstream_replays_total", "tickstream_connection_closes_total",
              "tickstream_slow_consumer_closes_total", "tickstream_connections")
    try:
        text = httpx.get(f"{http}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(wanted):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def error_kind(text: str) -> str:
    """``connect: TimeoutError(...)`` -> ``connect TimeoutError``; replies by their code."""
    where, _, rest = text.partition(": ")
    if where == "connect":
        return f"connect {rest.split('(', 1)[0]}"
    code = re.search(r"'(?:code|recovered)': ([^,}]+)", rest)
    return f"{where} {code.group(1) if code else ''}".strip()


def pct(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"p50 {percentile(values, 50):.2f} s  p90 {percentile(values, 90):.2f} s  "
            f"p99 {percentile(values, 99):.2f} s  max {max(values):.2f} s")


def loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # runs the clean-up: what this started is stopped by PID


def main() -> int:
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=5000)
    parser.add_argument("--procs", type=int, default=4, help="client processes")
    parser.add_argument("--types", type=int, default=5, help="event types, each client all of them")
    parser.add_argument("--behind", type=int, default=1000, help="events behind the tail per type")
    parser.add_argument("--jitter", type=int, help="spread of --behind (default: behind / 5)")
    parser.add_argument("--history", type=int, default=20_000, help="events per type before the storm")
    parser.add_argument("--live-rate", type=int, default=100, help="live events per second per type")
    parser.add_argument("--batch", type=int, choices=(0, 1), default=1,
                        help="clients connect with ?batch=1 (default) or one event per frame")
    parser.add_argument("--seconds", type=float, default=120.0, help="hard bound on the whole run")
    parser.add_argument("--gateway-url", help="use this gateway (ws://host:port/ws) instead of one")
    parser.add_argument("--gateway-pid", type=int, help="its PID, for CPU and memory figures")
    parser.add_argument("--redis-url", help="the Redis of --gateway-url")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra setting for the gateway this starts (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.gateway_url and not args.redis_url:
        parser.error("--gateway-url needs --redis-url (its Redis: history is published there)")
    for url in (args.gateway_url, args.redis_url):
        if url and not loopback(url):
            parser.error(f"{url}: loopback only")
    if any("=" not in item for item in args.gateway_env):
        parser.error("--gateway-env takes NAME=VALUE")
    if args.behind + (args.jitter or 0) >= args.history:
        parser.error("--history must be larger than --behind + --jitter")
    jitter = args.behind // 5 if args.jitter is None else args.jitter
    began = time.monotonic()
    deadline = began + args.seconds
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.clients + 100 > hard:
        print(f"warning: the fd limit ({hard}) is below --clients", file=sys.stderr)
    load_before = os.getloadavg()

    server = None if args.redis_url else private_redis()
    redis_url = args.redis_url or (server.url if server else "")
    gateway: Gateway | None = None
    ctx = mp.get_context("spawn")
    workers: list[Any] = []
    pub: Any = None
    pinger: Any = None
    finished = False
    try:
        if args.gateway_url:
            url, gateway_pid = args.gateway_url, args.gateway_pid
        else:
            extra = dict(item.split("=", 1) for item in args.gateway_env)
            gateway = Gateway(redis_url, **{"MAX_CONNECTIONS": str(args.clients + 1000), **extra})
            gateway.start()
            assert gateway.proc is not None
            url, gateway_pid = gateway.url, gateway.proc.pid
        http = url.replace("ws://", "http://", 1).rsplit("/", 1)[0]
        if args.batch:
            url += ("&" if "?" in url else "?") + "batch=1"
        run_id = os.urandom(2).hex()
        types = [f"storm{k}_{run_id}" for k in range(args.types)]
        keys = Keys()
        offsets = asyncio.run(publish_history(redis_url, types, args.history))
        rc = redis.Redis.from_url(redis_url)
        print(f"history: {args.history} events on each of {len(types)} types "
              f"({time.monotonic() - began:.1f} s since start)", flush=True)

        # Client processes, each with its share of the clients and its own control queue.
        procs = max(1, min(args.procs, args.clients))
        share = [args.clients // procs + (1 if i < args.clients % procs else 0) for i in range(procs)]
        ready, out = ctx.Semaphore(0), ctx.Queue()
        controls = [ctx.Queue() for _ in share]
        progress = [ctx.Array("q", 3, lock=False) for _ in share]
        first = 0
        for n, control, prog in zip(share, controls, progress, strict=True):
            plan = Plan(url, types, offsets, args.behind, jitter, first, n, args.seed,
                        deadline - 8)
            workers.append(ctx.Process(target=client_worker, args=(plan, ready, control, prog, out),
                                       daemon=True))
            first += n
        for w in workers:
            w.start()
        for _ in workers:
            if not ready.acquire(timeout=max(1.0, deadline - time.monotonic())):
                raise RuntimeError("client processes did not start")
        probe_started, probe_stop, probe_out = ctx.Event(), ctx.Event(), ctx.Queue()
        pinger = ctx.Process(target=probe, daemon=True,
                             args=(url, probe_started, probe_stop, probe_out, deadline - 5))
        pinger.start()
        if not probe_started.wait(30):
            raise RuntimeError("the ping probe did not connect")
        pub_stop, pub_out = ctx.Event(), ctx.Queue()
        if args.live_rate > 0:
            started = ctx.Event()
            pub = ctx.Process(target=live_publisher, daemon=True,
                              args=(redis_url, types, args.live_rate, controls, started, pub_stop,
                                    pub_out, deadline - 5))
            pub.start()
            if not started.wait(30):
                raise RuntimeError("live publisher did not start")
            time.sleep(1.0)  # the storm hits a gateway already delivering live events
        else:
            for control in controls:
                control.put(("end",))

        # The storm.
        # The tail and the epoch of each type, as a client that was just cut off would know them.
        tails, epochs = [], []
        for t in types:
            last: Any = rc.xrevrange(keys.stream(t), count=1)
            tails.append(last[0][0].decode())
            epoch: Any = rc.hget(keys.meta(t), "epoch")
            epochs.append(epoch.decode() if epoch else "")
        pids = {"redis": server.proc.pid if server and server.proc else None,
                "gateway": gateway_pid, "clients": None}
        worker_pids = [w.pid for w in workers]

        def cpu() -> dict[str, float]:
            got = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
            got["clients"] = sum(cpu_seconds(p) for p in worker_pids if p)
            if pub is not None and pub.pid:
                got["publisher"] = cpu_seconds(pub.pid)
            return got

        stats0, info0 = command_calls(rc), rc.info("stats")
        cpu0, machine0 = cpu(), machine_jiffies()
        rss0 = rss_bytes(gateway_pid) if gateway_pid else 0
        peak_rss, peak_redis_clients = rss0, 0
        t0 = time.monotonic()
        for control in controls:
            control.put(("go", t0, tails, epochs))
        all_live_at: float | None = None
        last_report = t0
        while time.monotonic() < deadline - 15:
            time.sleep(0.1)
            if gateway_pid:
                peak_rss = max(peak_rss, rss_bytes(gateway_pid))
            clients_info: Any = rc.info("clients")
            peak_redis_clients = max(peak_redis_clients, int(clients_info["connected_clients"]))
            live = sum(p[0] for p in progress)
            if time.monotonic() - last_report >= 5:
                last_report = time.monotonic()
                print(f"  {last_report - t0:5.1f} s: {live} of {args.clients} clients live, "
                      f"{sum(p[1] for p in progress):,} events received", flush=True)
            if live >= args.clients:
                all_live_at = time.monotonic() - t0
                break
            if not any(w.is_alive() for w in workers):
                break
        storm_seconds = time.monotonic() - t0
        stats1, info1 = command_calls(rc), rc.info("stats")
        cpu1, machine1 = cpu(), machine_jiffies()
        load_storm = os.getloadavg()
        metrics = scrape(http)
        hwm = hwm_bytes(gateway_pid) if gateway_pid else 0
        probe_stop.set()
        try:
            pings: list[float] = probe_out.get(timeout=10)
        except queue.Empty:
            pings = []

        # Drain: stop the live publisher and wait until every client has every event.
        pub_stop.set()
        published_live = pub_out.get(timeout=30) if pub is not None else 0
        drain0, last_total, moved = time.monotonic(), -1, time.monotonic()
        while time.monotonic() < deadline - 12:
            if sum(p[2] for p in progress) >= args.clients:
                break
            total = sum(p[1] for p in progress)
            if total != last_total:
                last_total, moved = total, time.monotonic()
            elif time.monotonic() - moved > 10:
                break
            time.sleep(0.1)
        drain = time.monotonic() - drain0
        for control in controls:
            control.put(("stop",))
        results = []
        for _ in workers:
            try:
                results.append(out.get(timeout=max(3.0, deadline - time.monotonic())))
            except queue.Empty:
                results.append({"failed": "no report before the --seconds bound"})
        finished = True
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the clean-up itself is not interrupted
        for child in [*workers, pub, pinger]:
            if child is not None and child.pid is not None:  # started: ours, stopped by PID
                child.join(10 if finished else 0.5)
                if child.is_alive():
                    child.kill()
        if gateway is not None:
            gateway.stop()
        if server is not None:
            server.cleanup()

    return report(args, Measured(
        results, storm_seconds, all_live_at, drain, stats0, stats1, info0, info1, cpu0, cpu1,
        machine0, machine1, rss0, peak_rss, hwm, peak_redis_clients, published_live, metrics,
        load_before, load_storm, pings))


@dataclass
class Measured:
    results: list[dict[str, Any]]  # one per client process
    storm_seconds: float
    all_live_at: float | None
    drain: float
    stats0: dict[str, int]  # Redis command calls before and after the storm
    stats1: dict[str, int]
    info0: Any  # INFO stats before and after
    info1: Any
    cpu0: dict[str, float]  # CPU seconds per process group
    cpu1: dict[str, float]
    machine0: tuple[int, int, int]  # /proc/stat busy, idle, steal
    machine1: tuple[int, int, int]
    rss0: int
    peak_rss: int
    hwm: int
    peak_redis_clients: int
    published_live: int
    metrics: dict[str, float]
    load_before: tuple[float, ...]
    load_storm: tuple[float, ...]
    pings: list[float]  # ping -> pong seconds on an idle connection, every 0.25 s


def report(args: argparse.Namespace, m: Measured) -> int:
    failed = [r["failed"] for r in m.results if "failed" in r]
    rows = [row for r in m.results for row in r.get("rows", [])]
    n = args.clients
    live = [row["live"] for row in rows if row["live"] >= 0]
    print(f"\nreconnect storm: {n} clients x {args.types} types, each ~{args.behind} "
          f"(±{args.behind // 5 if args.jitter is None else args.jitter}) events behind, "
          f"{args.procs} client processes, batch={args.batch}, live {args.live_rate}/s per type"
          + (f", gateway {' '.join(args.gateway_env)}" if args.gateway_env else ""))
    print(f"load average before {m.load_before[0]:.2f} {m.load_before[1]:.2f} {m.load_before[2]:.2f}, "
          f"at the end of the storm {m.load_storm[0]:.2f} {m.load_storm[1]:.2f} {m.load_storm[2]:.2f} "
          f"({os.cpu_count()} CPUs)")
    if m.all_live_at is not None:
        print(f"all {n} clients live after {m.all_live_at:.2f} s")
    else:
        print(f"NOT all live: {len(live)} of {n} clients live after {m.storm_seconds:.1f} s "
              f"(the --seconds bound)")
    print(f"  live:       {pct(live)}{'' if len(live) == n else ' (of those live)'}")
    print(f"  connected:  {pct([r['connect'] for r in rows if r['connect'] >= 0])}  "
          f"(retries: {sum(r['attempts'] - 1 for r in rows)})")
    print(f"  replied:    {pct([r['replied'] for r in rows if r['replied'] >= 0])}  "
          "(all subscribed replies)")
    expected = sum(r.get("expected_to_tail", 0) for r in m.results)
    received = sum(r["events"] for r in rows)
    print(f"  events: {expected:,} to the tail of the start, {received:,} received in all "
          f"({expected / max(m.storm_seconds, 1e-9):,.0f}/s to the tail over the storm) in "
          f"{sum(r['frames'] for r in rows):,} frames, {sum(r['bytes'] for r in rows) / 1e6:,.0f} MB")
    calls = {name: m.stats1.get(name, 0) - m.stats0.get(name, 0) for name in m.stats1}
    history = sum(calls.get(c, 0) for c in HISTORY_COMMANDS)
    shown = "  ".join(f"{c.upper()} {calls.get(c, 0):,}" for c in REPORTED_COMMANDS)
    others = sorted(((v, c) for c, v in calls.items()
                     if v and c not in REPORTED_COMMANDS and c != "info"), reverse=True)
    print(f"Redis commands during the storm: {shown}  other {sum(v for v, _ in others):,} "
          f"({', '.join(f'{c.upper()} {v:,}' for v, c in others[:6]) or 'none'})")
    print(f"  history commands (XRANGE+XREVRANGE): {history:,} = {history / n:.3f} per client, "
          f"{history / (n * args.types):.4f} per subscription "
          f"(aim: at most {n // 10:,}, 10x fewer than clients)")
    print(f"  Redis connections opened: "
          f"{int(m.info1['total_connections_received']) - int(m.info0['total_connections_received']):,}"
          f", peak connected {m.peak_redis_clients:,}")
    used = {name: m.cpu1.get(name, 0.0) - m.cpu0.get(name, 0.0) for name in m.cpu1}
    print("CPU seconds during the storm ({:.1f} s, {:.1f} core-seconds available): {}".format(
        m.storm_seconds, m.storm_seconds * (os.cpu_count() or 1),
        "  ".join(f"{name} {v:.1f}" for name, v in used.items())))
    busy, idle, steal = (b - a for a, b in zip(m.machine0, m.machine1, strict=True))
    ticks = max(1, busy + idle + steal)
    ours = sum(used.values()) * CLK_TCK
    print(f"machine during the storm: {busy / ticks:.0%} busy ({ours / ticks:.0%} this run's "
          f"processes, {max(0, busy - ours) / ticks:.0%} everything else), {idle / ticks:.0%} idle, "
          f"{steal / ticks:.0%} stolen by the hypervisor")
    if m.peak_rss:
        print(f"gateway RSS: {m.rss0 / 2**20:.0f} MiB before, peak {m.peak_rss / 2**20:.0f} MiB "
              f"sampled, VmHWM {m.hwm / 2**20:.0f} MiB")
    if m.pings:
        print(f"gateway responsiveness (ping -> pong on an idle connection, {len(m.pings)} pings): "
              f"p50 {percentile(m.pings, 50) * 1000:.0f} ms  p99 {percentile(m.pings, 99) * 1000:.0f} ms"
              f"  max {max(m.pings) * 1000:.0f} ms")
    if m.metrics:
        print("gateway metrics: " + "  ".join(f"{k} {v:g}" for k, v in sorted(m.metrics.items())))
    dup = sum(r["dup"] for r in rows)
    skipped = sum(r["skipped"] for r in rows)
    outstanding = sum(r["outstanding"] for r in rows)
    early = sum(r["early"] for r in rows)
    unknown = sum(r["unknown"] for r in rows)
    no_reply = sum(r["no_reply"] for r in rows)
    not_recovered = sum(r["not_recovered"] for r in rows)
    closes = Counter(r["close"] for r in rows if r["close"] is not None)
    gone = [r["failure"] for r in rows if r["failure"]]
    ended = all(r.get("ended") for r in m.results)
    finished = m.all_live_at is not None and ended
    print(f"after the storm: live publisher stopped ({m.published_live:,} live events published), "
          f"drain {m.drain:.1f} s")
    # Once every client was live and the drain ended, an offset not received is missing; when the
    # run was cut short it may only be late, and is shown apart.
    missing = skipped + (outstanding if finished else 0)
    print(f"per client: duplicates {dup}  missing {missing}"
          + ("" if finished else f" skipped, and {outstanding:,} not received when the run "
                                  "stopped unfinished")
          + f"  unknown offsets {unknown}  events before their reply {early}  "
          f"no reply {no_reply}  recovered!=true {not_recovered}  "
          f"close codes {dict(closes) or 'none'}  failed {len(gone)}")
    bad = [r for r in rows if r["dup"] or r["skipped"] or (finished and r["outstanding"])
           or r["unknown"] or r["not_recovered"] or r["failure"] or r["close"] is not None
           or r["early"]]
    for r in bad[:3]:
        print(f"  e.g. {r}")
    kinds = Counter(error_kind(e) for r in rows for e in r["errors"])
    if kinds:
        print("client errors (first 3 per client): " + ", ".join(
            f"{k} x{v}" for k, v in kinds.most_common(5)))
    for why in failed:
        print(f"client process failed: {why}")
    ok = (not failed and len(rows) == n and finished and not dup and not missing and not unknown
          and not early and not no_reply and not not_recovered and not closes and not gone)
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
