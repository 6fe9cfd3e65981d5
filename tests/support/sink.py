"""A recording stand-in for the server end of a connection (:class:`gateway.writer.Sink`).

It takes what the writer writes as a real connection would: with ``framed`` (no extension
negotiated) the bytes must be whole, unmasked WebSocket frames of the connection's opcode,
which it parses back; without, they are messages. It can refuse (``paused``: the transport is
full; ``drained()`` then waits for :meth:`resume`) or raise (``broken``: an adapter whose
library moved an attribute).
"""

from __future__ import annotations

import asyncio
import struct

from gateway.values import Frame


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """``(opcode, payload)`` of each whole, unfragmented, unmasked frame in ``data``."""
    out: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        first, second = data[i], data[i + 1]
        assert first & 0x80, "a FIN bit on every frame"
        assert not second & 0x80, "server frames are not masked"
        size, i = second & 0x7F, i + 2
        if size == 126:
            (size,), i = struct.unpack_from("!H", data, i), i + 2
            assert size >= 126, "the shortest length encoding"
        elif size == 127:
            (size,), i = struct.unpack_from("!Q", data, i), i + 8
            assert size >= 65536, "the shortest length encoding"
        assert i + size <= len(data), "a frame cut short"
        out.append((first & 0x0F, data[i:i + size]))
        i += size
    return out


class RecordingSink:
    """Records the messages written (``frames``), how (``opcodes``) and in how many writes."""

    def __init__(self, framed: bool = True) -> None:
        self.framed = framed
        self.frames: list[Frame] = []  # the messages, whichever way they were written
        self.opcodes: set[str] = set()
        self.types: set[type] = set()
        self.writes = 0
        self.refused = 0
        self.paused = False
        self.broken = False
        self.gone = False
        self._resumed = asyncio.Event()

    def write_frames(self, frames: list[Frame], binary: bool) -> bool:
        if self.broken:
            raise AttributeError("'WebSocketsSansIOProtocol' object has no attribute 'conn'")
        if self.paused or self.gone:
            self.refused += 1
            return False
        self.writes += 1
        self.types.update(map(type, frames))
        if self.framed:
            for opcode, payload in parse_frames(b"".join(frames)):
                self.opcodes.add({1: "text", 2: "binary"}[opcode])
                self.frames.append(payload)
        else:
            self.opcodes.add("binary" if binary else "text")
            self.frames.extend(frames)
        return True

    async def drained(self) -> bool:
        while self.paused and not self.gone:
            self._resumed.clear()
            await self._resumed.wait()
        return not self.gone

    def resume(self) -> None:
        self.paused = False
        self._resumed.set()

    def lose(self) -> None:
        """The connection went away: writes fail, a waiting writer is told."""
        self.gone = True
        self._resumed.set()
