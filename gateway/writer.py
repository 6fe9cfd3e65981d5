"""The per-connection writer: a bounded outgoing queue, flushed without a task switch.

Everything a client receives goes through :meth:`Writer.push_many`: lists of already-encoded
messages (``bytes``, see :data:`gateway.values.Frame`), usually the very list object every
other subscriber of the same events received (nothing is copied per subscriber). The queue is
bounded in bytes: a push that would pass ``max_bytes`` fails, and the session closes the
connection with 4008 rather than drop events.

The connection's socket is a :class:`Sink`. When it takes whole frames (``framed``: no
extension was negotiated), the writer's :attr:`~Writer.form` asks subscriptions for events as
complete WebSocket frames, built once per event and shared by every such connection, and a
flush is one ``bytes.join`` and one ``transport.write``: nothing is framed per connection.

Flushing has two paths:

* **fast** -- the writer is marked dirty with the node's :class:`Flusher`, which writes every
  dirty writer's frames with one synchronous ``sink.write_frames(frames, binary)`` each: one system
  call per connection per flush, no coroutine, no task switch. The flush comes on the next loop
  iteration, so everything one read of the stream reader brought goes out in one write (the
  reader paces its reads: ``WRITE_COALESCE_MS``, see :mod:`gateway.reader`); in batch mode it
  comes ``delay`` after the first message became ready, to fill the frame (the session passes
  ``batch_ms`` minus the reader's window, which held the events already);
* **slow** -- when the sink refuses (the client's transport is paused because it does not read
  fast enough), the writer's own task takes over and waits for the transport to drain. A slow
  client only ever delays its own task. (Without a sink, e.g. under another ASGI server, the
  task is the only path and awaits the ASGI ``send`` frame by frame.)

In batch mode the pending messages become as few frames as the frame budget allows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from itertools import chain
from typing import Protocol

from gateway import wsframe
from gateway.protocol import Wire
from gateway.values import Form, Frame, form_of

SendFn = Callable[[Frame], Awaitable[None]]
LatencyFn = Callable[[float], None]
FailureFn = Callable[[], None]

log = logging.getLogger("tickstream.gateway.writer")

FRAME_BUDGET = 256 * 1024  # a batch frame is cut at about this many bytes


class Sink(Protocol):
    """The server's end of one connection, as the writer writes to it."""

    @property
    def framed(self) -> bool:
        """True if :meth:`write_frames` takes whole WebSocket frames (no extension was
        negotiated); False if it takes messages and frames them itself (permessage-deflate)."""

    def write_frames(self, frames: list[Frame], binary: bool) -> bool:
        """Write now, in order, with one system call; False (nothing written) if the transport
        is paused or the connection is closing. ``binary``: msgpack, else JSON as text frames."""

    async def drained(self) -> bool:
        """Wait until a paused transport drains: True if :meth:`write_frames` may then be
        called, False once the connection is closing."""


class Flusher:
    """Flushes dirty writers from one event-loop callback per delay (0 = the next iteration).

    ``on_latency`` gets one figure per flush round: Redis accepting the oldest event written
    in the round to its write (one histogram sample per round, not one per connection).
    """

    def __init__(self, on_latency: LatencyFn | None = None) -> None:
        self._dirty: dict[float, list[Writer]] = {}
        self._on_latency = on_latency

    def mark(self, writer: Writer, delay: float) -> None:
        group = self._dirty.get(delay)
        if group is None:
            group = self._dirty[delay] = []
            loop = asyncio.get_running_loop()
            if delay > 0:
                loop.call_later(delay, self._flush, delay)
            else:
                loop.call_soon(self._flush, delay)
        group.append(writer)

    def _flush(self, delay: float) -> None:
        oldest = 0
        for writer in self._dirty.pop(delay, ()):
            ts = writer.flush_now()
            if ts and (not oldest or ts < oldest):
                oldest = ts
        if oldest and self._on_latency is not None:
            self._on_latency(time.time() - oldest / 1000.0)


Taken = tuple[list[Frame], int, int, int]  # frames, messages, bytes, oldest event ts


class Writer:
    """Owns one connection's outgoing queue: its byte limit, its flushes and its send counts.

    It never closes the connection itself (a failed push returns False and the session decides);
    it stops writing when a send fails, and then calls ``on_failure`` (the session closes the
    connection with 1011, so the client resumes from the last event it received: frames taken
    for a send that failed are never silently dropped behind an open connection).
    """

    __slots__ = (
        "_busy", "_chunks", "_drained", "_flusher", "_inflight", "_oldest_ts", "_on_failure", "_on_latency",
        "_scheduled", "_send", "_sink", "_stalled", "_task", "batch", "bytes_sent", "closed", "delay",
        "form", "framed", "frames_sent", "last_activity", "max_bytes", "messages_sent",
        "pending_bytes", "pending_count", "wire",
    )

    def __init__(
        self, send: SendFn, wire: Wire, *, max_bytes: int, batch: bool = False,
        batch_ms: float = 0.0, on_latency: LatencyFn | None = None,
        sink: Sink | None = None, flusher: Flusher | None = None,
        on_failure: FailureFn | None = None,
    ) -> None:
        self._send = send
        self._on_failure = on_failure
        self._sink = sink
        self._flusher = flusher if sink is not None else None
        self.wire = wire
        self.max_bytes = max_bytes
        self.batch = batch
        self.delay = batch_ms / 1000.0 if batch else 0.0  # from the first ready frame to the flush
        self.framed = sink is not None and sink.framed  # what is queued is whole frames
        # what subscriptions queue of an event: batch mode packs messages into batch frames
        self.form: Form = form_of(wire.binary, self.framed and not batch)
        self._chunks: list[list[Frame]] = []
        self.pending_bytes = 0  # queued, not yet taken for sending
        self.pending_count = 0
        self._oldest_ts = 0  # Redis time (ms) of the oldest queued event, 0 if none
        self._stalled: Taken | None = None  # frames the fast path could not write
        self._inflight = 0  # bytes taken and not yet written (stalled or being awaited)
        self._on_latency = on_latency
        self._task: asyncio.Task[None] | None = None  # exists only while the slow path runs
        self._drained: asyncio.Event | None = None  # made when a replay first waits on it
        self._busy = False  # the task is sending (slow path): the flusher keeps off
        self._scheduled = False
        self.closed = False
        self.last_activity = time.monotonic()
        self.frames_sent = self.messages_sent = self.bytes_sent = 0

    @property
    def queued_bytes(self) -> int:
        return self.pending_bytes + self._inflight

    def push(self, item: Frame) -> bool:
        """Queue one encoded control message."""
        if self.framed and not self.batch:
            item = wsframe.header(self.wire.binary, len(item)) + item
        return self.push_many([item], len(item))

    def push_many(self, items: list[Frame], size: int, ts: int = 0, count: int = 0) -> bool:
        """Queue ``items`` (not copied: the list must not change); False past the byte limit.

        ``ts`` is the Redis time of the oldest event among them, for the latency histogram;
        ``count`` the messages they hold when that is not one per item (a run of frames).
        A closed writer takes nothing and says yes: its connection is ending anyway.
        """
        if self.closed:
            return True
        if self.pending_bytes + self._inflight + size > self.max_bytes:
            return False
        self._chunks.append(items)
        self.pending_bytes += size
        self.pending_count += count or len(items)
        if ts and not self._oldest_ts:
            self._oldest_ts = ts
        if self._flusher is None or self._busy or self._stalled is not None:
            self._kick()
        elif not self._scheduled:
            self._scheduled = True
            self._flusher.mark(self, self.delay)
        return True

    async def wait_below(self, fraction: float = 0.5) -> None:
        """Wait until the queue holds less than ``fraction`` of its limit (replay pacing)."""
        while not self.closed and self.queued_bytes > self.max_bytes * fraction:
            if self._drained is None:
                self._drained = asyncio.Event()
            self._drained.clear()
            await self._drained.wait()

    def flush_now(self) -> int:
        """Fast path, called by the flusher: write everything queued if the transport takes it.

        Returns the Redis time of the oldest event written (0 if none): the flusher reports it.
        """
        self._scheduled = False
        if self.closed or self._busy or self._stalled is not None or not self._chunks:
            return 0
        assert self._sink is not None
        taken = self._take()
        try:
            written = self._sink.write_frames(taken[0], self.wire.binary)
        except Exception:  # the transport adapter broke: never leave the taken frames unsaid
            log.exception("the send path failed: closing the connection so that the client resumes")
            self._fail()
            return 0
        if written:
            self._sent(taken, report=False)
            return taken[3]
        # the client is not reading fast enough: its task waits for the transport
        self._stalled = taken
        self._inflight += taken[2]
        self._kick()
        return 0

    def _take(self) -> Taken:
        chunks, self._chunks = self._chunks, []
        count, size, oldest = self.pending_count, self.pending_bytes, self._oldest_ts
        self.pending_bytes = self.pending_count = self._oldest_ts = 0
        if self.batch and count > 1:
            frames = self._pack(chunks, size)
        else:
            frames = chunks[0] if len(chunks) == 1 else list(chain.from_iterable(chunks))
        if self.framed and self.batch:  # batch frames are this connection's own: framed here
            binary = self.wire.binary
            frames = [wsframe.header(binary, len(f)) + f for f in frames]
        return frames, count, size, oldest

    def _sent(self, taken: Taken, report: bool = True) -> None:
        frames, count, size, oldest = taken
        self.frames_sent += len(frames) if self.batch else count
        self.messages_sent += count
        self.bytes_sent += size
        self.last_activity = time.monotonic()
        if report and oldest and self._on_latency is not None:
            self._on_latency(time.time() - oldest / 1000.0)
        if self._drained is not None and not self._chunks and self._stalled is None:
            self._drained.set()

    def _kick(self) -> None:
        """Start the slow-path task unless it is already running."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """The slow path (and the only path without a sink): runs until nothing is left."""
        if self._flusher is None and self.delay and self.pending_count < 64:
            await asyncio.sleep(self.delay)  # let a burst fill the frame
        self._busy = True
        sink = self._sink
        try:
            while not self.closed and (self._stalled is not None or self._chunks):
                if self._stalled is not None:
                    taken, self._stalled = self._stalled, None
                else:
                    taken = self._take()
                    self._inflight += taken[2]
                if sink is None:
                    for frame in taken[0]:
                        await self._send(frame)
                else:
                    while not sink.write_frames(taken[0], self.wire.binary):
                        if not await sink.drained():
                            self.close()  # the connection is closing: the client resumes
                            return
                self._inflight -= taken[2]
                self._sent(taken)
        except Exception:  # the peer went away mid-send (or the send broke): nothing more goes out
            self._fail()
        finally:
            self._busy = False

    def _pack(self, chunks: list[list[Frame]], size: int) -> list[Frame]:
        pack = self.wire.pack_batch
        if size <= FRAME_BUDGET:
            return [pack(list(chain.from_iterable(chunks)) if len(chunks) > 1 else chunks[0])]
        frames: list[Frame] = []
        current: list[Frame] = []
        acc = 0
        for item in chain.from_iterable(chunks):
            current.append(item)
            acc += len(item)
            if acc >= FRAME_BUDGET:
                frames.append(pack(current))
                current, acc = [], 0
        if current:
            frames.append(pack(current))
        return frames

    def _fail(self) -> None:
        self.close()
        if self._on_failure is not None:
            self._on_failure()

    def close(self) -> None:
        self.closed = True
        self._chunks.clear()
        self._stalled = None
        self.pending_bytes = self.pending_count = self._inflight = 0
        if self._drained is not None:
            self._drained.set()
        if self._task is not None and self._task is not asyncio.current_task():
            self._task.cancel()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
