"""Klines (candlesticks) aggregated from trades, for every Binance interval.

Open times are aligned as on Binance: fixed-length intervals on multiples of their
length since the epoch, weeks on Mondays 00:00 UTC, months on the 1st 00:00 UTC. A kline's
close time is the next open time minus 1 ms. Intervals without trades still get a kline
(open = high = low = close = previous close, zero volume, first/last trade id -1).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from simulator.market import Trade
from simulator.tape import BoundedLog

SECOND = 1000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
WEEK = 7 * DAY
_MONDAY_OFFSET = 4 * DAY  # 1970-01-01 was a Thursday

FIXED_MS: dict[str, int] = {
    "1s": SECOND, "1m": MINUTE, "3m": 3 * MINUTE, "5m": 5 * MINUTE, "15m": 15 * MINUTE,
    "30m": 30 * MINUTE, "1h": HOUR, "2h": 2 * HOUR, "4h": 4 * HOUR, "6h": 6 * HOUR,
    "8h": 8 * HOUR, "12h": 12 * HOUR, "1d": DAY, "3d": 3 * DAY, "1w": WEEK,
}
INTERVALS: tuple[str, ...] = (*FIXED_MS, "1M")


def open_time(interval: str, t: int) -> int:
    """Open time (ms) of the ``interval`` kline containing ``t``."""
    if interval == "1M":
        d = datetime.fromtimestamp(t / 1000, tz=UTC)
        return int(datetime(d.year, d.month, 1, tzinfo=UTC).timestamp() * 1000)
    if interval == "1w":
        return t - (t - _MONDAY_OFFSET) % WEEK
    size = FIXED_MS[interval]
    return t - t % size


def next_open(interval: str, opened: int) -> int:
    if interval == "1M":
        d = datetime.fromtimestamp(opened / 1000, tz=UTC)
        year, month = (d.year + 1, 1) if d.month == 12 else (d.year, d.month + 1)
        return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)
    return opened + FIXED_MS[interval]


@dataclass(slots=True)
class Bar:
    """One kline; prices and volumes in 1e-8 units, quote amounts exact (1e-16)."""

    interval: str
    open_time: int
    close_time: int
    open: int
    high: int
    low: int
    close: int
    volume: int = 0
    quote: int = 0
    trades: int = 0
    first_id: int = -1
    last_id: int = -1
    taker_base: int = 0
    taker_quote: int = 0
    closed: bool = False

    @classmethod
    def empty(cls, interval: str, opened: int, price: int) -> Bar:
        return cls(interval, opened, next_open(interval, opened) - 1, price, price, price, price)

    def add(self, trade: Trade) -> None:
        if self.trades == 0:
            self.open = self.high = self.low = trade.price
            self.first_id = trade.id
        else:
            self.high = max(self.high, trade.price)
            self.low = min(self.low, trade.price)
        self.close = trade.price
        self.last_id = trade.id
        self.trades += 1
        self.volume += trade.qty
        amount = trade.price * trade.qty
        self.quote += amount
        if not trade.buyer_maker:  # the buyer was the taker
            self.taker_base += trade.qty
            self.taker_quote += amount

    def copy(self) -> Bar:
        return replace(self)


class KlineSeries:
    """The current kline of one interval plus a bounded history of closed ones."""

    def __init__(self, interval: str, now: int, price: int, capacity: int) -> None:
        self.interval = interval
        self.current = Bar.empty(interval, open_time(interval, now), price)
        self.history: BoundedLog[Bar] = BoundedLog(capacity)

    def roll(self, now: int) -> list[Bar]:
        """Close every kline that ended before ``now``; returns the closed ones."""
        closed: list[Bar] = []
        while now > self.current.close_time:
            bar = self.current
            bar.closed = True
            self.history.append(bar)
            closed.append(bar)
            opened = bar.close_time + 1
            if len(closed) >= self.history.capacity:  # long pause: skip ahead
                opened = max(opened, open_time(self.interval, now))
            self.current = Bar.empty(self.interval, opened, bar.close)
        return closed

    def add(self, trade: Trade) -> list[Bar]:
        closed = self.roll(trade.time)
        self.current.add(trade)
        return closed

    def query(self, limit: int, start: int | None = None, end: int | None = None) -> list[Bar]:
        """Up to ``limit`` klines (closed ones, then the current one), oldest first."""
        bars = [*self.history.window(), self.current]
        if start is not None:
            bars = [b for b in bars if b.open_time >= start]
        if end is not None:
            bars = [b for b in bars if b.open_time <= end]
        picked = bars[:limit] if start is not None else bars[-limit:]
        return [b.copy() for b in picked]


class KlineSet:
    """All intervals of one symbol."""

    def __init__(self, now: int, price: int, capacity: int) -> None:
        self.series = {
            i: KlineSeries(i, now, price, max(capacity, 1441) if i == "1m" else capacity)
            for i in INTERVALS
        }

    def add(self, trade: Trade) -> list[Bar]:
        closed: list[Bar] = []
        for series in self.series.values():
            closed.extend(series.add(trade))
        return closed

    def roll(self, now: int) -> list[Bar]:
        closed: list[Bar] = []
        for series in self.series.values():
            closed.extend(series.roll(now))
        return closed
