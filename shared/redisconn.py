"""Redis connections from ``REDIS_URL`` (``redis://``, ``rediss://``, ``unix://``).

Clients are created without redis-py's own retries: each caller owns its retry policy, so a
write is never re-sent behind the caller's back. RESP2 replies are requested explicitly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.errors import ConfigError


def describe(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and errors."""
    parts = urlsplit(str(url))
    if parts.password is None:
        return urlunsplit(parts)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def _options(name: str, socket_timeout: float | None, extra: dict[str, Any]) -> dict[str, Any]:
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


def _check(url: str) -> str:
    url = str(url)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://: {describe(url)}")
    return url


def async_client(
    url: str, *, name: str = "tickstream", socket_timeout: float | None = 10.0, **extra: Any
) -> redis.asyncio.Redis:
    options = _options(name, socket_timeout, extra)
    options["retry"] = redis.asyncio.retry.Retry(NoBackoff(), 0)
    return redis.asyncio.Redis.from_url(_check(url), **options)


def sync_client(
    url: str, *, name: str = "tickstream", socket_timeout: float | None = 10.0, **extra: Any
) -> redis.Redis:
    options = _options(name, socket_timeout, extra)
    options["retry"] = Retry(NoBackoff(), 0)
    return redis.Redis.from_url(_check(url), **options)


# The exceptions that mean "the connection failed; the command may or may not have run".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
)
