"""A loopback TCP proxy that can cut connections at chosen moments (fault injection).

``swallow_reply_after(marker)``: the next request containing ``marker`` reaches the server, its
reply is thrown away and both connections are closed -- the "did my write happen?" case.
``cut_all()`` drops every connection now; ``pause()`` refuses new ones until ``resume()``.
"""

from __future__ import annotations

import asyncio
import contextlib


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._conns: set[asyncio.StreamWriter] = set()
        self._swallow_marker: bytes | None = None
        self.swallowed = 0
        self.refuse = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def swallow_reply_after(self, marker: bytes) -> None:
        self._swallow_marker = marker

    def cut_all(self) -> None:
        for writer in list(self._conns):
            writer.transport.abort()
        self._conns.clear()

    async def stop(self) -> None:
        self.cut_all()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refuse:
            client_w.transport.abort()
            return
        try:
            up_r, up_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.transport.abort()
            return
        self._conns.update((client_w, up_w))
        armed = asyncio.Event()

        async def upstream_pump() -> None:
            while data := await client_r.read(65536):
                if self._swallow_marker is not None and self._swallow_marker in data:
                    self._swallow_marker = None
                    armed.set()
                up_w.write(data)
                await up_w.drain()

        async def downstream_pump() -> None:
            while data := await up_r.read(65536):
                if armed.is_set():
                    self.swallowed += 1
                    client_w.transport.abort()
                    up_w.transport.abort()
                    return
                client_w.write(data)
                await client_w.drain()

        tasks = [asyncio.create_task(upstream_pump()), asyncio.create_task(downstream_pump())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_w, up_w):
            self._conns.discard(writer)
            writer.transport.abort()
