"""The blocking client against real gateway processes and Redis: order, resume across a gateway
kill and restart, the callback form, close from another thread, errors raised where the caller is.

These tests are synchronous, like the code the blocking client is for: each gateway is a separate
``tickstream gateway`` process and events are published with the blocking ``Publisher``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from shared.client import (
    AuthError,
    BlockingSubscription,
    ClientClosed,
    Event,
    Status,
    connect_sync,
)
from shared.events import Event as NewEvent
from shared.publisher import Publisher
from tests.support.gateway import GatewayProcess, token
from tests.support.redis_server import free_port
from tests.support.waiting import until_sync


@contextlib.contextmanager
def gateway(redis_url: str, *, port: int | None = None,
            env: dict[str, str] | None = None) -> Iterator[GatewayProcess]:
    """A ``tickstream gateway`` process, ready when this yields; killed at the end if still up."""
    process = GatewayProcess(redis_url, port=port, **(env or {}))
    asyncio.run(process.start())
    try:
        yield process
    finally:
        asyncio.run(process.stop())


@pytest.fixture
def publisher(redis_url: str) -> Iterator[Publisher]:
    with Publisher.from_url(redis_url) as pub:
        yield pub


def publish(pub: Publisher, count: int, event_type: str = "custom", pad: str = "") -> list[str]:
    return pub.publish_many([NewEvent(event_type, {"n": n, "pad": pad}) for n in range(count)])


def take(sub: BlockingSubscription, count: int, timeout: float = 20.0) -> list[Event]:
    """``count`` events from ``sub``, failing (not hanging) if they do not come in ``timeout`` s."""
    deadline = time.monotonic() + timeout
    events: list[Event] = []
    while len(events) < count:
        try:
            events.append(sub.get(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            raise AssertionError(f"got {len(events)} events of {count} in {timeout} s") from None
    return events


def nothing_more(sub: BlockingSubscription) -> bool:
    """True if no further event arrives in a short while (no duplicate after the last one)."""
    try:
        sub.get(timeout=0.3)
    except TimeoutError:
        return True
    return False


class ProducerThread:
    """Publishes batches of ``custom`` events at a steady pace until stopped."""

    def __init__(self, pub: Publisher) -> None:
        self.offsets: list[str] = []
        self._pub, self._stop = pub, threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):  # the pace of the workload, not a synchronisation
            self.offsets += publish(self._pub, 5)

    def stop(self) -> list[str]:
        """Stop publishing; every offset published (idempotent)."""
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()
        return self.offsets


def test_events_come_in_order_and_close_joins_the_thread(redis_url: str, publisher: Publisher) -> None:
    with gateway(redis_url) as gw:
        earlier = publish(publisher, 20)
        with connect_sync(gw.url, batch=True) as ts:
            assert ts.connected and ts.thread.is_alive()
            sub = ts.subscribe("custom", last=20)  # returns once the gateway answered
            assert sub.offset is not None and sub.epoch
            published = earlier + publish(publisher, 980)
            assert [e.offset for e in take(sub, len(published))] == published
            assert nothing_more(sub)
            assert sub.duplicates == 0 and sub.pending == 0
        assert not ts.thread.is_alive()  # joined ...
        assert ts.loop.is_closed()  # ... and its loop closed
        assert [e.offset for e in sub] == []  # an ended subscription: the iterator stops at once
        with pytest.raises(ClientClosed):
            ts.subscribe("custom")


def test_the_iterator_resumes_across_a_gateway_kill_and_restart(
    redis_url: str, publisher: Publisher
) -> None:
    port = free_port()
    statuses: list[Status] = []
    with gateway(redis_url, port=port) as first:
        ts = connect_sync(first.url, batch=True, reconnect_base=0.05, reconnect_cap=0.3)
        ts.on_status(statuses.append)
        with ts:
            sub = ts.subscribe("custom")
            producer = ProducerThread(publisher)
            try:
                received = take(sub, 100)
                first.signal(signal.SIGKILL)
                until_sync(lambda: any(s.state == "reconnecting" for s in statuses), what="the loss")
                down_since = len(producer.offsets)
                with gateway(redis_url, port=port):  # the same address, a new process
                    until_sync(lambda: ts.connections == 2, timeout=20, what="the reconnect")
                    until_sync(lambda: len(producer.offsets) >= down_since + 200, what="more events")
                    published = producer.stop()
                    received += take(sub, len(published) - len(received))
                    assert [e.offset for e in received] == published  # none missing, none twice
                    assert nothing_more(sub)
            finally:
                producer.stop()
            assert statuses[0].state == "connected" and statuses[1].code == 1006
            assert sub.resets == []
            assert len(published) > down_since > 100  # events were published while it was down


def test_the_callback_form_runs_on_a_thread_of_its_own(
    redis_url: str, publisher: Publisher, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[str, str]] = []

    def on_event(event: Event) -> None:
        calls.append((event.offset, threading.current_thread().name))
        if event.data["n"] == 3:
            raise ValueError("a bug in the application")

    with gateway(redis_url) as gw:
        ts = connect_sync(gw.url)
        with ts:
            sub = ts.subscribe("custom", on_event=on_event)
            assert sub.thread is not None and sub.thread.is_alive()
            with pytest.raises(RuntimeError, match="on_event"):
                next(sub)
            with caplog.at_level(logging.ERROR, logger="tickstream.client"):
                published = publish(publisher, 300)
                until_sync(lambda: len(calls) >= 300, what="300 calls")
            assert [offset for offset, _ in calls] == published  # in order; an exception costs nothing
            assert {name for _, name in calls} == {"tickstream-callback-custom"}
            assert sub.thread is not ts.thread and sub.thread is not threading.main_thread()
            assert "on_event for custom failed on offset" in caplog.text
            assert "ValueError: a bug in the application" in caplog.text
        assert not sub.thread.is_alive() and not ts.thread.is_alive()
        sub.wait(0)  # it ended because the client was closed: nothing to raise
        assert len(calls) == 300


def test_close_from_another_thread_ends_a_waiting_iterator(redis_url: str, publisher: Publisher) -> None:
    with gateway(redis_url) as gw, contextlib.closing(connect_sync(gw.url)) as ts:
        sub = ts.subscribe("custom")
        received: list[str] = []
        outcome: list[BaseException | None] = []

        def consume() -> None:
            try:
                for event in sub:
                    received.append(event.offset)
            except BaseException as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        reader = threading.Thread(target=consume, name="test-reader")
        reader.start()
        published = publish(publisher, 10)
        until_sync(lambda: len(received) == 10, what="10 events")  # the reader now waits for more
        ts.close()  # from this thread, while the reader waits in next()
        reader.join(10)
        assert not reader.is_alive() and outcome == [None]  # the iteration simply ended
        assert received == published
        assert not ts.thread.is_alive() and ts.loop.is_closed()
        ts.close()  # again: nothing happens


def test_after_close_an_iterator_returns_what_it_had_received(
    redis_url: str, publisher: Publisher
) -> None:
    with gateway(redis_url) as gw, contextlib.closing(connect_sync(gw.url)) as ts:
        sub = ts.subscribe("custom")
        with pytest.raises(TimeoutError, match=r"no event of custom within 0\.05 s"):
            sub.get(timeout=0.05)  # what this call was waiting for is not lost: see below
        published = publish(publisher, 50)
        until_sync(lambda: sub.pending == 50, what="50 events received")
        closer = threading.Thread(target=ts.close, name="test-closer")
        closer.start()
        closer.join(15)
        assert not closer.is_alive() and not ts.thread.is_alive()
        assert [e.offset for e in sub] == published  # taken from the queue the closed loop left
        with pytest.raises(ClientClosed):
            sub.get()


def test_a_refused_token_is_raised_in_the_callers_thread(redis_url: str) -> None:
    with gateway(redis_url) as gw:
        ts = connect_sync(gw.url, token="not-a-jwt")
        with pytest.raises(AuthError) as refused, ts:
            pass
        assert refused.value.close_code == 4401
        assert "token refused: invalid token" in str(refused.value)
        assert ts.error is refused.value
        assert not ts.thread.is_alive() and ts.loop.is_closed()  # closed on the way out
        with contextlib.closing(connect_sync(gw.url, token="not-a-jwt")) as lazy:
            with pytest.raises(AuthError):
                lazy.subscribe("custom")  # starts the client, which stops with the error
            assert lazy.thread.is_alive()  # until closed
        assert not lazy.thread.is_alive()


def test_the_error_that_stops_the_client_reaches_the_iterator_and_the_callback(
    redis_url: str, publisher: Publisher
) -> None:
    with gateway(redis_url) as gw, connect_sync(gw.url, token=token("alice", ttl=2)) as ts:
        sub = ts.subscribe("custom")
        calls: list[Event] = []
        other = ts.subscribe("other", on_event=calls.append)
        published = publish(publisher, 5)
        assert [e.offset for e in take(sub, 5)] == published
        with pytest.raises(AuthError, match="token refused"):  # the fixed token expires: 4401
            for _ in sub:
                pass
        with pytest.raises(AuthError):
            other.wait(10)
        assert isinstance(ts.error, AuthError) and ts.error.close_code == 4401
        with pytest.raises(AuthError):
            ts.wait_closed(5)


def test_a_slow_iterator_gets_4008_and_then_everything(redis_url: str, publisher: Publisher) -> None:
    env = {"SLOW_CLIENT_MAX_BYTES": str(256 * 1024), "REPLAY_PAGE": "50"}
    with gateway(redis_url, env=env) as gw, connect_sync(gw.url, queue_size=50, reconnect_base=0.05,
                                                        reconnect_cap=0.5) as ts:
        statuses: list[Status] = []
        ts.on_status(statuses.append)
        sub = ts.subscribe("custom")  # and nobody reads it for now
        published: list[str] = []
        metrics = f"http://127.0.0.1:{gw.port}/metrics"

        def slow_consumer_closed() -> bool:  # at least once (the client may be cut off again)
            found = re.search(r"^tickstream_slow_consumer_closes_total (\S+)$", httpx.get(metrics).text,
                              re.MULTILINE)
            return found is not None and float(found[1]) >= 1

        for _ in range(40):
            published += publish(publisher, 500, pad="x" * 2000)
            if slow_consumer_closed():
                break
        until_sync(slow_consumer_closed, timeout=20, what="the gateway's 4008")
        assert sub.pending <= 50  # bounded: the client stopped reading instead of buffering
        assert [e.offset for e in take(sub, len(published), timeout=60)] == published
        assert 4008 in [s.code for s in statuses if s.state == "reconnecting"]
        assert nothing_more(sub)
