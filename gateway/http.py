"""The gateway's HTTP endpoints: health, readiness, metrics, ``POST /api/publish``, the JSON
Schemas (``/api/schemas``), what the dashboard needs first (``/api/info``) and candle history
(``/api/candles``). docs/http-api.md documents them."""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import AuthError, bearer_token
from gateway.broker import Broker
from shared import schemas
from shared.codec import StreamEntry
from shared.errors import CodecError, RedisUnavailable, ValidationError
from shared.events import event_from_json, is_event_type, is_symbol
from shared.offsets import Offset, format_offset
from shared.redisconn import CONNECTION_ERRORS
from shared.schemas.documents import MAX_PUBLISH_EVENTS

if TYPE_CHECKING:
    from gateway.node import Node

log = logging.getLogger(__name__)

MAX_PUBLISH_BODY = 4 * 1024 * 1024
__all__ = ["MAX_PUBLISH_BODY", "MAX_PUBLISH_EVENTS", "CandleHistory", "HttpApi"]

SCHEMA_MEDIA = "application/schema+json"
INTERVAL_RE = re.compile(r"[0-9]{1,3}[smhdwM]", re.ASCII)
CANDLE_BYTES_MAX = 4096  # per kept candle

CANDLE_STREAM = "market_data"
CANDLE_PAGE = 2000  # entries per XRANGE/XREVRANGE while looking for closed candles
CANDLE_SCAN_MAX = 100_000  # market_data entries read back at most (a cold cache, or far behind)
CANDLES_KEPT = 1000  # closed candles kept per symbol and interval (the most /api/candles gives)
CANDLE_SERIES_MAX = 2000  # symbol/interval pairs kept
CANDLE_REFRESH = 1.0  # seconds: requests within this of the last refresh are served as they are


def _json(body: Mapping[str, Any], status: int = 200, media_type: str = "application/json") -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type=media_type)


def _problem(status: int, code: str, message: str) -> Response:
    return _json({"error": {"code": code, "message": message}}, status)


class CandleHistory:
    """The closed candles ``market_data`` retains, per symbol and interval, read once and kept.

    The first request reads the stream back from its newest entry (at most
    :data:`CANDLE_SCAN_MAX` entries); later ones read only what was added since. Candles are
    kept JSON-encoded, keyed by open time, at most :data:`CANDLES_KEPT` per series. One refresh
    runs at a time; requests arriving meanwhile wait for it.
    """

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.series: dict[tuple[str, str], dict[str, bytes]] = {}
        self.newest: Offset | None = None  # the newest entry read
        self._lock = asyncio.Lock()
        self._refreshed = -math.inf

    async def refresh(self) -> None:
        async with self._lock:
            if time.monotonic() - self._refreshed < CANDLE_REFRESH:
                return
            if self.newest is not None and not await self._forward():
                self.newest = None  # too far behind: read back from the tail instead
            if self.newest is None:
                await self._backward()
            self._refreshed = time.monotonic()

    async def _backward(self) -> None:
        before: Offset | None = None
        scanned = 0
        while scanned < CANDLE_SCAN_MAX:
            page = await self.broker.history_before(CANDLE_STREAM, before, CANDLE_PAGE)
            if not page:
                break
            if self.newest is None:
                self.newest = page[0].pos
            for entry in page:
                self._take(entry)
            scanned += len(page)
            before = page[-1].pos
        if self.newest is None:
            self.newest = (0, 0)

    async def _forward(self) -> bool:
        """Read what followed :attr:`newest`; False when that is more than a scan's worth."""
        assert self.newest is not None
        scanned = 0
        while scanned < CANDLE_SCAN_MAX:
            page = await self.broker.history(CANDLE_STREAM, self.newest, CANDLE_PAGE)
            for entry in page:
                self._take(entry)
            if page:
                self.newest = page[-1].pos
            if len(page) < CANDLE_PAGE:
                return True
            scanned += len(page)
        return False

    def _take(self, entry: StreamEntry) -> None:
        try:
            data = entry.data()
        except CodecError:  # an undecodable entry is no candle
            return
        if data.get("kind") != "candle" or data.get("closed") is not True:
            return
        symbol, interval, opened = data.get("symbol"), data.get("interval"), data.get("open_time")
        if not (is_symbol(symbol) and isinstance(interval, str) and INTERVAL_RE.fullmatch(interval)
                and isinstance(opened, str) and 0 < len(opened) <= 40):
            return
        encoded = orjson.dumps(data)
        if len(encoded) > CANDLE_BYTES_MAX:  # a candle is a few hundred bytes; keep memory bounded
            return
        key = (symbol.upper(), interval)
        series = self.series.get(key)
        if series is None:
            if len(self.series) >= CANDLE_SERIES_MAX:
                return
            series = self.series[key] = {}
        series[opened] = encoded
        if len(series) > CANDLES_KEPT:
            del series[min(series)]

    def candles(self, symbol: str, interval: str | None, limit: int) -> dict[str, list[bytes]]:
        """The newest ``limit`` closed candles of each interval (or of ``interval``), oldest first."""
        out: dict[str, list[bytes]] = {}
        for (sym, iv), series in self.series.items():
            if sym == symbol and (interval is None or iv == interval):
                out[iv] = [series[k] for k in sorted(series)[-limit:]]
        return out


_IN_LIST = re.compile(r"field '\[(\d+)\]\.?([^']*)'")


def _per_event(problem: str) -> str:
    """``field '[1].event_type' must ...`` → ``event 1: field 'event_type' must ...``."""
    found = _IN_LIST.search(problem)
    if found is None:
        return problem
    index, name = found.groups()
    named = f"field '{name}'" if name else "the event"
    return f"event {index}: {problem[:found.start()]}{named}{problem[found.end():]}"


class HttpApi:
    """The HTTP handlers of one gateway process."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.symbols = node.settings.symbols
        self.history = CandleHistory(node.broker)
        self._publish_body = schemas.publish_validator()

    async def healthz(self, request: Request) -> Response:
        return _json({"status": "ok", "node": self.node.settings.node})

    async def readyz(self, request: Request) -> Response:
        node = self.node
        redis_ok = True
        try:
            await asyncio.wait_for(node.broker.ping(), 1.0)
        except CONNECTION_ERRORS:
            redis_ok = False
        reader_ok = node.reader_fresh()
        ready = redis_ok and reader_ok and node.accepting
        return _json({"status": "ready" if ready else "not ready", "node": node.settings.node,
                      "redis": redis_ok, "reader": reader_ok, "accepting": node.accepting},
                     200 if ready else 503)

    async def metrics(self, request: Request) -> Response:
        return Response(generate_latest(self.node.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    # --- schemas and what the dashboard asks first --------------------------------------------

    def _private_types(self) -> frozenset[str]:
        return frozenset(self.node.settings.private_types)

    async def schemas_index(self, request: Request) -> Response:
        private = self._private_types()
        types = [{"event_type": name, "schema": f"/api/schemas/{name}", "private": name in private,
                  "description": doc.get("description", "")} for name, doc in schemas.BUILTIN.items()]
        types += [{"event_type": name, "schema": None, "private": True,
                   "description": "a private type configured by the operator (PRIVATE_TYPES)"}
                  for name in sorted(private - set(schemas.BUILTIN))]
        return _json({"dialect": schemas.PUBLISH["$schema"], "publish": "/api/schemas/publish",
                      "types": types, "private_types": sorted(private)})

    async def schema(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "publish":
            return _json(schemas.PUBLISH, media_type=SCHEMA_MEDIA)
        doc = schemas.document(name) if is_event_type(name) else None
        if doc is None:
            known = ", ".join([*schemas.builtin_types(), "publish"])
            return _problem(404, "not_found", f"no schema named {name[:80]!r}: there are {known} "
                            "(other types' data is defined by their publishers)")
        return _json(doc, media_type=SCHEMA_MEDIA)

    async def info(self, request: Request) -> Response:
        return _json({"node": self.node.settings.node, "symbols": list(self.symbols),
                      "private_types": sorted(self._private_types())})

    async def candles(self, request: Request) -> Response:
        query = request.query_params
        symbol = query.get("symbol", "").upper()
        interval = query.get("interval") or None
        limit_text = query.get("limit", "500")
        if not (symbol.isascii() and is_symbol(symbol)):
            return _problem(400, "bad_request", "symbol must be a symbol such as BTCUSDT")
        if interval is not None and not INTERVAL_RE.fullmatch(interval):
            return _problem(400, "bad_request", "interval must look like 1m, 15m, 1h or 1d")
        if not (limit_text.isascii() and limit_text.isdigit() and 1 <= int(limit_text) <= CANDLES_KEPT):
            return _problem(400, "bad_request", f"limit must be an integer from 1 to {CANDLES_KEPT}")
        try:
            await self.history.refresh()
        except CONNECTION_ERRORS:
            return _problem(503, "unavailable", "Redis is not reachable: try again")
        series = self.history.candles(symbol, interval, int(limit_text))
        newest = self.history.newest or (0, 0)
        parts = b",".join(orjson.dumps(iv) + b":[" + b",".join(items) + b"]" for iv, items in series.items())
        body = (b'{"symbol":' + orjson.dumps(symbol) + b',"offset":' + orjson.dumps(format_offset(newest))
                + b',"intervals":{' + parts + b"}}")
        return Response(body, media_type="application/json")

    # --- publishing ----------------------------------------------------------------------------

    async def publish(self, request: Request) -> Response:
        node = self.node
        token = bearer_token(request.headers.get("authorization"))
        if not token:
            return _problem(401, "unauthorized", "send Authorization: Bearer <JWT> with the "
                            f"'{node.settings.publisher_role}' role")
        try:
            principal = node.auth.verify(token)
        except AuthError as exc:
            return _problem(401, "unauthorized", str(exc))
        if not principal.has_role(node.settings.publisher_role):
            return _problem(403, "forbidden", f"the token lacks the '{node.settings.publisher_role}' role")
        declared = request.headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_PUBLISH_BODY:
            return _problem(413, "too_large", f"body over {MAX_PUBLISH_BODY} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_PUBLISH_BODY:
                return _problem(413, "too_large", f"body over {MAX_PUBLISH_BODY} bytes")
        body = b"".join(chunks)
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return _problem(400, "bad_request", f"body is not valid JSON: {exc}")
        problems = self._publish_body.problems(parsed, root="body")
        if problems:
            return _problem(400, "bad_request", "; ".join(_per_event(p) for p in problems[:10]))
        single = isinstance(parsed, dict)
        items = [parsed] if single else parsed
        try:
            events = []
            for index, item in enumerate(items):
                try:
                    event = event_from_json(item)
                    data_schema = schemas.schema_for(event.event_type)
                    wrong = schemas.violations(data_schema, event.data) if data_schema else []
                    if wrong:
                        raise ValidationError(f"{event.event_type}: " + "; ".join(wrong[:10]))
                except ValidationError as exc:
                    where = "" if single else f"event {index}: "
                    raise ValidationError(f"{where}{exc}") from None
                events.append(event)
            assert node.publisher is not None
            offsets = await node.publisher.publish_many(events)
        except ValidationError as exc:
            return _problem(400 if exc.code != "too_large" else 413, exc.code, str(exc))
        except RedisUnavailable as exc:
            return _problem(503, exc.code, str(exc))
        node.metrics.publishes.inc(len(offsets))
        result: dict[str, Any] = {"offsets": offsets}
        if single:
            result["offset"] = offsets[0]
        return _json(result)
