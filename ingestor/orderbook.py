"""A local L2 order book per symbol, as a pure state machine (no I/O, no clock).

It follows Binance's procedure (reference section 5, as corrected 2025-11-12)::

                first diff                       usable snapshot
    BUFFERING ---------------> WAITING_SNAPSHOT -----------------> SYNCED
                FETCH_SNAPSHOT   |    ^     ^     SYNCED             |  diff: UPDATED
                                 +----+     |                        |
                     snapshot too old:      +------------------------+
                     FETCH_SNAPSHOT again     gap (U > id + 1): RESYNC; the book discards
                                              itself and buffers again from the gap diff
    reset(), from any state: back to BUFFERING

The I/O layer feeds diffs (:meth:`OrderBook.on_diff`) and snapshots (:meth:`OrderBook.on_snapshot`)
and does what the returned :class:`Action` says. At most one snapshot is asked for at a time:
after ``FETCH_SNAPSHOT`` or ``RESYNC`` the caller answers with exactly one ``on_snapshot`` or
``on_snapshot_failed`` (which asks again; back off before retrying).

Sequence rules (``U``/``u`` = first/final update id of a diff, ``L`` = snapshot lastUpdateId):

* snapshot with ``L`` < first buffered ``U`` -> too old: ``FETCH_SNAPSHOT`` again;
* buffered diffs with ``u <= L`` are dropped;
* a diff with ``u <=`` the book's id is stale and ignored (the reference says ``u <`` id; a diff
  with ``u ==`` id holds nothing the book lacks, and re-applying it would be a no-op);
* a diff with ``U >`` id + 1 means updates were missed -> ``RESYNC`` (this symbol only);
* otherwise (``U <= id + 1 <= u``; normally ``U == id + 1``) the diff is applied, id = ``u``.

The first applied diff therefore needs ``U <= L + 1 <= u``. The reference phrases that check as
"``L`` within ``[U; u]``", which after dropping ``u <= L`` also rejects ``U == L + 1``: a diff
that starts exactly where the snapshot ends. That diff is contiguous and loses nothing, and on a
quiet symbol whose diffs carry one update each (``U == u``) it is the *only* possible first diff,
so the literal check would refetch snapshots forever. The book accepts it.

Prices are exact :class:`~decimal.Decimal` keys. Each side is a dict (price -> quantity) plus a
sorted list of its prices maintained with :mod:`bisect`: a quantity change (the common update)
is one dict write; only a new or removed level touches the list.

Pruning: a snapshot carries at most ``limit`` levels per side (5000 at most). Levels beyond the
snapshot's depth are never fully known (a far level that did not change since the snapshot is
simply absent), and diffs keep adding far levels, so after every change each side is cut back to
its ``max_levels`` best prices. This bounds memory and drops the region where the book is known
to be incomplete; set ``max_levels`` to the snapshot ``limit`` you request. The published top N
must stay well inside it.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable
from decimal import Decimal
from enum import Enum
from itertools import islice

from ingestor.binance.messages import DepthSnapshot, DepthUpdate, Level

__all__ = ["Action", "BookState", "OrderBook", "PriceLevel"]

PriceLevel = tuple[Decimal, Decimal]
"""``(price, quantity)`` in the book."""


class BookState(Enum):
    BUFFERING = "buffering"  # no diff seen yet
    WAITING_SNAPSHOT = "waiting_snapshot"  # diffs buffered, one snapshot requested
    SYNCED = "synced"


class Action(Enum):
    """What the I/O layer should do after feeding the book."""

    NONE = "none"  # nothing (buffered, or a stale diff ignored)
    FETCH_SNAPSHOT = "fetch_snapshot"  # request a depth snapshot (again)
    SYNCED = "synced"  # the book just became consistent: publish its top
    UPDATED = "updated"  # a synced book changed: publish its top
    RESYNC = "resync"  # gap: the book was discarded; request a snapshot for this symbol


class _Side:
    """One side of the book: quantities by price plus the prices in ascending order."""

    __slots__ = ("_bids", "prices", "qty")

    def __init__(self, bids: bool) -> None:
        self._bids = bids
        self.qty: dict[Decimal, Decimal] = {}
        self.prices: list[Decimal] = []

    def load(self, levels: Iterable[Level], max_levels: int) -> None:
        self.qty = {}
        for price, qty in levels:
            quantity = Decimal(qty)
            if quantity:
                self.qty[Decimal(price)] = quantity
            else:
                self.qty.pop(Decimal(price), None)
        self.prices = sorted(self.qty)
        self.prune(max_levels)

    def apply(self, levels: Iterable[Level]) -> None:
        qty_by_price, prices = self.qty, self.prices
        for raw_price, raw_qty in levels:
            price, quantity = Decimal(raw_price), Decimal(raw_qty)
            if quantity:
                if price not in qty_by_price:
                    insort(prices, price)
                qty_by_price[price] = quantity
            elif qty_by_price.pop(price, None) is not None:
                del prices[bisect_left(prices, price)]

    def prune(self, max_levels: int) -> None:
        excess = len(self.prices) - max_levels
        if excess <= 0:
            return
        if self._bids:  # worst bids are the lowest prices, at the start
            dropped = self.prices[:excess]
            del self.prices[:excess]
        else:  # worst asks are the highest prices, at the end
            dropped = self.prices[-excess:]
            del self.prices[-excess:]
        for price in dropped:
            del self.qty[price]

    def top(self, n: int) -> list[PriceLevel]:
        best_first = reversed(self.prices) if self._bids else iter(self.prices)
        qty = self.qty
        return [(price, qty[price]) for price in islice(best_first, max(n, 0))]

    def clear(self) -> None:
        self.qty = {}
        self.prices = []


class OrderBook:
    """The local book of one symbol.

    ``max_buffer`` bounds the diffs kept while waiting for a snapshot; when it overflows the
    buffer restarts from the newest diff (the pending snapshot is then judged against it, and is
    refetched if too old). ``max_levels`` is the per-side pruning depth (see the module doc).
    """

    def __init__(self, symbol: str, *, max_buffer: int = 1000, max_levels: int = 5000) -> None:
        if max_buffer < 1 or max_levels < 1:
            raise ValueError("max_buffer and max_levels must be positive")
        self.symbol = symbol
        self.max_buffer = max_buffer
        self.max_levels = max_levels
        self.state = BookState.BUFFERING
        self._id = -1  # the book's update id while SYNCED
        self.event_time_ms: int | None = None  # E of the last applied diff, if any
        self.resyncs = 0  # gaps detected while synced
        self.buffer_restarts = 0  # overflows and gaps inside the buffer
        self._bids = _Side(bids=True)
        self._asks = _Side(bids=False)
        self._buffer: list[DepthUpdate] = []

    # -- inputs ---------------------------------------------------------------------------------

    def on_diff(self, update: DepthUpdate) -> Action:
        """Feed one diff depth event of this symbol."""
        if update.symbol != self.symbol:
            raise ValueError(f"diff for {update.symbol} fed to the {self.symbol} book")
        if self.state is BookState.SYNCED:
            if update.final_update_id <= self._id:
                return Action.NONE
            if update.first_update_id > self._id + 1:
                self._discard()
                self.resyncs += 1
                self._buffer = [update]
                self.state = BookState.WAITING_SNAPSHOT
                return Action.RESYNC
            self._apply(update)
            return Action.UPDATED
        if self.state is BookState.BUFFERING:
            self._buffer = [update]
            self.state = BookState.WAITING_SNAPSHOT
            return Action.FETCH_SNAPSHOT
        last = self._buffer[-1].final_update_id
        if update.final_update_id <= last:
            return Action.NONE  # duplicate of something buffered
        if update.first_update_id > last + 1 or len(self._buffer) >= self.max_buffer:
            # A hole inside the buffer, or no room: start buffering again from here. The pending
            # snapshot is checked against this diff when it arrives.
            self.buffer_restarts += 1
            self._buffer = [update]
        else:
            self._buffer.append(update)
        return Action.NONE

    def on_snapshot(self, snapshot: DepthSnapshot) -> Action:
        """Feed the snapshot asked for by ``FETCH_SNAPSHOT``/``RESYNC``; ignored otherwise."""
        if snapshot.symbol != self.symbol:
            raise ValueError(f"snapshot for {snapshot.symbol} fed to the {self.symbol} book")
        if self.state is not BookState.WAITING_SNAPSHOT:
            return Action.NONE
        snapshot_id = snapshot.last_update_id
        if snapshot_id < self._buffer[0].first_update_id:
            return Action.FETCH_SNAPSHOT  # older than the buffer: it cannot be bridged
        # The buffer is contiguous (holes restart it) and starts at or before the snapshot, so
        # the first diff left after dropping u <= L has U <= L + 1: nothing is missing.
        pending = [u for u in self._buffer if u.final_update_id > snapshot_id]
        self._bids.load(snapshot.bids, self.max_levels)
        self._asks.load(snapshot.asks, self.max_levels)
        self._id = snapshot_id
        self.event_time_ms = None
        self._buffer = []
        self.state = BookState.SYNCED
        for update in pending:
            self._apply(update)
        return Action.SYNCED

    def on_snapshot_failed(self) -> Action:
        """The requested snapshot could not be fetched: ask again (the caller backs off)."""
        return Action.FETCH_SNAPSHOT if self.state is BookState.WAITING_SNAPSHOT else Action.NONE

    def reset(self) -> None:
        """Forget everything (e.g. the connection carrying the diffs was lost)."""
        self._discard()
        self._buffer = []
        self.state = BookState.BUFFERING

    # -- outputs --------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        return self.state is BookState.SYNCED

    @property
    def last_update_id(self) -> int | None:
        """The update id the book reflects, None unless synced."""
        return self._id if self.state is BookState.SYNCED else None

    def top(self, n: int) -> tuple[list[PriceLevel], list[PriceLevel]]:
        """``(bids, asks)``: up to ``n`` ``(price, quantity)`` levels each, best first.

        Empty lists unless the book is synced.
        """
        return self._bids.top(n), self._asks.top(n)

    def depth(self) -> tuple[int, int]:
        """Number of bid and ask levels held."""
        return len(self._bids.prices), len(self._asks.prices)

    # -- internals ------------------------------------------------------------------------------

    def _apply(self, update: DepthUpdate) -> None:
        self._bids.apply(update.bids)
        self._asks.apply(update.asks)
        self._bids.prune(self.max_levels)
        self._asks.prune(self.max_levels)
        self._id = update.final_update_id
        self.event_time_ms = update.event_time

    def _discard(self) -> None:
        self._bids.clear()
        self._asks.clear()
        self._id = -1
        self.event_time_ms = None
