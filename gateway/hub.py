"""The hub: which connection wants which event, and the fan-out of each event to them.

Subscriptions are indexed by event type, then by symbol (plus the subscriptions without a
symbol filter). A private event (one with a user) is offered only to that user's sessions and
to admins, looked up by user, never by scanning every subscriber. Each event is decoded once
and encoded at most once per wire format (:class:`Encoded`); the same string or bytes object
is queued for every recipient.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from gateway.broker import Entry
from shared import codec
from shared.errors import CodecError
from shared.offsets import Offset

if TYPE_CHECKING:
    from gateway.session import Session, Subscription

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

    def subscribed_types(self) -> Iterable[str]:
        return self._types.keys()

    def subscription_count(self) -> int:
        return sum(len(s.subs) for s in self.sessions.values())

    # --- fan-out -----------------------------------------------------------------------------

    def dispatch(self, event_type: str, entries: list[Entry]) -> None:
        """Offer each entry to every matching subscription, in order. Never raises."""
        idx = self._types.get(event_type)
        if idx is None:
            return
        wildcard, by_symbol = idx.wildcard, idx.by_symbol
        count = 0
        for item in entries:
            encoded = Encoded(item)
            entry = item.entry
            try:
                if entry.user:
                    count += self._dispatch_private(event_type, encoded)
                    continue
                for sub in wildcard.values():
                    sub.offer(encoded)
                count += len(wildcard)
                if entry.symbol:
                    bucket = by_symbol.get(entry.symbol)
                    if bucket:
                        for sub in bucket.values():
                            sub.offer(encoded)
                        count += len(bucket)
            except CodecError as exc:
                self.undecodable += 1
                log.error("skipping undecodable entry: %s", exc)
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
