"""Who receives what: private events, tokens, expiry, re-authentication."""

from __future__ import annotations

import asyncio
import random

import pytest
from websockets.asyncio.client import connect

from shared.events import Event
from shared.publisher import AsyncPublisher
from tests.support.gateway import Client, InProcessGateway, closed_with, running_gateway, token

TRADE = {"trade_id": "t", "symbol": "BTCUSDT", "type": "LONG", "entry_price": 1.0, "quantity": 1.0,
         "leverage": 2}


async def test_private_events_reach_only_their_user_and_admins(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    alice = await Client.open(gw.url + "?token=" + token("alice"))
    bob = await Client.open(gw.url, additional_headers={"Authorization": f"Bearer {token('bob')}"})
    admin = await Client.open(gw.url + "?token=" + token("root", roles=["admin"]))
    anon = await Client.open(gw.url)
    for c in (alice, bob, admin):
        await c.subscribe("trade_executed")
    for c in (alice, bob, admin, anon):
        await c.subscribe("custom")
    a1 = ("trade_executed", await pub.publish("trade_executed", dict(TRADE, trade_id="a1"), user="alice"))
    b1 = ("trade_executed", await pub.publish("trade_executed", dict(TRADE, trade_id="b1"), user="bob"))
    c1 = ("custom", await pub.publish("custom", {"private": True}, user="alice"))  # any type
    public = ("custom", await pub.publish("custom", {"public": True}))

    def got(client: Client) -> set[tuple[str, str]]:
        # offsets are per event type: an event is identified by (event_type, offset)
        return {(e["event_type"], e["offset"]) for e in client.events}

    await alice.events_until(3)
    await bob.events_until(2)
    await admin.events_until(4)
    await anon.events_until(1)
    marker = ("custom", await pub.publish("custom", {"marker": True}))
    for client, count in ((alice, 4), (bob, 3), (admin, 5), (anon, 2)):
        await client.events_until(count)
    assert got(alice) == {a1, c1, public, marker}
    assert got(bob) == {b1, public, marker}
    assert got(admin) == {a1, b1, c1, public, marker}
    assert got(anon) == {public, marker}
    for c in (alice, bob, admin, anon):
        await c.close()


async def test_anonymous_subscription_to_a_private_type_is_refused(gw: InProcessGateway) -> None:
    client = await Client.open(gw.url)
    await client.send({"op": "subscribe", "id": 3, "event_type": "portfolio_update"})
    error = await client.control("error")
    assert error == {"type": "error", "id": 3, "code": "unauthorized",
                     "message": "portfolio_update is private: authenticate first"}
    await client.send({"op": "auth", "id": 4, "token": token("carol")})
    assert (await client.control("authenticated")) == {"type": "authenticated", "id": 4, "user": "carol"}
    assert (await client.subscribe("portfolio_update"))["recovered"] is True
    await client.close()


async def test_replay_never_shows_another_users_history(gw: InProcessGateway, pub: AsyncPublisher) -> None:
    events = [Event("trade_executed", dict(TRADE, trade_id=str(i)), user="alice" if i % 2 else "bob")
              for i in range(20)]
    offsets = await pub.publish_many(events)
    bob = await Client.open(gw.url + "?token=" + token("bob"))
    await bob.subscribe("trade_executed", since="0-0")
    got = await bob.events_until(10)
    assert [e["offset"] for e in got] == offsets[0::2]
    await bob.subscribe("trade_executed", last=20)
    await bob.events_until(20)
    assert all(e["data"]["trade_id"] in {str(i) for i in range(0, 20, 2)} for e in bob.events)
    await bob.close()


async def test_bad_token_at_connect_closes_with_4401(gw: InProcessGateway) -> None:
    async with connect(gw.url + "?token=not-a-jwt") as ws:
        assert await closed_with(ws) == 4401
    async with connect(gw.url + "?token=" + token("alice", ttl=-10)) as ws:
        assert await closed_with(ws) == 4401


async def test_bad_token_in_auth_message_is_an_error_not_a_close(gw: InProcessGateway) -> None:
    client = await Client.open(gw.url)
    await client.send({"op": "auth", "id": 1, "token": "garbage"})
    error = await client.control("error")
    assert error["code"] == "unauthorized" and error["id"] == 1
    await client.send({"op": "auth", "token": token("x", ttl=-5)})
    assert "expired" in (await client.control("error"))["message"]
    await client.send({"op": "ping"})
    await client.control("pong")
    await client.close()


async def test_token_expiry_closes_with_4401_unless_refreshed(redis_url: str) -> None:
    async with running_gateway(redis_url) as gw:
        refreshed = await Client.open(gw.url + "?token=" + token("alice", ttl=2))
        expiring = await Client.open(gw.url + "?token=" + token("bob", ttl=2))
        await refreshed.send({"op": "auth", "token": token("alice", ttl=3600)})
        await refreshed.control("authenticated")
        assert await closed_with(expiring.ws, timeout=10) == 4401
        await refreshed.send({"op": "ping"})
        await refreshed.control("pong")  # still connected after the first token's expiry
        await refreshed.send({"op": "auth", "token": token("mallory")})
        assert (await refreshed.control("error"))["code"] == "forbidden"
        await refreshed.close()


async def test_user_isolation_under_subscribe_and_resume_churn(redis_url: str, pub: AsyncPublisher) -> None:
    """Many users reconnect and resume while private events flow: nobody sees another's event."""
    users = [f"user{i}" for i in range(8)]
    rng = random.Random(3)
    async with running_gateway(redis_url) as gw:
        stop = asyncio.Event()

        async def produce() -> int:
            n = 0
            while not stop.is_set():
                batch = [Event("portfolio_update", {"owner": u, "n": n + i}, user=u)
                         for i, u in enumerate(rng.choices(users, k=20))]
                await pub.publish_many(batch)
                n += 20
                await asyncio.sleep(0.005)
            return n

        async def churn(user: str) -> int:
            seen = 0
            last = None
            for _ in range(6):
                client = await Client.open(gw.url + "?token=" + token(user))
                fields = {"since": last} if last else {}
                await client.subscribe("portfolio_update", **fields)
                try:
                    await client.events_until(5, timeout=5)
                except TimeoutError:
                    pass
                for event in client.events:
                    assert event["data"]["owner"] == user, f"{user} received {event}"
                seen += len(client.events)
                if client.events:
                    last = client.events[-1]["offset"]
                await client.close()
            return seen

        producer = asyncio.create_task(produce())
        counts = await asyncio.gather(*(churn(u) for u in users))
        stop.set()
        await producer
    assert all(count > 0 for count in counts), counts


@pytest.mark.parametrize("role", [None, ["reader"]])
async def test_admin_role_is_needed_to_see_everything(
    gw: InProcessGateway, pub: AsyncPublisher, role: list[str] | None
) -> None:
    eve = await Client.open(gw.url + "?token=" + token("eve", roles=role))
    await eve.subscribe("custom")
    await pub.publish("custom", {"secret": 1}, user="alice")
    marker = await pub.publish("custom", {"public": 1})
    assert [e["offset"] for e in await eve.events_until(1)] == [marker]
    await eve.close()
