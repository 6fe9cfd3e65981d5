"""Bytes in, messages out: parse Binance Spot WebSocket frames.

:func:`parse_frame` turns one raw (``/ws/<stream>``) or combined (``{"stream", "data"}``) frame
into a typed :mod:`~ingestor.binance.messages` message. It raises nothing but
:exc:`~ingestor.binance.errors.ProtocolError` subclasses, one per failure mode, each carrying a
short excerpt of the frame. REST bodies are parsed by :mod:`ingestor.binance.rest`.

Design: the frequent messages (aggTrade, trade, bookTicker, depthUpdate) have a hand-written fast
path that reads every field and checks it with ``type(x) is ...`` tests (orjson only produces
exact built-in types) and a single range test. Only when that fails does the slow path walk the
message's field spec (:mod:`ingestor.binance.fields`) to name the first bad field. Rarer messages
(klines every 2 s, tickers every second) go straight through the spec-driven extractor. The specs
are the single source of truth for error reporting; the tests check the fast paths against them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from ingestor.binance.errors import MissingField, ProtocolError, UnexpectedShape, UnknownEvent
from ingestor.binance.fields import (
    MAX_TIMESTAMP_MS,
    Spec,
    bad_value,
    excerpt,
    extract,
    fail,
    loads,
    show,
    to_bool,
    to_int,
    to_interval,
    to_levels,
    to_object,
    to_signed,
    to_str,
    to_symbol,
    to_time,
    to_unsigned,
    wrong_type,
)
from ingestor.binance.messages import (
    AggTrade,
    BookTicker,
    ControlError,
    ControlResult,
    DepthUpdate,
    Kline,
    Message,
    MiniTicker,
    MiniTickerBatch,
    PartialDepth,
    ServerShutdown,
    Ticker24h,
    Trade,
)

__all__ = ["parse_frame", "parse_stream_frame"]

_INF: Final = math.inf


# ---------------------------------------------------------------------------------------------
# Per-message parsers. The specs list fields in dataclass order.

_TRADE: Final[Spec] = (
    ("s", to_symbol), ("E", to_time), ("t", to_int), ("p", to_unsigned),
    ("q", to_unsigned), ("T", to_time), ("m", to_bool),
)  # fmt: skip


def _trade(o: dict[str, Any]) -> Trade:
    try:
        s, et, tid, p, q, tt, m = o["s"], o["E"], o["t"], o["p"], o["q"], o["T"], o["m"]
        if (
            type(s) is str and s and type(et) is int and type(tid) is int and type(p) is str
            and type(q) is str and type(tt) is int and type(m) is bool
        ):  # fmt: skip
            price, qty = float(p), float(q)
            if (
                0 <= et <= MAX_TIMESTAMP_MS and 0 <= tt <= MAX_TIMESTAMP_MS
                and 0.0 <= price < _INF and 0.0 <= qty < _INF
            ):  # fmt: skip
                return Trade(s, et, tid, price, qty, tt, m)
    except (KeyError, ValueError):
        pass
    raise fail(o, "trade", _TRADE)


_AGG_TRADE: Final[Spec] = (
    ("s", to_symbol), ("E", to_time), ("a", to_int), ("p", to_unsigned), ("q", to_unsigned),
    ("f", to_int), ("l", to_int), ("T", to_time), ("m", to_bool),
)  # fmt: skip


def _agg_trade(o: dict[str, Any]) -> AggTrade:
    try:
        s, et, agg, p, q = o["s"], o["E"], o["a"], o["p"], o["q"]
        first, last, tt, m = o["f"], o["l"], o["T"], o["m"]
        if (
            type(s) is str and s and type(et) is int and type(agg) is int and type(p) is str
            and type(q) is str and type(first) is int and type(last) is int and type(tt) is int
            and type(m) is bool
        ):  # fmt: skip
            price, qty = float(p), float(q)
            if (
                0 <= et <= MAX_TIMESTAMP_MS and 0 <= tt <= MAX_TIMESTAMP_MS
                and 0.0 <= price < _INF and 0.0 <= qty < _INF
            ):  # fmt: skip
                return AggTrade(s, et, agg, price, qty, first, last, tt, m)
    except (KeyError, ValueError):
        pass
    raise fail(o, "aggTrade", _AGG_TRADE)


_BOOK_TICKER: Final[Spec] = (
    ("s", to_symbol), ("u", to_int), ("b", to_unsigned), ("B", to_unsigned),
    ("a", to_unsigned), ("A", to_unsigned),
)  # fmt: skip


def _book_ticker(o: dict[str, Any]) -> BookTicker:
    try:
        s, uid, b, bq, a, aq = o["s"], o["u"], o["b"], o["B"], o["a"], o["A"]
        if (
            type(s) is str and s and type(uid) is int and type(b) is str and type(bq) is str
            and type(a) is str and type(aq) is str
        ):  # fmt: skip
            bid, bid_qty, ask, ask_qty = float(b), float(bq), float(a), float(aq)
            if (
                0.0 <= bid < _INF and 0.0 <= bid_qty < _INF
                and 0.0 <= ask < _INF and 0.0 <= ask_qty < _INF
            ):  # fmt: skip
                return BookTicker(s, uid, bid, bid_qty, ask, ask_qty)
    except (KeyError, ValueError):
        pass
    raise fail(o, "bookTicker", _BOOK_TICKER)


_DEPTH_UPDATE: Final[Spec] = (
    ("s", to_symbol), ("E", to_time), ("U", to_int), ("u", to_int),
    ("b", to_levels), ("a", to_levels),
)  # fmt: skip


def _depth_update(o: dict[str, Any]) -> DepthUpdate:
    try:
        s, et, first, final, b, a = o["s"], o["E"], o["U"], o["u"], o["b"], o["a"]
    except KeyError:
        raise fail(o, "depthUpdate", _DEPTH_UPDATE) from None
    if not (
        type(s) is str and s and type(et) is int and 0 <= et <= MAX_TIMESTAMP_MS
        and type(first) is int and type(final) is int
    ):  # fmt: skip
        raise fail(o, "depthUpdate", _DEPTH_UPDATE)
    if first > final:
        raise bad_value("depthUpdate", "U", f"must not exceed 'u' ({final})", first)
    bids = to_levels(b, "depthUpdate", "b")
    return DepthUpdate(s, et, first, final, bids, to_levels(a, "depthUpdate", "a"))


_KLINE_OUTER: Final[Spec] = (("s", to_symbol), ("E", to_time), ("k", to_object))
_KLINE_INNER: Final[Spec] = (
    ("i", to_interval), ("t", to_time), ("T", to_time), ("f", to_int), ("L", to_int),
    ("o", to_unsigned), ("h", to_unsigned), ("l", to_unsigned), ("c", to_unsigned),
    ("v", to_unsigned), ("q", to_unsigned), ("n", to_int), ("x", to_bool),
    ("V", to_unsigned), ("Q", to_unsigned),
)  # fmt: skip


def _kline(o: dict[str, Any]) -> Kline:
    symbol, event_time, k = extract(o, "kline", _KLINE_OUTER)
    return Kline(symbol, event_time, *extract(k, "kline", _KLINE_INNER, "k."))


_MINI_TICKER: Final[Spec] = (
    ("s", to_symbol), ("E", to_time), ("c", to_unsigned), ("o", to_unsigned),
    ("h", to_unsigned), ("l", to_unsigned), ("v", to_unsigned), ("q", to_unsigned),
)  # fmt: skip


def _mini_ticker(o: dict[str, Any]) -> MiniTicker:
    return MiniTicker(*extract(o, "24hrMiniTicker", _MINI_TICKER))


_TICKER: Final[Spec] = (
    ("s", to_symbol), ("E", to_time), ("p", to_signed), ("P", to_signed), ("w", to_unsigned),
    ("x", to_unsigned), ("c", to_unsigned), ("Q", to_unsigned), ("b", to_unsigned),
    ("B", to_unsigned), ("a", to_unsigned), ("A", to_unsigned), ("o", to_unsigned),
    ("h", to_unsigned), ("l", to_unsigned), ("v", to_unsigned), ("q", to_unsigned),
    ("O", to_time), ("C", to_time), ("F", to_int), ("L", to_int), ("n", to_int),
)  # fmt: skip


def _ticker(o: dict[str, Any]) -> Ticker24h:
    return Ticker24h(*extract(o, "24hrTicker", _TICKER))


def _server_shutdown(o: dict[str, Any]) -> ServerShutdown:
    return ServerShutdown(*extract(o, "serverShutdown", (("E", to_time),)))


_DEPTH_LEVELS: Final[Spec] = (
    ("lastUpdateId", to_int), ("bids", to_levels), ("asks", to_levels),
)  # fmt: skip


def _partial_depth(o: dict[str, Any], stream: str | None) -> PartialDepth:
    if stream is None:
        raise MissingField(
            "partialDepth: no symbol: the payload has none, so the frame must come from a"
            " combined stream (or parse_frame(..., stream=<name>) for a raw one)",
            "partialDepth",
            "stream",
        )
    raw_symbol, _, rest = stream.partition("@")
    if not (raw_symbol.isascii() and raw_symbol.isalnum() and rest.startswith("depth")):
        raise bad_value("partialDepth", "stream", "must be <symbol>@depth<N>...", stream)
    return PartialDepth(raw_symbol.upper(), *extract(o, "partialDepth", _DEPTH_LEVELS))


def _request_id(v: object, event: str) -> int | str | None:
    if v is None or isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool)):
        return v
    raise wrong_type(event, "id", "an integer, a string or null", v)


def _control_result(o: dict[str, Any]) -> ControlResult:
    if "id" not in o:
        raise MissingField("control result: missing field 'id'", "result", "id")
    result = o["result"]
    if type(result) is list:
        result = tuple(result)
    return ControlResult(result, _request_id(o["id"], "result"))


def _control_error(o: dict[str, Any]) -> ControlError:
    error = to_object(o["error"], "error", "error")
    code, msg = extract(error, "error", (("code", to_int), ("msg", to_str)), "error.")
    return ControlError(code, msg, _request_id(o.get("id"), "error"))


_BY_EVENT: Final[dict[str, Callable[[dict[str, Any]], Message]]] = {
    "aggTrade": _agg_trade,
    "depthUpdate": _depth_update,
    "trade": _trade,
    "kline": _kline,
    "24hrTicker": _ticker,
    "24hrMiniTicker": _mini_ticker,
    "serverShutdown": _server_shutdown,
}


def _payload(o: object, stream: str | None) -> Message:
    if type(o) is dict:
        e = o.get("e")
        if e is not None:
            if type(e) is not str:
                raise wrong_type("event", "e", "a string", e)
            parse = _BY_EVENT.get(e)
            if parse is None:
                raise UnknownEvent(f"unknown event type {e[:40]!r}", e[:40])
            return parse(o)
        if "u" in o:  # bookTicker: the only stream payload without "e" that has "u"
            return _book_ticker(o)
        if "lastUpdateId" in o:
            return _partial_depth(o, stream)
        if "result" in o:
            return _control_result(o)
        if "error" in o:
            return _control_error(o)
        raise UnknownEvent("object has no event type 'e' and matches no known message")
    if type(o) is list:  # !miniTicker@arr
        tickers: list[MiniTicker] = []
        for item in o:
            if type(item) is not dict or item.get("e") != "24hrMiniTicker":
                raise UnexpectedShape(f"array frame holds {show(item)}, expected mini tickers")
            tickers.append(_mini_ticker(item))
        return MiniTickerBatch(tuple(tickers))
    raise UnexpectedShape(f"frame is a JSON {show(o)}, expected an object or an array")


# ---------------------------------------------------------------------------------------------
# Entry points.


def parse_stream_frame(data: bytes | str, *, stream: str | None = None) -> tuple[str | None, Message]:
    """Parse a frame; return ``(stream name, message)``.

    The stream name is the combined wrapper's ``stream``, else the ``stream`` argument (the
    stream a raw ``/ws/<stream>`` connection was opened for), else None.
    """
    obj = loads(data)
    try:
        if type(obj) is dict and "stream" in obj and "data" in obj:
            stream = obj["stream"]
            if type(stream) is not str:
                raise UnexpectedShape(f"combined frame: 'stream' is {show(stream)}, not a string")
            return stream, _payload(obj["data"], stream)
        return stream, _payload(obj, stream)
    except ProtocolError as exc:
        exc.excerpt = exc.excerpt or excerpt(data)
        raise


def parse_frame(data: bytes | str, *, stream: str | None = None) -> Message:
    """Parse one raw or combined WebSocket frame into a message.

    ``stream`` names the stream of a raw ``/ws/<stream>`` connection; it is only needed for
    partial depth, whose payload carries no symbol. Raises only :exc:`ProtocolError`.
    """
    return parse_stream_frame(data, stream=stream)[1]
