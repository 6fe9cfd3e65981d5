"""Bad frames for the ``malformed`` fault: things a client parser must survive."""

from __future__ import annotations

from typing import Any

import orjson

from simulator.hub import Event

NOT_JSON = b"<html><body>502 Bad Gateway</body></html>"
BINARY_GARBAGE = bytes(range(0x80, 0x100)) + b"\x00\xff\xfe\x01tickstream\x00"


def wrong_types(value: Any) -> Any:
    """The payload with its numeric fields' JSON types swapped (strings <-> numbers, bools)."""
    if isinstance(value, dict):
        return {k: wrong_types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [wrong_types(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def bad_frame(kind: str, event: Event, combined: bool, micro: bool) -> tuple[bool, bytes]:
    """``(is_binary, frame_data)`` for one bad frame standing in for ``event``."""
    if kind == "text":
        return False, NOT_JSON
    if kind == "binary":
        return True, BINARY_GARBAGE
    if kind == "truncated":
        good = event.encode(combined, micro)
        return False, good[: max(1, len(good) // 2)]
    if kind == "types":
        data = wrong_types(event.data())
        if combined:
            return False, orjson.dumps({"stream": event.stream, "data": data})
        return False, orjson.dumps(data)
    raise ValueError(f"unknown malformed kind {kind!r}")
