"""Offsets are Redis Stream entry ids, ``<milliseconds>-<sequence>``, ordered per event type."""

from __future__ import annotations

import re

from shared.errors import InvalidOffset

Offset = tuple[int, int]

_OFFSET = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # ASCII digits; always used with fullmatch


def parse_offset(text: str | bytes) -> Offset:
    """``"1732612345678-3"`` -> ``(1732612345678, 3)``; anything else raises InvalidOffset."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    match = _OFFSET.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidOffset(f"offset must look like <ms>-<seq>, got {str(text)[:40]!r}")
    ms, seq = int(match.group(1)), int(match.group(2))
    if ms >= 2**64 or seq >= 2**64:
        raise InvalidOffset(f"offset out of range: {text[:40]!r}")
    return ms, seq


def format_offset(offset: Offset) -> str:
    return f"{offset[0]}-{offset[1]}"

