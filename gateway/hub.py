"""The hub: which connection wants which event, and the fan-out of each event to them.

Subscriptions are indexed by event type, then by symbol (plus the subscriptions without a
symbol filter). A private event (one with a user) is offered only to that user's sessions and
to admins, looked up by user, never by scanning every subscriber. Each event is decoded once
and encoded at most once per wire format (:class:`Encoded`); the same string or bytes object
is queued for every recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from gateway.broker import Entry
from shared import codec
from shared.errors import CodecError
from shared.offsets import Offset

if TYPE_CHECKING:
    from gateway.session import Session
    from gateway.subscription import Subscription

log = logging.getLogger("tickstream.gateway.hub")


class Encoded:
    """One event as sent to clients: JSON text and msgpack bytes, each made at most once."""

    __slots__ = ("_data", "_json", "_msgpack", "entry", "pos")

    def __init__(self, item: Entry) -> None:
        self.entry = item.entry
        self.pos: Offset = item.pos
        self._data: dict[str, Any] | None = None
        self._json: str | None = None
        self._msgpack: bytes | None = None

    @classmethod
    def of(cls, item: Entry) -> Encoded:
        """The entry's one Encoded: replays served from shared history encode it once."""
        encoded = item.encoded
        if encoded is None:
            encoded = item.encoded = cls(item)
        assert isinstance(encoded, Encoded)
        return encoded

    @property
    def ts(self) -> int:
        return self.pos[0]

    def json(self) -> str:
        if self._json is None:
            if self._data is None:
                self._data = self.entry.data()
            self._json = codec.event_json(self.entry, self._data).decode()
        return self._json

    def msgpack(self) -> bytes:
        if self._msgpack is None:
            self._msgpack = codec.event_msgpack(self.entry)
        return self._msgpack

    def wire(self, binary: bool) -> str | bytes:
        return self.msgpack() if binary else self.json()


class Batch:
    """Consecutive public events of one type, as shared wire lists (built once, on demand).

    Every subscription that takes the whole batch receives the same list object and the same
    byte count: fan-out costs one list append per subscriber, not one per event.
    """

    __slots__ = ("_json", "_msgpack", "events")

    def __init__(self, events: list[Encoded]) -> None:
        self.events = events
        self._json: tuple[list[str | bytes], int] | None = None
        self._msgpack: tuple[list[str | bytes], int] | None = None

    def frames(self, binary: bool) -> tuple[list[str | bytes], int]:
        if binary:
            if self._msgpack is None:
                items: list[str | bytes] = [e.msgpack() for e in self.events]
                self._msgpack = (items, sum(map(len, items)))
            return self._msgpack
        if self._json is None:
            items = [e.json() for e in self.events]
            self._json = (items, sum(map(len, items)))
        return self._json


class _TypeIndex:
    __slots__ = ("by_symbol", "wildcard")

    def __init__(self) -> None:
        self.wildcard: dict[Session, Subscription] = {}
        self.by_symbol: dict[str, dict[Session, Subscription]] = {}

    def empty(self) -> bool:
        return not self.wildcard and not self.by_symbol


class Hub:
    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self._types: dict[str, _TypeIndex] = {}
        self._by_user: dict[str, set[Session]] = {}
        self._admins: set[Session] = set()
        self.deliveries = 0
        self.undecodable = 0

    # --- registry ----------------------------------------------------------------------------

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session
        self._index_user(session)

    def remove(self, session: Session) -> None:
        self.sessions.pop(session.id, None)
        for sub in list(session.subs.values()):
            self.unindex(sub)
        self._unindex_user(session, session.user, session.is_admin)

    def user_changed(self, session: Session, old_user: str | None, was_admin: bool) -> None:
        self._unindex_user(session, old_user, was_admin)
        self._index_user(session)

    def _index_user(self, session: Session) -> None:
        if session.user is not None:
            self._by_user.setdefault(session.user, set()).add(session)
        if session.is_admin:
            self._admins.add(session)

    def _unindex_user(self, session: Session, user: str | None, is_admin: bool) -> None:
        if user is not None:
            users = self._by_user.get(user)
            if users is not None:
                users.discard(session)
                if not users:
                    del self._by_user[user]
        if is_admin:
            self._admins.discard(session)

    def index(self, sub: Subscription) -> None:
        idx = self._types.get(sub.event_type)
        if idx is None:
            idx = self._types[sub.event_type] = _TypeIndex()
        if sub.symbols is None:
            idx.wildcard[sub.session] = sub
        else:
            for symbol in sub.symbols:
                idx.by_symbol.setdefault(symbol, {})[sub.session] = sub

    def unindex(self, sub: Subscription) -> None:
        idx = self._types.get(sub.event_type)
        if idx is None:
            return
        if sub.symbols is None:
            if idx.wildcard.get(sub.session) is sub:
                del idx.wildcard[sub.session]
        else:
            for symbol in sub.symbols:
                bucket = idx.by_symbol.get(symbol)
                if bucket is not None and bucket.get(sub.session) is sub:
                    del bucket[sub.session]
                    if not bucket:
                        del idx.by_symbol[symbol]
        if idx.empty():
            del self._types[sub.event_type]

    def subscribers(self, event_type: str) -> Iterator[Session]:
        """Every session with a subscription to ``event_type``."""
        idx = self._types.get(event_type)
        if idx is None:
            return iter(())
        seen = set(idx.wildcard)
        for bucket in idx.by_symbol.values():
            seen.update(bucket)
        return iter(seen)

    # --- fan-out -----------------------------------------------------------------------------

    def dispatch(self, event_type: str, entries: list[Entry]) -> None:
        """Offer entries to every matching subscription, keeping each one's offset order.

        Runs of public events go out as shared batches; a private event (rare) is offered on its
        own, between the runs around it, so a user sees both kinds in offset order.
        """
        idx = self._types.get(event_type)
        if idx is None:
            return
        run: list[Encoded] = []
        for item in entries:
            encoded = Encoded(item)
            if item.entry.user:
                if run:
                    self._fanout(idx, run)
                    run = []
                self._guarded(self._dispatch_private, event_type, encoded)
            else:
                run.append(encoded)
        if run:
            self._fanout(idx, run)

    def _guarded(self, fn: Callable[[str, Encoded], int], event_type: str, encoded: Encoded) -> None:
        try:
            self.deliveries += fn(event_type, encoded)
        except CodecError as exc:
            self.undecodable += 1
            log.error("skipping undecodable entry: %s", exc)

    def _fanout(self, idx: _TypeIndex, run: list[Encoded]) -> None:
        try:
            self._fanout_run(idx, run)
        except CodecError:
            if len(run) == 1:
                self.undecodable += 1
                log.error("skipping undecodable entry %s %s", run[0].entry.event_type, run[0].entry.offset)
                return
            for single in run:  # find the bad one; the others still go out, in order
                self._fanout(idx, [single])

    def _fanout_run(self, idx: _TypeIndex, run: list[Encoded]) -> None:
        count = 0
        if idx.wildcard:
            batch = Batch(run)
            for sub in list(idx.wildcard.values()):
                sub.offer_batch(batch)
            count += len(run) * len(idx.wildcard)
        if idx.by_symbol:
            groups: dict[str, list[Encoded]] = {}
            for encoded in run:
                symbol = encoded.entry.symbol
                if symbol and symbol in idx.by_symbol:
                    groups.setdefault(symbol, []).append(encoded)
            multi: set[Subscription] = set()
            for symbol, events in groups.items():
                batch = Batch(events)
                for sub in list(idx.by_symbol[symbol].values()):
                    if sub.symbols is not None and len(sub.symbols) > 1:
                        multi.add(sub)
                    else:
                        sub.offer_batch(batch)
                        count += len(events)
            for sub in multi:  # several symbols: its own list, in stream order
                wanted = sub.symbols or frozenset()
                events = [e for e in run if e.entry.symbol in wanted]
                sub.offer_batch(Batch(events))
                count += len(events)
        self.deliveries += count

    def _dispatch_private(self, event_type: str, encoded: Encoded) -> int:
        entry = encoded.entry
        owners = self._by_user.get(entry.user, ())
        count = 0
        for session in (*owners, *self._admins) if self._admins else owners:
            sub = session.subs.get(event_type)
            if sub is not None and (sub.symbols is None or entry.symbol in sub.symbols):
                sub.offer(encoded)
                count += 1
        return count
