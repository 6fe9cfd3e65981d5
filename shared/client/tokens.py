"""Where the client gets its JWT: a fixed string, or a provider called for a fresh one.

A provider is any callable (plain or async) returning a token, or None for an anonymous
connection. It is called before every connection attempt and again before the current token
expires (read from the token's ``exp`` claim, without verifying it: the gateway does that);
the fresh token is sent on the live connection as an ``auth`` message, so the connection is
never dropped for an expired token.
"""

from __future__ import annotations

import base64
import inspect
import time
from collections.abc import Awaitable, Callable

import orjson

TokenSource = str | Callable[[], str | Awaitable[str | None] | None] | None

REFRESH_MARGIN = 60.0  # refresh at most this long before expiry ...
REFRESH_FRACTION = 0.5  # ... and at the latest after this fraction of the remaining lifetime
MIN_REFRESH_DELAY = 0.2


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (epoch seconds), or None if it has none or is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool):
        return float(exp)
    return None


class TokenProvider:
    """The client's token: the current one, when it expires, when to fetch the next."""

    def __init__(self, source: TokenSource, clock: Callable[[], float] = time.time) -> None:
        if source is not None and not isinstance(source, str) and not callable(source):
            raise TypeError("token must be a string, a callable returning one, or None")
        self._source = source
        self._clock = clock
        self.current: str | None = source if isinstance(source, str) else None
        self.expires_at: float | None = jwt_expiry(self.current) if self.current else None
        self.obtained_at = clock()
        self.fetches = 0

    @property
    def refreshable(self) -> bool:
        """True when a fresh token can be asked for (the source is a callable)."""
        return callable(self._source)

    async def fetch(self) -> str | None:
        """Ask the provider for a fresh token (a fixed token is returned as is)."""
        if callable(self._source):
            value = self._source()
            if inspect.isawaitable(value):
                value = await value
            if value is not None and not isinstance(value, str):
                raise TypeError(f"the token provider returned {type(value).__name__}, not a string")
            self.current = value or None
            self.expires_at = jwt_expiry(value) if value else None
            self.obtained_at = self._clock()
            self.fetches += 1
        return self.current

    def refresh_delay(self) -> float | None:
        """Seconds until the current token should be replaced; None if it never needs to be."""
        if not self.refreshable or self.expires_at is None:
            return None
        lifetime = self.expires_at - self.obtained_at
        refresh_at = self.expires_at - min(REFRESH_MARGIN, max(0.0, lifetime) * REFRESH_FRACTION)
        return max(MIN_REFRESH_DELAY, refresh_at - self._clock())
