"""Stream names: which ones exist and what they mean."""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.klines import INTERVALS

ALL_MINI_TICKERS = "!miniTicker@arr"
SHUTDOWN_STREAM = "!serverShutdown"

_INTERVALS = "|".join(re.escape(i) for i in INTERVALS)
_STREAM = re.compile(
    r"^(?P<symbol>[A-Za-z0-9]{1,30})@(?:"
    r"(?P<simple>trade|aggTrade|bookTicker|ticker|miniTicker)"
    rf"|kline_(?P<interval>{_INTERVALS})"
    r"|depth(?P<levels>5|10|20)?(?P<fast>@100ms)?"
    r")$"
)


@dataclass(frozen=True, slots=True)
class StreamSpec:
    """A parsed stream name.

    ``kind`` is one of trade, aggTrade, bookTicker, ticker, miniTicker, kline, depth
    (diff depth), partialDepth or allMiniTickers.
    """

    name: str
    kind: str
    symbol: str | None = None
    """As written in the name (Binance symbols are lower case in stream names)."""
    interval: str | None = None
    levels: int | None = None
    fast: bool = False
    """True for the ``@100ms`` variants of depth streams."""


def parse_stream(name: str) -> StreamSpec | None:
    """The spec of a valid stream name, or ``None`` (``!ticker@arr`` is retired)."""
    if name == ALL_MINI_TICKERS:
        return StreamSpec(name, "allMiniTickers")
    m = _STREAM.fullmatch(name)
    if m is None:
        return None
    symbol = m.group("symbol")
    if m.group("simple"):
        return StreamSpec(name, m.group("simple"), symbol)
    if m.group("interval"):
        return StreamSpec(name, "kline", symbol, interval=m.group("interval"))
    fast = m.group("fast") is not None
    if m.group("levels"):
        return StreamSpec(name, "partialDepth", symbol, levels=int(m.group("levels")), fast=fast)
    return StreamSpec(name, "depth", symbol, fast=fast)


def symbol_of(name: str) -> str | None:
    """The upper-case symbol a stream name refers to, if any."""
    spec = parse_stream(name)
    if spec is None or spec.symbol is None:
        return None
    return spec.symbol.upper()
