"""Conflated subscriptions (``conflate_ms``) over real sockets, counted by the raw client."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import msgpack
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from shared.events import Event
from shared.offsets import parse_offset
from shared.publisher import AsyncPublisher
from tests.support.gateway import Client, InProcessGateway, running_gateway, token

TRADE = {"trade_id": "t", "symbol": "BTCUSDT", "type": "LONG", "entry_price": 1.0, "quantity": 1.0,
         "leverage": 2}


def burst(n: int, symbols: list[str], start: int = 0) -> list[Event]:
    return [Event("custom", {"n": i}, symbol=symbols[i % len(symbols)]) for i in range(start, start + n)]


def newest_per_symbol(events: list[Event], offsets: list[str]) -> dict[str, str]:
    newest: dict[str, str] = {}
    for event, offset in zip(events, offsets, strict=True):
        newest[event.symbol or ""] = offset
    return newest


def last_per(events: list[dict[str, Any]], key: str = "symbol") -> dict[str, str]:
    out: dict[str, str] = {}
    for event in events:
        out[event[key] or ""] = event["offset"]
    return out


async def read_until(client: Client, done: Any, timeout: float = 15) -> list[dict[str, Any]]:
    """Read until ``done(client.events)`` is true (a bounded wait, not a latency bound)."""
    deadline = time.monotonic() + timeout
    while not done(client.events):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; received {len(client.events)} events: {client.events[-5:]}")
        await client.recv(remaining)
    return client.events


def increasing(events: list[dict[str, Any]]) -> bool:
    positions = [parse_offset(e["offset"]) for e in events]
    return all(a < b for a, b in itertools.pairwise(positions))


async def test_a_burst_brings_few_events_per_symbol_and_always_the_newest(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    client = await Client.open(gw.url)
    reply = await client.subscribe("custom", id=1, symbols=["BTCUSDT", "ETHUSDT"], conflate_ms=200)
    assert reply["conflate_ms"] == 200 and reply["recovered"] is True
    events = burst(200, ["BTCUSDT", "ETHUSDT", "SOLUSDT"])  # SOLUSDT is not in the filter
    offsets = await pub.publish_many(events)
    newest = newest_per_symbol(events, offsets)
    wanted = {s: newest[s] for s in ("BTCUSDT", "ETHUSDT")}
    got = await read_until(client, lambda evs: last_per(evs) == wanted)
    assert {e["symbol"] for e in got} == {"BTCUSDT", "ETHUSDT"}
    assert increasing(got)
    per_symbol = {s: sum(1 for e in got if e["symbol"] == s) for s in wanted}
    assert all(1 <= n <= 10 for n in per_symbol.values()), per_symbol  # 67 of each were published
    # every delivered event is a real one, with its real offset and data
    by_offset = dict(zip(offsets, events, strict=True))
    assert all(by_offset[e["offset"]].data == e["data"] for e in got)
    await client.close()


async def test_the_newest_is_delivered_when_the_window_ends(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    client = await Client.open(gw.url)
    await client.subscribe("custom", symbols=["BTCUSDT"], conflate_ms=2000)
    first = await pub.publish("custom", {"n": 1}, symbol="BTCUSDT")
    assert (await client.events_until(1))[0]["offset"] == first  # the window was open: at once
    # The window is now closed for 2 s: these two replace each other, and the newest is sent
    # when it ends (the wait below is bounded generously; it asserts arrival, not latency).
    _, newest = await pub.publish_many([Event("custom", {"n": 2}, symbol="BTCUSDT"),
                                        Event("custom", {"n": 3}, symbol="BTCUSDT")])
    got = await read_until(client, lambda evs: bool(evs) and evs[-1]["offset"] == newest)
    # [1, 2, 3] only if publishing took longer than the window (a badly overloaded machine)
    assert [e["data"]["n"] for e in got] in ([1, 3], [1, 2, 3])
    await client.close()


async def test_msgpack_and_symbolless_events_are_conflated_too(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    async with connect(gw.url, subprotocols=["tickstream.msgpack"]) as ws:  # type: ignore[list-item]
        assert msgpack.unpackb(await ws.recv())["type"] == "welcome"
        await ws.send(msgpack.packb({"op": "subscribe", "id": 1, "event_type": "custom",
                                     "conflate_ms": 100}))
        reply = msgpack.unpackb(await ws.recv())
        assert reply["type"] == "subscribed" and reply["conflate_ms"] == 100
        offsets = await pub.publish_many([Event("custom", {"n": n}) for n in range(100)])  # no symbol
        received: list[str] = []
        while not received or received[-1] != offsets[-1]:
            message = msgpack.unpackb(await asyncio.wait_for(ws.recv(), 15))
            assert message["symbol"] is None
            received.append(message["offset"])
        assert len(received) <= 10 and set(received) <= set(offsets)


async def test_resume_with_since_brings_the_newest_of_each_symbol(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT"]
    first = await Client.open(gw.url)
    reply = await first.subscribe("custom", symbols=symbols, conflate_ms=100)
    events = burst(60, symbols)
    offsets = await pub.publish_many(events)
    wanted = newest_per_symbol(events, offsets)
    got = await read_until(first, lambda evs: last_per(evs) == wanted)
    resume_from, epoch = got[-1]["offset"], reply["epoch"]
    await first.close()

    more = burst(90, [*symbols, "SOLUSDT"], start=60)  # missed while away
    more_offsets = await pub.publish_many(more)
    newest = newest_per_symbol(more, more_offsets)

    second = await Client.open(gw.url)
    reply = await second.subscribe("custom", symbols=symbols, since=resume_from, epoch=epoch,
                                   conflate_ms=100)
    assert reply["recovered"] is True and reply["offset"] == resume_from and reply["conflate_ms"] == 100
    # the replay is conflated: one event per symbol, the newest, in offset order
    wanted = {s: newest[s] for s in symbols}
    replayed = sorted(wanted.values(), key=parse_offset)
    got = await read_until(second, lambda evs: last_per(evs) == wanted)
    assert [e["offset"] for e in got] == replayed
    # then live. (Published only once the replay has arrived: published earlier, the marker may
    # fall in the replay's window and rightly replace the replayed BTCUSDT event.)
    marker = await pub.publish("custom", {"n": "marker"}, symbol="BTCUSDT")
    got = await read_until(second, lambda evs: evs[-1]["offset"] == marker)
    assert [e["offset"] for e in got] == [*replayed, marker]

    # last=N is conflated the same way: the newest of each symbol among the last N
    third = await Client.open(gw.url)
    await third.subscribe("custom", symbols=symbols, last=1000, conflate_ms=100)
    got = await read_until(third, lambda evs: len(evs) >= 2)
    latest = dict(newest, BTCUSDT=marker)
    assert [e["offset"] for e in got] == sorted([latest["BTCUSDT"], latest["ETHUSDT"]], key=parse_offset)
    await second.close()
    await third.close()


async def test_subscribing_again_without_conflate_ms_turns_it_off_from_the_last_delivered(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    client = await Client.open(gw.url)
    await client.subscribe("custom", symbols=["BTCUSDT"], conflate_ms=60000)
    b1 = await pub.publish("custom", {"n": 1}, symbol="BTCUSDT")
    await read_until(client, lambda evs: len(evs) == 1)
    b2 = await pub.publish("custom", {"n": 2}, symbol="BTCUSDT")  # held: the window is a minute
    await until_held(gw)
    reply = await client.subscribe("custom", symbols=["BTCUSDT"])
    assert "conflate_ms" not in reply
    assert reply["offset"] == b1  # continues after the last event delivered: b2 is replayed
    more = await pub.publish_many(burst(20, ["BTCUSDT"], start=3))
    got = await read_until(client, lambda evs: bool(evs) and evs[-1]["offset"] == more[-1])
    assert [e["offset"] for e in got] == [b1, b2, *more]
    await client.close()


async def until_held(gw: InProcessGateway) -> None:
    from tests.support.waiting import until

    def held() -> bool:
        subs = [s.subs.get("custom") for s in gw.node.hub.sessions.values()]
        return any(s is not None and len(getattr(s, "conflater", ())) for s in subs)

    await until(held, what="an event held by the conflater")


@pytest.mark.parametrize("value", [0, 9, 60001, "100", True, 1.5])
async def test_bad_conflate_ms_is_a_bad_request_and_the_connection_lives(
    gw: InProcessGateway, value: object
) -> None:
    client = await Client.open(gw.url)
    await client.send({"op": "subscribe", "id": 7, "event_type": "custom", "conflate_ms": value})
    error = await client.control("error")
    assert error["id"] == 7 and error["code"] == "bad_request" and "conflate_ms" in error["message"]
    await client.send({"op": "ping", "id": 8})
    assert (await client.control("pong"))["id"] == 8
    assert (await client.subscribe("custom", conflate_ms=10))["conflate_ms"] == 10
    await client.close()


async def test_private_events_are_conflated_per_user_and_never_cross_users(
    gw: InProcessGateway, pub: AsyncPublisher
) -> None:
    alice = await Client.open(gw.url + "?token=" + token("alice"))
    bob = await Client.open(gw.url + "?token=" + token("bob"))
    admin = await Client.open(gw.url + "?token=" + token("root", roles=["admin"]))
    for c in (alice, bob, admin):
        await c.subscribe("trade_executed", conflate_ms=100)
    users = ["alice", "bob"]
    events = [Event("trade_executed", dict(TRADE, trade_id=f"{users[i % 2]}-{i}"), symbol="BTCUSDT",
                    user=users[i % 2]) for i in range(80)]
    offsets = await pub.publish_many(events)
    newest = {u: [o for e, o in zip(events, offsets, strict=True) if e.user == u][-1] for u in users}

    def owner(event: dict[str, Any]) -> str:
        return str(event["data"]["trade_id"]).split("-")[0]

    def last_of(evs: list[dict[str, Any]], user: str) -> str | None:
        mine = [e["offset"] for e in evs if owner(e) == user]
        return mine[-1] if mine else None

    await read_until(alice, lambda evs: last_of(evs, "alice") == newest["alice"])
    await read_until(bob, lambda evs: last_of(evs, "bob") == newest["bob"])
    # conflated per (symbol, user): the admin gets the newest of each user, not just the newest
    await read_until(admin, lambda evs: all(last_of(evs, u) == newest[u] for u in users))
    assert {owner(e) for e in alice.events} == {"alice"}
    assert {owner(e) for e in bob.events} == {"bob"}
    for c in (alice, bob, admin):
        assert increasing(c.events)
        assert len(c.events) < 40
        await c.close()


async def test_a_conflated_replay_cut_by_the_replay_limit_still_makes_progress(
    redis_url: str, pub: AsyncPublisher
) -> None:
    symbols = ["BTCUSDT", "ETHUSDT"]
    first = await pub.publish("custom", {"n": -1}, symbol="BTCUSDT")
    events = burst(500, symbols)
    newest = newest_per_symbol(events, await pub.publish_many(events))
    async with running_gateway(redis_url, replay_max_events=100, replay_page=50) as gw:
        since, got, connections = first, {}, 0
        while got != newest:
            connections += 1
            assert connections <= 10, f"no progress: {got}"
            client = await Client.open(gw.url)
            await client.subscribe("custom", symbols=symbols, since=since, conflate_ms=100)
            with contextlib.suppress(ConnectionClosed):
                await read_until(client, lambda evs: last_per(evs) == newest)
            if client.events:
                assert increasing(client.events)
                assert parse_offset(client.events[0]["offset"]) > parse_offset(since)
                since = client.events[-1]["offset"]
                got.update(last_per(client.events))
            await client.close()
        assert connections > 1  # the limit cut the replay: each connection went further
