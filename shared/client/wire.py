"""The client side of the wire protocol (CONTRACT section 3), sans I/O.

Frames in (a JSON text or msgpack binary frame, one message or a batch array), messages out,
offsets parsed as ``(ms, seq)`` integer pairs, close codes classified. The gateway has its own
copy of these constants: a client library must not import the server (``shared`` never imports
``gateway``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import msgpack
import orjson

from shared.errors import InvalidOffset
from shared.offsets import Offset, parse_offset
from shared.protocol import *  # the protocol names, defined once for server and clients

# Codes after which reconnecting cannot help: the client stops with an error.
FATAL_CODES = {
    CLOSE_POLICY: "policy violation",
    CLOSE_TOO_BIG: "message too big",
    CLOSE_ORIGIN: "origin not allowed",
}

CLOSE_MEANINGS = {
    CLOSE_NORMAL: "closed", CLOSE_ABNORMAL: "connection lost", CLOSE_RESTARTING: "node restarting",
    CLOSE_TRY_AGAIN: "too many connections", CLOSE_HEARTBEAT: "heartbeat timeout",
    CLOSE_SLOW: "slow consumer", CLOSE_RESYNC: "resync needed",
    CLOSE_UNAUTHORIZED: "unauthorized", **FATAL_CODES,
}

MAX_BATCH_MS = 50


class ProtocolError(ValueError):
    """The server sent something that is not a Tickstream message."""


def ws_url(url: str, *, batch: bool, batch_ms: int | None) -> str:
    """``url`` with ``batch=1`` / ``batch_ms=N`` added to its query (other parameters kept)."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"not a WebSocket URL (ws:// or wss://): {url!r}")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in ("batch", "batch_ms")]
    if batch:
        query.append(("batch", "1"))
        if batch_ms is not None:
            query.append(("batch_ms", str(batch_ms)))
    return urlunsplit(parts._replace(query=urlencode(query)))


def redact(url: str) -> str:
    """The URL without its query string (which may hold a token): safe for logs."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(query="", fragment=""))


def decode(frame: str | bytes) -> list[dict[str, Any]]:
    """One frame -> its messages. A batch frame is an array; anything else is one message."""
    try:
        value = orjson.loads(frame) if isinstance(frame, str) else msgpack.unpackb(
            frame, raw=False, strict_map_key=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise ProtocolError(f"undecodable frame: {exc}") from None
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(item, dict) for item in value):
        return value
    raise ProtocolError(f"a frame must hold an object or an array of objects, got {type(value).__name__}")


def encode(message: dict[str, Any], binary: bool) -> str | bytes:
    if binary:
        return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]
    return orjson.dumps(message).decode()


def position(offset: object) -> Offset:
    """``"1732612345678-3"`` -> ``(1732612345678, 3)``. Offsets compare as integer pairs only."""
    if not isinstance(offset, str):
        raise ProtocolError(f"bad offset {str(offset)[:40]!r}")
    try:
        return parse_offset(offset)  # the whole string, ASCII digits only
    except InvalidOffset:
        raise ProtocolError(f"bad offset {offset[:40]!r}") from None


def check_offset(offset: str) -> str:
    """Validate an offset given by the application (raises InvalidOffset)."""
    parse_offset(offset)
    return offset


def describe(code: int | None, reason: str) -> str:
    """``4008 slow consumer: outgoing queue full`` -- a close code, its meaning and the reason."""
    meaning = CLOSE_MEANINGS.get(code, "closed") if code is not None else ""
    head = f"{code} {meaning}" if code is not None else ""
    if reason.startswith(meaning):
        reason = reason[len(meaning):].lstrip(": ")
    return ": ".join(part for part in (head, reason) if part) or "closed"
