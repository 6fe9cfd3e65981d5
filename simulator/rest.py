"""The REST endpoints (``/api/v3/...``), their weights, the weight limit and REST faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from simulator import payloads
from simulator.faults import FaultState
from simulator.httpio import HttpRequest, HttpResponse
from simulator.klines import INTERVALS
from simulator.symbols import SymbolSpec
from simulator.units import fmt
from simulator.view import MarketView
from simulator.weights import WeightLimiter

WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"


class ApiError(Exception):
    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status = status
        self.body = {"code": code, "msg": msg}


def _bad_int(name: str) -> ApiError:
    return ApiError(
        400,
        -1100,
        f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.",
    )


def _int(req: HttpRequest, name: str) -> int | None:
    raw = req.param(name)
    if raw is None or raw == "":
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise _bad_int(name)
    return int(raw)


def _limit(req: HttpRequest, default: int, maximum: int) -> int:
    value = _int(req, "limit")
    if value is None:
        return default
    if not 1 <= value <= maximum:
        raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
    return value


def depth_weight(limit: int) -> int:
    if limit <= 100:
        return 5
    if limit <= 500:
        return 25
    if limit <= 1000:
        return 50
    return 250


@dataclass(frozen=True, slots=True)
class Route:
    weight: Callable[[HttpRequest], int]
    handler: Callable[[HttpRequest], Any]


class RestApi:
    """Answers REST requests from a :class:`MarketView`."""

    def __init__(self, view: MarketView, limiter: WeightLimiter, faults: FaultState) -> None:
        self.view = view
        self.limiter = limiter
        self.faults = faults
        self.routes: dict[str, Route] = {
            "/api/v3/ping": Route(lambda r: 1, lambda r: {}),
            "/api/v3/time": Route(lambda r: 1, lambda r: {"serverTime": _now()}),
            "/api/v3/exchangeInfo": Route(lambda r: 20, self.exchange_info),
            "/api/v3/depth": Route(self._depth_weight, self.depth),
            "/api/v3/aggTrades": Route(lambda r: 4, self.agg_trades),
            "/api/v3/trades": Route(lambda r: 25, self.recent_trades),
            "/api/v3/historicalTrades": Route(lambda r: 25, self.historical_trades),
            "/api/v3/klines": Route(lambda r: 2, self.klines),
        }

    async def handle(self, req: HttpRequest) -> HttpResponse:
        route = self.routes.get(req.path)
        if route is None or req.method != "GET":
            current = [(WEIGHT_HEADER, str(self.limiter.used(req.client)))]
            if route is None:
                body = {"code": -1000, "msg": f"Unknown endpoint {req.path}"}
                return HttpResponse.json(404, body, current)
            return HttpResponse.json(405, {"code": -1000, "msg": "Only GET is supported."}, current)
        used, retry_after = self.limiter.charge(req.client, route.weight(req))
        headers = [(WEIGHT_HEADER, str(used))]
        if retry_after is not None:
            msg = (
                f"Too much request weight used; current limit is {self.limiter.limit} request "
                "weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid "
                "polling the API."
            )
            headers.append(("Retry-After", str(retry_after)))
            return HttpResponse.json(429, {"code": -1003, "msg": msg}, headers)
        fault = self.faults.take_rest_fault(req.path)
        if fault is not None:
            if fault.delay_ms:
                await asyncio.sleep(fault.delay_ms / 1000)
            if fault.status is not None and fault.status != 200:
                return _fault_response(fault.status, fault.retry_after, headers)
        try:
            return HttpResponse.json(200, route.handler(req), headers)
        except ApiError as exc:
            return HttpResponse.json(exc.status, exc.body, headers)

    # ---- endpoints -----------------------------------------------------------------------

    def _symbol(self, req: HttpRequest) -> SymbolSpec:
        name = req.param("symbol")
        if not name:
            raise ApiError(
                400, -1102,
                "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.",
            )
        spec = self.view.spec(name)
        if spec is None:
            raise ApiError(400, -1121, "Invalid symbol.")
        return spec

    def exchange_info(self, req: HttpRequest) -> Any:
        one = req.param("symbol")
        many = req.param("symbols")
        if one is not None and many is not None:
            raise ApiError(400, -1128, "Combination of optional parameters invalid.")
        specs = self.view.specs()
        if one is not None:
            specs = [self._symbol(req)]
        elif many is not None:
            try:
                names = orjson.loads(many)
            except orjson.JSONDecodeError:
                names = None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ApiError(400, -1100, "Illegal characters found in parameter 'symbols'.")
            picked = [self.view.spec(n) for n in names]
            if any(p is None for p in picked):
                raise ApiError(400, -1121, "Invalid symbol.")
            specs = [p for p in picked if p is not None]
        return {
            "timezone": "UTC",
            "serverTime": _now(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                 "limit": self.limiter.limit},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5,
                 "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [_symbol_info(s) for s in specs],
        }

    def _depth_weight(self, req: HttpRequest) -> int:
        raw = req.param("limit") or "100"
        return depth_weight(min(int(raw), 5000) if raw.isdigit() and len(raw) < 20 else 100)

    def depth(self, req: HttpRequest) -> Any:
        spec = self._symbol(req)
        limit = _int(req, "limit")
        limit = 100 if limit is None else limit
        if limit < 1:
            raise ApiError(400, -1130, "Data sent for parameter 'limit' is not valid.")
        update_id, bids, asks = self.view.depth(spec.name, min(limit, 5000))
        return payloads.partial_depth(update_id, bids, asks)

    def agg_trades(self, req: HttpRequest) -> Any:
        spec = self._symbol(req)
        limit = _limit(req, 500, 1000)
        rows = self.view.agg_trades(
            spec.name, limit, _int(req, "fromId"), _int(req, "startTime"), _int(req, "endTime")
        )
        return [payloads.rest_agg_trade(a) for a in rows]

    def recent_trades(self, req: HttpRequest) -> Any:
        spec = self._symbol(req)
        rows = self.view.trades(spec.name, _limit(req, 500, 1000), None)
        return [payloads.rest_trade(t) for t in rows]

    def historical_trades(self, req: HttpRequest) -> Any:
        spec = self._symbol(req)
        rows = self.view.trades(spec.name, _limit(req, 500, 1000), _int(req, "fromId"))
        return [payloads.rest_trade(t) for t in rows]

    def klines(self, req: HttpRequest) -> Any:
        spec = self._symbol(req)
        interval = req.param("interval")
        if not interval:
            raise ApiError(
                400, -1102,
                "Mandatory parameter 'interval' was not sent, was empty/null, or malformed.",
            )
        if interval not in INTERVALS:
            raise ApiError(400, -1120, "Invalid interval.")
        bars = self.view.klines(
            spec.name, interval, _limit(req, 500, 1000), _int(req, "startTime"),
            _int(req, "endTime"),
        )
        return [payloads.kline_row(b) for b in bars]


def _now() -> int:
    return time.time_ns() // 1_000_000


def _fault_response(
    status: int, retry_after: int | None, headers: list[tuple[str, str]]
) -> HttpResponse:
    if status in (418, 429):
        headers = [*headers, ("Retry-After", str(retry_after or 1))]
        msg = "Way too much request weight used; IP banned." if status == 418 else (
            "Too much request weight used.")
        return HttpResponse.json(status, {"code": -1003, "msg": msg}, headers)
    if status >= 500:
        body = {"code": -1001, "msg": "Internal error; unable to process your request. "
                "Please try again."}
        if retry_after is not None:
            headers = [*headers, ("Retry-After", str(retry_after))]
        return HttpResponse.json(status, body, headers)
    return HttpResponse.json(
        status, {"code": -1000, "msg": "An unknown error occurred while processing the request."},
        headers,
    )


def _symbol_info(s: SymbolSpec) -> dict[str, Any]:
    return {
        "symbol": s.name,
        "status": s.status,
        "baseAsset": s.base,
        "baseAssetPrecision": 8,
        "quoteAsset": s.quote,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": True,
        "ocoAllowed": True,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(s.tick),
             "maxPrice": "1000000.00000000", "tickSize": fmt(s.tick)},
            {"filterType": "LOT_SIZE", "minQty": fmt(s.step), "maxQty": "9000.00000000",
             "stepSize": fmt(s.step)},
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
    }
