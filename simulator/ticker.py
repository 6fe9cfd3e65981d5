"""Rolling 24 h statistics for the ticker and miniTicker streams, from 1-minute klines.

The window is the current 1m kline plus the closed ones that opened within the last
24 h, so it has minute granularity at its old end (Binance's is finer).
"""

from __future__ import annotations

from dataclasses import dataclass

from simulator.klines import DAY, KlineSeries


@dataclass(frozen=True, slots=True)
class Stats24h:
    open: int
    high: int
    low: int
    close: int
    prev_close: int
    volume: int
    quote: int
    first_id: int
    last_id: int
    count: int
    open_time: int
    close_time: int


def rolling_24h(minutes: KlineSeries, now: int) -> Stats24h:
    """Statistics over the 1m klines that opened after ``now - 24h``."""
    since = now - DAY
    history = minutes.history.window()
    bars = [b for b in history if b.open_time > since]
    older = [b for b in history if b.open_time <= since]
    bars.append(minutes.current)
    traded = [b for b in bars if b.trades]
    first = bars[0]
    prev_close = older[-1].close if older else first.open
    if not traded:
        price = minutes.current.close
        return Stats24h(price, price, price, price, prev_close, 0, 0, -1, -1, 0, since, now)
    return Stats24h(
        open=first.open,
        high=max(b.high for b in traded),
        low=min(b.low for b in traded),
        close=traded[-1].close,
        prev_close=prev_close,
        volume=sum(b.volume for b in traded),
        quote=sum(b.quote for b in traded),
        first_id=traded[0].first_id,
        last_id=traded[-1].last_id,
        count=sum(b.trades for b in traded),
        open_time=since,
        close_time=now,
    )
