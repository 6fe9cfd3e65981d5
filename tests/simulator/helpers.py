"""Helpers for the simulator tests: JSON receive with timeouts, payload shapes, a raw client."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri

DECIMAL = re.compile(r"^-?\d+\.\d+$")


class Dec:
    """Marker type: a JSON string holding a decimal number."""


def assert_shape(payload: Any, shape: dict[str, Any]) -> None:
    """Exact key set, and each value of the given JSON type (bool is not int)."""
    assert isinstance(payload, dict), payload
    assert set(payload) == set(shape), (sorted(payload), sorted(shape))
    for key, expected in shape.items():
        value = payload[key]
        if expected is Dec:
            assert isinstance(value, str) and DECIMAL.match(value), (key, value)
        elif expected is int:
            assert isinstance(value, int) and not isinstance(value, bool), (key, value)
        elif isinstance(expected, dict):
            assert_shape(value, expected)
        else:
            assert isinstance(value, expected), (key, value)


def assert_levels(rows: Any) -> None:
    assert isinstance(rows, list)
    for row in rows:
        assert isinstance(row, list) and len(row) == 2, row
        assert all(isinstance(x, str) and DECIMAL.match(x) for x in row), row


async def recv_json(ws: ClientConnection, timeout: float = 5.0) -> Any:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_until(
    ws: ClientConnection, predicate: Callable[[Any], bool], timeout: float = 5.0
) -> Any:
    """The first JSON message satisfying ``predicate`` (others are skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no matching message")
        message = await recv_json(ws, left)
        if predicate(message):
            return message


async def request(ws: ClientConnection, message: dict[str, Any], timeout: float = 5.0) -> Any:
    """Send a control message and return the reply carrying its id."""
    await ws.send(json.dumps(message))
    req_id = message.get("id")
    return await recv_until(
        ws, lambda m: isinstance(m, dict) and ("result" in m or "error" in m)
        and m.get("id") == req_id, timeout,
    )


async def until_closed(ws: ClientConnection, timeout: float = 5.0) -> ConnectionClosed:
    """Read (and discard) until the server ends the connection; the closing exception."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return exc
    raise AssertionError("unreachable")


async def quiet_for(ws: ClientConnection, seconds: float) -> list[Any]:
    """Messages received until none arrived for ``seconds`` (raises if that never happens)."""
    received = []
    async with asyncio.timeout(10):
        while True:
            try:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), seconds)))
            except TimeoutError:
                return received


async def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds, checking every 10 ms; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


class RawClient:
    """A WebSocket client that answers nothing by itself (no automatic pongs).

    Built on websockets' Sans-I/O client so the test sees every frame, pings included.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 protocol: ClientProtocol) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.response: Response | None = None
        self._frames: list[Frame] = []
        self.eof = False
        self.reset = False
        """True when the connection ended with a TCP reset."""

    @classmethod
    async def connect(cls, url: str, timeout: float = 5.0) -> RawClient:
        parts = urlsplit(url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        protocol = ClientProtocol(parse_uri(url))
        client = cls(reader, writer, protocol)
        protocol.send_request(protocol.connect())
        client._write()
        async with asyncio.timeout(timeout):
            while client.response is None:
                await client._read()
                if client.eof:
                    raise ConnectionError("closed during handshake")
        return client

    def _write(self) -> None:
        for chunk in self.protocol.data_to_send():
            if chunk and not self.writer.is_closing():
                self.writer.write(chunk)

    async def _read(self) -> None:
        try:
            data = await self.reader.read(65536)
        except ConnectionResetError:
            self.reset = True
            data = b""
        except OSError:
            data = b""
        if data:
            self.protocol.receive_data(data)
        else:
            self.eof = True
            self.protocol.receive_eof()
        closing = False
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                self.response = event
            elif isinstance(event, Frame):
                self._frames.append(event)
                closing = closing or event.opcode is Opcode.CLOSE
        if closing:
            self._write()  # echo the close frame, as any client would
        else:
            self.protocol.data_to_send()  # drop automatic replies (pongs)

    async def next_frame(self, timeout: float = 5.0) -> Frame | None:
        """The next frame from the server, or ``None`` once the TCP connection ended."""
        async with asyncio.timeout(timeout):
            while not self._frames:
                if self.eof:
                    return None
                await self._read()
        return self._frames.pop(0)

    async def next_of(self, opcode: Opcode, timeout: float = 5.0) -> Frame | None:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next_frame(max(0.0, deadline - time.monotonic()))
            if frame is None or frame.opcode is opcode:
                return frame

    async def until_eof(self, timeout: float = 5.0) -> list[Frame]:
        """Every frame until the server closes the TCP connection."""
        frames: list[Frame] = []
        while True:
            frame = await self.next_frame(timeout)
            if frame is None:
                return frames
            frames.append(frame)

    def send_text(self, text: str) -> None:
        self.protocol.send_text(text.encode())
        self._write()

    def send_pong(self, data: bytes) -> None:
        self.protocol.send_pong(data)
        self._write()

    def send_ping(self, data: bytes) -> None:
        self.protocol.send_ping(data)
        self._write()

    def close(self) -> None:
        self.writer.close()
