"""Real gateways for tests: in-process under uvicorn, or as a separate ``tickstream gateway``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import orjson
import pytest
import uvicorn
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from gateway.server import bind, config
from gateway.settings import GatewaySettings
from tests.support.redis_server import free_port

SECRET = "test-secret-which-is-long-enough-for-hs256"


def token(user: str, *, roles: list[str] | None = None, ttl: float = 3600) -> str:
    claims: dict[str, Any] = {"sub": user, "exp": int(time.time() + ttl)}
    if roles is not None:
        claims["roles"] = roles
    return jwt.encode(claims, SECRET, algorithm="HS256")


def gateway_settings(redis_url: str, **overrides: Any) -> GatewaySettings:
    values: dict[str, Any] = {"redis_url": redis_url, "port": free_port(), "jwt_secret": SECRET,
                              "reader_block": 0.2, "heartbeat_interval": 30.0}
    values.update(overrides)
    return GatewaySettings(**values)


class InProcessGateway:
    def __init__(self, settings: GatewaySettings) -> None:
        self.settings = settings
        self.server = uvicorn.Server(config(settings, loop="asyncio"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.settings.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    @property
    def node(self) -> Any:
        return self.server.config.loaded_app and self.server.config.app.state.node  # type: ignore[attr-defined]

    async def start(self) -> None:
        sock = bind("127.0.0.1", self.settings.port, reuse_port=False)
        self._task = asyncio.create_task(self.server.serve(sockets=[sock]))
        deadline = time.monotonic() + 10
        while not self.server.started:
            if self._task.done():
                self._task.result()
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.server.should_exit = True
        if self._task is not None:
            await asyncio.wait_for(self._task, 30)


@contextlib.asynccontextmanager
async def running_gateway(redis_url: str, **overrides: Any) -> AsyncIterator[InProcessGateway]:
    gw = InProcessGateway(gateway_settings(redis_url, **overrides))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


class GatewayProcess:
    """``tickstream gateway`` in its own process, for SIGKILL and SIGTERM tests."""

    def __init__(self, redis_url: str, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        self.env = dict(os.environ, REDIS_URL=redis_url, PORT=str(self.port), HOST="127.0.0.1",
                        JWT_SECRET=SECRET, READER_BLOCK="0.2", LOG_LEVEL="WARNING", **env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        # Its log goes to a file, never to a pipe nobody reads: a full pipe would block the
        # gateway on a log line (and, say, a SIGTERM drain would never finish).
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process; closed in stop)
        self.proc = subprocess.Popen([sys.executable, "-m", "tickstream.cli", "gateway"],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=self.log)
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient() as client:
            while True:
                try:
                    if (await client.get(f"http://127.0.0.1:{self.port}/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if self.proc.poll() is not None:
                    self.log.seek(0)
                    err = self.log.read().decode(errors="replace")
                    raise RuntimeError(f"gateway exited with {self.proc.returncode}: {err[-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError("gateway did not become ready")
                await asyncio.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGKILL)
            await self.wait()
        if self.proc is not None:
            self.log.close()


class Client:
    """A thin test client over a real WebSocket: JSON in and out, with helpers to wait."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.controls: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, url: str, **kwargs: Any) -> Client:
        # No client-side queue cap: a test that stops reading must still see the close echo.
        kwargs.setdefault("max_queue", None)
        kwargs.setdefault("close_timeout", 2)
        client = cls(await connect(url, **kwargs))
        welcome = await client.control("welcome")
        assert welcome["protocol"] == 1
        return client

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(orjson.dumps(message).decode())

    async def recv(self, timeout: float = 10) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.ws.recv(), timeout)
        message = orjson.loads(frame)
        assert isinstance(message, dict), message
        if "type" in message:  # control messages carry "type", events do not
            self.controls.append(message)
        else:
            self.events.append(message)
        return message

    async def control(self, kind: str, timeout: float = 10) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            message = await self.recv(max(0.01, deadline - time.monotonic()))
            if message.get("type") == kind:
                return message
            if message.get("type") == "error" and kind != "error":
                raise AssertionError(f"got error while waiting for {kind}: {message}")

    async def subscribe(self, event_type: str, **fields: Any) -> dict[str, Any]:
        await self.send({"op": "subscribe", "event_type": event_type, **fields})
        return await self.control("subscribed")

    async def events_until(self, n: int, timeout: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while len(self.events) < n:
            await self.recv(max(0.01, deadline - time.monotonic()))
        return self.events

    async def close(self) -> None:
        await self.ws.close()


async def closed_with(ws: ClientConnection, timeout: float = 10) -> int:
    """Read until the server closes the connection; return the close code it sent."""
    async def drain() -> None:
        while True:
            await asyncio.wait_for(ws.recv(), timeout)

    with pytest.raises(ConnectionClosed) as info:
        await drain()
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd.code


@contextlib.asynccontextmanager
async def running_gateway_process(redis_url: str, **env: str) -> AsyncIterator[GatewayProcess]:
    """A ``tickstream gateway`` process for the block (for tests that SIGKILL or restart it)."""
    gateway = GatewayProcess(redis_url, **env)
    await gateway.start()
    try:
        yield gateway
    finally:
        await gateway.stop()
