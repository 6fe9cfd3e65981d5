"""Every request gets exactly one reply, also a subscribe cancelled before it started.

A subscribe followed at once by an unsubscribe (or by another subscribe) of the same type used to
lose its reply: the later request cancelled the subscribe's task before it sent ``subscribed``,
and nothing answered it (6 of 100 got a reply); the Python client's ``await sub`` then hung.
Now such a subscribe is answered with a ``bad_request`` error, before the later request's reply.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared.client import connect
from shared.client.client import Client as TickstreamClient
from shared.client.connection import Connection
from shared.client.errors import ClientClosed, SubscriptionError
from shared.publisher import AsyncPublisher
from tests.support.gateway import InProcessGateway, running_gateway
from tests.support.raw_ws import PipeClient

TYPES = ["custom", "other_type", "price_update", "third_one"]


def cancelled_message(event_type: str) -> str:
    return f"subscription to {event_type} was cancelled by a later request before it started"


def check_subscribe_reply(reply: dict[str, Any], event_type: str) -> None:
    if reply["type"] == "subscribed":
        assert reply["event_type"] == event_type
    else:
        assert reply == {"type": "error", "id": reply["id"], "code": "bad_request",
                         "message": cancelled_message(event_type)}


def one_reply(client: PipeClient, msg_id: int) -> tuple[int, dict[str, Any]]:
    """The position and content of the only reply to ``msg_id``."""
    found = [(i, m) for i, m in enumerate(client.messages) if m.get("id") == msg_id]
    assert len(found) == 1, f"id {msg_id}: {len(found)} replies: {[m for _, m in found]}"
    return found[0]


async def finish(client: PipeClient, last_id: int) -> None:
    """Wait for the reply to ``last_id``, then a ping's pong: whatever was queued is in."""
    await client.wait_for(lambda c: bool(c.replies(last_id)), timeout=30)
    client.send_many([{"op": "ping", "id": "barrier"}])
    await client.wait_for(lambda c: bool(c.replies("barrier")), timeout=30)


async def test_subscribe_then_unsubscribe_pipelined_gets_one_reply_each(redis_url: str) -> None:
    async with running_gateway(redis_url, client_rate_limit=100_000.0) as gw:
        client = await PipeClient.open(gw.url)
        pairs = []
        for k in range(100):
            event_type = TYPES[k % len(TYPES)]
            pairs += [{"op": "subscribe", "id": 2 * k, "event_type": event_type},
                      {"op": "unsubscribe", "id": 2 * k + 1, "event_type": event_type}]
        client.send_many(pairs)
        await finish(client, 199)
        cancelled = 0
        for k in range(100):
            event_type = TYPES[k % len(TYPES)]
            at_sub, sub_reply = one_reply(client, 2 * k)
            at_unsub, unsub_reply = one_reply(client, 2 * k + 1)
            check_subscribe_reply(sub_reply, event_type)
            cancelled += sub_reply["type"] == "error"
            assert unsub_reply == {"type": "unsubscribed", "id": 2 * k + 1, "event_type": event_type}
            assert at_sub < at_unsub, f"pair {k}: the subscribe's reply must come first"
        # welcome + 200 replies + the barrier's pong, nothing else
        assert len(client.messages) == 1 + 200 + 1
        assert cancelled > 0, "the pipelined subscribes should mostly be cancelled before starting"
        await client.close()


async def test_subscribe_replaced_before_its_reply_is_answered_first(
    redis_url: str, pub: AsyncPublisher
) -> None:
    async with running_gateway(redis_url, client_rate_limit=100_000.0) as gw:
        client = await PipeClient.open(gw.url)
        batch = []
        for k in range(50):
            event_type = TYPES[k % len(TYPES)]
            batch += [{"op": "subscribe", "id": 3 * k, "event_type": event_type},
                      {"op": "subscribe", "id": 3 * k + 1, "event_type": event_type,
                       "symbols": ["BTCUSDT"]}]
            if k < 49:  # the last type stays subscribed, with the second filter
                batch.append({"op": "unsubscribe", "id": 3 * k + 2, "event_type": event_type})
        client.send_many(batch)
        await finish(client, 3 * 49 + 1)
        for k in range(50):
            event_type = TYPES[k % len(TYPES)]
            first_at, first = one_reply(client, 3 * k)
            second_at, second = one_reply(client, 3 * k + 1)
            check_subscribe_reply(first, event_type)
            check_subscribe_reply(second, event_type)
            assert first_at < second_at
            if k < 49:
                third_at, third = one_reply(client, 3 * k + 2)
                assert third["type"] == "unsubscribed" and second_at < third_at
        # The surviving subscription is the second one, with its filter.
        assert one_reply(client, 3 * 49 + 1)[1]["type"] == "subscribed"
        last_type = TYPES[49 % len(TYPES)]
        await pub.publish(last_type, {"n": 1}, symbol="ETHUSDT")
        offset = await pub.publish(last_type, {"n": 2}, symbol="BTCUSDT")
        await client.wait_for(lambda c: any(m.get("offset") == offset for m in c.messages))
        events = [m for m in client.messages if "event_type" in m and "type" not in m]
        assert [e["offset"] for e in events] == [offset]
        await client.close()


# --- the Python client ------------------------------------------------------------------------


async def test_python_client_raises_instead_of_hanging_when_a_subscribe_is_refused(
    gw: InProcessGateway,
) -> None:
    async with connect(gw.url) as client:
        sub = client.subscribe("trade_executed")  # private: refused on an anonymous connection
        with pytest.raises(SubscriptionError) as info:
            await asyncio.wait_for(sub.wait_subscribed(), 10)
        assert info.value.code == "unauthorized"


async def test_python_client_awaiting_a_subscription_that_ended_raises(gw: InProcessGateway) -> None:
    async with connect(gw.url) as client:
        sub = client.subscribe("custom")
        await sub.unsubscribe()  # before any reply: the gateway cancels it
        with pytest.raises(ClientClosed):
            await asyncio.wait_for(sub.wait_subscribed(), 10)
        with pytest.raises(ClientClosed):
            await asyncio.wait_for(sub.update(["BTCUSDT"]), 10)
        again = await asyncio.wait_for(client.subscribe("custom").wait_subscribed(), 10)
        assert again.subscribed


def _connection() -> tuple[TickstreamClient, Connection]:
    client = TickstreamClient("ws://127.0.0.1:9/ws")
    conn = Connection(client, client.urls[0], None, "t")
    client.connection = conn
    conn.ready = True
    return client, conn


async def test_python_client_ignores_the_error_of_a_superseded_subscribe() -> None:
    """update() twice: the first subscribe may be cancelled by the second, which then replies."""
    client, conn = _connection()
    sub = client.subscribe("custom")
    first_id = sub.pending_id
    assert first_id is not None
    sub.symbols = frozenset({"BTCUSDT"})
    client.resubscribe(sub)  # what update() sends
    second_id = sub.pending_id
    assert second_id is not None and second_id != first_id
    waiting = asyncio.ensure_future(sub.wait_subscribed())
    conn._control({"type": "error", "id": first_id, "code": "bad_request",
                   "message": cancelled_message("custom")})
    assert sub.active and client.subscriptions["custom"] is sub and not waiting.done()
    conn._control({"type": "subscribed", "id": second_id, "event_type": "custom", "epoch": "e1",
                   "offset": "5-3", "recovered": True})
    assert await asyncio.wait_for(waiting, 1) is sub
    assert sub.offset == "5-3"


async def test_python_client_fails_the_subscribe_in_flight_on_its_error() -> None:
    client, conn = _connection()
    sub = client.subscribe("custom")
    waiting = asyncio.ensure_future(sub.wait_subscribed())
    conn._control({"type": "error", "id": sub.pending_id, "code": "forbidden", "message": "no"})
    with pytest.raises(SubscriptionError):
        await asyncio.wait_for(waiting, 1)
    assert "custom" not in client.subscriptions


async def test_python_client_sends_again_a_subscribe_dropped_by_the_rate_limit() -> None:
    client, conn = _connection()
    sub = client.subscribe("custom")
    dropped = sub.pending_id
    conn._control({"type": "error", "id": dropped, "code": "rate_limited", "message": "slow down"})
    assert sub.active and client.subscriptions["custom"] is sub
    assert len(conn._timers) == 1  # a retry is scheduled, not a refusal
    conn._timers.pop().cancel()
    conn._retry(dropped, ("subscribe", sub))  # what the timer does, without waiting for it
    assert sub.pending_id is not None and sub.pending_id != dropped
    sent = [conn._outbox.get_nowait() for _ in range(conn._outbox.qsize())]
    assert [m["id"] for m in sent if m.get("op") == "subscribe"] == [dropped, sub.pending_id]
