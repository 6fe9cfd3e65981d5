"""Tokens: refreshed on the live connection before they expire, renewed after a 4401, refused for good."""

from __future__ import annotations

import asyncio
import time

import pytest

from shared.client import AuthError, ConnectionRefused, connect
from shared.client.tokens import jwt_expiry
from shared.events import Event as NewEvent
from shared.publisher import AsyncPublisher
from tests.client.helpers import record_statuses
from tests.support.gateway import InProcessGateway, running_gateway, token
from tests.support.waiting import until


class Provider:
    """A token provider that counts its calls; ``first`` is handed out before fresh ones."""

    def __init__(self, ttl: float, first: str | None = None) -> None:
        self.ttl, self.first = ttl, first
        self.issued: list[str] = []

    async def __call__(self) -> str:
        value = self.first if self.first and not self.issued else token("alice", ttl=self.ttl)
        self.issued.append(value)
        return value


async def test_short_lived_tokens_are_refreshed_without_dropping_the_connection(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    provider = Provider(ttl=2)
    client = connect(gw.url, token=provider)
    statuses = record_statuses(client)
    async with client as ts:
        sub = await ts.subscribe("trade_executed")  # private: needs the authenticated user
        session = ts.session
        await until(lambda: len(provider.issued) >= 6, timeout=15, what="several refreshes")
        first_expiry = jwt_expiry(provider.issued[0])
        assert first_expiry is not None and first_expiry < time.time()  # long gone ...
        assert ts.session == session and ts.connections == 1  # ... and the connection is the same
        assert statuses.of("reconnecting") == []
        offset = await pub.publish("trade_executed", {"trade_id": "t1", "symbol": "BTCUSDT", "type": "LONG",
                                                      "entry_price": 1.0, "quantity": 1.0, "leverage": 1},
                                   symbol="BTCUSDT", user="alice")
        assert (await asyncio.wait_for(sub.get(), 10)).offset == offset


async def test_a_4401_makes_the_client_fetch_a_fresh_token(gw: InProcessGateway) -> None:
    provider = Provider(ttl=3600, first=token("alice", ttl=-5))  # the first one is already expired
    client = connect(gw.url, token=provider, reconnect_base=0.05)
    statuses = record_statuses(client)
    async with client as ts:
        assert statuses.codes() == [4401]
        assert len(provider.issued) == 2
        assert ts.connected and ts.node == gw.settings.node


async def test_a_refused_fixed_token_stops_the_client_with_a_clear_error(gw: InProcessGateway) -> None:
    client = connect(gw.url, token="not-a-jwt")
    statuses = record_statuses(client)
    with pytest.raises(AuthError) as refused:
        async with client:
            pass
    assert refused.value.close_code == 4401
    assert "token refused: invalid token" in str(refused.value)
    assert [s.state for s in statuses] == ["disconnected"]
    with pytest.raises(AuthError):
        client.subscribe("custom")


async def test_a_refused_origin_is_final(redis_url: str) -> None:
    async with running_gateway(redis_url, allowed_origins=("https://app.example",)) as gw:
        client = connect(gw.url, reconnect_base=0.01, origin="https://evil.example")
        with pytest.raises(ConnectionRefused) as refused:
            async with client:
                pass
        assert refused.value.close_code == 4403
        assert "origin not allowed" in str(refused.value)
        assert client.error is refused.value
        async with connect(gw.url, origin="https://app.example") as ts:  # an allowed origin
            assert ts.connected


async def test_anonymous_clients_get_public_events(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    async with connect(gw.url, token=lambda: None) as ts:
        sub = await ts.subscribe("custom")
        offsets = await pub.publish_many([NewEvent("custom", {"n": 1})])
        assert (await asyncio.wait_for(sub.get(), 10)).offset == offsets[0]


async def test_a_4401_on_a_live_connection_reconnects_with_a_fresh_token(gw: InProcessGateway) -> None:
    users = iter(["alice", "bob", "bob", "bob", "bob", "bob"])
    issued: list[str] = []

    def provider() -> str:  # alice first, then bob: the gateway refuses a switch on a live connection
        issued.append(token(next(users), ttl=2))
        return issued[-1]

    client = connect(gw.url, token=provider, reconnect_base=0.05)
    statuses = record_statuses(client)
    async with client as ts:
        first = ts.session
        await until(lambda: statuses.codes() == [4401], timeout=10, what="alice's token to expire")
        await until(lambda: ts.connected and ts.session != first, what="a connection with bob's token")
        assert ts.connections == 2 and len(issued) >= 3  # welcome, refresh (refused), reconnect
