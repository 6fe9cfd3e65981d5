"""A WebSocket relay in front of a real gateway that sends every server frame twice.

The gateway never repeats an event on one connection; this relay does, on purpose, so the
conformance suite can count that each client delivers every offset exactly once anyway.
The client's subprotocol, path and query (batch, token) are passed through unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import connect
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from shared.protocol import SUBPROTOCOL_JSON, SUBPROTOCOL_MSGPACK


class DuplicatingRelay:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.frames = 0  # server frames relayed (each sent twice)
        self._server: Server | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        protocols = [Subprotocol(SUBPROTOCOL_JSON), Subprotocol(SUBPROTOCOL_MSGPACK)]
        self._server = await serve(self._handle, "127.0.0.1", 0, max_size=None, subprotocols=protocols)
        self.port = next(iter(self._server.sockets)).getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, client: ServerConnection) -> None:
        path = client.request.path if client.request is not None else "/ws"
        protocols = [client.subprotocol] if client.subprotocol else None
        async with connect(f"ws://127.0.0.1:{self.upstream_port}{path}", subprotocols=protocols,
                           max_size=None) as upstream:

            async def down() -> None:
                async for frame in upstream:
                    self.frames += 1
                    await client.send(frame)
                    await client.send(frame)

            async def up() -> None:
                async for frame in client:
                    await upstream.send(frame)

            tasks: list[asyncio.Task[Any]] = [asyncio.create_task(down()), asyncio.create_task(up())]
            with contextlib.suppress(ConnectionClosed):
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
