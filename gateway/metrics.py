"""Prometheus metrics of one gateway process (``/metrics``, and ``METRICS_PORT`` if set).

Hot-path counts (messages, bytes, deliveries) are kept as plain integers by the writer and hub
and folded into the registry when it is scraped, so the fan-out never touches a metric lock.
The registry also carries the process's own metrics (``process_*``: CPU seconds, resident
memory, open file descriptors, start time; ``python_*``: interpreter and garbage collector) and
``tickstream_gateway_info{node}``, which names the process a scrape reached.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Live(Collector):
    def __init__(self, read: Callable[[], dict[str, float]]) -> None:
        self._read = read

    def collect(self) -> Iterable[Metric]:
        values = self._read()
        yield GaugeMetricFamily("tickstream_connections", "open WebSocket connections",
                                value=values["connections"])
        yield GaugeMetricFamily("tickstream_subscriptions", "active subscriptions",
                                value=values["subscriptions"])
        yield CounterMetricFamily("tickstream_messages_sent", "messages sent to clients",
                                  value=values["messages_sent"])
        yield CounterMetricFamily("tickstream_frames_sent", "WebSocket frames sent to clients",
                                  value=values["frames_sent"])
        yield CounterMetricFamily("tickstream_bytes_sent",
                                  "bytes sent to clients (with frame headers where the gateway "
                                  "frames them)",
                                  value=values["bytes_sent"])
        yield CounterMetricFamily("tickstream_deliveries", "events offered to subscriptions",
                                  value=values["deliveries"])
        yield GaugeMetricFamily("tickstream_reader_lag_seconds",
                                "age of the newest event the reader handed out when it did",
                                value=values["reader_lag"])
        yield GaugeMetricFamily("tickstream_reader_last_read_age_seconds",
                                "seconds since the stream reader last completed a read",
                                value=values["reader_age"])


class GatewayMetrics:
    def __init__(self, live: Callable[[], dict[str, float]]) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_read = Counter("tickstream_events_read", "events read from Redis", ["event_type"],
                                   registry=r)
        self.closes = Counter("tickstream_connection_closes", "connections closed by the server",
                              ["code"], registry=r)
        self.slow_consumers = Counter("tickstream_slow_consumer_closes",
                                      "connections closed with 4008", registry=r)
        self.client_errors = Counter("tickstream_client_errors", "error replies sent", ["code"],
                                     registry=r)
        self.replays = Counter("tickstream_replays", "subscriptions that replayed history",
                               ["recovered"], registry=r)
        self.replay_events = Histogram("tickstream_replay_events", "events delivered per replay",
                                       buckets=(0, 1, 10, 100, 1000, 10_000, 100_000, 1_000_000),
                                       registry=r)
        self.latency = Histogram("tickstream_publish_to_send_seconds",
                                 "time from Redis accepting an event to the gateway sending it "
                                 "(oldest event of each frame)", buckets=LATENCY_BUCKETS, registry=r)
        self.gaps = Counter("tickstream_reader_gaps", "streams found trimmed or re-created under the "
                            "reader", ["event_type"], registry=r)
        self.rollbacks = Counter("tickstream_reader_rollbacks", "streams found behind what the "
                                 "gateway had read (a failover lost acknowledged writes)",
                                 ["event_type"], registry=r)
        self.reader_errors = Counter("tickstream_reader_errors", "stream reader failures", registry=r)
        self.publishes = Counter("tickstream_http_published", "events published over HTTP",
                                 registry=r)
        self.shed = Counter("tickstream_shed_closes", "connections closed (4008) to shed load while "
                            "the stream reader was behind", registry=r)
        self.heartbeat_timeouts = Counter("tickstream_heartbeat_timeouts",
                                          "connections closed with 4001: a ping left unanswered",
                                          registry=r)
        self.info = Info("tickstream_gateway", "the process this scrape reached", registry=r)
        self.max_connections = Gauge("tickstream_max_connections",
                                     "MAX_CONNECTIONS: connections this process accepts", registry=r)
        r.register(_Live(live))
        add_process_collectors(r)

    def identify(self, node: str, max_connections: int) -> None:
        """Name the process in ``tickstream_gateway_info`` and publish its connection limit."""
        self.info.info({"node": node})
        self.max_connections.set(max_connections)

    def heartbeat_timed_out(self) -> None:
        """A connection was closed with 4001 (counted as a close by the server too)."""
        self.heartbeat_timeouts.inc()
        self.closes.labels("4001").inc()


def add_process_collectors(registry: CollectorRegistry) -> None:
    """``process_*`` and ``python_*`` metrics of this process, in ``registry``."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
