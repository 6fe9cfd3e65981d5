"""``--record FILE``: every exchange data message, as received, one JSON object per line.

Each line is ``{"ts": <receive time, ms>, "stream": "<stream name>", "data": <raw payload>}``,
the format ``tickstream simulator --replay FILE`` plays back. The combined-stream wrapper
``{"stream": ..., "data": ...}`` Binance sends already holds the last two fields, so a line is
the message itself with ``"ts"`` spliced in front: the payload is written byte for byte, never
re-encoded. Only messages that parsed as stream data are recorded (not malformed frames, not
control replies, not ``serverShutdown``).

Writes go through a buffered file; it is flushed every second and on close, so a crash loses at
most about a second of recording. A write error stops recording (logged once), not ingestion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import BinaryIO

import orjson

log = logging.getLogger("tickstream.ingestor.record")

FLUSH_EVERY = 1.0


class Recorder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lines = 0
        self._file: BinaryIO | None = None
        self._flusher: asyncio.Task[None] | None = None

    def open(self) -> None:
        """Create (or truncate) the file; OSError if it cannot be written."""
        self._file = self.path.open("wb", buffering=256 * 1024)
        self._flusher = asyncio.create_task(self._flush_often(), name="record-flush")
        log.info("recording exchange messages to %s", self.path)

    def write(self, receive_ms: int, message: bytes) -> None:
        """Record one combined-stream message (a JSON object starting with ``{``)."""
        file = self._file
        if file is None:
            return
        body = message.strip()
        if b"\n" in body:  # pretty-printed JSON: one line per record is the format
            body = orjson.dumps(orjson.loads(body))
        try:
            file.write(b'{"ts":%d,%s\n' % (receive_ms, body[1:]))
        except OSError as exc:
            log.error("recording to %s stopped: %s", self.path, exc)
            self._file = None
            return
        self.lines += 1

    async def close(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None
            log.info("recorded %d messages to %s", self.lines, self.path)

    async def _flush_often(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            if self._file is not None:
                try:
                    self._file.flush()
                except OSError as exc:
                    log.error("recording to %s stopped: %s", self.path, exc)
                    self._file = None
