"""Typed, immutable Binance Spot messages, as produced by :mod:`ingestor.binance.parser`.

Number representation
---------------------
Binance sends prices and quantities as decimal strings. Two representations are used, chosen by
what the value is for:

* **Messages that become contract events** (trades, klines, tickers, book tickers) carry ``float``.
  The contract's events carry JSON numbers, i.e. IEEE doubles, so a float is the value the user
  receives anyway. ``float(str)`` is correctly rounded (the nearest double to the exchange's
  decimal), deterministic, and doubles as the cheapest validation (about 40 ns against about
  170 ns for ``Decimal``); the live stream and the REST backfill apply the same conversion to the
  same string, so they produce bit-identical events.
* **Depth messages** (:class:`DepthUpdate`, :class:`PartialDepth`, :class:`DepthSnapshot`) keep
  the exchange's original ``(price, quantity)`` strings. The order book needs exact keys: it
  converts them to :class:`decimal.Decimal` (exact, ordered, and ``Decimal("1.0") ==
  Decimal("1.00")`` with equal hashes, so differently padded strings name the same level). Keeping
  strings here avoids converting levels that a consumer never uses twice.

All numeric strings were validated by the parser (finite; non-negative except the signed 24 h
price change), so ``Decimal(price)`` never fails on a parsed message.

Times are integer milliseconds since the Unix epoch, as Binance sends them. Fields that only the
WebSocket stream carries (``event_time``, a kline's trade-id range) are ``None`` on messages built
from REST rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "AggTrade",
    "BookTicker",
    "ControlError",
    "ControlResult",
    "DepthSnapshot",
    "DepthUpdate",
    "Kline",
    "Level",
    "Message",
    "MiniTicker",
    "MiniTickerBatch",
    "PartialDepth",
    "RequestId",
    "ServerShutdown",
    "Ticker24h",
    "Trade",
]

Level: TypeAlias = tuple[str, str]
"""One order book level as the exchange wrote it: ``(price, quantity)`` decimal strings."""

RequestId: TypeAlias = int | str | None
"""The ``id`` of a control request: a 64-bit integer, a short string, or null."""


@dataclass(frozen=True, slots=True)
class Trade:
    """``<symbol>@trade``: one trade."""

    symbol: str
    event_time: int
    trade_id: int
    price: float
    quantity: float
    trade_time: int
    buyer_is_maker: bool


@dataclass(frozen=True, slots=True)
class AggTrade:
    """``<symbol>@aggTrade`` or a ``/api/v3/aggTrades`` row: trades of one taker order at one price.

    ``agg_id`` is the id REST backfill pages by (``fromId``); ``event_time`` is None for REST rows.
    """

    symbol: str
    event_time: int | None
    agg_id: int
    price: float
    quantity: float
    first_trade_id: int
    last_trade_id: int
    trade_time: int
    buyer_is_maker: bool


@dataclass(frozen=True, slots=True)
class Kline:
    """``<symbol>@kline_<interval>`` or a ``/api/v3/klines`` row: one candle, possibly still open.

    ``event_time`` and the trade-id range are None for REST rows (which do not carry them).
    """

    symbol: str
    event_time: int | None
    interval: str
    open_time: int
    close_time: int
    first_trade_id: int | None
    last_trade_id: int | None
    open: float
    high: float
    low: float
    close: float
    volume: float
    quote_volume: float
    trades: int
    closed: bool
    taker_buy_volume: float
    taker_buy_quote_volume: float


@dataclass(frozen=True, slots=True)
class MiniTicker:
    """``<symbol>@miniTicker``: rolling 24 h statistics without bid/ask or price change."""

    symbol: str
    event_time: int
    close: float
    open: float
    high: float
    low: float
    volume: float
    quote_volume: float


@dataclass(frozen=True, slots=True)
class MiniTickerBatch:
    """``!miniTicker@arr``: the mini tickers of every symbol that changed in the last second."""

    tickers: tuple[MiniTicker, ...]


@dataclass(frozen=True, slots=True)
class Ticker24h:
    """``<symbol>@ticker``: full rolling 24 h statistics."""

    symbol: str
    event_time: int
    price_change: float
    price_change_percent: float
    weighted_avg_price: float
    prev_close: float
    last_price: float
    last_quantity: float
    bid: float
    bid_quantity: float
    ask: float
    ask_quantity: float
    open: float
    high: float
    low: float
    volume: float
    quote_volume: float
    open_time: int
    close_time: int
    first_trade_id: int
    last_trade_id: int
    trades: int


@dataclass(frozen=True, slots=True)
class BookTicker:
    """``<symbol>@bookTicker``: best bid and ask, pushed in real time (no event time)."""

    symbol: str
    update_id: int
    bid: float
    bid_quantity: float
    ask: float
    ask_quantity: float


@dataclass(frozen=True, slots=True)
class PartialDepth:
    """``<symbol>@depth<5|10|20>``: top levels; the symbol comes from the stream name."""

    symbol: str
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class DepthSnapshot:
    """``GET /api/v3/depth``: the order book snapshot the local book starts from."""

    symbol: str
    last_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class DepthUpdate:
    """``<symbol>@depth[@100ms]``: absolute quantities of the levels changed by updates ``U..u``."""

    symbol: str
    event_time: int
    first_update_id: int
    final_update_id: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True, slots=True)
class ServerShutdown:
    """``serverShutdown``: the server is about to close this connection; open a new one."""

    event_time: int


@dataclass(frozen=True, slots=True)
class ControlResult:
    """Reply to a control request: ``{"result": ..., "id": ...}``.

    ``result`` is None for SUBSCRIBE / UNSUBSCRIBE / SET_PROPERTY, a tuple of stream names for
    LIST_SUBSCRIPTIONS, a bool for GET_PROPERTY, and any other JSON value for future methods.
    """

    result: object
    id: RequestId


@dataclass(frozen=True, slots=True)
class ControlError:
    """Error reply to a control request: ``{"error": {"code": ..., "msg": ...}, "id": ...}``."""

    code: int
    msg: str
    id: RequestId


Message: TypeAlias = (
    Trade
    | AggTrade
    | Kline
    | MiniTicker
    | MiniTickerBatch
    | Ticker24h
    | BookTicker
    | PartialDepth
    | DepthUpdate
    | ServerShutdown
    | ControlResult
    | ControlError
)
"""Everything :func:`ingestor.binance.parser.parse_frame` can return."""
