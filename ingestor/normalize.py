"""Exchange messages -> Tickstream contract events (CONTRACT.md section 2), as plain data.

The I/O layer turns each :class:`NormalizedEvent` into a published event; this module imports
nothing of ``shared`` and reads no clock.

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
* **keys** (de-duplication identities, e.g. for an idempotency key) exist only where the exchange
  gives an identity, and include the symbol because Binance ids are per symbol:
  ``trade:<SYMBOL>:<aggId>``, ``kline:<SYMBOL>:<interval>:<openTime>`` (closed candles only: an
  open candle is updated in place every 2 s), ``book_ticker:<SYMBOL>:<updateId>``,
  ``orderbook:<SYMBOL>:<lastUpdateId>``. Tickers carry no identity: key None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from ingestor.binance.messages import AggTrade, BookTicker, Kline, Message, Ticker24h
from ingestor.binance.rest import parse_rest_agg_trade, parse_rest_kline
from ingestor.orderbook import OrderBook

__all__ = [
    "NormalizedEvent",
    "iso_ms",
    "normalize_agg_trade",
    "normalize_book",
    "normalize_book_ticker",
    "normalize_kline",
    "normalize_message",
    "normalize_orderbook",
    "normalize_rest_agg_trade",
    "normalize_rest_kline",
    "normalize_ticker",
]

PRICE_UPDATE: Final = "price_update"
MARKET_DATA: Final = "market_data"
ORDERBOOK_UPDATE: Final = "orderbook_update"
SOURCE: Final = "binance"


@dataclass(frozen=True, slots=True)
class NormalizedEvent:
    """One contract event before publishing.

    ``data`` is the event's JSON object; ``symbol`` its routing key (upper case); ``key`` a stable
    de-duplication identity, or None when the message has none.
    """

    event_type: str
    symbol: str | None
    data: dict[str, Any]
    key: str | None


@lru_cache(maxsize=4096)
def _iso_second(second: int) -> str:
    t = time.gmtime(second)
    return f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"


def iso_ms(ms: int) -> str:
    """Milliseconds since the epoch -> ``2023-01-01T00:00:00.000Z`` (UTC, always 3 decimals)."""
    second, milli = divmod(ms, 1000)
    return f"{_iso_second(second)}.{milli:03d}Z"


def normalize_agg_trade(msg: AggTrade) -> NormalizedEvent:
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
    return NormalizedEvent(PRICE_UPDATE, msg.symbol, data, f"trade:{msg.symbol}:{msg.agg_id}")


def normalize_kline(msg: Kline) -> NormalizedEvent:
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
    key = f"kline:{msg.symbol}:{msg.interval}:{msg.open_time}" if msg.closed else None
    return NormalizedEvent(MARKET_DATA, msg.symbol, data, key)


def normalize_ticker(msg: Ticker24h) -> NormalizedEvent:
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
    return NormalizedEvent(MARKET_DATA, msg.symbol, data, None)


def normalize_book_ticker(msg: BookTicker) -> NormalizedEvent:
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
    key = f"book_ticker:{msg.symbol}:{msg.update_id}"
    return NormalizedEvent(MARKET_DATA, msg.symbol, data, key)


def normalize_orderbook(
    symbol: str,
    bids: list[tuple[Decimal, Decimal]],
    asks: list[tuple[Decimal, Decimal]],
    last_update_id: int,
    timestamp_ms: int,
) -> NormalizedEvent:
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
    return NormalizedEvent(ORDERBOOK_UPDATE, symbol, data, f"orderbook:{symbol}:{last_update_id}")


def normalize_book(book: OrderBook, depth: int, *, now_ms: int) -> NormalizedEvent | None:
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


def normalize_message(msg: Message) -> NormalizedEvent | None:
    """The event a stateless message maps to, or None.

    None for messages that are not events by themselves: trades (see the module docstring),
    mini tickers, depth (it goes through :class:`ingestor.orderbook.OrderBook`), server
    shutdowns and control replies.
    """
    if type(msg) is AggTrade:
        return normalize_agg_trade(msg)
    if type(msg) is BookTicker:
        return normalize_book_ticker(msg)
    if type(msg) is Kline:
        return normalize_kline(msg)
    if type(msg) is Ticker24h:
        return normalize_ticker(msg)
    return None


def normalize_rest_agg_trade(symbol: str, row: object) -> NormalizedEvent:
    """A decoded ``/api/v3/aggTrades`` row -> the same ``price_update`` the live stream gives.

    Raises :exc:`ingestor.binance.errors.ProtocolError` for a malformed row.
    """
    return normalize_agg_trade(parse_rest_agg_trade(symbol, row))


def normalize_rest_kline(symbol: str, interval: str, row: object, *, now_ms: int) -> NormalizedEvent:
    """A decoded ``/api/v3/klines`` row -> the same candle event the live stream gives.

    A REST row does not say whether its candle is final; ``now_ms`` decides (see
    :func:`ingestor.binance.rest.parse_rest_kline`). Backfill should publish only events whose
    ``data["closed"]`` is true: the open candle keeps coming from the live stream.
    """
    return normalize_kline(parse_rest_kline(symbol, interval, row, now_ms=now_ms))
