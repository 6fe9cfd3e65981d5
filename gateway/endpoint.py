"""``/ws``: the ASGI adapter between uvicorn's WebSocket and a :class:`~gateway.session.Session`.

A raw ASGI app rather than Starlette's ``WebSocket`` wrapper: every outgoing frame is one
``websocket.send`` message and nothing else on the hot path. Refusals that the contract gives a
close code (origin 4403, connection cap 1013, bad token 4401, shutting down 1012) accept the
handshake and close at once, so the client can read the code.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from gateway import protocol as p
from gateway.auth import AuthError, Principal, bearer_token
from gateway.node import Node
from gateway.values import Frame

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
    Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

log = logging.getLogger("tickstream.gateway.endpoint")

MAX_BATCH_MS = 50
DEFAULT_BATCH_MS = 5


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class WebSocketEndpoint:
    """Adapts each ASGI WebSocket to a session of the node (admission, frames in and out)."""

    def __init__(self, node: Node) -> None:
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        node, settings = self.node, self.node.settings
        offered = scope.get("subprotocols") or []
        binary = p.SUBPROTOCOL_MSGPACK in offered
        chosen = p.SUBPROTOCOL_MSGPACK if binary else (
            p.SUBPROTOCOL_JSON if p.SUBPROTOCOL_JSON in offered else None)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        batch = query.get("batch", ["0"])[0] in ("1", "true")
        batch_ms = 0.0
        if batch:
            raw_ms = query.get("batch_ms", [""])[0]
            # ASCII digits only (int() would also take spaces, "_" and other scripts' digits)
            ok = raw_ms.isascii() and raw_ms.isdigit() and len(raw_ms) <= 6
            batch_ms = float(min(MAX_BATCH_MS, int(raw_ms)) if ok else DEFAULT_BATCH_MS)

        refusal: tuple[int, str] | None = None
        origin = _header(scope, b"origin")
        principal: Principal | None = None
        # Only browsers send Origin, and the check exists to protect browser users; a client
        # without one (a service, the Python client) is not refused for lacking it.
        if settings.allowed_origins and origin is not None and origin not in settings.allowed_origins:
            refusal = (p.CLOSE_ORIGIN, "origin not allowed")
        elif not node.accepting:
            refusal = (p.CLOSE_RESTARTING, "node restarting")
        elif len(node.hub.sessions) >= settings.max_connections:
            refusal = (p.CLOSE_TRY_AGAIN, "too many connections")
        elif node.overloaded:
            refusal = (p.CLOSE_TRY_AGAIN, "overloaded: try again later")
        else:
            token = query.get("token", [None])[0] or bearer_token(_header(scope, b"authorization"))
            if token:
                try:
                    principal = node.auth.verify(token)
                except AuthError as exc:
                    refusal = (p.CLOSE_UNAUTHORIZED, str(exc))

        # Everything needed from the headers is read: do not keep them for the connection's life.
        scope["headers"] = ()
        await send({"type": "websocket.accept", "subprotocol": chosen})
        if refusal is not None:
            node.metrics.closes.labels(str(refusal[0])).inc()
            await send({"type": "websocket.close", "code": refusal[0], "reason": refusal[1][:120]})
            return

        async def send_frame(frame: Frame) -> None:
            # Under an ASGI server other than ours (no tickstream.sink), every frame goes this
            # way, and ASGI wants a text frame as str.
            if binary:
                await send({"type": "websocket.send", "bytes": frame})
            else:
                await send({"type": "websocket.send", "text": frame.decode()})

        async def close(code: int, reason: str) -> None:
            try:
                await send({"type": "websocket.close", "code": code, "reason": reason})
            except Exception:  # already gone
                pass

        client = scope.get("client") or ("?", 0)
        sink = (scope.get("extensions") or {}).get(p.SINK)
        session = node.connect(send_frame, close, sink, p.MSGPACK_WIRE if binary else p.JSON_WIRE,
                               batch=batch, batch_ms=batch_ms, principal=principal,
                               remote=f"{client[0]}:{client[1]}")
        session.log.info("connected from %s user=%s format=%s batch=%s", session.remote,
                         session.user, "msgpack" if binary else "json", batch)
        session.start()
        try:
            while True:
                message = await receive()
                kind = message["type"]
                if kind == "websocket.receive":
                    text = message.get("text")
                    if text is not None:
                        await session.on_frame(text, False)
                    else:
                        await session.on_frame(message.get("bytes") or b"", True)
                elif kind == "websocket.disconnect":
                    session.log.info("disconnected (code %s)", message.get("code"))
                    break
        finally:
            await node.disconnect(session)
