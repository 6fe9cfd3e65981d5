"""Raw WebSocket clients for tests: websockets' sans-I/O client over a plain socket.

:class:`DeafClient` performs the opening handshake and then only reads; the pong frames the
protocol object prepares are never written, which is what a frozen or half-dead peer looks like
to a server. :class:`PipeClient` writes many messages in one go and records every reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.uri import parse_uri


class DeafClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.protocol = ClientProtocol(parse_uri(url))
        self.pings = 0
        self.texts: list[str] = []

    async def run_until_closed(self, timeout: float) -> int | None:
        """Handshake, then read until the server closes; return its close code."""
        uri = parse_uri(self.url)
        reader, writer = await asyncio.open_connection(uri.host, uri.port)
        self.protocol.send_request(self.protocol.connect())
        writer.write(b"".join(self.protocol.data_to_send()))
        handshake_done = False
        try:
            async with asyncio.timeout(timeout):
                while True:
                    data = await reader.read(65536)
                    if not data:
                        self.protocol.receive_eof()
                    else:
                        self.protocol.receive_data(data)
                    for event in self.protocol.events_received():
                        if isinstance(event, Response):
                            handshake_done = True
                            continue
                        if event.opcode is Opcode.PING:
                            self.pings += 1  # deliberately not answered
                        elif event.opcode is Opcode.TEXT:
                            self.texts.append(event.data.decode())
                    if self.protocol.close_rcvd is not None:
                        return self.protocol.close_rcvd.code
                    if not data:
                        return None
                    assert handshake_done or not self.texts
        finally:
            writer.close()


class PipeClient:
    """A WebSocket client that writes a whole list of messages with one socket write.

    websockets' sans-I/O client over a raw socket: :meth:`send_many` frames every message and
    hands the bytes to the kernel in one ``write``, so the server reads them back to back (that
    is what a pipelining client looks like). Pings are answered; every text frame received is
    decoded and kept in :attr:`messages`, in arrival order.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.protocol = ClientProtocol(parse_uri(url))
        self.messages: list[Any] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    @classmethod
    async def open(cls, url: str, timeout: float = 10) -> PipeClient:
        client = cls(url)
        uri = parse_uri(url)
        client._reader, client._writer = await asyncio.open_connection(uri.host, uri.port)
        client.protocol.send_request(client.protocol.connect())
        client._flush()
        await client.wait_for(lambda c: bool(c.messages), timeout)  # the welcome
        return client

    def _flush(self) -> None:
        assert self._writer is not None
        data = b"".join(self.protocol.data_to_send())
        if data and not self._writer.is_closing():
            self._writer.write(data)

    def send_many(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            self.protocol.send_text(orjson.dumps(message))
        self._flush()

    async def _read_some(self) -> bool:
        """Read once from the socket; False once the connection is over."""
        assert self._reader is not None
        data = await self._reader.read(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()
        for event in self.protocol.events_received():
            if isinstance(event, Response):
                if event.status_code != 101:
                    raise AssertionError(f"handshake refused: {event.status_code}")
            elif event.opcode is Opcode.TEXT:
                self.messages.append(orjson.loads(event.data))
        if self.protocol.close_rcvd is not None:
            self.close_code = self.protocol.close_rcvd.code
            self.close_reason = self.protocol.close_rcvd.reason
        self._flush()  # pongs, the close echo
        return bool(data) and self.close_code is None

    async def wait_for(self, condition: Callable[[PipeClient], bool], timeout: float = 10) -> None:
        """Read until ``condition(self)`` holds (AssertionError if the connection ends first)."""
        async with asyncio.timeout(timeout):
            while not condition(self):
                if not await self._read_some():
                    if condition(self):
                        return
                    raise AssertionError(f"connection ended ({self.close_code} {self.close_reason}) "
                                         f"after {len(self.messages)} messages")

    async def wait_closed(self, timeout: float = 10) -> int | None:
        """Read (keeping messages) until the server closes; its close code."""
        async with asyncio.timeout(timeout):
            while await self._read_some():
                pass
        return self.close_code

    def replies(self, msg_id: Any) -> list[dict[str, Any]]:
        return [m for m in self.messages if isinstance(m, dict) and m.get("id") == msg_id]

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except OSError:
                pass
