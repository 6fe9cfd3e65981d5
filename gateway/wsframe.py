"""WebSocket data frames as the server writes them (RFC 6455 §5.2), sans I/O.

A server's frames are not masked, so the frame of one payload is a header that depends only on
the opcode and the payload's length, followed by the payload: the same bytes for every
connection that uses no extension: :class:`gateway.values.Encoded` builds each event's frame
once with :func:`header`, without the per-frame objects and checks a general-purpose library
makes, and every such connection writes the same bytes. Connections that negotiated an
extension (permessage-deflate) keep going through the library.
"""

from __future__ import annotations

import struct

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
