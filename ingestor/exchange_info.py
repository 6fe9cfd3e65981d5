"""Check the configured symbols against ``GET /api/v3/exchangeInfo`` before subscribing.

Binance accepts a subscription to a well-formed symbol that does not exist and then sends
nothing, which would look like a silent connection forever. So the ingestor asks exchangeInfo
first: an unknown symbol is a configuration error (one line naming it, exit status 2); a symbol
that exists but is not ``TRADING`` is logged as a warning (it may resume). The reply's
``REQUEST_WEIGHT`` limit also tells the REST client its budget.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import orjson

from ingestor.rest import RestClient, RestError
from shared.errors import ConfigError

log = logging.getLogger("tickstream.ingestor.exchange_info")

EXCHANGE_INFO = "/api/v3/exchangeInfo"
WEIGHT = 20
INVALID_SYMBOL = -1121


@dataclass(frozen=True, slots=True)
class SymbolInfo:
    symbol: str
    status: str


def _symbols_of(body: bytes) -> tuple[dict[str, SymbolInfo], int | None]:
    try:
        obj: Any = orjson.loads(body)
        rows = obj["symbols"]
        infos = {row["symbol"]: SymbolInfo(row["symbol"], str(row.get("status", "")))
                 for row in rows}
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise RestError(f"{EXCHANGE_INFO}: unexpected reply ({exc})") from None
    limit = None
    for rule in obj.get("rateLimits") or []:
        if isinstance(rule, dict) and rule.get("rateLimitType") == "REQUEST_WEIGHT" \
                and rule.get("interval") == "MINUTE" and rule.get("intervalNum") == 1:
            limit = rule.get("limit") if isinstance(rule.get("limit"), int) else None
    return infos, limit


async def validate_symbols(rest: RestClient, symbols: tuple[str, ...]) -> dict[str, SymbolInfo]:
    """The exchange's facts about ``symbols``; ConfigError naming any it does not list."""
    wanted = orjson.dumps(list(symbols)).decode()
    try:
        body = await rest.get(EXCHANGE_INFO, {"symbols": wanted}, WEIGHT)
    except RestError as exc:
        if exc.api_code != INVALID_SYMBOL:
            raise
        # Binance does not say which one: the full list does.
        body = await rest.get(EXCHANGE_INFO, None, WEIGHT)
    infos, limit = _symbols_of(body)
    if limit:
        rest.weight_limit = limit
    unknown = [s for s in symbols if s not in infos]
    if unknown:
        names = ", ".join(unknown)
        raise ConfigError(
            f"SYMBOLS: {names} {'is' if len(unknown) == 1 else 'are'} not listed by "
            f"{rest.base_url}{EXCHANGE_INFO}"
        )
    for symbol in symbols:
        if infos[symbol].status != "TRADING":
            log.warning("%s has status %s on the exchange: its streams may stay quiet", symbol,
                        infos[symbol].status)
    return {s: infos[s] for s in symbols}
