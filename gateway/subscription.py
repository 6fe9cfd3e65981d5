"""One subscription of one connection: its filter, its position and live delivery.

While the subscription replays history it is *recovering*: live events are buffered, and
:mod:`gateway.replay` hands them over once the history is out. Afterwards each live batch is
queued directly, dropping any offset at or below the last one delivered.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.broker import Entry
from gateway.hub import Batch, Encoded
from shared.offsets import Offset

if TYPE_CHECKING:
    from gateway.session import Session


class Subscription:
    """One event type a session receives, with its filter and delivery position."""

    __slots__ = ("binary", "buffer", "buffer_bytes", "event_type", "last", "recovering", "replied",
                 "session", "symbols", "writer")

    def __init__(self, session: Session, event_type: str, symbols: frozenset[str] | None) -> None:
        self.session = session
        self.writer = session.writer
        self.binary = session.wire.binary
        self.event_type = event_type
        self.symbols = symbols
        self.last: Offset = (0, 0)
        self.recovering = True  # live events are buffered until history is delivered
        self.replied = False  # the ``subscribed`` reply was queued
        self.buffer: list[Encoded] = []
        self.buffer_bytes = 0

    def offer(self, event: Encoded) -> None:
        """One live event (private events come one by one), in stream order."""
        if self.recovering:
            self._buffer([event])
        elif event.pos > self.last:
            self.last = event.pos
            item = event.wire(self.binary)
            if not self.writer.push_many([item], len(item), event.ts):
                self.session.slow_consumer("outgoing queue full")

    def offer_batch(self, batch: Batch) -> None:
        """A run of live events, in stream order; the wire list is shared with other subscribers."""
        events = batch.events
        if self.recovering:
            self._buffer(events)
            return
        if events[0].pos > self.last:
            items, size = batch.frames(self.binary)
        else:  # overlaps what a replay already delivered: keep only the newer ones
            events = [e for e in events if e.pos > self.last]
            if not events:
                return
            items = [e.wire(self.binary) for e in events]
            size = sum(map(len, items))
        self.last = events[-1].pos
        if not self.writer.push_many(items, size, events[0].ts):
            self.session.slow_consumer("outgoing queue full")

    def _buffer(self, events: list[Encoded]) -> None:
        self.buffer.extend(events)
        self.buffer_bytes += sum(len(e.entry.payload) for e in events) + 64 * len(events)
        if self.buffer_bytes > self.writer.max_bytes:
            self.session.slow_consumer("live events piled up during a replay")

    def matches(self, item: Entry) -> bool:
        return self.symbols is None or item.entry.symbol in self.symbols
