"""Run one gateway process under uvicorn, on sockets bound here (``gateway/cli.py`` starts workers).

uvicorn does HTTP (httptools) and the WebSocket protocol (sans-I/O ``websockets`` underneath),
pings every ``HEARTBEAT_INTERVAL`` and, on SIGTERM, stops accepting, closes WebSockets with 1012
and waits ``SHUTDOWN_GRACE`` before running the lifespan shutdown. The changes made to its
protocols are in :class:`GatewayHttpProtocol` (bounded request heads, answered 414/431 at once)
and :class:`GatewayWebSocketProtocol` (heartbeat timeout 4001, a handshake refused by the
WebSocket parser answered instead of left hanging, synchronous writes of whole frames).

With ``METRICS_PORT`` the same server also listens on a second socket that answers only
``GET /metrics`` (:class:`MetricsPortApp`): each process can be scraped as itself even when
several share the public port. ``ACCESS_LOG`` turns uvicorn's access log on, through the
process's log format, each line tagged ``event=http_access`` with its parts as fields.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import socket
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.protocol import State

from gateway.app import GatewayApp, create_app
from gateway.metrics import GatewayMetrics
from gateway.protocol import CLOSE_HEARTBEAT, SINK
from gateway.settings import GatewaySettings
from shared.errors import TickstreamError

log = logging.getLogger("tickstream.gateway.server")


# Request heads (docs/protocol.md, "Connecting"). The line limit is the WebSocket parser's own
# (websockets' MAX_LINE_LENGTH): the HTTP layer applies it first, to every request.
MAX_LINE_BYTES = 8192  # the request line, or one header line, with its CRLF
MAX_HEADERS = 128
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
REFUSAL_LINGER = 2.0  # seconds a refused connection reads (and drops) what the client still sends


def linger_close(transport: asyncio.WriteTransport,
                 loop: asyncio.AbstractEventLoop) -> asyncio.TimerHandle | None:
    """Close after what was written, without losing it to a reset: closing with unread input
    makes the kernel reset the connection, and the reset can overtake the answer. Send EOF,
    let the protocol drop what still comes, close on the client's EOF or after
    ``REFUSAL_LINGER`` seconds (the timer returned, to cancel when the connection is lost)."""
    if not transport.can_write_eof():
        transport.close()
        return None
    transport.write_eof()
    return loop.call_later(REFUSAL_LINGER, transport.close)


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
        self.transport.write(b"".join(content))
        self._linger = linger_close(self.transport, self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        super().connection_lost(exc)


class GatewayWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with four changes.

    * A ping left unanswered closes with 4001 (the contract's heartbeat timeout), not 1011,
      counted in ``tickstream_heartbeat_timeouts_total``.
    * A handshake the WebSocket parser refuses before it is a complete request (a line over its
      8 KiB limit: 414 or 431; too many headers: 431; not HTTP at all) is answered and closed.
      uvicorn only writes what the parser produces when a request comes out of it, so these
      refusals stayed unsent and the connection open. (:class:`GatewayHttpProtocol` applies the
      same limits first; this covers whatever else the parser refuses that way.)
    * The ASGI scope gets the extension ``tickstream.sink``: the protocol itself, as the
      writer's :class:`~gateway.writer.Sink`. ``write_frames(frames, binary)`` writes a list of
      frames with one ``transport.write`` when the connection is open and its transport is not
      paused, and returns False otherwise; ``drained()`` waits for a paused transport. Without
      an extension (``framed``) the frames are whole WebSocket frames the gateway built once for
      every connection, written as they are; with permessage-deflate they are messages, framed
      and compressed by the library. On the fan-out path this saves the library's per-frame
      objects, a coroutine, a task switch and a system call per frame.
    * A frame the parser refuses (over ``MAX_FRAME_BYTES``: 1009; a protocol error: 1002) is
      answered with its close frame and a lingering close (see :meth:`handle_parser_exception`),
      so the client reads the code instead of a reset (1006).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ws_linger: asyncio.TimerHandle | None = None

    def handle_parser_exception(self) -> None:
        """uvicorn's, but the close frame goes out with :func:`linger_close` (what the client
        still sends is dropped by the failed parser), so the client reads the code instead of a
        reset. The app is told of the disconnect when the socket closes (uvicorn closes the
        transport as soon as the app returns)."""
        if self.close_sent:
            return  # answered already; this is more of what the client sent, dropped
        assert self.conn.close_sent is not None
        self.close_sent = True
        self.transport.write(b"".join(self.conn.data_to_send()))
        self._ws_linger = linger_close(self.transport, self.loop)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ws_linger is not None:  # the lingering close ended: the app learns the code
            self._ws_linger.cancel()
            self._ws_linger = None
            sent = self.conn.close_sent
            if sent is not None:
                self.queue.put_nowait({"type": "websocket.disconnect", "code": sent.code,
                                       "reason": sent.reason})
        super().connection_lost(exc)

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
            scope.setdefault("extensions", {})[SINK] = self

    async def send(self, message: Any) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake's request and response (headers and all) are not needed again:
            # with thousands of idle connections they are a good part of each one's memory.
            self.request = None  # type: ignore[assignment]
            self.response = None  # type: ignore[assignment]

    # --- the writer's Sink (gateway.writer) ------------------------------------------------------

    @property
    def framed(self) -> bool:
        """Whether ``write_frames`` takes whole frames: no extension was negotiated."""
        return not self.conn.extensions

    def _open_for_writes(self) -> bool:
        return not (self.close_sent or not self.handshake_complete or self.initial_response is not None
                    or self.transport.is_closing() or self.conn.state is not State.OPEN)

    def write_frames(self, frames: list[bytes], binary: bool) -> bool:
        """Write ``frames`` now with one system call; False if the transport is paused or the
        connection is closing. Without an extension they are whole frames (see ``framed``);
        with one they are messages (msgpack, or JSON as text frames), framed by the library."""
        if not self.writable.is_set() or not self._open_for_writes():
            return False
        conn = self.conn
        if not conn.extensions:
            self.transport.write(frames[0] if len(frames) == 1 else b"".join(frames))
            return True
        send = conn.send_binary if binary else conn.send_text
        try:
            for frame in frames:
                send(frame)
        except InvalidState:
            return False
        self.transport.write(b"".join(conn.data_to_send()))
        return True

    async def drained(self) -> bool:
        """Wait until the transport takes writes again; False once the connection is closing
        (uvicorn sets ``writable`` when the connection is lost, too)."""
        await self.writable.wait()
        return self._open_for_writes()

    def keepalive_timeout(self) -> None:
        self.pong_timer = None
        self.pending_ping_payload = None
        if self.close_sent or self.transport.is_closing():
            return
        self.conn.fail(CLOSE_HEARTBEAT, "heartbeat timeout")
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()
        if isinstance(self.config, GatewayConfig):
            self.config.metrics.heartbeat_timed_out()
        log.info("closing %s with %d: heartbeat timeout", _peer(self.transport), CLOSE_HEARTBEAT,
                 extra={"event": "heartbeat_timeout"})


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"


class GatewayConfig(uvicorn.Config):
    """uvicorn's configuration, plus the metrics the gateway's protocols report to."""

    def __init__(self, app: Any, metrics: GatewayMetrics, **options: Any) -> None:
        super().__init__(app, **options)
        self.metrics = metrics


class MetricsPortApp:
    """The gateway app, except on the metrics listener, where only ``GET /metrics`` is served.

    uvicorn hands every socket's requests to one app; this one tells them apart by the local
    port of the connection (``scope["server"]``).
    """

    def __init__(self, app: GatewayApp, metrics_port: int) -> None:
        self.app = app
        self.state = app.state
        self.metrics_port = metrics_port

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        server = scope.get("server")
        restricted = scope["type"] != "lifespan" and bool(server) and server[1] == self.metrics_port
        if not restricted or (scope["type"] == "http" and scope["path"] == "/metrics"):
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            body = b"this port serves GET /metrics only\n"
            await send({"type": "http.response.start", "status": 404,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


class _AccessFields(logging.Filter):
    """Tags uvicorn's access lines ``event=http_access`` with client, method, path and status."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 5:
            client, method, path, _version, status = args
            record.__dict__.update(client=client, method=method, path=path, status=status)
        record.__dict__.setdefault("event", "http_access")
        return True


def _access_log(enabled: bool) -> None:
    # uvicorn logs a request when "uvicorn.access" has a handler (here: the root's, through
    # propagation); its Config(access_log=False) cuts the propagation, so set it both ways.
    access = logging.getLogger("uvicorn.access")
    access.propagate = enabled
    if enabled:
        access.setLevel(logging.INFO)  # asked for: shown whatever LOG_LEVEL says
        if not any(isinstance(f, _AccessFields) for f in access.filters):
            access.addFilter(_AccessFields())


LISTEN_BACKLOG = 16384


def bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A listening socket (port 0: any free one); a failure is one line naming the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        # A reconnect storm opens thousands of connections at once: the kernel caps this at
        # net.core.somaxconn (4096 by default on current Linux), so raise that too on big nodes.
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise TickstreamError(f"cannot listen on {url(host, port)}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


def url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bound_port(sock: socket.socket) -> int:
    port: int = sock.getsockname()[1]
    return port


def config(settings: GatewaySettings, *, metrics_port: int | None = None,
           **overrides: Any) -> GatewayConfig:
    """uvicorn's configuration of one gateway process; ``overrides`` are uvicorn options."""
    options: dict[str, Any] = {
        "ws": GatewayWebSocketProtocol,
        "ws_max_size": settings.max_frame_bytes,
        "ws_ping_interval": settings.heartbeat_interval,
        "ws_ping_timeout": settings.heartbeat_timeout,
        "ws_per_message_deflate": settings.ws_compression,
        "lifespan": "on",
        "log_config": None,
        "access_log": settings.access_log,
        "server_header": False,
        "timeout_graceful_shutdown": int(max(1, settings.shutdown_grace)),
        "loop": "uvloop",
        "http": GatewayHttpProtocol,
    }
    options.update(overrides)
    app = create_app(settings)
    metrics: GatewayMetrics = app.state.node.metrics
    metrics.identify(settings.node, settings.max_connections)
    served: GatewayApp | MetricsPortApp = app
    if metrics_port is not None:
        served = MetricsPortApp(app, metrics_port)
    result = GatewayConfig(served, metrics, **options)
    _access_log(bool(options["access_log"]))
    return result


def serve(settings: GatewaySettings, listener: socket.socket | None = None,
          metrics_listener: socket.socket | None = None) -> None:
    """Run one gateway process until SIGTERM/SIGINT.

    Without ``listener`` it binds ``HOST:PORT`` itself (SO_REUSEPORT: other gateways may share
    the port), and ``METRICS_PORT`` when set. Port 0 becomes the port bound: that is what the
    log line, the health key and the node see.
    """
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    if listener is None:
        listener = bind(settings.host, settings.port, reuse_port=True)
    if metrics_listener is None and settings.metrics_port is not None:
        try:
            metrics_listener = bind(settings.host, settings.metrics_port, reuse_port=False)
        except TickstreamError:
            listener.close()
            raise
    port = bound_port(listener)
    metrics_port = None if metrics_listener is None else bound_port(metrics_listener)
    settings = dataclasses.replace(settings, port=port, metrics_port=metrics_port)
    server = uvicorn.Server(config(settings, metrics_port=metrics_port))
    log.info("gateway %s listening on %s", settings.node, url(settings.host, port),
             extra={"event": "listening", "port": port})
    sockets = [listener]
    if metrics_listener is not None:
        sockets.append(metrics_listener)
        log.info("gateway %s serves its metrics on %s/metrics", settings.node,
                 url(settings.host, bound_port(metrics_listener)),
                 extra={"event": "metrics_listening", "metrics_port": metrics_port})
    # Until uvicorn installs its own handlers (and after it restores these), a stop signal asks
    # the server to exit: one that arrives while the app is still being built is not lost, and
    # uvicorn's re-raise of the signal that stopped it is harmless, so a drained gateway exits 0.
    def stop(_signum: int, _frame: object) -> None:
        server.should_exit = True

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, stop)
    # A --workers child starts with these blocked (see gateway.cli): pending ones arrive now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
    server.run(sockets=sockets)
