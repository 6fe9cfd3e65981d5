"""Names are validated whole: a trailing newline is not a valid event type, user or symbol.

``re.match`` with ``$`` accepts ``"trade_executed\\n"`` (``$`` matches before a final newline),
so a private type could be published without a user under that alias and read anonymously,
and ``user="alice\\n"`` was accepted. Every check now uses ``fullmatch``.
"""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio
from websockets.asyncio.client import connect

from shared.client.client import Client as TickstreamClient
from shared.client.wire import ProtocolError, position
from shared.errors import InvalidEventType, InvalidOffset, ValidationError
from shared.offsets import parse_offset
from shared.publisher import AsyncPublisher
from shared.settings import CommonSettings
from simulator.streams import parse_stream
from tests.support.gateway import InProcessGateway, closed_with, token

TRADE = {"trade_id": "t1", "symbol": "BTCUSDT", "type": "LONG", "entry_price": 1.0,
         "quantity": 2.0, "leverage": 3}


async def test_subscribe_and_unsubscribe_with_a_newline_in_a_name_get_bad_request(
    gw: InProcessGateway,
) -> None:
    bad: list[tuple[dict[str, Any], str]] = [
        ({"op": "subscribe", "event_type": "price_update\n"}, "bad_request"),
        ({"op": "subscribe", "event_type": "trade_executed\n"}, "bad_request"),
        ({"op": "subscribe", "event_type": "custom", "symbols": ["BTCUSDT\n"]}, "bad_request"),
        ({"op": "subscribe", "event_type": "custom", "symbols": ["\ufb00USDT"]}, "bad_request"),
        ({"op": "subscribe", "event_type": "custom", "since": "1-0\n"}, "invalid_offset"),
        ({"op": "subscribe", "event_type": "custom", "since": "\u0661-0"}, "invalid_offset"),
        ({"op": "unsubscribe", "event_type": "custom\n"}, "bad_request"),
    ]
    async with connect(gw.url) as ws:
        assert orjson.loads(await ws.recv())["type"] == "welcome"
        for index, (message, _) in enumerate(bad):
            await ws.send(orjson.dumps({**message, "id": index}).decode())
        await ws.send(orjson.dumps({"op": "ping", "id": "end"}).decode())
        received = []
        while not received or received[-1].get("id") != "end":
            received.append(orjson.loads(await ws.recv()))
    # exactly one reply per message, in order: the errors, then the pong
    assert [m.get("id") for m in received] == [*range(len(bad)), "end"]
    for (_, code), reply in zip(bad, received, strict=False):
        assert reply["type"] == "error" and reply["code"] == code, reply
    assert received[-1]["type"] == "pong"


async def test_http_publish_refuses_names_with_a_newline(
    gw: InProcessGateway, aredis: redis.asyncio.Redis
) -> None:
    auth = {"Authorization": f"Bearer {token('svc', roles=['publisher'])}"}
    bad = [
        {"event_type": "trade_executed\n", "data": TRADE},  # a private type, without a user
        {"event_type": "price_update\n", "data": {}},
        {"event_type": "custom", "data": {}, "user": "alice\n"},
        {"event_type": "custom", "data": {}, "symbol": "BTCUSDT\n"},
        {"event_type": "custom", "data": {}, "idempotency_key": "k\n"},
    ]
    async with httpx.AsyncClient(base_url=gw.http) as http:
        for event in bad:
            response = await http.post("/api/publish", json=event, headers=auth)
            assert response.status_code == 400, (event, response.text)
            assert response.json()["error"]["code"] == "bad_request", response.text
        listed = await http.post("/api/publish", json=[{"event_type": "custom", "data": {}}, bad[0]],
                                 headers=auth)
        assert listed.status_code == 400 and "event 1" in listed.json()["error"]["message"]
    assert await aredis.keys("*:stream") == []  # nothing was published


async def test_the_publisher_refuses_names_with_a_newline(
    pub: AsyncPublisher, aredis: redis.asyncio.Redis
) -> None:
    with pytest.raises(InvalidEventType):
        await pub.publish("trade_executed\n", TRADE)
    with pytest.raises(ValidationError, match="user"):
        await pub.publish("trade_executed", TRADE, user="alice\n")
    with pytest.raises(ValidationError, match="symbol"):
        await pub.publish("custom", {}, symbol="BTCUSDT\n")
    assert await aredis.keys("*:stream") == []


async def test_a_token_for_a_user_with_a_newline_is_refused(gw: InProcessGateway) -> None:
    bad_token = token("alice\n")
    async with connect(f"{gw.url}?token={bad_token}") as ws:
        assert await closed_with(ws) == 4401
    async with connect(gw.url) as ws:
        await ws.recv()  # welcome
        await ws.send(orjson.dumps({"op": "auth", "id": 1, "token": bad_token}).decode())
        reply = orjson.loads(await ws.recv())
        assert reply["type"] == "error" and reply["code"] == "unauthorized" and reply["id"] == 1
        assert "'sub'" in reply["message"]


# --- the other whole-string checks -------------------------------------------------------------


@pytest.mark.parametrize("text", ["1-0\n", "1-0\r\n", " 1-0", "+1-0", "1_0-0", "\u0661-0"])
def test_offsets_are_ascii_digits_only(text: str) -> None:
    with pytest.raises(InvalidOffset):
        parse_offset(text)
    with pytest.raises(ProtocolError):
        position(text)  # the Python client's reading of a server offset


def test_settings_names_are_checked_whole() -> None:
    with pytest.raises(ValueError, match="KEY_PREFIX"):
        CommonSettings(key_prefix="tickstream\n")
    assert CommonSettings(key_prefix="tick.stream-1").key_prefix == "tick.stream-1"


def test_python_client_refuses_names_with_a_newline() -> None:
    client = TickstreamClient("ws://127.0.0.1:9/ws")
    with pytest.raises(ValueError, match="event_type"):
        client.subscribe("custom\n")
    for symbols in (["BTCUSDT\n"], ["\ufb00USDT"], "ETH\nUSDT"):
        with pytest.raises(ValueError, match="invalid symbol"):
            client.check_symbols(symbols)
    assert client.check_symbols(["btcusdt"]) == frozenset({"BTCUSDT"})


def test_simulator_stream_names_are_checked_whole() -> None:
    assert parse_stream("btcusdt@trade") is not None
    assert parse_stream("btcusdt@trade\n") is None
