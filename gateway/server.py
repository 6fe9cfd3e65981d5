"""Run the gateway under uvicorn: one process, or several sharing a port with SO_REUSEPORT.

uvicorn does HTTP (httptools) and the WebSocket protocol (sans-I/O ``websockets`` underneath),
pings every ``HEARTBEAT_INTERVAL`` and, on SIGTERM, stops accepting, closes WebSockets with 1012
and waits ``SHUTDOWN_GRACE`` before running the lifespan shutdown. The changes made to its
protocols are in :class:`GatewayHttpProtocol` (bounded request heads, answered 414/431 at once)
and :class:`GatewayWebSocketProtocol` (heartbeat timeout 4001, a handshake refused by the
WebSocket parser answered instead of left hanging, synchronous frame writes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState

from gateway.app import create_app
from gateway.protocol import CLOSE_HEARTBEAT, SEND_NOW
from gateway.settings import GatewaySettings

log = logging.getLogger("tickstream.gateway.server")


# Request heads (docs/protocol.md, "Connecting"). The line limit is the WebSocket parser's own
# (websockets' MAX_LINE_LENGTH): the HTTP layer applies it first, to every request.
MAX_LINE_BYTES = 8192  # the request line, or one header line, with its CRLF
MAX_HEADERS = 128
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
REFUSAL_LINGER = 2.0  # seconds a refused connection reads (and drops) what the client still sends


class HeadTooLarge(Exception):
    """A request head over a limit: answered with ``status`` and closed."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class GatewayHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with bounded request heads.

    httptools itself takes a request line and headers of any size, buffering them until the
    head ends; and a WebSocket handshake with a line over 8 KiB was refused by the WebSocket
    parser after the upgrade, where uvicorn never sent the refusal (the client hung). Here every
    request is held to :data:`MAX_LINE_BYTES` per line (414 for the request line, 431 for a
    header), :data:`MAX_HEADERS` headers and :data:`MAX_HEAD_BYTES` in all (431), answered as
    soon as a limit is passed, even before the head ends, and the connection is closed.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_open = False  # inside a request head
        self._head_bytes = 0  # bytes of the current request head seen in the socket so far
        self._header_bytes = 0  # bytes of the header lines parsed so far
        self._completed = False  # a request ended in the data being parsed
        self._refusal: HeadTooLarge | None = None
        self._linger: asyncio.TimerHandle | None = None

    def _refuse(self, status: int, reason: str) -> HeadTooLarge:
        self._refusal = HeadTooLarge(status, reason)
        return self._refusal

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_open, self._head_bytes, self._header_bytes = True, 0, 0

    def on_url(self, url: bytes) -> None:
        if len(self.url) + len(url) > MAX_LINE_BYTES:
            raise self._refuse(414, f"request line over {MAX_LINE_BYTES} bytes")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        line = len(name) + len(value) + 4  # "name: value\r\n"
        if line > MAX_LINE_BYTES:
            raise self._refuse(431, f"header line over {MAX_LINE_BYTES} bytes")
        if len(self.headers) >= MAX_HEADERS:
            raise self._refuse(431, f"more than {MAX_HEADERS} header lines")
        self._header_bytes += line
        if len(self.url) + self._header_bytes > MAX_HEAD_BYTES:
            raise self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_open = False
        if len(self.parser.get_method()) + len(self.url) + 11 > MAX_LINE_BYTES:  # "M url HTTP/1.1\r\n"
            raise self._refuse(414, f"request line over {MAX_LINE_BYTES} bytes")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._completed = True
        super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        # uvicorn's data_received, with the refusals told apart from malformed requests.
        if self._refusal is not None:
            return
        self._completed = False
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._refusal is not None:
                self._send_refusal(self._refusal)
            else:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        if self._head_open and not self._completed:
            # The head goes on past this data (a header line still being read is buffered by
            # httptools and not seen yet): everything received since the request began is head.
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                self._send_refusal(self._refuse(431, f"request head over {MAX_HEAD_BYTES} bytes"))

    def _send_refusal(self, refusal: HeadTooLarge) -> None:
        body = f"{refusal.reason}\n".encode()
        content = [STATUS_LINE[refusal.status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: text/plain; charset=utf-8\r\n",
                        b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                        b"connection: close\r\n\r\n", body])
        transport = self.transport
        transport.write(b"".join(content))
        if transport.can_write_eof():
            # Lingering close: closing with unread input would reset the connection, and the
            # client could lose the answer. Send EOF, drop what still comes, close on the
            # client's EOF or after REFUSAL_LINGER seconds.
            transport.write_eof()
            self._linger = self.loop.call_later(REFUSAL_LINGER, transport.close)
        else:
            transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with three changes.

    * A ping left unanswered closes with 4001 (the contract's heartbeat timeout), not 1011.
    * A handshake the WebSocket parser refuses before it is a complete request (a line over its
      8 KiB limit: 414 or 431; too many headers: 431; not HTTP at all) is answered and closed.
      uvicorn only writes what the parser produces when a request comes out of it, so these
      refusals stayed unsent and the connection open. (:class:`GatewayHttpProtocol` applies the
      same limits first; this covers whatever else the parser refuses that way.)
    * The ASGI scope gets the extension ``tickstream.send_now``: a synchronous call that writes
      a list of frames with one ``transport.write`` when the connection is open and its
      transport is not paused, and returns False otherwise (the caller then falls back to the
      awaiting ASGI ``websocket.send``, which waits for the transport to drain). On the fan-out
      path this saves a coroutine, a task switch and a system call per frame.
    """

    heartbeat_timeouts = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if (not self.handshake_initiated and getattr(self.conn, "handshake_exc", None) is not None
                and not self.transport.is_closing()):
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.handshake_complete = self.close_sent = True
            self.transport.close()

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


LISTEN_BACKLOG = 16384


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    # A reconnect storm opens thousands of connections at once: the kernel caps this at
    # net.core.somaxconn (4096 by default on current Linux), so raise that too on big nodes.
    sock.listen(LISTEN_BACKLOG)
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
        "http": GatewayHttpProtocol,
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
