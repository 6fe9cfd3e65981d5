"""The rate limit: a burst is answered with rate_limited errors and survives; only sustained
violation closes the connection with 1008.

Before, 100 pings at once against a limit of 10/s closed the connection as "sustained" abuse
(more than twice the rate of drops within 10 s), and the dropped requests were not answered.
The rule (docs/protocol.md, "Errors") is :class:`gateway.session.RateLimiter`, tested here on
an injected clock; the socket tests check what a client sees.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from gateway.ratelimit import RateLimiter
from gateway.settings import GatewaySettings
from tests.support.gateway import running_gateway
from tests.support.raw_ws import PipeClient

# --- the rule, on a fake clock --------------------------------------------------------------


def takes(limiter: RateLimiter, now: float, n: int) -> list[bool]:
    return [limiter.take(now) for _ in range(n)]


def test_a_burst_is_limited_to_one_seconds_worth_and_is_not_abuse() -> None:
    limiter = RateLimiter(10.0, 5, now=0.0)
    assert takes(limiter, 0.0, 100) == [True] * 10 + [False] * 90
    assert limiter.dropped == 90
    assert limiter.run_seconds == 1 and not limiter.abusive
    assert takes(limiter, 0.05, 1) == [False]  # half a token
    assert takes(limiter, 0.1, 2) == [True, False]  # refilled at 10/s
    assert takes(limiter, 10.0, 11) == [True] * 10 + [False]  # the bucket holds at most 10


def test_violations_in_each_of_n_consecutive_seconds_are_abuse() -> None:
    limiter = RateLimiter(10.0, 5, now=0.0)
    for second in range(4):  # drops in windows 0, 1, 2 and 3: not yet
        assert not all(takes(limiter, second + 0.5, 30))
        assert limiter.run_seconds == second + 1 and not limiter.abusive
    assert not all(takes(limiter, 4.5, 30))
    assert limiter.run_seconds == 5 and limiter.abusive


def test_windows_count_from_the_first_drop_of_the_run() -> None:
    limiter = RateLimiter(1.0, 3, now=0.0)
    assert takes(limiter, 0.0, 2) == [True, False]  # the run starts at 0.0
    assert takes(limiter, 0.99, 1) == [False]  # window 0 still
    assert limiter.run_seconds == 1
    assert takes(limiter, 1.0, 1) == [True]
    assert takes(limiter, 1.0, 1) == [False]  # window 1
    assert takes(limiter, 2.0, 1) == [True]
    assert takes(limiter, 2.999, 1) == [False]  # window 2: three windows in a row
    assert limiter.abusive


def test_a_second_without_violations_ends_the_run() -> None:
    limiter = RateLimiter(10.0, 3, now=0.0)
    takes(limiter, 0.0, 20)
    takes(limiter, 1.2, 20)
    assert limiter.run_seconds == 2
    takes(limiter, 3.5, 20)  # window 2 (2.0-3.0) had no drop: a new run starts at 3.5
    assert limiter.run_seconds == 1 and not limiter.abusive
    takes(limiter, 4.6, 20)  # window 1 of the new run
    takes(limiter, 5.6, 20)  # window 2
    assert limiter.run_seconds == 3 and limiter.abusive


def test_a_slow_rate_still_allows_one_message() -> None:
    limiter = RateLimiter(0.5, 5, now=0.0)
    assert takes(limiter, 0.0, 2) == [True, False]
    assert takes(limiter, 2.0, 2) == [True, False]


def test_errors_without_an_id_are_sent_at_most_once_a_second() -> None:
    limiter = RateLimiter(10.0, 5, now=0.0)
    assert [limiter.notice_due(t) for t in (0.0, 0.1, 0.99, 1.0, 1.5, 2.5)] == [
        True, False, False, True, False, True]


def test_the_abuse_period_is_a_setting() -> None:
    assert GatewaySettings().client_rate_abuse_seconds == 5
    with pytest.raises(ValueError, match="CLIENT_RATE_ABUSE_SECONDS"):
        GatewaySettings(client_rate_abuse_seconds=0)
    with pytest.raises(ValueError, match="CLIENT_RATE_LIMIT"):
        GatewaySettings(client_rate_limit=float("nan"))


# --- over a real socket ---------------------------------------------------------------------


def classify(client: PipeClient, ids: range) -> tuple[list[Any], list[Any]]:
    """(ids answered with pong, ids answered with rate_limited); each id exactly once."""
    pongs, limited = [], []
    for msg_id in ids:
        replies = client.replies(msg_id)
        assert len(replies) == 1, (msg_id, replies)
        reply = replies[0]
        if reply["type"] == "pong":
            pongs.append(msg_id)
        else:
            assert reply["type"] == "error" and reply["code"] == "rate_limited", reply
            assert "10 messages per second" in reply["message"]
            limited.append(msg_id)
    return pongs, limited


async def test_a_burst_of_100_pings_is_answered_and_the_connection_survives(redis_url: str) -> None:
    async with running_gateway(redis_url, client_rate_limit=10.0) as gw:
        client = await PipeClient.open(gw.url)
        client.send_many([{"op": "ping", "id": n} for n in range(100)])
        await client.wait_for(lambda c: all(c.replies(n) for n in range(100)))
        pongs, limited = classify(client, range(100))
        assert pongs[:10] == list(range(10))  # the burst allowance: one second's worth
        assert len(limited) >= 50  # the rest, but for what the bucket refilled meanwhile
        assert len(client.messages) == 1 + 100  # the welcome, then one reply per ping
        # The bucket refills at 10/s: a ping gets through again (pacing, not synchronisation:
        # whatever the delay, a ping that is dropped again is simply sent again).
        for attempt in range(1000, 1200):
            client.send_many([{"op": "ping", "id": attempt}])
            await client.wait_for(lambda c, a=attempt: bool(c.replies(a)))
            if client.replies(attempt)[0]["type"] == "pong":
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("no pong after the burst")
        assert client.close_code is None
        await client.close()


async def test_a_client_that_keeps_violating_the_limit_is_closed_with_1008(redis_url: str) -> None:
    async with running_gateway(redis_url, client_rate_limit=10.0, client_rate_abuse_seconds=2) as gw:
        client = await PipeClient.open(gw.url)
        bursts = 0
        while client.close_code is None:  # bursts of 20 for as long as the connection lasts
            assert bursts < 100_000, "never closed"
            ids = range(bursts * 20, bursts * 20 + 20)
            client.send_many([{"op": "ping", "id": n} for n in ids])
            try:
                await client.wait_for(lambda c, ids=ids: all(c.replies(n) for n in ids), timeout=30)
            except AssertionError:
                break  # closed during this burst
            _, limited = classify(client, ids)
            assert limited, "every burst of 20 passes the limit of 10/s"
            bursts += 1
        assert await client.wait_closed() == 1008
        assert "rate limit" in client.close_reason
        assert bursts >= 1  # the first burst alone did not close it
        await client.close()
