"""A WebSocket client that never answers pings: websockets' sans-I/O client over a raw socket.

It performs the opening handshake and then only reads; the pong frames the protocol object
prepares are never written, which is what a frozen or half-dead peer looks like to a server.
"""

from __future__ import annotations

import asyncio

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
