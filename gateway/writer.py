"""The per-connection writer: a bounded outgoing queue drained by one task.

Everything a client receives goes through :meth:`Writer.push` (already-encoded frames, the
same object for every subscriber of an event). The queue is bounded in bytes: a push that
would pass ``max_bytes`` fails, and the session closes the connection with 4008 rather than
drop events. The drain task sends one frame per message, or, in batch mode, packs everything
pending into as few frames as the frame budget allows, optionally waiting ``batch_ms`` to let
more arrive. A slow client only ever delays its own task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from gateway.protocol import Wire

Frame = str | bytes
SendFn = Callable[[Frame], Awaitable[None]]

FRAME_BUDGET = 256 * 1024  # a batch frame is cut at about this many bytes


class Writer:
    __slots__ = (
        "_drained", "_pending", "_send", "_wake", "batch", "batch_delay", "bytes_sent", "closed",
        "frames_sent", "last_activity", "max_bytes", "messages_sent", "pending_bytes", "wire",
    )

    def __init__(
        self, send: SendFn, wire: Wire, *, max_bytes: int, batch: bool = False, batch_ms: float = 0.0
    ) -> None:
        self._send = send
        self.wire = wire
        self.max_bytes = max_bytes
        self.batch = batch
        self.batch_delay = batch_ms / 1000.0
        self._pending: list[Frame] = []
        self.pending_bytes = 0
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()
        self._drained.set()
        self.closed = False
        self.last_activity = time.monotonic()
        self.frames_sent = self.messages_sent = self.bytes_sent = 0

    def push(self, item: Frame) -> bool:
        """Queue one encoded message; False when the byte limit would be passed."""
        size = len(item)
        if self.pending_bytes + size > self.max_bytes:
            return False
        self._pending.append(item)
        self.pending_bytes += size
        if not self._wake.is_set():
            self._wake.set()
            self._drained.clear()
        return True

    def room(self) -> int:
        return self.max_bytes - self.pending_bytes

    async def wait_below(self, fraction: float = 0.5) -> None:
        """Wait until the queue holds less than ``fraction`` of its limit (replay pacing)."""
        while not self.closed and self.pending_bytes > self.max_bytes * fraction:
            self._drained.clear()
            await self._drained.wait()

    async def run(self) -> None:
        """Drain until closed. Exceptions from ``send`` (peer gone) end the task."""
        wake, send = self._wake, self._send
        while not self.closed:
            await wake.wait()
            if self.batch and self.batch_delay and len(self._pending) < 64:
                await asyncio.sleep(self.batch_delay)  # let a burst fill the frame
            wake.clear()
            items, self._pending = self._pending, []
            if not items:
                continue
            size = self.pending_bytes
            self.pending_bytes = 0
            if self.batch and len(items) > 1:
                for frame in self._frames(items, size):
                    await send(frame)
                    self.frames_sent += 1
            else:
                for item in items:
                    await send(item)
                self.frames_sent += len(items)
            self.messages_sent += len(items)
            self.bytes_sent += size
            self.last_activity = time.monotonic()
            if not self._pending:
                self._drained.set()

    def _frames(self, items: list[Frame], size: int) -> list[Frame]:
        if size <= FRAME_BUDGET:
            return [self.wire.pack_batch(items)]
        frames, start, acc = [], 0, 0
        for index, item in enumerate(items):
            acc += len(item)
            if acc >= FRAME_BUDGET:
                frames.append(self.wire.pack_batch(items[start:index + 1]))
                start, acc = index + 1, 0
        if start < len(items):
            frames.append(self.wire.pack_batch(items[start:]))
        return frames

    def close(self) -> None:
        self.closed = True
        self._pending.clear()
        self.pending_bytes = 0
        self._wake.set()
        self._drained.set()
