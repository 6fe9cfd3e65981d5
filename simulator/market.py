"""One symbol's market: a random walk driving an order book and the trades it makes.

Each :meth:`SymbolMarket.step` is one order-book action, chosen by a seeded RNG:
a taker order sweeping the best levels (producing trades and aggregate trades), a new
resting order, or a cancel. A hidden fair price follows a random walk; takers lean
towards it and new orders cluster around it, so the book drifts with it. The sequence of
actions depends only on the seed and the symbol name: timestamps come from the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from simulator.book import OrderBook
from simulator.symbols import SymbolSpec


@dataclass(frozen=True, slots=True)
class Trade:
    id: int
    price: int
    qty: int
    time: int
    buyer_maker: bool


@dataclass(frozen=True, slots=True)
class AggTrade:
    id: int
    price: int
    qty: int
    first_id: int
    last_id: int
    time: int
    buyer_maker: bool


@dataclass(slots=True)
class StepResult:
    trades: list[Trade] = field(default_factory=list)
    aggs: list[AggTrade] = field(default_factory=list)
    top_changed: bool = False


@dataclass(frozen=True, slots=True)
class BookShape:
    initial_levels: int = 300
    min_levels: int = 100
    max_levels: int = 1000


class SymbolMarket:
    """Book and tape generator for one symbol."""

    def __init__(self, spec: SymbolSpec, seed: int, shape: BookShape | None = None) -> None:
        self.spec = spec
        self.shape = shape or BookShape()
        self.rng = random.Random(f"tickstream-simulator:{seed}:{spec.name}")
        rng = self.rng
        self.next_trade_id = rng.randint(10_000, 99_999) * 1000
        self.next_agg_id = rng.randint(1_000, 9_999) * 1000
        self.book = OrderBook(update_id=rng.randint(1_000, 9_999) * 10_000)
        self.fair = float(spec.price // spec.tick)  # in ticks
        self.last_price = spec.price
        self._seed_book()

    # ---- helpers -------------------------------------------------------------------------

    def _lot(self, scale: float = 1.0) -> int:
        """A random quantity around the symbol's typical lot, a whole number of steps."""
        steps = self.spec.lot / self.spec.step
        drawn = steps * scale * self.rng.lognormvariate(0.0, 0.8)
        return max(1, int(drawn)) * self.spec.step

    def _seed_book(self) -> None:
        tick = self.spec.tick
        mid = self.spec.price // tick
        for is_bid in (True, False):
            offset = 0
            for i in range(self.shape.initial_levels):
                offset += 1 if i < 40 else 1 + int(self.rng.expovariate(1 / (1 + i / 40)))
                ticks = mid - offset if is_bid else mid + offset
                if ticks <= 0:
                    break
                self.book.set(is_bid, ticks * tick, self._lot())

    def _top(self) -> tuple[int, int, int, int]:
        bid = self.book.best(True) or (0, 0)
        ask = self.book.best(False) or (0, 0)
        return bid[0], bid[1], ask[0], ask[1]

    # ---- one step ------------------------------------------------------------------------

    def step(self, now: int) -> StepResult:
        """Perform one order-book action at time ``now`` (ms)."""
        rng = self.rng
        before = self._top()
        self.fair = max(1.0, self.fair + rng.gauss(0.0, 0.6))
        result = StepResult()
        roll = rng.random()
        if roll < 0.20:
            self._taker(now, result)
        elif roll < 0.70:
            self._add()
        else:
            self._cancel()
        self._maintain()
        result.top_changed = self._top() != before
        return result

    def _mid_ticks(self) -> float:
        bid, _, ask, _ = self._top()
        if bid and ask:
            return (bid + ask) / 2 / self.spec.tick
        return self.fair

    def _taker(self, now: int, result: StepResult) -> None:
        rng = self.rng
        lean = max(-1.0, min(1.0, (self.fair - self._mid_ticks()) / 4.0))
        taker_buys = rng.random() < 0.5 + 0.4 * lean
        hit_bids = not taker_buys
        remaining = self._lot(scale=1.2)
        step = self.spec.step
        while remaining > 0 and self.book.depth(hit_bids) > 0:
            price, level_qty = self.book.best(hit_bids) or (0, 0)
            take = min(remaining, level_qty)
            remaining -= take
            self.book.set(hit_bids, price, level_qty - take)
            first = self.next_trade_id
            for part in self._split(take // step, rng.randint(1, 3)):
                result.trades.append(
                    Trade(self.next_trade_id, price, part * step, now, hit_bids)
                )
                self.next_trade_id += 1
            result.aggs.append(
                AggTrade(self.next_agg_id, price, take, first, self.next_trade_id - 1, now,
                         hit_bids)
            )
            self.next_agg_id += 1
            self.last_price = price

    def _split(self, steps: int, parts: int) -> list[int]:
        parts = max(1, min(parts, steps))
        cuts = sorted(self.rng.sample(range(1, steps), parts - 1)) if parts > 1 else []
        bounds = [0, *cuts, steps]
        return [bounds[i + 1] - bounds[i] for i in range(parts)]

    def _add(self) -> None:
        rng = self.rng
        tick = self.spec.tick
        is_bid = rng.random() < 0.5
        distance = int(rng.expovariate(1 / 12.0))
        fair = round(self.fair)
        bid, _, ask, _ = self._top()
        if is_bid:
            ticks = fair - distance
            if ask:
                ticks = min(ticks, ask // tick - 1)
        else:
            ticks = fair + distance
            if bid:
                ticks = max(ticks, bid // tick + 1)
        if ticks <= 0:
            return
        price = ticks * tick
        levels = self.book.bids if is_bid else self.book.asks
        self.book.set(is_bid, price, levels.get(price, 0) + self._lot())

    def _cancel(self) -> None:
        rng = self.rng
        is_bid = rng.random() < 0.5
        count = self.book.depth(is_bid)
        if count == 0:
            return
        index = min(int(rng.expovariate(1 / 30.0)), count - 1)
        price = self.book.price_at(is_bid, index)
        qty = (self.book.bids if is_bid else self.book.asks)[price]
        steps = qty // self.spec.step
        if steps <= 1 or rng.random() < 0.25:
            self.book.set(is_bid, price, 0)
        else:
            keep = rng.randint(1, steps - 1)
            self.book.set(is_bid, price, keep * self.spec.step)

    def _maintain(self) -> None:
        """Keep each side between min_levels and max_levels deep."""
        tick = self.spec.tick
        for is_bid in (True, False):
            while self.book.depth(is_bid) < self.shape.min_levels:
                worst = self.book.worst(is_bid)
                if worst is None:
                    other = self.book.best(not is_bid)
                    worst = other[0] if other else round(self.fair) * tick
                gap = (1 + int(self.rng.expovariate(0.5))) * tick
                price = worst - gap if is_bid else worst + gap
                if price <= 0:
                    break
                self.book.set(is_bid, price, self._lot())
            while self.book.depth(is_bid) > self.shape.max_levels:
                worst = self.book.worst(is_bid)
                assert worst is not None
                self.book.set(is_bid, worst, 0)
