"""The client protocol (CONTRACT section 3), sans I/O: frames in, commands out, replies built.

:func:`parse` turns one client frame into a command or raises :class:`ClientError` with the
contract's error code. :class:`Wire` encodes control messages and packs batches for one of the
two wire formats; events arrive already encoded once per format (:class:`gateway.values.Encoded`).
Every outgoing frame is ``bytes`` (:data:`gateway.values.Frame`): UTF-8 JSON, sent as a WebSocket
text frame, or msgpack, sent as binary.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Any

import msgpack
import orjson

from gateway.values import Frame
from shared.errors import InvalidOffset
from shared.events import is_event_type, is_symbol
from shared.offsets import Offset, parse_offset
from shared.protocol import *  # the protocol names, defined once for server and clients

# The gateway's own failure to write (clients treat it like a lost connection: reconnect and
# resume from the last event received). Not in shared/protocol.py: clients need no name for it.
CLOSE_INTERNAL = 1011

SINK = "tickstream.sink"  # ASGI extension: the connection as the writer's Sink (gateway/server.py)

MAX_SYMBOLS = 1000
MAX_LAST = 100_000
MIN_CONFLATE_MS, MAX_CONFLATE_MS = 10, 60_000

MsgId = str | int | float | None


class ClientError(Exception):
    """A client message that is answered with ``{"type":"error",...}``; the connection lives on."""

    def __init__(self, code: str, message: str, msg_id: MsgId = None) -> None:
        super().__init__(message)
        self.code, self.message, self.msg_id = code, message, msg_id


@dataclass(frozen=True, slots=True)
class Subscribe:
    id: MsgId
    event_type: str
    symbols: frozenset[str] | None
    since: Offset | None
    epoch: str | None
    last: int | None
    conflate_ms: int | None = None  # at most one event per symbol per this many ms (the newest)


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    id: MsgId
    event_type: str


@dataclass(frozen=True, slots=True)
class Ping:
    id: MsgId


@dataclass(frozen=True, slots=True)
class Auth:
    id: MsgId
    token: str


Command = Subscribe | Unsubscribe | Ping | Auth


def _msg_id(obj: dict[str, Any]) -> MsgId:
    value = obj.get("id")
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and len(value) <= 64:
        return value
    raise ClientError("bad_request", "'id' must be a number or a string of at most 64 characters")


def _event_type(obj: dict[str, Any], msg_id: MsgId) -> str:
    value = obj.get("event_type")
    if not is_event_type(value):
        raise ClientError("bad_request", "'event_type' must match ^[a-z][a-z0-9_]{0,63}$", msg_id)
    return value


def _symbols(obj: dict[str, Any], msg_id: MsgId) -> frozenset[str] | None:
    value = obj.get("symbols")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_SYMBOLS:
        raise ClientError("bad_request", f"'symbols' must be a list of at most {MAX_SYMBOLS}", msg_id)
    out = set()
    for item in value:
        if not isinstance(item, str) or not item.isascii() or not is_symbol(item.upper()):
            raise ClientError("bad_request", f"invalid symbol {str(item)[:40]!r}", msg_id)
        out.add(item.upper())
    return frozenset(out)


def _subscribe(obj: dict[str, Any], msg_id: MsgId) -> Subscribe:
    event_type = _event_type(obj, msg_id)
    symbols = _symbols(obj, msg_id)
    since_raw, last, epoch = obj.get("since"), obj.get("last"), obj.get("epoch")
    if since_raw is not None and last is not None:
        raise ClientError("bad_request", "give 'since' or 'last', not both", msg_id)
    since = None
    if since_raw is not None:
        if not isinstance(since_raw, str):
            raise ClientError("invalid_offset", "'since' must be an offset string", msg_id)
        try:
            since = parse_offset(since_raw)
        except InvalidOffset as exc:
            raise ClientError("invalid_offset", str(exc), msg_id) from None
    if last is not None and (
        not isinstance(last, int) or isinstance(last, bool) or not 0 <= last <= MAX_LAST
    ):
        raise ClientError("bad_request", f"'last' must be an integer from 0 to {MAX_LAST}", msg_id)
    if epoch is not None and (not isinstance(epoch, str) or len(epoch) > 64):
        raise ClientError("bad_request", "'epoch' must be a string", msg_id)
    conflate_ms = obj.get("conflate_ms")
    if conflate_ms is not None and (
        not isinstance(conflate_ms, int) or isinstance(conflate_ms, bool)
        or not MIN_CONFLATE_MS <= conflate_ms <= MAX_CONFLATE_MS
    ):
        raise ClientError("bad_request", f"'conflate_ms' must be an integer from {MIN_CONFLATE_MS} "
                          f"to {MAX_CONFLATE_MS}", msg_id)
    return Subscribe(msg_id, event_type, symbols, since, epoch or None, last, conflate_ms)


def parse(frame: str | bytes, binary: bool) -> Command:
    """One client frame -> a command. Raises ClientError (code per the contract)."""
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=False) if binary else orjson.loads(frame)
    except (ValueError, TypeError, msgpack.UnpackException, orjson.JSONDecodeError):
        kind = "msgpack" if binary else "JSON"
        raise ClientError("bad_request", f"message is not valid {kind}") from None
    if not isinstance(obj, dict):
        raise ClientError("bad_request", "message must be an object with an 'op'")
    msg_id = _msg_id(obj)
    op = obj.get("op")
    if op == "subscribe":
        return _subscribe(obj, msg_id)
    if op == "unsubscribe":
        return Unsubscribe(msg_id, _event_type(obj, msg_id))
    if op == "ping":
        return Ping(msg_id)
    if op == "auth":
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            raise ClientError("bad_request", "'token' must be a non-empty string", msg_id)
        return Auth(msg_id, token)
    if not isinstance(op, str):
        raise ClientError("bad_request", "message has no 'op'", msg_id)
    raise ClientError("unknown_op", f"unknown op {op[:40]!r}", msg_id)


def message_id(frame: str | bytes, binary: bool) -> MsgId:
    """The ``id`` of a client message that is not otherwise handled (None if it has none)."""
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=False) if binary else orjson.loads(frame)
    except (ValueError, TypeError, msgpack.UnpackException, orjson.JSONDecodeError):
        return None
    if not isinstance(obj, dict):
        return None
    try:
        return _msg_id(obj)
    except ClientError:
        return None


def now_ms() -> int:
    return int(time.time() * 1000)


# --- server messages ------------------------------------------------------------------------


def error(code: str, message: str, msg_id: MsgId = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if msg_id is not None:
        out["id"] = msg_id
    return out


def with_id(message: dict[str, Any], msg_id: MsgId) -> dict[str, Any]:
    if msg_id is not None:
        message["id"] = msg_id
    return message


class Wire:
    """One wire format: how control messages are encoded and how a batch becomes a frame."""

    __slots__ = ("binary", "name")

    def __init__(self, binary: bool) -> None:
        self.binary = binary
        self.name = SUBPROTOCOL_MSGPACK if binary else SUBPROTOCOL_JSON

    def encode(self, message: dict[str, Any]) -> Frame:
        if self.binary:
            return msgpack.packb(message, use_bin_type=True)  # type: ignore[no-any-return]
        return orjson.dumps(message)

    def pack_batch(self, items: list[Frame]) -> Frame:
        """Several encoded messages of this format as one frame: a JSON or a msgpack array."""
        if self.binary:
            count = len(items)
            header = bytes((0x90 | count,)) if count < 16 else (
                b"\xdc" + struct.pack(">H", count) if count < 65536 else b"\xdd" + struct.pack(">I", count)
            )
            return b"".join((header, *items))
        return b"".join((b"[", b",".join(items), b"]"))


JSON_WIRE = Wire(binary=False)
MSGPACK_WIRE = Wire(binary=True)
