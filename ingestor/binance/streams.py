"""Binance Spot stream names, combined-stream URLs, connection sharding and control messages.

Everything here is pure: no sockets, no clocks (times are passed in as ``now_ms``).

* Stream names: builders (:func:`agg_trade_stream`, :func:`kline_stream`, ...) and a validating
  parser, :func:`parse_stream`, which rejects anything this ingestor cannot parse, and retired
  streams (``!ticker@arr``) with :exc:`RetiredStream`.
* :func:`shard_streams` splits streams into connections under the 1024-streams-per-connection
  limit and a URL-length limit; :func:`combined_url` builds each connection's URL.
* Control messages: :func:`subscribe_requests` batches many streams per ``params`` list (bursts of
  SUBSCRIBE messages get a connection closed with 1008); :class:`RequestIds` numbers them and
  :class:`ControlPacer` says when the next one may go out under the 5 messages/s limit.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

import orjson

from ingestor.binance.errors import InvalidStream, RetiredStream

__all__ = [
    "ALL_MINI_TICKERS",
    "DEFAULT_MAX_URL_LENGTH",
    "KLINE_INTERVALS",
    "MAX_STREAMS_PER_CONNECTION",
    "ControlPacer",
    "ControlRequest",
    "RequestIds",
    "StreamName",
    "agg_trade_stream",
    "book_ticker_stream",
    "combined_url",
    "depth_stream",
    "kline_stream",
    "list_subscriptions_request",
    "mini_ticker_stream",
    "parse_stream",
    "partial_depth_stream",
    "shard_streams",
    "subscribe_requests",
    "ticker_stream",
    "trade_stream",
    "unsubscribe_requests",
]

KLINE_INTERVALS: Final = (
    "1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h", "6h", "8h", "12h", "1d", "3d", "1w", "1M",
)  # fmt: skip
"""Kline intervals Binance serves (case-sensitive: ``1m`` is a minute, ``1M`` a month)."""

PARTIAL_DEPTH_LEVELS: Final = (5, 10, 20)
MAX_STREAMS_PER_CONNECTION: Final = 1024
DEFAULT_MAX_URL_LENGTH: Final = 8000
ALL_MINI_TICKERS: Final = "!miniTicker@arr"

_RETIRED: Final = {
    "!ticker@arr": "retired on 2026-03-26; use <symbol>@ticker or !miniTicker@arr",
    "!bookTicker": "retired; use <symbol>@bookTicker",
}
_SIMPLE_KINDS: Final = frozenset({"trade", "aggTrade", "bookTicker", "ticker", "miniTicker"})
_MAX_SYMBOL_LENGTH: Final = 32


@dataclass(frozen=True, slots=True)
class StreamName:
    """A validated stream name and what it carries.

    ``kind`` is one of ``trade``, ``aggTrade``, ``kline``, ``depth`` (diff depth),
    ``partialDepth``, ``bookTicker``, ``ticker``, ``miniTicker``, ``allMiniTickers``.
    ``symbol`` is upper case (as in payloads and events), None for all-market streams.
    """

    name: str
    kind: str
    symbol: str | None
    interval: str | None = None
    levels: int | None = None
    speed_ms: int | None = None


def _symbol_part(symbol: str) -> str:
    lowered = symbol.lower()
    if not (0 < len(lowered) <= _MAX_SYMBOL_LENGTH and lowered.isascii() and lowered.isalnum()):
        raise InvalidStream(f"invalid symbol {symbol!r}: expected 1-32 ASCII letters and digits")
    return lowered


def trade_stream(symbol: str) -> str:
    """``btcusdt@trade``."""
    return f"{_symbol_part(symbol)}@trade"


def agg_trade_stream(symbol: str) -> str:
    """``btcusdt@aggTrade``."""
    return f"{_symbol_part(symbol)}@aggTrade"


def kline_stream(symbol: str, interval: str) -> str:
    """``btcusdt@kline_1m``; raises :exc:`InvalidStream` for an unknown interval."""
    if interval not in KLINE_INTERVALS:
        raise InvalidStream(f"invalid kline interval {interval!r}: expected one of {KLINE_INTERVALS}")
    return f"{_symbol_part(symbol)}@kline_{interval}"


def depth_stream(symbol: str, speed_ms: int = 100) -> str:
    """Diff depth: ``btcusdt@depth@100ms`` (``speed_ms=1000`` gives ``btcusdt@depth``)."""
    if speed_ms == 100:
        return f"{_symbol_part(symbol)}@depth@100ms"
    if speed_ms == 1000:
        return f"{_symbol_part(symbol)}@depth"
    raise InvalidStream(f"invalid depth speed {speed_ms!r} ms: expected 100 or 1000")


def partial_depth_stream(symbol: str, levels: int, speed_ms: int = 1000) -> str:
    """Partial depth: ``btcusdt@depth20`` or ``btcusdt@depth20@100ms``."""
    if levels not in PARTIAL_DEPTH_LEVELS:
        raise InvalidStream(f"invalid partial depth levels {levels!r}: expected 5, 10 or 20")
    if speed_ms == 1000:
        return f"{_symbol_part(symbol)}@depth{levels}"
    if speed_ms == 100:
        return f"{_symbol_part(symbol)}@depth{levels}@100ms"
    raise InvalidStream(f"invalid depth speed {speed_ms!r} ms: expected 100 or 1000")


def book_ticker_stream(symbol: str) -> str:
    """``btcusdt@bookTicker``."""
    return f"{_symbol_part(symbol)}@bookTicker"


def ticker_stream(symbol: str) -> str:
    """``btcusdt@ticker`` (full 24 h ticker)."""
    return f"{_symbol_part(symbol)}@ticker"


def mini_ticker_stream(symbol: str) -> str:
    """``btcusdt@miniTicker``."""
    return f"{_symbol_part(symbol)}@miniTicker"


def _parse_depth(name: str, symbol: str, rest: str) -> StreamName:
    body, at, speed = rest.partition("@")
    if at and speed not in ("100ms", "1000ms"):
        raise InvalidStream(f"invalid stream {name!r}: depth speed must be @100ms or @1000ms")
    speed_ms = 100 if speed == "100ms" else 1000
    if body == "depth":
        return StreamName(name, "depth", symbol, speed_ms=speed_ms)
    levels = body[len("depth") :]
    if levels not in ("5", "10", "20"):
        raise InvalidStream(f"invalid stream {name!r}: partial depth levels must be 5, 10 or 20")
    return StreamName(name, "partialDepth", symbol, levels=int(levels), speed_ms=speed_ms)


def parse_stream(name: str) -> StreamName:
    """Validate a stream name and say what it carries.

    Accepts exactly the streams :func:`ingestor.binance.parser.parse_frame` can parse. Raises
    :exc:`RetiredStream` for streams Binance retired and :exc:`InvalidStream` for anything else
    it does not accept (upper-case symbols included: Binance wants them lower case).
    """
    if name in _RETIRED:
        raise RetiredStream(f"stream {name!r} is {_RETIRED[name]}")
    if name == ALL_MINI_TICKERS:
        return StreamName(name, "allMiniTickers", None)
    raw_symbol, at, rest = name.partition("@")
    if not at:
        raise InvalidStream(f"invalid stream {name!r}: expected <symbol>@<kind>")
    if raw_symbol != raw_symbol.lower():
        raise InvalidStream(f"invalid stream {name!r}: symbols in stream names are lower case")
    symbol = _symbol_part(raw_symbol).upper()
    if rest in _SIMPLE_KINDS:
        return StreamName(name, rest, symbol)
    if rest.startswith("kline_"):
        interval = rest[len("kline_") :]
        if interval not in KLINE_INTERVALS:
            raise InvalidStream(f"invalid stream {name!r}: unknown kline interval {interval!r}")
        return StreamName(name, "kline", symbol, interval=interval)
    if rest.startswith("depth"):
        return _parse_depth(name, symbol, rest)
    raise InvalidStream(f"invalid stream {name!r}: unsupported kind {rest!r}")


def _stream_prefix(base_url: str) -> str:
    base = base_url.rstrip("/")
    for suffix in ("/ws", "/stream"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return f"{base}/stream?streams="


def combined_url(base_url: str, streams: Sequence[str]) -> str:
    """``<base>/stream?streams=a/b/c``.

    ``base_url`` is the server root (``wss://stream.binance.com:9443``); a trailing ``/ws`` or
    ``/stream`` (as in testnet URLs) is dropped. Stream names are validated.
    """
    if not streams:
        raise ValueError("a combined stream URL needs at least one stream")
    for name in streams:
        parse_stream(name)
    return _stream_prefix(base_url) + "/".join(streams)


def shard_streams(
    streams: Iterable[str],
    *,
    base_url: str,
    max_streams: int = MAX_STREAMS_PER_CONNECTION,
    max_url_length: int = DEFAULT_MAX_URL_LENGTH,
) -> list[tuple[str, ...]]:
    """Split streams into as few connections as fit both limits, greedily, in order.

    Duplicates are dropped (first occurrence kept); every stream is validated. Each shard holds
    at most ``max_streams`` streams and its :func:`combined_url` is at most ``max_url_length``
    characters. Order is kept, so listing a symbol's streams together keeps them on one
    connection. Raises :exc:`InvalidStream` for a bad name and ValueError when the limits are
    unusable (one stream alone does not fit).
    """
    if not 1 <= max_streams <= MAX_STREAMS_PER_CONNECTION:
        raise ValueError(f"max_streams must be within 1..{MAX_STREAMS_PER_CONNECTION}")
    prefix_length = len(_stream_prefix(base_url))
    shards: list[tuple[str, ...]] = []
    current: list[str] = []
    length = prefix_length
    seen: set[str] = set()
    for name in streams:
        if name in seen:
            continue
        parse_stream(name)
        seen.add(name)
        if prefix_length + len(name) > max_url_length:
            raise ValueError(f"stream {name!r} alone exceeds the URL limit of {max_url_length}")
        added = len(name) + (1 if current else 0)
        if current and (len(current) >= max_streams or length + added > max_url_length):
            shards.append(tuple(current))
            current, length, added = [], prefix_length, len(name)
        current.append(name)
        length += added
    if current:
        shards.append(tuple(current))
    return shards


class RequestIds:
    """Control request ids: 1, 2, 3, ... (wrapping within Binance's signed 64-bit range)."""

    __slots__ = ("_last",)

    _MAX: Final = 2**63 - 1

    def __init__(self, start: int = 1) -> None:
        if not 1 <= start <= self._MAX:
            raise ValueError("start must be a positive 64-bit integer")
        self._last = start - 1

    def next(self) -> int:
        """The next id."""
        self._last = self._last + 1 if self._last < self._MAX else 1
        return self._last


@dataclass(frozen=True, slots=True)
class ControlRequest:
    """One live control message (SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, ...)."""

    method: str
    params: tuple[str, ...] | None
    id: int

    def encode(self) -> str:
        """The JSON text frame to send."""
        body: dict[str, object] = {"method": self.method}
        if self.params is not None:
            body["params"] = list(self.params)
        body["id"] = self.id
        return orjson.dumps(body).decode()


def _batched_requests(
    method: str, streams: Iterable[str], ids: RequestIds, batch_size: int
) -> list[ControlRequest]:
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    unique: list[str] = []
    for name in dict.fromkeys(streams):
        parse_stream(name)
        unique.append(name)
    return [
        ControlRequest(method, tuple(unique[i : i + batch_size]), ids.next())
        for i in range(0, len(unique), batch_size)
    ]


def subscribe_requests(
    streams: Iterable[str], ids: RequestIds, *, batch_size: int = 200
) -> list[ControlRequest]:
    """SUBSCRIBE requests carrying up to ``batch_size`` validated, de-duplicated streams each."""
    return _batched_requests("SUBSCRIBE", streams, ids, batch_size)


def unsubscribe_requests(
    streams: Iterable[str], ids: RequestIds, *, batch_size: int = 200
) -> list[ControlRequest]:
    """UNSUBSCRIBE requests carrying up to ``batch_size`` streams each."""
    return _batched_requests("UNSUBSCRIBE", streams, ids, batch_size)


def list_subscriptions_request(ids: RequestIds) -> ControlRequest:
    """A LIST_SUBSCRIPTIONS request (its reply is a :class:`ControlResult` with stream names)."""
    return ControlRequest("LIST_SUBSCRIPTIONS", None, ids.next())


class ControlPacer:
    """When the next control message may be sent: at most ``max_messages`` per window.

    Binance closes a connection that sends more than 5 messages per second, counting pings and
    pongs too. The pacer guarantees that any closed time interval of ``window_ms`` contains at
    most ``max_messages`` of the sends recorded with :meth:`on_sent`; the default of 3 per second
    leaves room for the WebSocket layer's own ping and pong.

    Usage: ``at = pacer.next_send_at(now_ms)``; wait until ``at``; send; ``pacer.on_sent(at)``.
    """

    __slots__ = ("_max", "_sent", "_window")

    def __init__(self, max_messages: int = 3, window_ms: int = 1000) -> None:
        if max_messages < 1 or window_ms < 1:
            raise ValueError("max_messages and window_ms must be positive")
        self._max = max_messages
        self._window = window_ms
        self._sent: deque[int] = deque(maxlen=max_messages)

    def next_send_at(self, now_ms: int) -> int:
        """The earliest time, at or after ``now_ms``, at which one more message may be sent."""
        if len(self._sent) < self._max:
            return now_ms
        return max(now_ms, self._sent[0] + self._window + 1)

    def on_sent(self, now_ms: int) -> None:
        """Record a message sent at ``now_ms`` (times must not go backwards)."""
        if self._sent and now_ms < self._sent[-1]:
            raise ValueError("send times must not go backwards")
        self._sent.append(now_ms)
