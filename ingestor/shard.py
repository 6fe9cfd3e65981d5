"""One shard of the subscription: its connection's life, reconnects, rotations and watchdog.

A shard is a fixed set of streams (at most 1024) served by one WebSocket at a time, two during
a rotation. Its supervisor task:

* **connects**, and after an unplanned loss reconnects with full-jitter backoff
  (:class:`shared.backoff.Backoff`, reset once a connection stayed up 60 s); after a reconnect
  the service backfills what was missed (trades, closed candles) and rebuilds the books;
* **rotates** before Binance's 24 h limit (``ROTATE_AFTER``) and when the server announces
  ``serverShutdown``: the new connection is opened first, the shard switches to it once it has
  delivered data, and only then the old one is closed; the overlap is removed downstream by
  id (:mod:`ingestor.feeds`);
* **watches staleness** of the streams that always tick (heartbeats: klines push every 2 s
  whatever the trading; without klines, the diff depth streams): when every heartbeat stream of
  the connection has been silent for ``STALE_AFTER``, the connection is silent and is replaced;
  when only some are, they are subscribed again (a quiet symbol's trades never count).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from typing import Protocol

from ingestor.connection import OPEN_ERRORS, Connection, FrameCallback
from ingestor.metrics import IngestorMetrics
from ingestor.settings import IngestorSettings
from shared.backoff import Backoff
from shared.logsetup import conn_logger

log = logging.getLogger("tickstream.ingestor.shard")

STABLE_AFTER = 60.0
ROTATION_RETRY = 60.0


class ShardHooks(Protocol):
    def connected(self, shard: Shard, reconnect: bool) -> None:
        """A connection is up; ``reconnect`` when it replaces one that was lost (not rotated)."""

    def lost(self, shard: Shard) -> None:
        """The shard has no connection any more: data is being missed from now on."""


class Shard:
    def __init__(
        self,
        index: int,
        streams: Sequence[str],
        heartbeats: Sequence[str],
        settings: IngestorSettings,
        on_frame: FrameCallback,
        hooks: ShardHooks,
        metrics: IngestorMetrics,
    ) -> None:
        self.index = index
        self.streams = tuple(streams)
        self.heartbeats = tuple(heartbeats)
        self.settings = settings
        self._on_frame = on_frame
        self._hooks = hooks
        self._metrics = metrics
        self.log = conn_logger(log, f"ws{index}")
        self.active: Connection | None = None
        self.pending: Connection | None = None
        self._connecting: Connection | None = None
        self._serial = 0
        self._wake = asyncio.Event()
        self._rotate_reason: str | None = None
        self._rotate_due = 0.0
        self._resubscribed_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self.started_at = time.monotonic()
        self._seen: dict[str, float] = {}  # last data per stream on connections now gone

    # -- public ----------------------------------------------------------------------------------

    def connections(self) -> list[Connection]:
        return [c for c in (self.active, self.pending) if c is not None and c.is_open]

    def stream_age(self, stream: str, now: float) -> float:
        """Seconds since ``stream`` last delivered, on any connection (since start if never).

        A new connection does not make a stream fresh: only its data does.
        """
        latest = self._seen.get(stream)
        for conn in self.connections():
            seen = conn.last_seen.get(stream)
            if seen is not None and (latest is None or seen > latest):
                latest = seen
        return now - (self.started_at if latest is None else latest)

    def request_rotation(self, conn: Connection, reason: str) -> None:
        """The exchange announced it will close ``conn`` (serverShutdown)."""
        if conn is self.active and self._rotate_reason is None:
            conn.log.info("%s announced: rotating to a new connection", reason)
            self._rotate_reason = reason
            self._wake.set()

    def start(self) -> None:
        self.started_at = time.monotonic()
        self._task = asyncio.create_task(self._run(), name=f"shard ws{self.index}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for conn in (self._connecting, self.pending, self.active):
            if conn is not None:
                await conn.close("shutting down")
        for task in list(self._closing):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- supervisor ------------------------------------------------------------------------------

    def _new_connection(self) -> Connection:
        self._serial += 1
        return Connection(
            f"ws{self.index}.{self._serial}", self.settings.binance_ws_url, self.streams,
            self._on_frame, url_max_length=self.settings.url_max_length,
            max_frame_bytes=self.settings.max_frame_bytes, on_closed=lambda _: self._wake.set(),
        )

    async def _run(self) -> None:
        backoff = Backoff(0.5, self.settings.reconnect_max_delay, STABLE_AFTER)
        reconnect = False
        while True:
            conn = self._connecting = self._new_connection()
            try:
                await conn.open()
            except OPEN_ERRORS as exc:
                self._connecting = None
                await conn.close()
                delay = backoff.next_delay(time.monotonic())
                self.log.warning("connection failed (%s); retrying in %.2f s", exc, delay)
                await asyncio.sleep(delay)
                continue
            backoff.connected(time.monotonic())
            self.active, self._connecting = conn, None
            self._rotate_due = time.monotonic() + self.settings.rotate_after
            self._hooks.connected(self, reconnect)
            reason = await self._serve()
            reconnect = True
            self._metrics.reconnects.labels(reason).inc()
            self._hooks.lost(self)
            self._close_later(self.active, reason)
            self.active = None
            delay = backoff.next_delay(time.monotonic())
            self.log.warning("connection lost (%s); reconnecting in %.2f s", reason, delay)
            await asyncio.sleep(delay)

    async def _serve(self) -> str:
        """Run the active connection until it is lost; rotations happen inside. The loss reason."""
        tick = min(1.0, self.settings.stale_after / 4)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), tick)
            self._wake.clear()
            conn = self.active
            assert conn is not None
            if conn.closed:
                return "closed"
            now = time.monotonic()
            if self._rotate_reason is not None or now >= self._rotate_due:
                await self._rotate(self._rotate_reason or "rotation")
                continue
            stale = [s for s in self.heartbeats if conn.age(s, now) > self.settings.stale_after]
            if stale and len(stale) == len(self.heartbeats):
                conn.abort(f"silent: no data on its {len(stale)} heartbeat stream(s) for "
                           f"{self.settings.stale_after:g} s")
                return "silent"
            if stale and now - self._resubscribed_at > self.settings.stale_after:
                self._resubscribed_at = now
                conn.log.warning("stale stream(s) %s: subscribing again", ", ".join(stale))
                task = asyncio.create_task(self._resubscribe(conn, stale))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    async def _resubscribe(self, conn: Connection, streams: list[str]) -> None:
        try:
            await conn.subscribe(streams)
        except OPEN_ERRORS as exc:  # SubscribeError among them
            conn.log.warning("subscribing again failed: %s", exc)

    async def _rotate(self, reason: str) -> None:
        old = self.active
        assert old is not None
        new = self.pending = self._new_connection()  # stop() closes it if it comes now
        old.log.info("rotation (%s): opening %s first", reason, new.id)
        try:
            await new.open()
            await asyncio.wait_for(new.delivered.wait(), self.settings.rotate_timeout)
        except OPEN_ERRORS as exc:  # TimeoutError among them
            self.pending = None
            new.abort(f"replacement failed: {exc!r}")
            self._close_later(new, "replacement failed")
            self._rotate_due = time.monotonic() + min(ROTATION_RETRY, self.settings.rotate_after)
            old.log.warning("rotation failed (%r); keeping this connection, retrying later", exc)
            return
        finally:
            self._rotate_reason = None
        self.active, self.pending = new, None
        self._rotate_due = time.monotonic() + self.settings.rotate_after
        self._metrics.reconnects.labels("server_shutdown" if reason == "serverShutdown"
                                        else "rotation").inc()
        new.log.info("switched from %s (%s)", old.id, reason)
        self._close_later(old, f"replaced by {new.id}")

    def _close_later(self, conn: Connection | None, reason: str) -> None:
        if conn is None:
            return
        for stream, seen in conn.last_seen.items():
            if seen > self._seen.get(stream, 0.0):
                self._seen[stream] = seen
        task = asyncio.create_task(conn.close(reason))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
