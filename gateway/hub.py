"""The hub: which subscriber wants which event, and the fan-out of each event to them.

The hub knows subscribers only through the :class:`Subscriber` protocol (what it reads at
``index`` time and what it calls); it never sees a session's internals. Subscribers are indexed
by event type, then by symbol (plus those without a symbol filter). A private event (one with a
user) is offered only to that user's subscribers and to admins, looked up by user, never by
scanning every subscriber. Each event is decoded once and encoded at most once per wire format
(:class:`~gateway.values.Encoded`); the same frame object is queued for every recipient.

The hub also keeps the node's connections by id (:attr:`Hub.sessions`: counted, ticked and
read for metrics by the node); it never looks inside them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from gateway.values import Batch, Encoded, StreamEntry
from shared.errors import CodecError

log = logging.getLogger("tickstream.gateway.hub")


class Subscriber(Protocol):
    """One connection's subscription to one event type, as the hub sees it.

    ``event_type``, ``symbols``, ``user`` and ``is_admin`` are read when it is indexed (index it
    again after they change); the hub remembers where it put it, so :meth:`Hub.unindex` works
    whatever they say by then.
    """

    @property
    def event_type(self) -> str: ...

    @property
    def symbols(self) -> frozenset[str] | None:
        """The symbols it wants (None: every event of its type)."""

    @property
    def user(self) -> str | None:
        """The user whose private events it receives (None: public events only)."""

    @property
    def is_admin(self) -> bool:
        """Whether it receives every user's private events."""

    def offer(self, event: Encoded) -> None:
        """One live event (private events come one by one), in offset order."""

    def offer_batch(self, batch: Batch) -> None:
        """A run of live public events in offset order, shared with other subscribers."""

    def resync(self, reason: str) -> None:
        """Its stream had a gap: the client must resynchronise (close with 4009)."""


class Connection(Protocol):
    @property
    def id(self) -> str: ...


C = TypeVar("C", bound=Connection)

_Set = dict[Subscriber, None]  # an insertion-ordered set


class _TypeIndex:
    __slots__ = ("admins", "by_symbol", "by_user", "private", "wildcard")

    def __init__(self) -> None:
        self.wildcard: _Set = {}  # public events: subscribers without a symbol filter
        self.by_symbol: dict[str, _Set] = {}  # public events: by the symbols they filter on
        self.by_user: dict[str, _Set] = {}  # private events of that user
        self.admins: _Set = {}  # every private event
        self.private: dict[Subscriber, str | None] = {}  # where each is in by_user (None: admins)

    def empty(self) -> bool:
        return not self.wildcard and not self.by_symbol


class Hub(Generic[C]):
    """Owns the routing of live events: the subscriber index and the fan-out of each read.

    Also the registry of the node's connections (``sessions``, by id), and the ``deliveries``
    and ``undecodable`` counts.
    """

    def __init__(self) -> None:
        self.sessions: dict[str, C] = {}
        self._types: dict[str, _TypeIndex] = {}
        self.deliveries = 0
        self.undecodable = 0

    # --- registry ----------------------------------------------------------------------------

    def add(self, connection: C) -> None:
        self.sessions[connection.id] = connection

    def remove(self, connection: C) -> None:
        self.sessions.pop(connection.id, None)

    # --- index -------------------------------------------------------------------------------

    def index(self, sub: Subscriber) -> None:
        idx = self._types.get(sub.event_type)
        if idx is None:
            idx = self._types[sub.event_type] = _TypeIndex()
        if sub.symbols is None:
            idx.wildcard[sub] = None
        else:
            for symbol in sub.symbols:
                idx.by_symbol.setdefault(symbol, {})[sub] = None
        self._unroute(idx, sub)
        if sub.is_admin:  # sees every private event: not in by_user too (offered once)
            idx.admins[sub] = None
            idx.private[sub] = None
        elif sub.user is not None:
            idx.by_user.setdefault(sub.user, {})[sub] = None
            idx.private[sub] = sub.user

    def unindex(self, sub: Subscriber) -> None:
        idx = self._types.get(sub.event_type)
        if idx is None:
            return
        idx.wildcard.pop(sub, None)
        for symbol in sub.symbols or ():
            bucket = idx.by_symbol.get(symbol)
            if bucket is not None:
                bucket.pop(sub, None)
                if not bucket:
                    del idx.by_symbol[symbol]
        self._unroute(idx, sub)
        if idx.empty():
            del self._types[sub.event_type]

    @staticmethod
    def _unroute(idx: _TypeIndex, sub: Subscriber) -> None:
        if sub not in idx.private:
            return
        user = idx.private.pop(sub)
        if user is None:
            idx.admins.pop(sub, None)
            return
        bucket = idx.by_user.get(user)
        if bucket is not None:
            bucket.pop(sub, None)
            if not bucket:
                del idx.by_user[user]

    def subscribers(self, event_type: str) -> list[Subscriber]:
        """Every subscriber of ``event_type``, each once."""
        idx = self._types.get(event_type)
        if idx is None:
            return []
        seen = dict(idx.wildcard)
        for bucket in idx.by_symbol.values():
            seen.update(bucket)
        return list(seen)

    def resync(self, event_type: str, reason: str) -> None:
        """The stream of ``event_type`` had a gap: every subscriber of it is told to resync."""
        for sub in self.subscribers(event_type):
            sub.resync(reason)

    # --- fan-out -----------------------------------------------------------------------------

    def dispatch(self, event_type: str, entries: list[StreamEntry]) -> None:
        """Offer entries to every matching subscriber, keeping each one's offset order.

        Runs of public events go out as shared batches; a private event (rare) is offered on its
        own, between the runs around it, so a user sees both kinds in offset order.
        """
        idx = self._types.get(event_type)
        if idx is None:
            return
        run: list[Encoded] = []
        for entry in entries:
            encoded = Encoded(entry)
            if entry.user:
                if run:
                    self._fanout(idx, run)
                    run = []
                self._guarded(self._dispatch_private, idx, encoded)
            else:
                run.append(encoded)
        if run:
            self._fanout(idx, run)

    def _guarded(self, fn: Callable[[_TypeIndex, Encoded], int], idx: _TypeIndex,
                 encoded: Encoded) -> None:
        try:
            self.deliveries += fn(idx, encoded)
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
            for sub in list(idx.wildcard):
                sub.offer_batch(batch)
            count += len(run) * len(idx.wildcard)
        if idx.by_symbol:
            groups: dict[str, list[Encoded]] = {}
            for encoded in run:
                symbol = encoded.entry.symbol
                if symbol and symbol in idx.by_symbol:
                    groups.setdefault(symbol, []).append(encoded)
            multi: _Set = {}
            for symbol, events in groups.items():
                batch = Batch(events)
                for sub in list(idx.by_symbol[symbol]):
                    symbols = sub.symbols
                    if symbols is not None and len(symbols) > 1:
                        multi[sub] = None
                    else:
                        sub.offer_batch(batch)
                        count += len(events)
            # several symbols: the run filtered to them, in stream order, one Batch per filter
            # (subscribers with the same symbols share its frames)
            by_filter: dict[frozenset[str], Batch] = {}
            for sub in multi:
                wanted = sub.symbols or frozenset()
                shared = by_filter.get(wanted)
                if shared is None:  # never empty: the subscriber is here for one of its symbols
                    shared = by_filter[wanted] = Batch([e for e in run if e.entry.symbol in wanted])
                sub.offer_batch(shared)
                count += len(shared.events)
        self.deliveries += count

    @staticmethod
    def _dispatch_private(idx: _TypeIndex, encoded: Encoded) -> int:
        entry = encoded.entry
        count = 0
        for group in (idx.by_user.get(entry.user), idx.admins):
            for sub in list(group or ()):
                symbols = sub.symbols
                if symbols is None or entry.symbol in symbols:
                    sub.offer(encoded)
                    count += 1
        return count
