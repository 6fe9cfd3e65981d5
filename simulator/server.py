"""The listening socket: one port for REST, admin and WebSocket streams.

Each TCP connection is read as HTTP/1.1; a WebSocket upgrade on ``/ws...`` or
``/stream...`` becomes a :class:`~simulator.session.Session`, anything else goes to the
HTTP handler (REST and admin) with keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from shared.logsetup import conn_logger
from simulator.faults import FaultState
from simulator.httpio import HttpError, HttpRequest, HttpResponse, read_request
from simulator.hub import Hub
from simulator.session import Session, WsLimits
from simulator.streams import parse_stream
from simulator.wsconn import WsConnection

_log = logging.getLogger("tickstream.simulator.server")

HttpHandler = Callable[[HttpRequest], Awaitable[HttpResponse]]


class StreamPathError(ValueError):
    pass


def parse_ws_target(req: HttpRequest, max_streams: int) -> tuple[bool, list[str], bool]:
    """``(combined, streams, microseconds)`` for a WebSocket request target."""
    path = req.path
    if path in ("/ws", "/ws/"):
        combined, names = False, []
    elif path.startswith("/ws/"):
        combined, names = False, [unquote(p) for p in path[4:].split("/") if p]
    elif path in ("/stream", "/stream/"):
        raw = req.param("streams") or ""
        combined, names = True, [p for p in raw.split("/") if p]
    else:
        raise StreamPathError("unknown WebSocket path; use /ws/<stream> or /stream?streams=")
    names = list(dict.fromkeys(names))
    if any(parse_stream(n) is None for n in names):
        raise StreamPathError("Invalid request: invalid stream")
    if len(names) > max_streams:
        raise StreamPathError("Too many subscriptions")
    unit = (req.param("timeUnit") or "MILLISECOND").upper()
    if unit not in ("MILLISECOND", "MICROSECOND"):
        raise StreamPathError("timeUnit must be MILLISECOND or MICROSECOND")
    return combined, names, unit == "MICROSECOND"


class SimServer:
    """Accepts connections and tracks the live WebSocket sessions."""

    def __init__(
        self, hub: Hub, faults: FaultState, limits: WsLimits, http_handler: HttpHandler
    ) -> None:
        self.hub = hub
        self.faults = faults
        self.limits = limits
        self.http_handler = http_handler
        self.sessions: dict[int, Session] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._on_client, host, port, limit=64 * 1024, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self.sessions.values()):
            session.drop("close", 1001, "Server stopping")
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=1.0)
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ---- ConnectionControl ---------------------------------------------------------------

    def connection_ids(self) -> list[int]:
        return list(self.sessions)

    def drop_all(self, mode: str, code: int, reason: str) -> int:
        sessions = list(self.sessions.values())
        for session in sessions:
            session.drop(mode, code, reason)
        return len(sessions)

    def announce_shutdown(self, close_after: float | None, code: int, reason: str) -> int:
        event_time = time.time_ns() // 1_000_000
        sessions = list(self.sessions.values())
        loop = asyncio.get_running_loop()
        for session in sessions:
            session.announce_shutdown(event_time)
            if close_after is not None:
                loop.call_later(close_after, session.close, code, reason)
        return len(sessions)

    # ---- connections ---------------------------------------------------------------------

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if peer else "?"
        try:
            while True:
                try:
                    req = await read_request(reader)
                except HttpError as exc:
                    body = {"code": -1000, "msg": str(exc)}
                    writer.write(HttpResponse.json(exc.status, body).encode(False))
                    break
                if req is None:
                    break
                req.client = client
                if req.is_websocket:
                    await self._websocket(req, reader, writer)
                    return
                response = await self._http(req)
                writer.write(response.encode(req.keep_alive))
                await writer.drain()
                if not req.keep_alive:
                    break
        except (ConnectionError, OSError):
            pass
        except Exception:
            _log.exception("connection from %s failed", client)
        finally:
            self._tasks.discard(task)
            if not writer.is_closing():
                writer.close()

    async def _http(self, req: HttpRequest) -> HttpResponse:
        if req.path.startswith(("/ws", "/stream")):
            return HttpResponse.json(426, {"code": -1000, "msg": "WebSocket upgrade required"})
        try:
            return await self.http_handler(req)
        except Exception:
            _log.exception("HTTP handler failed for %s", req.target)
            return HttpResponse.json(500, {"code": -1001, "msg": "Internal error."})

    async def _websocket(
        self, req: HttpRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        refuse = self.faults.rejecting()
        if refuse is not None:
            body = {"code": -1000, "msg": "Service unavailable (fault injection)."}
            writer.write(HttpResponse.json(refuse, body).encode(False))
            writer.close()
            return
        try:
            combined, streams, micro = parse_ws_target(req, self.limits.max_streams)
        except StreamPathError as exc:
            status = 404 if "unknown WebSocket path" in str(exc) else 400
            writer.write(HttpResponse.json(status, {"code": 2, "msg": str(exc)}).encode(False))
            writer.close()
            return
        conn_id = next(self._ids)
        log = conn_logger(_log, str(conn_id))
        conn = WsConnection.handshake(
            req, reader, writer, max_size=self.limits.max_message,
            close_timeout=self.limits.close_timeout, logger=log,
        )
        if conn is None:
            log.info("WebSocket handshake refused for %s", req.target)
            return
        session = Session(conn_id, conn, self.hub, self.faults, self.limits, combined, micro)
        self.sessions[conn_id] = session
        log.info("connected from %s: %s (%d streams)", req.client, req.target, len(streams))
        try:
            await session.run(streams)
        finally:
            self.sessions.pop(conn_id, None)
