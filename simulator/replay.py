"""Replay of a recorded JSONL capture, as an alternative to the market model.

Each line is ``{"ts": <receive time, ms>, "stream": "<stream name>", "data": <payload>}``,
the format the ingestor's ``--record FILE`` writes. Payloads go to the subscribers of their
stream unchanged, at the capture's pacing divided by ``speed`` (``speed <= 0``: as fast as
possible). Lines that are not valid JSON or lack these fields are skipped and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from simulator.hub import Hub
from simulator.replay_store import ReplayStore
from simulator.streams import parse_stream

_log = logging.getLogger("tickstream.simulator.replay")


def read_capture(path: Path) -> Iterator[tuple[int, str, Any] | None]:
    """``(ts, stream, data)`` per line; ``None`` for a line that cannot be used."""
    with path.open("rb") as fh:
        for line in fh:
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                ts, stream, data = record["ts"], record["stream"], record["data"]
            except (orjson.JSONDecodeError, KeyError, TypeError):
                yield None
                continue
            if not isinstance(ts, int) or isinstance(ts, bool) or not isinstance(stream, str):
                yield None
                continue
            yield ts, stream, data


def capture_symbols(path: Path) -> list[str]:
    symbols: set[str] = set()
    for item in read_capture(path):
        if item is not None:
            spec = parse_stream(item[1])
            if spec is not None and spec.symbol is not None:
                symbols.add(spec.symbol.upper())
    return sorted(symbols)


class ReplaySource:
    """Reads the capture once and publishes it to the hub."""

    def __init__(
        self,
        path: Path,
        hub: Hub,
        speed: float = 1.0,
        history: int = 100_000,
        kline_history: int = 1500,
    ) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"replay file not found: {path}")
        self.path = path
        self.hub = hub
        self.speed = speed
        self.store = ReplayStore(capture_symbols(path), history, kline_history)
        self.sent = 0
        self.skipped = 0
        self.done = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._update_progress()

    def _update_progress(self) -> None:
        self.store.progress = {
            "file": str(self.path),
            "speed": self.speed,
            "started": self._task is not None,
            "sent": self.sent,
            "skipped": self.skipped,
            "done": self.done.is_set(),
        }

    def begin(self) -> None:
        """Start replaying (once)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            self._update_progress()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        start = time.monotonic()
        first_ts: int | None = None
        for item in read_capture(self.path):
            if item is None:
                self.skipped += 1
                continue
            ts, stream, data = item
            if first_ts is None:
                first_ts = ts
            if self.speed > 0:
                delay = start + (ts - first_ts) / 1000 / self.speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            if self.sent % 500 == 499:
                await asyncio.sleep(0)  # let the server breathe at full speed
            self._publish(stream, data)
            self._update_progress()
        self.done.set()
        self._update_progress()
        _log.info("replay finished: %d payloads sent, %d lines skipped", self.sent, self.skipped)

    def _publish(self, stream: str, data: Any) -> None:
        spec = parse_stream(stream)
        if spec is not None:
            try:
                self.store.ingest(spec.kind, spec.symbol.upper() if spec.symbol else None, data)
            except (KeyError, TypeError, ValueError):
                _log.debug("payload on %s not usable for REST", stream)
        self.hub.publish(stream, data)
        self.sent += 1
