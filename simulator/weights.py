"""REST request weight per client IP per minute, as ``X-MBX-USED-WEIGHT-1M`` reports it."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class WeightLimiter:
    """Counts weight per IP in fixed windows (one minute by default)."""

    def __init__(
        self, limit: int = 6000, window: float = 60.0, clock: Callable[[], float] = time.time
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit and window must be positive")
        self.limit = limit
        self.window = window
        self.clock = clock
        self._used: dict[str, tuple[int, int]] = {}

    def charge(self, ip: str, weight: int) -> tuple[int, int | None]:
        """Add ``weight`` for ``ip``; returns (used weight, Retry-After seconds if over)."""
        now = self.clock()
        window = int(now // self.window)
        start, used = self._used.get(ip, (window, 0))
        if start != window:
            used = 0
        used += weight
        self._used[ip] = (window, used)
        if used > self.limit:
            return used, max(1, math.ceil((window + 1) * self.window - now))
        return used, None

    def used(self, ip: str) -> int:
        window = int(self.clock() // self.window)
        start, used = self._used.get(ip, (window, 0))
        return used if start == window else 0
