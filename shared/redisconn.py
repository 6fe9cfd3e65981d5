"""``REDIS_URL`` parsed, and Redis clients made from it, for the three supported topologies.

=============================================================================  ==================
URL                                                                            topology
=============================================================================  ==================
``redis://[user:password@]host:port/db``, ``rediss://...``, ``unix:///path``   one server
``redis+cluster://[user:password@]host:port[,host:port...]``                   Redis Cluster
``redis+sentinel://[user:password@]host:port[,host:port...]?sentinel_master_   a Sentinel-managed
name=NAME[&db=N][&sentinel_password=P]``                                       primary
=============================================================================  ==================

``rediss+cluster://`` and ``rediss+sentinel://`` use TLS to the data nodes. Cluster and Sentinel
URLs list seeds: any reachable node (or sentinel) will do. :class:`shared.topology.Topology` makes
the clients; this module holds the pure parsing and the client options.

Clients are created without redis-py's own retries: each caller owns its retry policy, so a
write is never re-sent behind the caller's back. RESP2 replies are requested explicitly.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.retry

from shared.errors import ConfigError

Kind = Literal["single", "cluster", "sentinel"]

_SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis": ("single", False), "rediss": ("single", True), "unix": ("single", False),
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
}
_HOST_PORT = re.compile(r"(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]{1,253}):(?P<port>[0-9]{1,5})")
_MASTER_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")
SCHEMES_HELP = ("redis://, rediss://, unix:// (one server), redis+cluster://host:port,... "
                "(Redis Cluster) or redis+sentinel://host:port,...?sentinel_master_name=NAME")


def describe(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and errors."""
    text = str(url)
    scheme, sep, rest = text.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0].split("?", 1)[0]:
        return text
    creds, _, after = rest.partition("@")
    if ":" not in creds:
        return text
    return f"{scheme}://{creds.split(':', 1)[0]}:***@{after}"


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """What ``REDIS_URL`` names: the topology, its seed nodes and credentials."""

    kind: Kind
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    username: str | None = None
    password: str | None = None
    db: int = 0
    tls: bool = False
    master_name: str = ""
    sentinel_password: str | None = None

    def __repr__(self) -> str:
        return f"RedisTarget({self.kind}, {describe(self.url)})"


def parse_redis_url(url: str) -> RedisTarget:
    """Parse and check ``REDIS_URL``; :class:`~shared.errors.ConfigError` names what is wrong."""
    url = str(url)
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError("REDIS_URL: expected host:port without spaces or control characters")
    scheme, sep, _ = url.partition("://")
    if not sep or scheme.lower() not in _SCHEMES:
        raise ConfigError(f"REDIS_URL: expected {SCHEMES_HELP}; got {describe(url)}")
    kind, tls = _SCHEMES[scheme.lower()]
    if kind == "single":
        return RedisTarget("single", url, tls=tls)
    parts = urlsplit(url)
    creds, _, hosts = parts.netloc.rpartition("@")
    username = password = None
    if creds:
        user, _, secret = creds.partition(":")
        username, password = unquote(user) or None, unquote(secret) or None
    nodes = []
    for item in hosts.split(","):
        match = _HOST_PORT.fullmatch(item.strip())
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ConfigError(f"REDIS_URL: expected host:port, got {item.strip()!r} in {describe(url)}")
        nodes.append((match["host"].strip("[]"), int(match["port"])))
    query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    db = 0
    if "db" in query or parts.path.strip("/"):
        raw_db = query.get("db", parts.path.strip("/"))
        if not raw_db.isdigit() or int(raw_db) > 15:
            raise ConfigError(f"REDIS_URL: db must be 0..15, got {raw_db!r}")
        db = int(raw_db)
    if kind == "cluster":
        if db:
            raise ConfigError("REDIS_URL: Redis Cluster has only database 0")
        unknown = set(query) - {"db"}
        if unknown:
            raise ConfigError(f"REDIS_URL: unknown option(s) {', '.join(sorted(unknown))}")
        return RedisTarget("cluster", url, tuple(nodes), username, password, 0, tls)
    name = query.get("sentinel_master_name", "")
    if not _MASTER_NAME.fullmatch(name):
        raise ConfigError("REDIS_URL: a redis+sentinel:// URL needs ?sentinel_master_name=NAME")
    unknown = set(query) - {"db", "sentinel_master_name", "sentinel_password"}
    if unknown:
        raise ConfigError(f"REDIS_URL: unknown option(s) {', '.join(sorted(unknown))}")
    return RedisTarget("sentinel", url, tuple(nodes), username, password, db, tls, name,
                       query.get("sentinel_password") or None)


def client_options(name: str, socket_timeout: float | None, extra: dict[str, Any]) -> dict[str, Any]:
    """Options every Tickstream Redis connection uses (``extra`` overrides)."""
    options: dict[str, Any] = {
        "client_name": name,
        "socket_timeout": socket_timeout,
        "socket_connect_timeout": 5.0,
        "socket_keepalive": True,
        "health_check_interval": 15,
        "protocol": 2,
        "decode_responses": False,
    }
    options.update(extra)
    return options


# The exceptions that mean "the connection failed; the command may or may not have run".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)

# Replies that mean "this node no longer owns the slot, or the cluster is moving": re-read the
# topology and try again (the command did not run).
TOPOLOGY_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.MovedError,
    redis.exceptions.AskError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
)

# Either: the topology may have changed under us.
RETRYABLE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, *TOPOLOGY_ERRORS)

# What a CLUSTER SLOTS probe of one node may fail with: try the next node.
PROBE_ERRORS: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, redis.ResponseError)

