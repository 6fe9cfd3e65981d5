"""Prometheus metrics of one ingestor process (``GET /metrics``), in their own registry.

Per-frame and per-event counts are plain integers on :class:`Counts`, bumped by the hot path
without a lock and folded into the registry when it is scraped. Rarer things (reconnects,
resyncs, REST calls) use prometheus_client objects directly. The names are listed in
docs/ingestor.md. The registry also carries the process's own metrics (``process_*``: CPU
seconds, resident memory, open file descriptors, start time; ``python_*``).
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip

P = "tickstream_ingestor_"


@dataclass(slots=True)
class Counts:
    """Hot-path counters (plain ints: one event loop, no lock)."""

    frames_in: int = 0
    frames_dropped: int = 0  # inbound queue overflow
    malformed: int = 0
    duplicates: int = 0
    published: Tally[str] = field(default_factory=Tally)
    buffer_dropped: Tally[str] = field(default_factory=Tally)


@dataclass(frozen=True, slots=True)
class Live:
    """Values read at scrape time."""

    buffered: int
    connections: int
    stream_ages: dict[str, float]
    rest_used_weight: int
    leader: bool = False
    lease_token: int = 0


class _LiveCollector(Collector):
    def __init__(self, counts: Counts, live: Callable[[], Live]) -> None:
        self._counts = counts
        self._live = live

    def collect(self) -> Iterable[Metric]:
        c = self._counts
        yield CounterMetricFamily(P + "messages_received", "WebSocket messages received from the "
                                  "exchange", value=c.frames_in)
        yield CounterMetricFamily(P + "messages_dropped", "messages dropped because processing fell "
                                  "behind reading (self-healing: gaps are backfilled or resynced)",
                                  value=c.frames_dropped)
        yield CounterMetricFamily(P + "malformed_messages", "exchange messages that could not be "
                                  "parsed (logged and skipped)", value=c.malformed)
        yield CounterMetricFamily(P + "duplicates_dropped", "events seen twice (rotation overlap, "
                                  "backfill overlap) and published once", value=c.duplicates)
        published = CounterMetricFamily(P + "events_published", "events written to Redis",
                                        labels=["event_type"])
        for event_type, n in sorted(c.published.items()):
            published.add_metric([event_type], n)
        yield published
        dropped = CounterMetricFamily(P + "buffer_dropped_events", "events dropped because the Redis "
                                      "outage buffer was full (oldest first)", labels=["event_type"])
        for event_type, n in sorted(c.buffer_dropped.items()):
            dropped.add_metric([event_type], n)
        yield dropped
        live = self._live()
        yield GaugeMetricFamily(P + "buffer_events", "events waiting for Redis", value=live.buffered)
        yield GaugeMetricFamily(P + "connections", "open exchange WebSocket connections",
                                value=live.connections)
        yield GaugeMetricFamily(P + "rest_used_weight", "X-MBX-USED-WEIGHT-1M of the last REST reply",
                                value=live.rest_used_weight)
        ages = GaugeMetricFamily(P + "stream_age_seconds", "seconds since each stream last delivered",
                                 labels=["stream"])
        for stream, age in sorted(live.stream_ages.items()):
            ages.add_metric([stream], age)
        yield ages
        yield GaugeMetricFamily(P + "leader", "1 while this ingestor leads its group (publishes), "
                                "0 while it stands by", value=1 if live.leader else 0)
        yield GaugeMetricFamily(P + "lease_token", "the group lease token of this ingestor's "
                                "leadership (0: none); every publish carries it (fencing)",
                                value=live.lease_token)


class IngestorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.counts = Counts()
        r = self.registry
        self.reconnects = Counter(P + "reconnects", "exchange connections replaced", ["reason"],
                                  registry=r)
        self.resyncs = Counter(P + "book_resyncs", "order books rebuilt after a sequence gap",
                               ["symbol"], registry=r)
        self.snapshots = Counter(P + "book_snapshots", "depth snapshots fetched", ["symbol"],
                                 registry=r)
        self.backfilled = Counter(P + "backfilled_events", "events recovered over REST after a gap",
                                  ["event_type"], registry=r)
        self.backfill_missing = Counter(P + "backfill_missing", "ids the exchange could no longer "
                                        "provide (a hole left in the stream)", ["event_type"],
                                        registry=r)
        self.rest_requests = Counter(P + "rest_requests", "REST requests by endpoint and status",
                                     ["endpoint", "status"], registry=r)
        self.rest_rate_limited = Counter(P + "rest_rate_limited", "REST replies 429/418 (the "
                                         "client then waits Retry-After)", ["status"], registry=r)
        self.invalid_events = Counter(P + "invalid_events", "events refused by validation (a bug)",
                                      ["event_type"], registry=r)
        self.takeovers = Counter(P + "takeovers", "times this ingestor became its group's leader "
                                 "(and resumed from Redis)", registry=r)
        self.step_downs = Counter(P + "step_downs", "times this ingestor stopped leading",
                                  ["reason"], registry=r)
        self.fenced = Counter(P + "fenced_publishes", "publishes Redis refused because a newer "
                              "leader of the group raised the fence", registry=r)
        self.latency = Histogram(P + "publish_latency_seconds", "exchange event time to Redis "
                                 "acknowledgement", buckets=LATENCY_BUCKETS, registry=r)
        self._live: Callable[[], Live] = lambda: Live(0, 0, {}, 0)
        r.register(_LiveCollector(self.counts, lambda: self._live()))
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)

    def set_live(self, live: Callable[[], Live]) -> None:
        self._live = live
