"""Run the gateway under uvicorn: one process, or several sharing a port with SO_REUSEPORT.

uvicorn does the WebSocket protocol (sans-I/O ``websockets`` underneath), pings every
``HEARTBEAT_INTERVAL`` and, on SIGTERM, stops accepting, closes WebSockets with 1012 and waits
``SHUTDOWN_GRACE`` before running the lifespan shutdown. The one change made to its WebSocket
protocol: a ping left unanswered closes with 4001 (the contract's heartbeat timeout), not 1011.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import uvicorn
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from gateway.app import create_app
from gateway.protocol import CLOSE_HEARTBEAT, SEND_NOW
from gateway.settings import GatewaySettings

log = logging.getLogger("tickstream.gateway.server")


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with two changes.

    * A ping left unanswered closes with 4001 (the contract's heartbeat timeout), not 1011.
    * The ASGI scope gets the extension ``tickstream.send_now``: a synchronous call that writes
      a list of frames with one ``transport.write`` when the connection is open and its
      transport is not paused, and returns False otherwise (the caller then falls back to the
      awaiting ASGI ``websocket.send``, which waits for the transport to drain). On the fan-out
      path this saves a coroutine, a task switch and a system call per frame.
    """

    heartbeat_timeouts = 0

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            scope.setdefault("extensions", {})[SEND_NOW] = self.send_now

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response (headers and all) are not needed again:
            # with thousands of idle connections they are a good part of each one's memory.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    def send_now(self, frames: list[str | bytes]) -> bool:
        if (self.close_sent or not self.handshake_complete or self.initial_response is not None
                or not self.writable.is_set() or self.transport.is_closing()):
            return False
        conn = self.conn
        try:
            for frame in frames:
                if type(frame) is str:
                    conn.send_text(frame.encode())
                else:
                    conn.send_binary(frame)  # type: ignore[arg-type]
        except InvalidState:
            return False
        self.transport.write(b"".join(conn.data_to_send()))
        return True

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        GatewayWebSocketProtocol.heartbeat_timeouts += 1
        self.conn.fail(CLOSE_HEARTBEAT, "heartbeat timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def config(settings: GatewaySettings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "ws": GatewayWebSocketProtocol,
        "ws_max_size": settings.max_frame_bytes,
        "ws_ping_interval": settings.heartbeat_interval,
        "ws_ping_timeout": settings.heartbeat_timeout,
        "ws_per_message_deflate": settings.ws_compression,
        "lifespan": "on",
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": int(max(1, settings.shutdown_grace)),
        "loop": "uvloop",
        "http": "httptools",
    }
    options.update(overrides)
    return uvicorn.Config(create_app(settings), **options)


def serve(settings: GatewaySettings, *, reuse_port: bool = True) -> None:
    """Run one gateway process until SIGTERM/SIGINT."""
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    sock = bind(settings.host, settings.port, reuse_port)
    server = uvicorn.Server(config(settings))
    log.info("gateway %s listening on %s:%d", settings.node, settings.host, settings.port)
    # uvicorn re-raises the signal that stopped it once it is done; with these handlers in place
    # that re-raise is a no-op, so a drained gateway exits with status 0.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    server.run(sockets=[sock])


def serve_workers(settings: GatewaySettings, argv: list[str]) -> int:
    """Start ``workers`` gateway processes on one port and forward signals to them."""
    children = []
    env = dict(os.environ, WORKERS="1", NODE_ID="")
    for index in range(settings.workers):
        node = f"{settings.node}-w{index}" if settings.node else ""
        child_env = dict(env, NODE_ID=node)
        children.append(subprocess.Popen([sys.executable, "-m", "tickstream.cli", "gateway", *argv,
                                          "--workers", "1"], env=child_env))

    def forward(signum: int, _frame: Any) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    return max(codes, default=0)
