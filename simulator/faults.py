"""Fault injection: what is currently broken, and the controls to break things.

:class:`FaultState` is what the running server consults (is this connection silenced,
should this depth event be dropped, should this REST call fail, ...).
:class:`Faults` is the control surface: the same operations from Python, from
``POST /admin/faults`` (see :mod:`simulator.fault_spec`) and from start-up flags.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

MALFORMED_KINDS = ("text", "truncated", "binary", "types")
DROP_MODES = ("reset", "eof", "close")


@dataclass(slots=True)
class RestFault:
    status: int | None
    """HTTP status to answer with; ``None`` = answer normally (after the delay)."""
    delay_ms: int
    remaining: int | None
    """Requests left to affect; ``None`` = until cleared."""
    probability: float
    path: str | None
    """Only requests whose path starts with this; ``None`` = every /api/ request."""
    retry_after: int | None


@dataclass(slots=True)
class MalformedFault:
    kinds: tuple[str, ...]
    every: int
    """One bad frame after every ``every`` good data frames, per connection."""
    remaining: int | None
    replace: bool
    """Replace the good frame instead of adding the bad one before it."""


class FaultState:
    """Current faults, consulted by the server on every send and request."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(f"tickstream-simulator-faults:{seed}")
        self.silence_until: float | None = None
        self.silence_only: frozenset[int] | None = None
        self.depth_gaps: dict[tuple[str, bool], int] = {}
        self.malformed: MalformedFault | None = None
        self._malformed_turn = 0
        self.rest: list[RestFault] = []
        self.reject_until: float | None = None
        self.reject_status = 503

    # ---- queries -------------------------------------------------------------------------

    def silenced(self, conn_id: int) -> bool:
        until = self.silence_until
        if until is None:
            return False
        if time.monotonic() >= until:
            self.silence_until = None
            self.silence_only = None
            return False
        return self.silence_only is None or conn_id in self.silence_only

    def take_depth_gap(self, symbol: str, fast: bool) -> bool:
        key = (symbol, fast)
        left = self.depth_gaps.get(key, 0)
        if left <= 0:
            return False
        if left == 1:
            del self.depth_gaps[key]
        else:
            self.depth_gaps[key] = left - 1
        return True

    def malformed_kind(self, frames_sent: int) -> str | None:
        """The kind of bad frame to send now, if any, given the data frames sent so far."""
        fault = self.malformed
        if fault is None or frames_sent == 0 or frames_sent % fault.every:
            return None
        kind = fault.kinds[self._malformed_turn % len(fault.kinds)]
        self._malformed_turn += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.malformed = None
        return kind

    def take_rest_fault(self, path: str) -> RestFault | None:
        for fault in self.rest:
            if fault.path is not None and not path.startswith(fault.path):
                continue
            if fault.probability < 1.0 and self.rng.random() >= fault.probability:
                continue
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.rest.remove(fault)
            return fault
        return None

    def rejecting(self) -> int | None:
        """The HTTP status to refuse WebSocket handshakes with, while that fault lasts."""
        if self.reject_until is None:
            return None
        if time.monotonic() >= self.reject_until:
            self.reject_until = None
            return None
        return self.reject_status

    def describe(self) -> dict[str, Any]:
        now = time.monotonic()

        def left(until: float | None) -> float | None:
            if until is None or math.isinf(until):
                return None
            return round(max(0.0, until - now), 3)

        silent = self.silence_until is not None and now < self.silence_until
        rejecting = self.reject_until is not None and now < self.reject_until
        return {
            "silence": {
                "active": silent,
                "seconds_left": left(self.silence_until) if silent else None,
                "connections": sorted(self.silence_only) if self.silence_only else None,
            },
            "depth_gap": [
                {"symbol": s, "stream": "depth@100ms" if fast else "depth", "events": n}
                for (s, fast), n in sorted(self.depth_gaps.items())
            ],
            "malformed": None if self.malformed is None else asdict(self.malformed),
            "rest": [asdict(f) for f in self.rest],
            "reject": {
                "active": rejecting,
                "seconds_left": left(self.reject_until) if rejecting else None,
                "status": self.reject_status,
            },
        }


class ConnectionControl(Protocol):
    """What :class:`Faults` needs from the server."""

    def connection_ids(self) -> list[int]: ...

    def drop_all(self, mode: str, code: int, reason: str) -> int: ...

    def announce_shutdown(self, close_after: float | None, code: int, reason: str) -> int: ...


class Faults:
    """Break the simulator on purpose; every method takes effect immediately."""

    def __init__(self, state: FaultState, control: ConnectionControl) -> None:
        self.state = state
        self._control = control

    def drop(self, mode: str = "reset", code: int = 1001, reason: str = "") -> int:
        """Drop every open WebSocket connection; returns how many.

        ``reset``: TCP reset, no close frame. ``eof``: TCP close (FIN), no close frame.
        ``close``: a close frame with ``code``/``reason``, then TCP close.
        """
        if mode not in DROP_MODES:
            raise ValueError(f"drop mode must be one of {DROP_MODES}")
        return self._control.drop_all(mode, code, reason)

    def silence(self, seconds: float | None = None, scope: str = "all") -> None:
        """Send nothing (no data, no replies, no pings, no pongs) for ``seconds``.

        ``None`` = until :meth:`clear_silence`. ``scope="existing"`` silences only the
        connections open now; ``"all"`` also those opened while the fault lasts.
        """
        if scope not in ("all", "existing"):
            raise ValueError("scope must be 'all' or 'existing'")
        if seconds is not None and seconds < 0:
            raise ValueError("seconds must be >= 0")
        duration = math.inf if seconds is None else seconds
        self.state.silence_until = time.monotonic() + duration
        ids = frozenset(self._control.connection_ids())
        self.state.silence_only = ids if scope == "existing" else None

    def clear_silence(self) -> None:
        self.state.silence_until = None
        self.state.silence_only = None

    def depth_gap(self, symbol: str, events: int = 1) -> None:
        """Drop the next ``events`` diff-depth events of ``symbol`` (both speeds): a gap in U/u."""
        if events < 1:
            raise ValueError("events must be >= 1")
        for fast in (False, True):
            key = (symbol.upper(), fast)
            self.state.depth_gaps[key] = self.state.depth_gaps.get(key, 0) + events

    def malformed(
        self,
        kinds: tuple[str, ...] | list[str] = MALFORMED_KINDS,
        every: int = 5,
        count: int | None = None,
        replace: bool = False,
    ) -> None:
        """Interleave bad frames with the good ones on every connection.

        Kinds: ``text`` (not JSON), ``truncated`` (JSON cut short), ``binary`` (binary
        garbage frame), ``types`` (the event with wrong JSON types). ``count``: total bad
        frames before the fault clears itself (``None`` = until cleared).
        """
        kinds = tuple(kinds)
        bad = [k for k in kinds if k not in MALFORMED_KINDS]
        if bad or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {MALFORMED_KINDS}")
        if every < 1:
            raise ValueError("every must be >= 1")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1")
        self.state.malformed = MalformedFault(kinds, every, count, replace)

    def clear_malformed(self) -> None:
        self.state.malformed = None

    def rest(
        self,
        status: int | None = 500,
        delay_ms: int = 0,
        count: int | None = 1,
        path: str | None = None,
        probability: float = 1.0,
        retry_after: int | None = None,
    ) -> None:
        """Fail (``status``) and/or delay (``delay_ms``) the next ``count`` REST requests."""
        if status is not None and not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        if delay_ms < 0 or not 0.0 < probability <= 1.0:
            raise ValueError("delay_ms must be >= 0 and probability in (0, 1]")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1")
        self.state.rest.append(RestFault(status, delay_ms, count, probability, path, retry_after))

    def clear_rest(self) -> None:
        self.state.rest.clear()

    def reject_connections(self, seconds: float, status: int = 503) -> None:
        """Refuse new WebSocket handshakes with HTTP ``status`` for ``seconds``."""
        if seconds < 0 or not 400 <= status <= 599:
            raise ValueError("seconds must be >= 0 and status a 4xx/5xx code")
        self.state.reject_until = time.monotonic() + seconds
        self.state.reject_status = status

    def shutdown(self, close_after: float | None = None, code: int = 1001, reason: str = "") -> int:
        """Send ``serverShutdown`` on every connection; close them after ``close_after`` s."""
        return self._control.announce_shutdown(close_after, code, reason)

    def clear(self) -> None:
        """Clear every lasting fault (silence, gaps, malformed, REST, rejection)."""
        self.clear_silence()
        self.clear_malformed()
        self.clear_rest()
        self.state.depth_gaps.clear()
        self.state.reject_until = None

    def status(self) -> dict[str, Any]:
        return self.state.describe()
