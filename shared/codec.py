"""The stream entry format inside Redis, and the event frames sent to clients.

A stream entry (see docs/redis.md) has three fields, always present, always in this order so
Redis can share the field names across entries:

* ``d`` -- the event's ``data``, msgpack-encoded (a map). A producer without msgpack may write
  ``j`` (the same object as JSON) instead of ``d``.
* ``s`` -- the routing symbol, upper case, or empty.
* ``u`` -- the user allowed to receive the event, or empty for a public event.

The event type is the stream's name; the offset is the entry id.

:class:`StreamEntry` is the one representation of an entry everywhere it travels (the gateway's
reader, history and fan-out, the tests' readers): its offset is parsed once, when it is decoded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from shared.errors import CodecError
from shared.offsets import Offset, parse_offset

F_DATA, F_JSON, F_SYMBOL, F_USER = b"d", b"j", b"s", b"u"


@dataclass(slots=True)
class StreamEntry:
    """One event as read back from its stream; the payload stays encoded until needed.

    ``offset`` is the entry id as Redis wrote it and ``pos`` the same id parsed once, as
    ``(ms, seq)``, for comparisons. ``cache`` belongs to whoever holds the entry: the gateway
    keeps the entry's encoded frames there, so every replay sharing a history page encodes it
    once (see ``gateway.values.Encoded.of``).
    """

    event_type: str
    offset: str
    pos: Offset
    symbol: str
    user: str
    payload: bytes
    payload_is_json: bool = False
    cache: Any = field(default=None, compare=False, repr=False)

    @property
    def ts(self) -> int:
        """Milliseconds at which Redis accepted the event (the offset's time part)."""
        return self.pos[0]

    def data(self) -> dict[str, Any]:
        try:
            value = (
                orjson.loads(self.payload)
                if self.payload_is_json
                else msgpack.unpackb(self.payload, raw=False, strict_map_key=False)
            )
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise CodecError(f"{self.event_type} {self.offset}: undecodable payload: {exc}") from None
        if not isinstance(value, dict):
            raise CodecError(f"{self.event_type} {self.offset}: payload is not a map")
        return value


def _text(value: bytes | str | None) -> str:
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def decode_entry(
    event_type: str, entry_id: bytes | str, fields: Mapping[bytes, bytes] | Mapping[str, Any]
) -> StreamEntry:
    """Turn one raw XREAD/XRANGE entry into a StreamEntry (payload not decoded)."""
    get = fields.get
    payload = get(F_DATA) or get("d")  # type: ignore[call-overload]
    is_json = False
    if payload is None:
        payload = get(F_JSON) or get("j")  # type: ignore[call-overload]
        if payload is None:
            raise CodecError(f"{event_type} {_text(entry_id)}: entry has no 'd' or 'j' field")
        is_json = True
    if isinstance(payload, str):
        payload = payload.encode()
    offset = _text(entry_id)
    return StreamEntry(
        event_type=event_type,
        offset=offset,
        pos=parse_offset(offset),
        symbol=_text(get(F_SYMBOL) or get("s")),  # type: ignore[call-overload]
        user=_text(get(F_USER) or get("u")),  # type: ignore[call-overload]
        payload=payload,
        payload_is_json=is_json,
    )


# --- frames sent to clients -------------------------------------------------------------

_MP_EVENT_TYPE = msgpack.packb("event_type")
_MP_OFFSET = msgpack.packb("offset")
_MP_SYMBOL = msgpack.packb("symbol")
_MP_TS = msgpack.packb("ts")
_MP_DATA = msgpack.packb("data")
_MP_NIL = msgpack.packb(None)


def event_message(entry: StreamEntry, data: Mapping[str, Any]) -> dict[str, Any]:
    """The client-facing event message (CONTRACT section 3) as a dict."""
    return {
        "event_type": entry.event_type,
        "offset": entry.offset,
        "symbol": entry.symbol or None,
        "ts": entry.ts,
        "data": data,
    }


def event_json(entry: StreamEntry, data: Mapping[str, Any] | None = None) -> bytes:
    """The event message as JSON bytes, encoded once and sent to every JSON subscriber."""
    return orjson.dumps(event_message(entry, entry.data() if data is None else data))


def event_msgpack(entry: StreamEntry) -> bytes:
    """The event message as msgpack, splicing the stored payload without decoding it."""
    payload = entry.payload
    if entry.payload_is_json:
        payload = msgpack.packb(entry.data(), use_bin_type=True)
    return b"".join((
        b"\x85",
        _MP_EVENT_TYPE, msgpack.packb(entry.event_type),
        _MP_OFFSET, msgpack.packb(entry.offset),
        _MP_SYMBOL, msgpack.packb(entry.symbol) if entry.symbol else _MP_NIL,
        _MP_TS, msgpack.packb(entry.ts),
        _MP_DATA, payload,
    ))
