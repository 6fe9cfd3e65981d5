"""WebSocket data frames as the server writes them (RFC 6455 §5.2), sans I/O.

A server's frames are not masked, so the frame of one payload is a header that depends only on
the opcode and the payload's length, followed by the payload: the same bytes for every
connection that uses no extension. :func:`frames` builds them without the per-frame objects and
checks a general-purpose library makes; connections that negotiated an extension
(permessage-deflate) keep going through the library.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

_TEXT, _BINARY = 0x81, 0x82  # FIN + opcode
_SHORT = {False: [bytes((_TEXT, n)) for n in range(126)], True: [bytes((_BINARY, n)) for n in range(126)]}
_MEDIUM = struct.Struct("!BBH")
_LONG = struct.Struct("!BBQ")


def header(binary: bool, size: int) -> bytes:
    """The header of one unfragmented, unmasked data frame of ``size`` payload bytes."""
    if size < 126:
        return _SHORT[binary][size]
    first = _BINARY if binary else _TEXT
    if size < 65536:
        return _MEDIUM.pack(first, 126, size)
    return _LONG.pack(first, 127, size)


def frames(payloads: Iterable[bytes], binary: bool) -> bytes:
    """Every payload as one frame (text frames carry UTF-8 JSON as is), ready to write."""
    short = _SHORT[binary]
    parts: list[bytes] = []
    append = parts.append
    for payload in payloads:
        size = len(payload)
        append(short[size] if size < 126 else header(binary, size))
        append(payload)
    return b"".join(parts)
