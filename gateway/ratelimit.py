"""The client-message rate rule of a connection, sans I/O (on a clock the caller passes in)."""

from __future__ import annotations

NOTICE_INTERVAL = 1.0  # at most one id-less rate_limited error per this many seconds


class RateLimiter:
    """The client-message rate rule, on a clock the caller passes in (monotonic seconds).

    A token bucket: ``rate`` messages per second with a burst of one second's worth
    (``max(1, rate)``). A message that finds no token is dropped (:meth:`take` says False).
    Drops are grouped in runs of one-second windows counted from the first drop of the run;
    a window without a drop ends the run. :attr:`abusive` turns true when a run covers
    ``abuse_seconds`` consecutive windows: the client kept violating the limit for that long
    (at least ``abuse_seconds - 1`` seconds), which a burst, however large, does not.
    """

    __slots__ = ("_last_window", "_next_notice", "_refilled", "_run_start", "_tokens",
                 "abuse_seconds", "burst", "dropped", "rate")

    def __init__(self, rate: float, abuse_seconds: int, now: float) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.abuse_seconds = abuse_seconds
        self.dropped = 0
        self._tokens = self.burst
        self._refilled = now
        self._run_start: float | None = None  # when the current run of drops began
        self._last_window = -1  # the run's last window (0 = the second after its first drop)
        self._next_notice = float("-inf")

    def take(self, now: float) -> bool:
        """One message arrives at ``now``: True to handle it, False to drop it."""
        tokens = min(self.burst, self._tokens + max(0.0, now - self._refilled) * self.rate)
        self._refilled = now
        if tokens >= 1:
            self._tokens = tokens - 1
            return True
        self._tokens = tokens
        self.dropped += 1
        start = self._run_start
        window = -1 if start is None else int((now - start) // 1.0)
        if start is None or window > self._last_window + 1:  # no run, or a quiet window: a new run
            self._run_start, self._last_window = now, 0
        elif window > self._last_window:
            self._last_window = window
        return False

    @property
    def run_seconds(self) -> int:
        """Consecutive one-second windows with drops in the current run (0: none yet)."""
        return 0 if self._run_start is None else self._last_window + 1

    @property
    def abusive(self) -> bool:
        return self.run_seconds >= self.abuse_seconds

    def notice_due(self, now: float) -> bool:
        """Whether an id-less ``rate_limited`` error may go out now (at most one per second)."""
        if now < self._next_notice:
            return False
        self._next_notice = now + NOTICE_INTERVAL
        return True
