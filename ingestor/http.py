"""``/healthz``, ``/readyz`` and ``/metrics`` on ``HOST:PORT``: a small HTTP/1.1 handler.

Three read-only GET endpoints for probes and Prometheus do not need a web framework, and a
handler on ``asyncio.start_server`` lives inside the ingestor's event loop without touching
its signal handling. Each connection serves one request (``Connection: close``).

* ``/healthz``: 200 while the process runs.
* ``/readyz``: 200 when every shard has a connection, no heartbeat stream is stale and Redis
  takes writes; 503 otherwise. The JSON body lists each stream's age and which are stale, and
  the group role (``role``: ``leader`` or ``standby``, ``token``, ``leader``, ``takeovers``): a
  standby is ready (healthy, waiting to take over) though it publishes nothing.
* ``/metrics``: Prometheus text format from the ingestor's own registry.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger("tickstream.ingestor.http")

READ_TIMEOUT = 10.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


class StatusSource(Protocol):
    def health(self) -> dict[str, Any]: ...

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...


class HttpServer:
    def __init__(self, host: str, port: int, source: StatusSource, registry: CollectorRegistry) -> None:
        self.host = host
        self.port = port
        self.source = source
        self.registry = registry
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        """Listen; OSError if the address is taken. ``port`` 0 picks a free port."""
        self._server = await asyncio.start_server(self._handle, self.host, self.port,
                                                  reuse_address=True, limit=16 * 1024)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("HTTP endpoints on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    def route(self, method: str, path: str) -> tuple[int, str, bytes]:
        if method not in ("GET", "HEAD"):
            return 405, "application/json", b'{"error":"only GET"}'
        if path == "/healthz":
            return 200, "application/json", orjson.dumps(self.source.health())
        if path == "/readyz":
            ready, body = self.source.readiness()
            return (200 if ready else 503), "application/json", orjson.dumps(body)
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        return 404, "application/json", b'{"error":"not found: try /healthz, /readyz or /metrics"}'

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT):
                head = await reader.readuntil(b"\r\n\r\n")
            parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(parts) != 3:
                return
            method, target = parts[0], parts[1]
            status, content_type, body = self.route(method, target.split("?", 1)[0])
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
                .encode("latin-1") + (b"" if method == "HEAD" else body)
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:
            log.exception("HTTP request failed")
        finally:
            writer.close()
