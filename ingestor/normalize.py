"""Exchange messages -> Tickstream contract events (docs/ingestor.md), sans I/O.

Each function returns the :class:`shared.events.Event` the sink publishes as is (one
representation from here to the publisher); this module does no I/O and reads no clock.

Choices
-------
* **price_update comes from aggTrade, not trade.** The REST backfill that fills gaps after a
  reconnect can only page trades by aggregate id (``/api/v3/aggTrades?fromId=``), so the live
  source must use the same id space for ``trade_id`` to line up with backfilled rows and for
  de-duplication to work across both. ``trade_id`` is therefore the aggregate id ``a``, ``volume``
  the aggregate quantity, and ``timestamp`` the trade time ``T``. :class:`Trade` messages are not
  normalized (mixing both id spaces would make ids collide).
* **side** is the taker's side: ``buy`` when the buyer is the taker (``m`` false), ``sell``
  when the buyer is the maker.
* **miniTicker is not mapped.** A ``ticker`` event promises ``change``, ``change_percent``,
  ``bid`` and ``ask``; a mini ticker has none of them, so emitting it as ``ticker`` would hand
  consumers events with missing fields (or ``null`` where numbers are promised). Subscribe to
  ``<symbol>@ticker`` for ticker events.
* Numbers: prices and quantities are floats (the parser's correctly rounded value of the exchange
  decimal), ids and counts ints, times ISO 8601 UTC strings with milliseconds.
* The REST backfill builds the same events: ``normalize_agg_trade(parse_rest_agg_trade(...))``
  and ``normalize_kline(parse_rest_kline(...))`` (see :mod:`ingestor.binance.rest`).
"""

from __future__ import annotations

import time
from decimal import Decimal
from functools import lru_cache
from typing import Final

from ingestor.binance.messages import AggTrade, BookTicker, Kline, Ticker24h
from ingestor.orderbook import OrderBook
from shared.events import Event

__all__ = [
    "iso_ms",
    "normalize_agg_trade",
    "normalize_book",
    "normalize_book_ticker",
    "normalize_kline",
    "normalize_orderbook",
    "normalize_ticker",
]

PRICE_UPDATE: Final = "price_update"
MARKET_DATA: Final = "market_data"
ORDERBOOK_UPDATE: Final = "orderbook_update"
SOURCE: Final = "binance"


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    t = time.gmtime(second)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch -> ``2023-01-01T00:00:00.000Z`` (UTC, always 3 decimals)."""
    second, milli = divmod(ms, 1000)
    return f"{_iso_second(second)}.{milli:03d}Z"


def normalize_agg_trade(msg: AggTrade) -> Event:
    """aggTrade (live or REST) -> ``price_update``."""
    data = {
        "symbol": msg.symbol,
        "price": msg.price,
        "volume": msg.quantity,
        "timestamp": iso_ms(msg.trade_time),
        "trade_id": msg.agg_id,
        "side": "sell" if msg.buyer_is_maker else "buy",
        "source": SOURCE,
    }
    return Event(PRICE_UPDATE, data, msg.symbol)


def normalize_kline(msg: Kline) -> Event:
    """kline (live or REST) -> ``market_data`` of kind ``candle``."""
    data = {
        "symbol": msg.symbol,
        "kind": "candle",
        "interval": msg.interval,
        "open_time": iso_ms(msg.open_time),
        "close_time": iso_ms(msg.close_time),
        "open": msg.open,
        "high": msg.high,
        "low": msg.low,
        "close": msg.close,
        "volume": msg.volume,
        "quote_volume": msg.quote_volume,
        "trades": msg.trades,
        "closed": msg.closed,
    }
    return Event(MARKET_DATA, data, msg.symbol)


def normalize_ticker(msg: Ticker24h) -> Event:
    """24 h ticker -> ``market_data`` of kind ``ticker``."""
    data = {
        "symbol": msg.symbol,
        "kind": "ticker",
        "last": msg.last_price,
        "open": msg.open,
        "high": msg.high,
        "low": msg.low,
        "volume": msg.volume,
        "quote_volume": msg.quote_volume,
        "change": msg.price_change,
        "change_percent": msg.price_change_percent,
        "bid": msg.bid,
        "ask": msg.ask,
    }
    return Event(MARKET_DATA, data, msg.symbol)


def normalize_book_ticker(msg: BookTicker) -> Event:
    """bookTicker -> ``market_data`` of kind ``book_ticker``."""
    data = {
        "symbol": msg.symbol,
        "kind": "book_ticker",
        "bid": msg.bid,
        "bid_qty": msg.bid_quantity,
        "ask": msg.ask,
        "ask_qty": msg.ask_quantity,
        "update_id": msg.update_id,
    }
    return Event(MARKET_DATA, data, msg.symbol)


def normalize_orderbook(
    symbol: str,
    bids: list[tuple[Decimal, Decimal]],
    asks: list[tuple[Decimal, Decimal]],
    last_update_id: int,
    timestamp_ms: int,
) -> Event:
    """The top of a synced local book -> ``orderbook_update``.

    ``bids``/``asks`` are best first, as :meth:`ingestor.orderbook.OrderBook.top` returns them;
    ``timestamp_ms`` is the event time of the last applied diff (or the caller's ``now_ms``
    right after a snapshot).
    """
    data = {
        "symbol": symbol,
        "bids": [[float(price), float(qty)] for price, qty in bids],
        "asks": [[float(price), float(qty)] for price, qty in asks],
        "last_update_id": last_update_id,
        "timestamp": iso_ms(timestamp_ms),
    }
    return Event(ORDERBOOK_UPDATE, data, symbol)


def normalize_book(book: OrderBook, depth: int, *, now_ms: int) -> Event | None:
    """``orderbook_update`` with the top ``depth`` levels of ``book``; None unless it is synced.

    The timestamp is the event time of the last applied diff, or ``now_ms`` when the book was
    just built from a snapshot alone.
    """
    last_update_id = book.last_update_id
    if last_update_id is None:
        return None
    bids, asks = book.top(depth)
    timestamp_ms = book.event_time_ms if book.event_time_ms is not None else now_ms
    return normalize_orderbook(book.symbol, bids, asks, last_update_id, timestamp_ms)
