"""Gateway settings: CONTRACT section 1 plus what an operator tunes behind it."""

from __future__ import annotations

import math
import os
import re
import socket
from dataclasses import dataclass

from shared.events import is_symbol
from shared.logsetup import checked_log_format, parse_log_format
from shared.publisher import PublishSettings
from shared.settings import Secret, parse_duration, parse_size, setting

_PORT = re.compile(r"[0-9]{1,5}", re.ASCII)


def parse_metrics_port(text: str) -> int | None:
    """``METRICS_PORT``: empty (off), ``0`` (any free port) or a TCP port."""
    value = text.strip()
    if not value:
        return None
    if not _PORT.fullmatch(value) or int(value) > 65535:
        raise ValueError(f"expected a port from 0 to 65535 (or empty: off), got {text[:40]!r}")
    return int(value)


def _default_node() -> str:
    return f"{socket.gethostname()[:24]}-{os.getpid()}-{os.urandom(2).hex()}"


@dataclass(frozen=True, slots=True)
class GatewaySettings(PublishSettings):
    host: str = setting("127.0.0.1", env="HOST", help="address to listen on")
    port: int = setting(8080, env="PORT", help="TCP port to listen on")
    workers: int = setting(1, env="WORKERS", help="gateway processes sharing the port (SO_REUSEPORT)")
    node: str = setting("", env="NODE_ID", help="this process's node id (default: host-pid-random)")
    jwt_secret: Secret = setting(Secret(""), env="JWT_SECRET", help="HS256 secret for client tokens")
    jwt_public_key: Secret = setting(
        Secret(""), env="JWT_PUBLIC_KEY",
        help="PEM public key (or @path to one) for RS256/ES256 tokens",
    )
    jwt_audience: str = setting("", env="JWT_AUDIENCE", help="required 'aud' claim, if set")
    jwt_issuer: str = setting("", env="JWT_ISSUER", help="required 'iss' claim, if set")
    heartbeat_interval: float = setting(
        30.0, env="HEARTBEAT_INTERVAL", parse=parse_duration,
        help="time between WebSocket pings; also the idle time before a heartbeat message",
    )
    heartbeat_timeout: float = setting(
        10.0, env="HEARTBEAT_TIMEOUT", parse=parse_duration,
        help="how long a client has to answer a ping before it is closed with 4001",
    )
    allowed_origins: tuple[str, ...] = setting(
        (), env="ALLOWED_ORIGINS", help="comma list of allowed Origin values; empty allows any",
    )
    max_connections: int = setting(10000, env="MAX_CONNECTIONS", help="connections per process")
    max_subscriptions: int = setting(100, env="MAX_SUBSCRIPTIONS", help="subscriptions per connection")
    client_rate_limit: float = setting(
        50.0, env="CLIENT_RATE_LIMIT",
        help="client messages per second per connection (burst: one second's worth)",
    )
    client_rate_abuse_seconds: int = setting(
        5, env="CLIENT_RATE_ABUSE_SECONDS",
        help="close with 1008 a connection whose messages were dropped by the rate limit in each "
             "of this many consecutive seconds",
    )
    slow_client_max_bytes: int = setting(
        4 * 1024 * 1024, env="SLOW_CLIENT_MAX_BYTES", parse=parse_size,
        help="outgoing queue per connection before it is closed with 4008",
    )
    max_message_bytes: int = setting(
        64 * 1024, env="MAX_MESSAGE_BYTES", parse=parse_size,
        help="largest client message accepted (larger: too_large error)",
    )
    max_frame_bytes: int = setting(
        1024 * 1024, env="MAX_FRAME_BYTES", parse=parse_size,
        help="largest WebSocket frame accepted (larger: close 1009)",
    )
    replay_max_events: int = setting(
        200_000, env="REPLAY_MAX_EVENTS",
        help="most events one connection replays for a subscribe (since): past it the connection is "
             "closed with 4008 and the client resumes from its last event; last: N looks back "
             "at most this far",
    )
    write_coalesce_ms: float = setting(
        5.0, env="WRITE_COALESCE_MS",
        help="the stream reader reads each partition's streams at most once per this many ms, so "
             "what arrives meanwhile goes to each connection in one write (fewer reads and system "
             "calls; an event waits at most this long); 0: read again at once",
    )
    shed_after: float = setting(
        3.0, env="SHED_AFTER", parse=parse_duration,
        help="when the stream reader has read nothing but full batches for this long (it cannot "
             "keep up), close 5% of the connections each second with 4008, costliest first, and "
             "refuse new ones with 1013 until it catches up; 0: never",
    )
    replay_page: int = setting(1000, env="REPLAY_PAGE", help="XRANGE page size during replay")
    reader_count: int = setting(1000, env="READER_COUNT", help="entries per XREAD and stream")
    reader_block: float = setting(
        0.5, env="READER_BLOCK", parse=parse_duration,
        help="longest a blocking XREAD waits (new event types are found between reads)",
    )
    reader_epoch_check: float = setting(
        5.0, env="READER_EPOCH_CHECK", parse=parse_duration,
        help="time between checks that no stream was re-created or trimmed under the reader",
    )
    reader_stale_after: float = setting(
        10.0, env="READER_STALE_AFTER", parse=parse_duration,
        help="/readyz fails when the stream reader has not completed a read for this long",
    )
    shutdown_grace: float = setting(
        10.0, env="SHUTDOWN_GRACE", parse=parse_duration,
        help="on SIGTERM, how long clients get to go before the process exits",
    )
    admin_role: str = setting("admin", env="ADMIN_ROLE", help="role that receives every user's events")
    publisher_role: str = setting(
        "publisher", env="PUBLISHER_ROLE", help="role allowed to POST /api/publish",
    )
    ws_compression: bool = setting(
        False, env="WS_COMPRESSION", help="offer permessage-deflate (costs CPU per connection)",
    )
    metrics_port: int | None = setting(
        None, env="METRICS_PORT", parse=parse_metrics_port,
        help="also serve this process's /metrics alone on this port (0 = any free port, logged); "
             "with --workers N, worker i uses METRICS_PORT+i; empty: off",
    )
    log_format: str = setting(
        "text", env="LOG_FORMAT", parse=parse_log_format,
        help="text, or json: one JSON object per line (ts, level, logger, msg, node, conn, event)",
    )
    symbols: tuple[str, ...] = setting(
        ("BTCUSDT", "ETHUSDT"), env="SYMBOLS",
        help="the ingested symbols, in order: the dashboard lists them first and selects the first",
    )
    access_log: bool = setting(
        False, env="ACCESS_LOG", help="log every HTTP request (uvicorn's access log)",
    )

    def __post_init__(self) -> None:
        PublishSettings.__post_init__(self)
        if not 0 <= self.port < 65536:
            raise ValueError(f"PORT: {self.port} is not a TCP port (0 = any free port)")
        if not 1 <= self.workers <= 256:
            raise ValueError("WORKERS: from 1 to 256")
        self._check_ops()
        if self.heartbeat_interval <= 0 or self.heartbeat_timeout <= 0:
            raise ValueError("HEARTBEAT_INTERVAL and HEARTBEAT_TIMEOUT must be positive")
        if self.jwt_secret and self.jwt_public_key:
            raise ValueError("set JWT_SECRET or JWT_PUBLIC_KEY, not both")
        if not 0 < self.client_rate_limit < math.inf or self.max_subscriptions < 1 \
                or self.max_connections < 1:
            raise ValueError("CLIENT_RATE_LIMIT, MAX_SUBSCRIPTIONS and MAX_CONNECTIONS must be positive")
        if not 1 <= self.client_rate_abuse_seconds <= 3600:
            raise ValueError("CLIENT_RATE_ABUSE_SECONDS: from 1 to 3600")
        if not 0 < self.reader_block <= 5:
            raise ValueError("READER_BLOCK: more than 0 s and at most 5 s")
        if not 0 <= self.shed_after <= 3600:
            raise ValueError("SHED_AFTER: from 0 (never) to 3600 s")
        if not 0 <= self.write_coalesce_ms <= 50:
            raise ValueError("WRITE_COALESCE_MS: from 0 to 50")
        if self.max_message_bytes > self.max_frame_bytes:
            raise ValueError("MAX_MESSAGE_BYTES cannot exceed MAX_FRAME_BYTES")
        if not self.node:
            object.__setattr__(self, "node", _default_node())
        symbols = tuple(dict.fromkeys(s.strip().upper() for s in self.symbols if s.strip()))
        bad = [s for s in symbols if not (s.isascii() and is_symbol(s))]
        if bad or not symbols:
            raise ValueError(f"SYMBOLS: {bad[0][:40]!r} is not a symbol (e.g. BTCUSDT)" if bad
                             else "SYMBOLS: at least one symbol is needed")
        object.__setattr__(self, "symbols", symbols)

    def _check_ops(self) -> None:
        object.__setattr__(self, "log_format", checked_log_format(self.log_format))
        base = self.metrics_port
        if base is None or base == 0:
            return
        last = base + self.workers - 1
        if last > 65535:
            raise ValueError(f"METRICS_PORT: {base} + {self.workers} workers passes port 65535")
        if base <= self.port <= last:
            raise ValueError(f"METRICS_PORT: {base}..{last} includes PORT {self.port}")

    def public_key_pem(self) -> str:
        key = self.jwt_public_key.reveal()
        if key.startswith("@"):
            try:
                with open(key[1:], encoding="utf-8") as handle:
                    return handle.read()
            except OSError as exc:
                raise ValueError(f"JWT_PUBLIC_KEY: cannot read {key[1:]}: {exc}") from None
        return key.replace("\\n", "\n")
