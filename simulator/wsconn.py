"""A server-side WebSocket over asyncio streams, driven through websockets' Sans-I/O layer.

Owning the I/O lets the simulator do what a high-level server would hide: send its own
ping payloads and see every pong, count incoming control frames against the message rate
limit, go silent without closing, and end a connection with a TCP reset.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any

from websockets.frames import Frame
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from simulator.httpio import HttpRequest


class WsConnection:
    """One accepted WebSocket connection."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        protocol: ServerProtocol,
        close_timeout: float,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.protocol = protocol
        self.close_timeout = close_timeout
        self.muted: Callable[[], bool] = lambda: False
        """While true, automatic replies (pongs) are swallowed: the 'silence' fault."""
        self._abort_handle: asyncio.TimerHandle | None = None

    @classmethod
    def handshake(
        cls,
        request: HttpRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_size: int,
        close_timeout: float,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> WsConnection | None:
        """Answer the opening handshake of ``request``; ``None`` if it was refused.

        ``logger`` receives websockets' own protocol messages (give it the connection id).
        """
        protocol = ServerProtocol(max_size=max_size, logger=logger)
        protocol.receive_data(request.raw_head)
        events = protocol.events_received()
        if not events or not isinstance(events[0], Request):
            writer.close()
            return None
        response = protocol.accept(events[0])
        protocol.send_response(response)
        conn = cls(reader, writer, protocol, close_timeout)
        conn._flush(force=True)
        if response.status_code != 101:
            conn.writer.close()
            return None
        return conn

    # ---- sending -------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.protocol.state is State.OPEN and not self.writer.is_closing()

    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    def send_text(self, data: bytes) -> None:
        if self.is_open:
            self.protocol.send_text(data)
            self._flush(force=True)

    def send_binary(self, data: bytes) -> None:
        if self.is_open:
            self.protocol.send_binary(data)
            self._flush(force=True)

    def send_ping(self, data: bytes) -> None:
        if self.is_open:
            self.protocol.send_ping(data)
            self._flush(force=True)

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake; the TCP connection is aborted if it stalls."""
        if self.is_open:
            self.protocol.send_close(code, reason)
            self._flush(force=True)
        self._schedule_abort()

    def abort(self, reset: bool = True) -> None:
        """Drop the TCP connection now, with a RST when ``reset``."""
        transport = self.writer.transport
        if reset:
            sock = transport.get_extra_info("socket")
            if sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
        transport.abort()

    def close_tcp(self) -> None:
        """Close the TCP connection (FIN) without a WebSocket close frame."""
        self.writer.close()

    def _flush(self, force: bool) -> None:
        chunks = self.protocol.data_to_send()
        if not force and self.protocol.state is State.OPEN and self.muted():
            return
        for chunk in chunks:
            if self.writer.is_closing():
                return
            if chunk:
                self.writer.write(chunk)
            else:  # end of stream: the server closes the TCP connection
                self.writer.close()

    def _schedule_abort(self) -> None:
        if self._abort_handle is None and not self.writer.transport.is_closing():
            loop = asyncio.get_running_loop()
            self._abort_handle = loop.call_later(self.close_timeout, self.abort, False)

    # ---- receiving -----------------------------------------------------------------------

    async def frames(self) -> AsyncIterator[Frame]:
        """Every frame the client sends, until the TCP connection ends."""
        try:
            while True:
                try:
                    data = await self.reader.read(65536)
                except OSError:
                    data = b""
                if data:
                    self.protocol.receive_data(data)
                else:
                    self.protocol.receive_eof()
                events = self.protocol.events_received()
                self._flush(force=False)
                for event in events:
                    if isinstance(event, Frame):
                        yield event
                if not data:
                    return
                if self.protocol.close_expected():
                    self._schedule_abort()
        finally:
            if self._abort_handle is not None:
                self._abort_handle.cancel()
            if not self.writer.transport.is_closing():
                self.writer.transport.abort()
