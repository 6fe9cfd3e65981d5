"""What the client hands the application: events, connection status, reset notices."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from shared.offsets import Offset

State = Literal["connected", "reconnecting", "disconnected"]


@dataclass(slots=True)
class Event:
    """One event as received (CONTRACT section 3).

    ``offset`` is the Redis Stream entry id, ordered within ``event_type``; ``position`` is the
    same offset as a ``(ms, seq)`` integer pair, the only correct way to compare two offsets.
    ``ts`` is when Redis accepted the event (milliseconds since the epoch).
    """

    event_type: str
    offset: str
    symbol: str | None
    ts: int
    data: dict[str, Any]
    position: Offset = field(default=(0, 0), repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        """The event message as the gateway sent it."""
        return {"event_type": self.event_type, "offset": self.offset, "symbol": self.symbol,
                "ts": self.ts, "data": self.data}


@dataclass(frozen=True, slots=True)
class Status:
    """A change in the client's connection.

    ``connected``: a gateway accepted the connection (``node``, ``session``, ``latency`` = the
    round trip of a ``ping`` in seconds). ``reconnecting``: the connection ended (``code`` and
    ``reason`` say why; ``code`` is None when there was no close frame) and the next attempt
    starts in ``delay`` seconds; ``attempt`` counts failures since the last stable connection.
    ``disconnected``: the client stopped for good, because it was closed or because of
    ``error`` (a refused token, a refused origin...).
    """

    state: State
    url: str
    node: str | None = None
    session: str | None = None
    latency: float | None = None
    code: int | None = None
    reason: str = ""
    delay: float | None = None
    attempt: int = 0
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """A subscription could not resume: events between ``since`` and ``offset`` may be missing.

    The gateway answered ``recovered: false`` because ``since`` is no longer retained (older
    than ``earliest``) or because the stream was re-created (``epoch`` differs from
    ``previous_epoch``). The subscription goes on live after ``offset``; the application must
    rebuild whatever state it derived from earlier events.
    """

    event_type: str
    since: str | None
    offset: str
    epoch: str
    previous_epoch: str | None
    earliest: str | None
