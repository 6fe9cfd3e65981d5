"""The checks on what the application asks for (symbols, ``last``, ``conflate_ms``), sans I/O.

Shared by the client (``subscribe``) and the subscription (``update``), so that neither needs
the other to validate an argument. Each raises a one-line ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.events import is_event_type, is_symbol

MAX_LAST = 100_000
MIN_CONFLATE_MS, MAX_CONFLATE_MS = 10, 60_000


def check_event_type(event_type: str) -> str:
    if not is_event_type(event_type):
        raise ValueError(f"event_type must match ^[a-z][a-z0-9_]{{0,63}}$, got {str(event_type)[:80]!r}")
    return event_type


def check_symbols(symbols: Iterable[str] | None) -> frozenset[str] | None:
    """The symbol filter, upper-cased; None means every symbol."""
    if symbols is None:
        return None
    items = [symbols] if isinstance(symbols, str) else list(symbols)
    bad = [s for s in items if not isinstance(s, str) or not s.isascii() or not is_symbol(s.upper())]
    if bad:
        raise ValueError(f"invalid symbol {str(bad[0])[:80]!r}")
    return frozenset(s.upper() for s in items)


def check_last(last: int | None) -> int | None:
    if last is not None and (isinstance(last, bool) or not isinstance(last, int)
                             or not 0 <= last <= MAX_LAST):
        raise ValueError(f"last must be an integer from 0 to {MAX_LAST}")
    return last


def check_conflate_ms(conflate_ms: int | None) -> int | None:
    if conflate_ms is not None and (
        isinstance(conflate_ms, bool) or not isinstance(conflate_ms, int)
        or not MIN_CONFLATE_MS <= conflate_ms <= MAX_CONFLATE_MS
    ):
        raise ValueError(f"conflate_ms must be an integer from {MIN_CONFLATE_MS} to "
                         f"{MAX_CONFLATE_MS}, got {conflate_ms!r}")
    return conflate_ms
