"""What the failover tests share: recording clients, a steady publisher, the promise's check.

* :class:`Recorder` is one official client (``shared.client``) subscribed to every type. It
  keeps, per type and in the order the application sees them, every event (with when it
  arrived) and every reset (the iterator's :class:`~shared.client.StreamReset`, raised at the
  point of the gap).
* :class:`SteadyPublisher` publishes every type at a bounded pace, one task per type (so types
  on healthy primaries go on while one primary fails over), and keeps every offset a publish
  *acknowledged*.
* :func:`delivery_problems` is the promise (CONTRACT section 4) as a check: per client and
  type, offsets strictly increasing between resets, no duplicates, and every acknowledged
  offset delivered unless a reset covered it (a reset says events in ``(since, offset]`` may be
  missing).
* :func:`run_failover_under_load` is the whole scenario of the two "under load" tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shared.client import Client, Reset, Status, StreamReset, Subscription, connect
from shared.errors import NotReplicated, RedisUnavailable
from shared.offsets import Offset, format_offset, parse_offset
from shared.publisher import AsyncPublisher, PublishSettings
from shared.settings import Secret
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.waiting import until

# --------------------------------------------------------------------------- recording clients


@dataclass(frozen=True, slots=True)
class Got:
    """One event as the application received it."""

    pos: Offset
    offset: str
    ts: int  # when Redis accepted it (ms since the epoch)
    at: float  # time.monotonic() when the application got it


class Recorder:
    """An official client subscribed (live) to every type, recording events and resets in order."""

    def __init__(self, name: str, client: Client, event_types: Sequence[str]) -> None:
        self.name = name
        self.client = client
        self.event_types = list(event_types)
        self.items: dict[str, list[Got | Reset]] = {t: [] for t in self.event_types}
        self.statuses: list[Status] = []
        self.reset_calls: list[Reset] = []  # what on_reset reported (the same resets)
        client.on_status(self.statuses.append)
        client.on_reset(self.reset_calls.append)
        self.subs: dict[str, Subscription] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self.client.start()
        await self.client.wait_connected()
        subs = [self.client.subscribe(t) for t in self.event_types]
        for sub in subs:
            await sub
            self.subs[sub.event_type] = sub
        self._tasks = [asyncio.create_task(self._consume(sub), name=f"{self.name}-{sub.event_type}")
                       for sub in subs]

    async def _consume(self, sub: Subscription) -> None:
        log = self.items[sub.event_type]
        while True:
            try:
                async for event in sub:
                    log.append(Got(event.position, event.offset, event.ts, time.monotonic()))
                return
            except StreamReset as gap:
                log.append(gap.reset)

    def events(self, event_type: str) -> list[Got]:
        return [item for item in self.items[event_type] if isinstance(item, Got)]

    def resets(self, event_type: str) -> list[Reset]:
        return [item for item in self.items[event_type] if isinstance(item, Reset)]

    def all_resets(self) -> list[Reset]:
        return [r for t in self.event_types for r in self.resets(t)]

    def reconnect_codes(self) -> list[int | None]:
        return [s.code for s in self.statuses if s.state == "reconnecting"]

    def missing(self, event_type: str, acked: Sequence[str]) -> list[str]:
        """Acknowledged offsets neither received nor covered by a reset."""
        seen = {got.offset for got in self.events(event_type)}
        gaps = [(parse_offset(r.since) if r.since else (0, 0), parse_offset(r.offset))
                for r in self.resets(event_type)]
        return [offset for offset in acked if offset not in seen
                and not any(low < parse_offset(offset) <= high for low, high in gaps)]

    def all_missing(self, acked: dict[str, list[str]]) -> dict[str, list[str]]:
        out = {t: self.missing(t, acked.get(t, [])) for t in self.event_types}
        return {t: m for t, m in out.items() if m}

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.client.close()


def delivery_problems(rec: Recorder, acked: dict[str, list[str]]) -> list[str]:
    """Every way ``rec`` broke the delivery promise (see the module docstring); [] if none."""
    problems: list[str] = []
    for event_type in rec.event_types:
        last: Offset | None = None
        seen: set[str] = set()
        for item in rec.items[event_type]:
            if isinstance(item, Reset):
                last = None  # a new epoch: its offsets need not follow the lost ones
                continue
            if item.offset in seen:
                problems.append(f"{rec.name} {event_type}: {item.offset} delivered twice")
            elif last is not None and item.pos <= last:
                problems.append(f"{rec.name} {event_type}: {item.offset} after {format_offset(last)}")
            seen.add(item.offset)
            last = item.pos
        missing = rec.missing(event_type, acked.get(event_type, []))
        if missing:
            problems.append(f"{rec.name} {event_type}: {len(missing)} acknowledged offsets never "
                            f"delivered and no reset covers them, e.g. {missing[:5]} "
                            f"(resets: {rec.resets(event_type)})")
    return problems


# --------------------------------------------------------------------------- the publisher


@dataclass(slots=True)
class Ack:
    offset: str
    at: float  # time.monotonic() when the publish returned


@dataclass
class SteadyPublisher:
    """Publishes each type ``rate`` / len(types) times a second, staggered (round-robin)."""

    pub: AsyncPublisher
    event_types: Sequence[str]
    rate: float  # events per second, all types together
    acked: dict[str, list[Ack]] = field(default_factory=dict)
    errors: list[tuple[str, BaseException]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.acked = {t: [] for t in self.event_types}
        self._stop = asyncio.Event()
        self._tasks = [asyncio.create_task(self._run(t, i), name=f"publish-{t}")
                       for i, t in enumerate(self.event_types)]

    async def _run(self, event_type: str, index: int) -> None:
        loop = asyncio.get_running_loop()
        period = len(self.event_types) / self.rate
        next_at = loop.time() + index / self.rate
        n = 0
        while not self._stop.is_set():
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # the pace of the workload, not a synchronisation
            else:
                next_at = loop.time()  # behind (a failover held this type): no burst afterwards
            next_at += period
            try:
                offset = await self.pub.publish(event_type, {"n": n})
            except (RedisUnavailable, NotReplicated) as exc:
                self.errors.append((event_type, exc))
                continue
            self.acked[event_type].append(Ack(offset, time.monotonic()))
            n += 1

    def count(self, event_type: str) -> int:
        return len(self.acked[event_type])

    def offsets(self) -> dict[str, list[str]]:
        return {t: [a.offset for a in acks] for t, acks in self.acked.items()}

    async def stop(self) -> dict[str, list[str]]:
        """Stop after the publishes in flight (they may be retrying); the acknowledged offsets."""
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.offsets()

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --------------------------------------------------------------------------- HTTP probes


async def metric_value(http_url: str, sample_name: str, **labels: str) -> float:
    """A sample of the gateway's /metrics (0 when absent)."""
    async with httpx.AsyncClient(base_url=http_url, timeout=5) as http:
        text = (await http.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def readyz(http: httpx.AsyncClient) -> int:
    try:
        return (await http.get("/readyz")).status_code
    except httpx.TransportError:
        return 0


# --------------------------------------------------------------------------- the scenario


@dataclass
class FailoverReport:
    """What the under-load scenario measured (seconds, from the SIGKILL)."""

    promoted_after: float = 0.0
    first_ack_after: float | None = None  # first acknowledged publish of an affected type
    received_after: dict[str, float | None] = field(default_factory=dict)  # per client, affected types
    unaffected_gap: dict[str, float] = field(default_factory=dict)  # per client, longest silence
    readyz_down: int | None = None  # the first non-200 /readyz status after the kill
    readyz_down_before_replaced: bool = False  # ... seen before the dead primary was replaced
    readyz_back_after: float | None = None
    resets: dict[str, list[Reset]] = field(default_factory=dict)
    reconnects: dict[str, list[int | None]] = field(default_factory=dict)
    acked: int = 0
    publish_errors: list[tuple[str, BaseException]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def summary(self, name: str) -> str:
        received = {k: None if v is None else round(v, 2) for k, v in self.received_after.items()}
        gaps = {k: round(v, 2) for k, v in self.unaffected_gap.items()}
        return (f"FAILOVER {name}: promoted after {self.promoted_after:.2f} s; first acknowledged "
                f"publish of an affected type after {_s(self.first_ack_after)}; clients received "
                f"affected types again after {received}; longest silence on unaffected types "
                f"{gaps}; /readyz while down {self.readyz_down}, 200 again after "
                f"{_s(self.readyz_back_after)}; {self.acked} events acknowledged; resets "
                f"{ {k: len(v) for k, v in self.resets.items()} }; reconnect codes {self.reconnects}; "
                f"publish errors {len(self.publish_errors)}")


def _s(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def _client(urls: list[str], **options: Any) -> Client:
    return connect(urls, batch=True, reconnect_base=0.05, reconnect_cap=0.5, **options)


async def run_failover_under_load(
    url: str,
    event_types: Sequence[str],
    affected: Sequence[str],
    kill: Callable[[], object],
    wait_replaced: Callable[[], object],
    *,
    rate: float,
    check_readyz: bool = False,
    after_events: int = 20,
) -> FailoverReport:
    """Two gateways, three official clients, a steady publisher (PUBLISH_MIN_REPLICAS=1); kill
    the primary of ``affected`` mid-stream (``kill``, then ``wait_replaced`` in a thread), publish
    ``after_events`` more per type, stop, wait until every client has every acknowledged offset
    or was told, and check the promise. Blocking topology calls go through threads."""
    report = FailoverReport()
    settings = PublishSettings(redis_url=Secret(url), publish_min_replicas=1, publish_retry_timeout=30.0)
    async with contextlib.AsyncExitStack() as stack:
        pub = await stack.enter_async_context(AsyncPublisher.from_url(url, settings))
        gw1: InProcessGateway = await stack.enter_async_context(running_gateway(url))
        gw2: InProcessGateway = await stack.enter_async_context(running_gateway(url))
        recorders = [
            Recorder("c1", _client([gw1.url, gw2.url]), event_types),
            Recorder("c2", _client([gw2.url, gw1.url]), event_types),
            Recorder("c3", _client([gw1.url, gw2.url], format="msgpack"), event_types),
        ]
        for rec in recorders:
            stack.push_async_callback(rec.stop)
            await rec.start()
        producer = SteadyPublisher(pub, event_types, rate)
        stack.push_async_callback(producer.cancel)
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=gw1.http, timeout=5))

        # About a second of traffic, delivered, before the failure.
        await until(lambda: all(producer.count(t) >= 10 for t in event_types), timeout=20,
                    what="traffic on every type before the failure")
        await until(lambda: all(len(rec.events(t)) >= 5 for rec in recorders for t in event_types),
                    timeout=10, what="every client receiving every type")
        if check_readyz:
            assert await readyz(http) == 200

        await asyncio.to_thread(kill)
        # The process is dead now: an entry with a later id was written by its replacement.
        killed_at = time.monotonic()
        kill_wall_ms = int(time.time() * 1000) + 1
        replaced = asyncio.create_task(asyncio.to_thread(wait_replaced))
        if check_readyz:
            async def down() -> int | None:
                status = await readyz(http)
                return None if status == 200 else status
            report.readyz_down = await until(down, timeout=20, what="/readyz failing")
            # It counts only if the dead primary was not replaced yet when /readyz said so.
            report.readyz_down_before_replaced = not replaced.done()
        await replaced
        report.promoted_after = time.monotonic() - killed_at
        if check_readyz:
            async def up() -> int | None:
                status = await readyz(http)
                return status if status == 200 else None
            await until(up, timeout=30, what="/readyz 200 after promotion")
            report.readyz_back_after = time.monotonic() - killed_at

        mark = {t: producer.count(t) for t in event_types}
        await until(lambda: all(producer.count(t) >= mark[t] + after_events for t in event_types),
                    timeout=40, what=f"{after_events} more acknowledged events per type")
        acked = await producer.stop()
        report.acked = sum(len(v) for v in acked.values())
        report.publish_errors = list(producer.errors)

        def complete() -> bool:
            return all(not rec.all_missing(acked) for rec in recorders)

        with contextlib.suppress(AssertionError):
            await until(complete, timeout=30, what="every acknowledged event or a reset")
        for rec in recorders:
            report.problems += delivery_problems(rec, acked)
            report.resets[rec.name] = rec.all_resets()
            report.reconnects[rec.name] = rec.reconnect_codes()
            report.received_after[rec.name] = _first_after(rec, affected, kill_wall_ms, killed_at)
            unaffected = [t for t in event_types if t not in affected]
            if unaffected:
                report.unaffected_gap[rec.name] = _longest_silence(
                    rec, unaffected, killed_at, killed_at + report.promoted_after + 1.0)
        first_acks = [a.at for t in affected for a in producer.acked[t]
                      if parse_offset(a.offset)[0] >= kill_wall_ms]
        report.first_ack_after = min(first_acks) - killed_at if first_acks else None
    return report


def _first_after(rec: Recorder, event_types: Sequence[str], wall_ms: int, mono: float) -> float | None:
    """Seconds from the kill until ``rec`` got an event (of those types) Redis accepted after it."""
    times = [got.at for t in event_types for got in rec.events(t) if got.pos[0] >= wall_ms]
    return min(times) - mono if times else None


def _longest_silence(rec: Recorder, event_types: Sequence[str], start: float, end: float) -> float:
    """The longest time in [start, end] during which ``rec`` got no event of those types."""
    times = sorted(got.at for t in event_types for got in rec.events(t) if start <= got.at <= end)
    points = [start, *times, end]
    return max((b - a for a, b in itertools.pairwise(points)), default=0.0)
