"""Offsets are Redis Stream entry ids, ``<milliseconds>-<sequence>``, ordered per event type."""

from __future__ import annotations

from shared.errors import InvalidOffset

Offset = tuple[int, int]

_LIMIT = 2**64


def parse_offset(text: str | bytes) -> Offset:
    """``"1732612345678-3"`` -> ``(1732612345678, 3)``; anything else raises InvalidOffset.

    The whole string is checked: two runs of 1 to 20 ASCII digits around one ``-``, each part
    below 2**64. Called for every entry a gateway reads, so it avoids a regular expression.
    """
    if type(text) is not str:
        if not isinstance(text, bytes | str):
            raise InvalidOffset(f"offset must look like <ms>-<seq>, got {str(text)[:40]!r}")
        text = text.decode("ascii", "replace") if isinstance(text, bytes) else str(text)
    ms, dash, seq = text.partition("-")
    if not (dash and text.isascii() and ms.isdigit() and seq.isdigit()
            and len(ms) <= 20 and len(seq) <= 20):
        raise InvalidOffset(f"offset must look like <ms>-<seq>, got {text[:40]!r}")
    parsed = int(ms), int(seq)
    if parsed[0] >= _LIMIT or parsed[1] >= _LIMIT:
        raise InvalidOffset(f"offset out of range: {text[:40]!r}")
    return parsed


def format_offset(offset: Offset) -> str:
    return f"{offset[0]}-{offset[1]}"
