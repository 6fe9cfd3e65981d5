"""An L2 order book: price level -> quantity, with an update id per level change.

Every change goes through :meth:`OrderBook.set`, which bumps ``update_id`` by one and tells
the registered :class:`DiffRecorder` objects; a diff-depth event is exactly the levels a
recorder collected between two flushes, so events and REST snapshots always agree.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

Level = tuple[int, int]


@dataclass(slots=True)
class DepthDiff:
    """What a diff-depth event carries: update id range and final level quantities."""

    first_id: int
    last_id: int
    bids: list[Level]
    asks: list[Level]


@dataclass(slots=True)
class DiffRecorder:
    """Collects level changes between two flushes of one diff-depth stream."""

    first_id: int | None = None
    last_id: int = 0
    bids: dict[int, int] = field(default_factory=dict)
    asks: dict[int, int] = field(default_factory=dict)

    def record(self, is_bid: bool, price: int, qty: int, update_id: int) -> None:
        if self.first_id is None:
            self.first_id = update_id
        self.last_id = update_id
        (self.bids if is_bid else self.asks)[price] = qty

    def flush(self) -> DepthDiff | None:
        """The diff since the last flush (``None`` when nothing changed), then reset."""
        if self.first_id is None:
            return None
        diff = DepthDiff(
            self.first_id,
            self.last_id,
            sorted(self.bids.items(), reverse=True),
            sorted(self.asks.items()),
        )
        self.first_id = None
        self.bids = {}
        self.asks = {}
        return diff


class OrderBook:
    """Bids and asks keyed by integer price; ``update_id`` counts level changes."""

    __slots__ = ("_ask_prices", "_bid_prices", "asks", "bids", "recorders", "update_id")

    def __init__(self, update_id: int = 0) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_prices: list[int] = []  # ascending: best bid is last
        self._ask_prices: list[int] = []  # ascending: best ask is first
        self.update_id = update_id
        self.recorders: list[DiffRecorder] = []

    def set(self, is_bid: bool, price: int, qty: int) -> None:
        """Set one level's quantity; 0 removes it."""
        levels = self.bids if is_bid else self.asks
        prices = self._bid_prices if is_bid else self._ask_prices
        if qty > 0:
            if price not in levels:
                insort(prices, price)
            levels[price] = qty
        elif price in levels:
            del levels[price]
            del prices[bisect_left(prices, price)]
        else:
            return
        self.update_id += 1
        for rec in self.recorders:
            rec.record(is_bid, price, qty, self.update_id)

    def depth(self, is_bid: bool) -> int:
        return len(self._bid_prices if is_bid else self._ask_prices)

    def price_at(self, is_bid: bool, index: int) -> int:
        """The price ``index`` levels away from the best (0 = best)."""
        if is_bid:
            return self._bid_prices[-1 - index]
        return self._ask_prices[index]

    def best(self, is_bid: bool) -> Level | None:
        if not (self._bid_prices if is_bid else self._ask_prices):
            return None
        price = self.price_at(is_bid, 0)
        return price, (self.bids if is_bid else self.asks)[price]

    def worst(self, is_bid: bool) -> int | None:
        prices = self._bid_prices if is_bid else self._ask_prices
        if not prices:
            return None
        return prices[0] if is_bid else prices[-1]

    def top(self, is_bid: bool, n: int | None = None) -> list[Level]:
        """Up to ``n`` levels (all when ``None``), best first."""
        if is_bid:
            prices = self._bid_prices[::-1] if n is None else self._bid_prices[: -n - 1 : -1]
            return [(p, self.bids[p]) for p in prices]
        prices = self._ask_prices if n is None else self._ask_prices[:n]
        return [(p, self.asks[p]) for p in prices]
