"""Reconnect delays: full-jitter exponential backoff, reset after a stable connection.

``delays()`` is an endless generator: the n-th value is uniform in ``[0, min(cap, base * 2**n)]``
(AWS's "full jitter"), so a fleet of clients that lost the same server does not come back in
lock-step. :class:`Backoff` wraps it with the reset rule every reconnecting component follows:
once a connection has stayed up for ``stable_after`` seconds, the next failure starts again from
the smallest delay.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator


def delays(
    base: float = 0.5, cap: float = 30.0, rand: Callable[[], float] = random.random
) -> Iterator[float]:
    ceiling = base
    while True:
        yield rand() * ceiling
        ceiling = min(cap, ceiling * 2)


class Backoff:
    """Stateful backoff with the reset-after-stable rule. Clock values are passed in."""

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        stable_after: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base, self.cap, self.stable_after, self._rand = base, cap, stable_after, rand
        self._delays = delays(base, cap, rand)
        self._connected_at: float | None = None
        self.failures = 0

    def connected(self, now: float) -> None:
        """A connection just succeeded at ``now``."""
        self._connected_at = now

    def next_delay(self, now: float) -> float:
        """A connection failed or dropped at ``now``: how long to wait before trying again."""
        if self._connected_at is not None and now - self._connected_at >= self.stable_after:
            self.reset()
        self._connected_at = None
        self.failures += 1
        return next(self._delays)

    def reset(self) -> None:
        self._delays = delays(self.base, self.cap, self._rand)
        self.failures = 0
