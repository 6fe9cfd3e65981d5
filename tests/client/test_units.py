"""The client's pure parts: reconnect delays, offset order and de-duplication, frames, tokens;
the blocking client's life cycle without a gateway."""

from __future__ import annotations

import random
import time

import msgpack
import orjson
import pytest

from shared.client import Client, ClientClosed, ClientOptions, Status, connect, connect_sync
from shared.client.tokens import TokenProvider, jwt_expiry
from shared.client.wire import decode, position
from tests.client.helpers import record_statuses
from tests.support.gateway import token
from tests.support.redis_server import free_port
from tests.support.waiting import until, until_sync


def test_reconnect_delays_are_full_jitter_below_the_doubling_cap() -> None:
    base, cap = 0.5, 30.0
    top = Client("ws://127.0.0.1:1/ws", options=ClientOptions(reconnect_base=base, reconnect_cap=cap),
                 rand=lambda: 1.0)
    assert [top.backoff.next_delay(0.0) for _ in range(9)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]
    jittered = Client("ws://127.0.0.1:1/ws", options=ClientOptions(reconnect_base=base, reconnect_cap=cap),
                      rand=random.Random(7).random)
    samples = [jittered.backoff.next_delay(0.0) for _ in range(400)]
    for n, delay in enumerate(samples):
        assert 0.0 <= delay <= min(cap, base * 2 ** n)
    capped = samples[6:]
    assert max(capped) > cap * 0.9 and min(capped) < cap * 0.1  # spread over the whole range


def test_reconnect_delays_start_over_after_a_stable_connection_only() -> None:
    client = Client("ws://127.0.0.1:1/ws", rand=lambda: 1.0,
                    options=ClientOptions(reconnect_base=0.5, reconnect_cap=30.0, stable_after=30.0))
    backoff = client.backoff
    assert [backoff.next_delay(t) for t in (0.0, 1.0, 2.0)] == [0.5, 1.0, 2.0]
    backoff.connected(10.0)
    assert backoff.next_delay(20.0) == 4.0  # up for 10 s only: keep growing
    backoff.connected(100.0)
    assert backoff.next_delay(130.0) == 0.5  # up for 30 s: start over
    assert backoff.failures == 1


async def test_reconnect_attempts_use_those_delays() -> None:
    base, cap = 0.02, 0.16
    client = connect(f"ws://127.0.0.1:{free_port()}/ws", reconnect_base=base, reconnect_cap=cap)
    statuses = record_statuses(client)
    client.start()
    await until(lambda: len(statuses.of("reconnecting")) >= 8, what="8 failed attempts")
    await client.close()
    attempts = statuses.of("reconnecting")
    assert [s.attempt for s in attempts[:8]] == list(range(1, 9))
    for status in attempts:
        assert status.delay is not None and 0 <= status.delay <= min(cap, base * 2 ** (status.attempt - 1))
        assert "cannot connect" in status.reason
    assert statuses[-1].state == "disconnected"


async def test_offsets_compare_as_integers_and_repeats_are_not_delivered() -> None:
    client = Client("ws://127.0.0.1:1/ws")
    sub = client.subscribe("custom")
    sub.subscribe_message(1)
    assert sub.on_subscribed({"type": "subscribed", "id": 1, "event_type": "custom", "epoch": "e1",
                              "offset": "9-5", "recovered": True}) is None

    def accept(offset: str) -> bool:
        return sub.accept({"event_type": "custom", "offset": offset, "symbol": None, "ts": 1,
                           "data": {}}) is not None

    # "10-0" > "9-5" as integers, although "10-0" < "9-5" as strings
    assert [accept(o) for o in ("9-6", "10-0", "9-9", "10-0", "10-1", "100-0", "99-0")] == \
        [True, True, False, False, True, True, False]
    assert sub.duplicates == 3
    assert sub.offset == "100-0"
    assert sub.subscribe_message(2)["since"] == "100-0"
    assert sub.subscribe_message(3)["epoch"] == "e1"
    assert position("1732612345678-12") == (1732612345678, 12)
    await client.close()


def test_batch_frames_decode_to_the_same_messages_in_both_formats() -> None:
    messages = [{"type": "pong", "id": 1, "ts": 5},
                {"event_type": "custom", "offset": "1-0", "symbol": None, "ts": 1, "data": {"x": 1.5}}]
    assert decode(orjson.dumps(messages).decode()) == messages
    assert decode(msgpack.packb(messages)) == messages
    assert decode(orjson.dumps(messages[0]).decode()) == [messages[0]]
    assert decode(msgpack.packb(messages[1])) == [messages[1]]


async def test_a_token_is_refreshed_well_before_it_expires() -> None:
    now = time.time()
    assert jwt_expiry(token("alice", ttl=100)) == pytest.approx(now + 100, abs=1.5)
    assert jwt_expiry("not-a-jwt") is None
    hour = TokenProvider(lambda: token("alice", ttl=3600))
    await hour.fetch()
    assert hour.refresh_delay() == pytest.approx(3600 - 60, abs=2)  # a minute before expiry
    short = TokenProvider(lambda: token("alice", ttl=10))
    await short.fetch()
    assert short.refresh_delay() == pytest.approx(5, abs=1)  # half way through a short life
    assert TokenProvider(token("alice")).refresh_delay() is None  # a fixed token cannot be


def test_a_blocking_client_checks_its_arguments_at_once_and_closes_unstarted() -> None:
    with pytest.raises(ValueError, match="not a WebSocket URL"):
        connect_sync("http://127.0.0.1:1/ws")
    ts = connect_sync(f"ws://127.0.0.1:{free_port()}/ws")
    ts.close()  # never started: no thread to join, the loop is closed all the same
    assert not ts.thread.is_alive() and ts.loop.is_closed()
    with pytest.raises(ClientClosed):
        ts.subscribe("custom")


def test_a_blocking_client_refuses_to_wait_for_itself_and_can_close_from_its_own_thread() -> None:
    ts = connect_sync(f"ws://127.0.0.1:{free_port()}/ws", reconnect_base=0.01, reconnect_cap=0.02)
    refusals: list[BaseException] = []
    states: list[str] = []

    def on_status(status: Status) -> None:  # runs on the client's own thread
        states.append(status.state)
        try:
            ts.wait_connected(1)  # would wait for this very thread: refused at once
        except (RuntimeError, ClientClosed) as exc:
            refusals.append(exc)
        if status.state == "reconnecting":
            ts.close()

    ts.on_status(on_status)
    ts.start()
    until_sync(lambda: not ts.thread.is_alive(), what="the client's thread to end")
    assert ts.loop.is_closed()
    assert states == ["reconnecting", "disconnected"]
    assert [type(e) for e in refusals] == [RuntimeError, ClientClosed]  # closed by then
    assert "the client's own thread" in str(refusals[0])
