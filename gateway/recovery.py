"""Recovery, sans I/O: may a subscription resume from ``since``, and how history meets live.

A subscription with ``since`` starts by buffering the live events of its type, then reads the
history after ``since`` in pages, then :func:`merge` joins the two: history first, then every
buffered live event newer than the last history event. The reader may lag behind the history
read, so the same offset can appear on both sides: it is delivered once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar

from gateway.values import StreamState
from shared.offsets import Offset


class HasPos(Protocol):
    @property
    def pos(self) -> Offset: ...


E = TypeVar("E", bound=HasPos)


def can_recover(since: Offset, client_epoch: str | None, state: StreamState) -> bool:
    """True when every event after ``since`` is still retained in the same epoch.

    Conservative: when ``since`` is older than the first retained entry we cannot tell whether
    entries between them were trimmed, so the answer is False (the client rebuilds its state;
    it is never told a partial replay is complete).
    """
    if client_epoch and client_epoch != state.epoch:
        return False
    if since == state.last:
        return True  # the client has seen the newest event: nothing to replay
    if since > state.last:
        return False  # an offset from a previous life of the stream
    if not state.trimmed:
        return True  # every entry ever written is still retained
    return state.first is not None and since >= _before(state.first)


def _before(pos: Offset) -> Offset:
    """The largest offset smaller than ``pos`` (so ``since`` = just before the first is fine)."""
    ms, seq = pos
    return (ms, seq - 1) if seq > 0 else (ms - 1, 2**64 - 1)


def position_before(pos: Offset) -> Offset:
    return _before(pos)


def merge(history: Sequence[E], live: Sequence[E], after: Offset) -> list[E]:
    """History then live, both ascending: everything newer than ``after``, each offset once."""
    out: list[E] = []
    last = after
    for item in history:
        if item.pos > last:
            out.append(item)
            last = item.pos
    for item in live:
        if item.pos > last:
            out.append(item)
            last = item.pos
    return out
