"""Load shedding: while the stream reader stays behind, the costliest connections go first.

A gateway process is one core. Past what it can write, its stream reader falls behind the
streams (every read comes back full), and left alone it falls past the streams' retention:
every subscriber of the type is then closed with 4009 in the same instant and must start
over. Instead, once the reader has been behind for ``after`` seconds (``SHED_AFTER``), each
tick of the node closes a few connections with 4008 -- ``fraction`` of them, at least one --
and the node refuses new ones with 1013 until the reader catches up. The ones chosen cost the
most: the most output queued, then the most messages sent. A shed client reconnects (behind a
load balancer, often to another replica) and resumes from its offset: nothing is lost, and
the rest keep receiving.

Whether the reader is behind is measured by the reads themselves (every read returns its full
``count``, and the stream time they cover grows slower than the clock: the backlog grows), so a
skew between the gateway's clock and Redis's changes nothing, and a backlog being read faster
than real time (after a Redis outage) sheds nobody.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Protocol


class Sheddable(Protocol):
    """What the shedder reads of a connection, and how it closes it."""

    @property
    def queued_bytes(self) -> int: ...

    @property
    def messages_sent(self) -> int: ...

    @property
    def closed(self) -> bool: ...

    def shed(self) -> bool:
        """Close with 4008 (the client reconnects and resumes); False if already closing."""


class Shedder:
    """Picks the connections to close while the reader is behind (``after`` 0: never)."""

    def __init__(self, after: float, fraction: float = 0.05) -> None:
        self.after = after
        self.fraction = fraction
        self.shed_total = 0

    def overloaded(self, behind_for: float) -> bool:
        return self.after > 0 and behind_for >= self.after

    def pick(self, connections: Iterable[Sheddable], behind_for: float) -> list[Sheddable]:
        if not self.overloaded(behind_for):
            return []
        open_ones = [c for c in connections if not c.closed]  # a closing one costs nothing more
        ranked = sorted(open_ones, key=lambda c: (c.queued_bytes, c.messages_sent), reverse=True)
        return ranked[:max(1, math.ceil(len(ranked) * self.fraction))] if ranked else []

    def tick(self, connections: Iterable[Sheddable], behind_for: float) -> int:
        """Close this tick's share; the number closed."""
        closed = sum(1 for connection in self.pick(connections, behind_for) if connection.shed())
        self.shed_total += closed
        return closed
