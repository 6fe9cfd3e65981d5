"""The ingestor's settings: CONTRACT section 1 plus what an operator tunes behind it.

Every field is a :func:`shared.settings.setting`: ``tickstream ingestor --help`` lists them with
their environment variable, and flags win over the environment. Validation errors become one-line
:class:`~shared.errors.ConfigError` messages naming the variable.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from typing import Final

from ingestor.binance.streams import KLINE_INTERVALS, MAX_STREAMS_PER_CONNECTION
from ingestor.lease import GROUP_NAME, check_timings, default_group
from shared.logsetup import checked_log_format, parse_log_format
from shared.publisher import PublishSettings
from shared.settings import parse_duration, parse_size, setting

FEEDS: Final = ("trades", "candles", "ticker", "book_ticker", "orderbook")
"""What the ingestor can subscribe to, by the events they produce (docs/ingestor.md)."""

MAX_CONNECTION_AGE: Final = 86_400.0
"""Binance closes a connection after 24 h; planned rotation must happen before."""

_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_SYMBOL = re.compile(r"^[A-Z0-9]{1,32}$")


def parse_span(text: str) -> float:
    """Durations with several units, ``"23h50m"``, ``"1m30s"``, or anything parse_duration takes."""
    compact = text.strip().replace(" ", "")
    try:
        return parse_duration(compact)
    except ValueError:
        pass
    parts = _PART.findall(compact)
    if not parts or "".join(n + u for n, u in parts) != compact:
        raise ValueError(f"expected a duration such as 30s, 5m, 23h50m, got {text!r}")
    return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)


def _default_node() -> str:
    return f"{socket.gethostname()[:24]}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class IngestorSettings(PublishSettings):
    """What ``tickstream ingestor`` reads (CONTRACT section 1 names the first three)."""

    binance_ws_url: str = setting(
        "wss://stream.binance.com:9443", env="BINANCE_WS_URL",
        help="Binance WebSocket root (ws:// or wss://), without /ws or /stream",
    )
    binance_rest_url: str = setting(
        "https://api.binance.com", env="BINANCE_REST_URL", help="Binance REST root (http(s)://)",
    )
    symbols: tuple[str, ...] = setting(
        ("BTCUSDT", "ETHUSDT"), env="SYMBOLS", help="comma list of symbols, checked against exchangeInfo",
    )
    feeds: tuple[str, ...] = setting(
        FEEDS, env="FEEDS", help=f"comma list of what to ingest: {', '.join(FEEDS)}",
    )
    kline_intervals: tuple[str, ...] = setting(
        ("1m",), env="KLINE_INTERVALS", help="comma list of candle intervals (1s 1m 5m 1h 1d ...)",
    )
    depth_levels: int = setting(
        20, env="DEPTH_LEVELS", help="levels per side in each published orderbook_update",
    )
    snapshot_limit: int = setting(
        1000, env="SNAPSHOT_LIMIT",
        help="levels per side of the REST depth snapshot and of the local book (100..5000)",
    )
    book_interval: float = setting(
        0.1, env="BOOK_INTERVAL", parse=parse_span,
        help="at most one orderbook_update per symbol per this interval (0 = every change)",
    )
    host: str = setting("127.0.0.1", env="HOST", help="address of /healthz, /readyz and /metrics")
    port: int = setting(9100, env="PORT", help="port of the HTTP endpoints (0 = any free port)")
    node: str = setting("", env="NODE_ID",
                        help="this process's id in logs and the health key (default: host-pid)")
    stale_after: float = setting(
        10.0, env="STALE_AFTER", parse=parse_span,
        help="a stream that always ticks (klines: every 2 s) is stale after this long without data",
    )
    rotate_after: float = setting(
        23 * 3600.0 + 50 * 60.0, env="ROTATE_AFTER", parse=parse_span,
        help="replace each connection after this long, overlapping old and new (< 24h)",
    )
    rotate_timeout: float = setting(
        30.0, env="ROTATE_TIMEOUT", parse=parse_span,
        help="how long a replacement connection has to deliver data before the switch is abandoned",
    )
    reconnect_max_delay: float = setting(
        30.0, env="RECONNECT_MAX_DELAY", parse=parse_span,
        help="longest wait between reconnection attempts (full-jitter exponential backoff)",
    )
    streams_per_connection: int = setting(
        MAX_STREAMS_PER_CONNECTION, env="STREAMS_PER_CONNECTION",
        help="streams per WebSocket connection (Binance allows 1024)",
    )
    url_max_length: int = setting(
        2048, env="URL_MAX_LENGTH",
        help="streams that do not fit in a connection URL this long are SUBSCRIBEd after it opens",
    )
    max_frame_bytes: int = setting(
        1024 * 1024, env="MAX_FRAME_BYTES", parse=parse_size,
        help="largest WebSocket message accepted from the exchange",
    )
    buffer_max_events: int = setting(
        100_000, env="BUFFER_MAX_EVENTS",
        help="events held while Redis is unreachable; past it the oldest market data is dropped",
    )
    backfill_max_wait: float = setting(
        60.0, env="BACKFILL_MAX_WAIT", parse=parse_span,
        help="longest live trades are held back while the REST backfill before them runs",
    )
    rest_timeout: float = setting(
        10.0, env="REST_TIMEOUT", parse=parse_span, help="timeout of one REST request",
    )
    shutdown_grace: float = setting(
        10.0, env="SHUTDOWN_GRACE", parse=parse_span,
        help="on SIGTERM, how long buffered events may take to reach Redis before exit",
    )
    record: str | None = setting(
        None, env="RECORD", help="write every exchange message to this JSONL file (simulator replay format)",
    )
    group: str = setting(
        "", env="INGESTOR_GROUP",
        help="ingestors of one group share a lease: one publishes, the others stand by; "
             "empty: s- and a hash of the sorted SYMBOLS",
    )
    lease_ttl: float = setting(
        3.0, env="LEASE_TTL", parse=parse_span,
        help="the group's lease lapses this long after the leader's last renewal",
    )
    lease_renew: float = setting(
        1.0, env="LEASE_RENEW", parse=parse_span, help="how often the leader renews the lease",
    )
    lease_retry: float = setting(
        0.5, env="LEASE_RETRY", parse=parse_span,
        help="how often a standby tries to take the lease",
    )
    log_format: str = setting(
        "text", env="LOG_FORMAT", parse=parse_log_format,
        help="text, or json: one JSON object per line (ts, level, logger, msg, node, conn, event)",
    )

    def __post_init__(self) -> None:
        PublishSettings.__post_init__(self)
        object.__setattr__(self, "log_format", checked_log_format(self.log_format))
        symbols = tuple(dict.fromkeys(s.strip().upper() for s in self.symbols if s.strip()))
        if not symbols:
            raise ValueError("SYMBOLS: at least one symbol is needed")
        bad = [s for s in symbols if not _SYMBOL.fullmatch(s)]
        if bad:
            raise ValueError(f"SYMBOLS: {bad[0]!r} is not a symbol (letters and digits, e.g. BTCUSDT)")
        object.__setattr__(self, "symbols", symbols)
        feeds = tuple(dict.fromkeys(f.strip().lower() for f in self.feeds))
        unknown = [f for f in feeds if f not in FEEDS]
        if unknown or not feeds:
            raise ValueError(f"FEEDS: expected a comma list of {', '.join(FEEDS)}")
        object.__setattr__(self, "feeds", feeds)
        intervals = tuple(dict.fromkeys(self.kline_intervals))
        wrong = [i for i in intervals if i not in KLINE_INTERVALS]
        if wrong or ("candles" in feeds and not intervals):
            raise ValueError(f"KLINE_INTERVALS: expected some of {' '.join(KLINE_INTERVALS)}")
        object.__setattr__(self, "kline_intervals", intervals)
        if not self.binance_ws_url.startswith(("ws://", "wss://")):
            raise ValueError("BINANCE_WS_URL: expected ws:// or wss://")
        if not self.binance_rest_url.startswith(("http://", "https://")):
            raise ValueError("BINANCE_REST_URL: expected http:// or https://")
        self._check_ranges()
        if not self.node:
            object.__setattr__(self, "node", _default_node())
        if not self.group:
            object.__setattr__(self, "group", default_group(symbols))
        elif not GROUP_NAME.fullmatch(self.group):
            raise ValueError("INGESTOR_GROUP: letters, digits, '_', '-', '.' only (at most 64)")
        problem = check_timings(self.lease_ttl, self.lease_renew, self.lease_retry)
        if problem:
            raise ValueError(problem)

    def _check_ranges(self) -> None:
        checks = {
            "DEPTH_LEVELS": 1 <= self.depth_levels <= self.snapshot_limit,
            "SNAPSHOT_LIMIT": 5 <= self.snapshot_limit <= 5000,
            "BOOK_INTERVAL": self.book_interval >= 0,
            "PORT": 0 <= self.port <= 65535,
            "STALE_AFTER": self.stale_after > 0,
            "ROTATE_AFTER": 0 < self.rotate_after < MAX_CONNECTION_AGE,
            "ROTATE_TIMEOUT": self.rotate_timeout > 0,
            "RECONNECT_MAX_DELAY": self.reconnect_max_delay > 0,
            "STREAMS_PER_CONNECTION": 1 <= self.streams_per_connection <= MAX_STREAMS_PER_CONNECTION,
            "URL_MAX_LENGTH": self.url_max_length >= 64,
            "MAX_FRAME_BYTES": self.max_frame_bytes >= 1024,
            "BUFFER_MAX_EVENTS": self.buffer_max_events >= 1,
            "BACKFILL_MAX_WAIT": self.backfill_max_wait > 0,
            "REST_TIMEOUT": self.rest_timeout > 0,
            "SHUTDOWN_GRACE": self.shutdown_grace >= 0,
        }
        hints = {
            "DEPTH_LEVELS": "1..SNAPSHOT_LIMIT",
            "ROTATE_AFTER": "more than 0 and less than 24h (Binance closes connections at 24 h)",
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"{name}: out of range" + (f", expected {hints[name]}" if name in hints
                                                             else ""))

    def has(self, feed: str) -> bool:
        return feed in self.feeds
