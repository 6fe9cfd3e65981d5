"""The gateway serves the schemas it validates with, the configured symbols, and candle history."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from gateway.http import CANDLES_KEPT
from gateway.settings import GatewaySettings
from shared.errors import ConfigError
from shared.events import Event
from shared.publisher import AsyncPublisher
from shared.schemas import documents
from shared.settings import from_args
from tests.browser.support import iso
from tests.support.gateway import InProcessGateway, running_gateway, token
from tests.support.waiting import until


async def test_the_index_lists_every_builtin_type_and_the_private_ones(redis_url: str) -> None:
    private = frozenset({"trade_executed", "audit_note"})
    async with running_gateway(redis_url, private_types=private) as gw, \
            httpx.AsyncClient(base_url=gw.http) as http:
        index = (await http.get("/api/schemas")).json()
        assert index["publish"] == "/api/schemas/publish"
        assert index["private_types"] == ["audit_note", "trade_executed"]
        by_type = {t["event_type"]: t for t in index["types"]}
        assert list(by_type)[:len(documents.BUILTIN)] == list(documents.BUILTIN)
        assert {name for name, t in by_type.items() if t["private"]} == private
        assert by_type["audit_note"]["schema"] is None  # configured private, no built-in schema
        for name in documents.BUILTIN:
            served = await http.get(by_type[name]["schema"])
            assert served.status_code == 200
            assert served.headers["content-type"] == "application/schema+json"
            assert served.json() == documents.BUILTIN[name]


async def test_the_publish_schema_and_unknown_names(gw: InProcessGateway) -> None:
    async with httpx.AsyncClient(base_url=gw.http) as http:
        assert (await http.get("/api/schemas/publish")).json() == documents.PUBLISH
        for name in ("my_custom_type", "Nope", "a" * 300):
            missing = await http.get(f"/api/schemas/{name}")
            assert missing.status_code == 404
            error = missing.json()["error"]
            assert error["code"] == "not_found" and "price_update" in error["message"]
            assert len(error["message"]) < 400


async def test_http_publish_names_the_event_and_the_field(gw: InProcessGateway) -> None:
    auth = {"Authorization": f"Bearer {token('svc', roles=['publisher'])}"}
    good = {"event_type": "price_update", "data": {
        "symbol": "BTCUSDT", "price": 1.5, "volume": 2, "timestamp": "2026-11-26T14:00:00.000Z",
        "trade_id": 7, "side": "buy", "source": "test"}}
    bad = {"event_type": "price_update", "data": dict(good["data"], side="up")}  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=gw.http) as http:
        answer = await http.post("/api/publish", json=[good, bad], headers=auth)
        assert answer.status_code == 400
        assert answer.json()["error"]["message"] == \
            "event 1: price_update: field 'side' must be one of buy/sell, got 'up'"
        envelope = await http.post("/api/publish", json={"event_type": "x", "symbol": 5}, headers=auth)
        assert envelope.json()["error"]["message"] == "field 'symbol' must be string or null, got integer"
        empty = await http.post("/api/publish", json=[], headers=auth)
        assert empty.json()["error"]["message"] == "body must have at least 1 item"
        assert (await http.post("/api/publish", json=[good], headers=auth)).status_code == 200


def test_symbols_come_from_symbols_in_order() -> None:
    def symbols(environ: dict[str, str]) -> tuple[str, ...]:
        return from_args(GatewaySettings, None, environ=environ).symbols

    assert symbols({"SYMBOLS": "solusdt, BTCUSDT,SOLUSDT"}) == ("SOLUSDT", "BTCUSDT")
    assert symbols({}) == ("BTCUSDT", "ETHUSDT")
    with pytest.raises(ConfigError, match="SYMBOLS: 'BAD SYMBOL' is not a symbol"):
        symbols({"SYMBOLS": "BAD SYMBOL,ETHUSDT"})


async def test_info_gives_the_configured_symbols(redis_url: str) -> None:
    async with running_gateway(redis_url, symbols=("SOLUSDT", "BTCUSDT")) as gw, \
            httpx.AsyncClient(base_url=gw.http) as http:
        info = (await http.get("/api/info")).json()
        assert info["symbols"] == ["SOLUSDT", "BTCUSDT"] and info["node"] == gw.settings.node
        assert "trade_executed" in info["private_types"]


def candle(symbol: str, interval: str, minute: int, closed: bool, close: float = 1.0) -> dict[str, Any]:
    start = (int(time.time()) // 60 - 500 + minute) * 60_000
    return {"symbol": symbol, "kind": "candle", "interval": interval, "open_time": iso(start),
            "close_time": iso(start + 59_999), "open": 1, "high": 2, "low": 0.5, "close": close,
            "volume": 1, "quote_volume": 1, "trades": 3, "closed": closed}


async def candles(http: httpx.AsyncClient, query: str) -> dict[str, Any]:
    answer = await http.get(f"/api/candles?{query}")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def test_candle_history_keeps_the_closed_candles(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    noise = {"symbol": "BTCUSDT", "kind": "book_ticker", "bid": 1, "bid_qty": 1, "ask": 2, "ask_qty": 1,
             "update_id": 1}
    for minute in range(30):
        await pub.publish_many([
            *[_event(noise) for _ in range(20)],  # far more book tickers than candles, as live
            _event(candle("BTCUSDT", "1m", minute, False)),
            _event(candle("BTCUSDT", "1m", minute, True, close=100 + minute)),
            _event(candle("ETHUSDT", "1m", minute, True)),
        ])
    await pub.publish("market_data", candle("BTCUSDT", "5m", 0, True))
    async with httpx.AsyncClient(base_url=gw.http) as http:
        first = await candles(http, "symbol=btcusdt")
        assert first["symbol"] == "BTCUSDT" and set(first["intervals"]) == {"1m", "5m"}
        series = first["intervals"]["1m"]
        assert [c["close"] for c in series] == [100 + m for m in range(30)]  # closed only, oldest first
        assert all(c["closed"] for c in series)
        limited = await candles(http, "symbol=BTCUSDT&interval=1m&limit=3")
        assert set(limited["intervals"]) == {"1m"}
        assert [c["close"] for c in limited["intervals"]["1m"]] == [127, 128, 129]

        # what is published later is read on a later request (within about a second)
        offset = await pub.publish("market_data", candle("BTCUSDT", "1m", 30, True, close=130))

        async def caught_up() -> dict[str, Any] | None:
            now = await candles(http, "symbol=BTCUSDT&interval=1m&limit=2")
            return now if now["offset"] == offset else None

        later = await until(caught_up, timeout=10, what="the new candle")
        assert [c["close"] for c in later["intervals"]["1m"]] == [129, 130]
        assert (await candles(http, "symbol=SOLUSDT"))["intervals"] == {}


@pytest.mark.parametrize("query", ["symbol=", "symbol=BTC%20USDT", "symbol=BTCUSDT&interval=1x",
                                   "symbol=BTCUSDT&limit=0", f"symbol=BTCUSDT&limit={CANDLES_KEPT + 1}",
                                   "symbol=BTCUSDT&limit=%EF%BC%91"])
async def test_bad_candle_queries_are_refused(gw: InProcessGateway, query: str) -> None:
    async with httpx.AsyncClient(base_url=gw.http) as http:
        answer = await http.get(f"/api/candles?{query}")
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "bad_request"


def _event(data: dict[str, Any]) -> Event:
    return Event("market_data", data)
