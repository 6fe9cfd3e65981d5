"""The browser client (gateway/static/tickstream.js, built from clients/js) in headless Chromium,
against real gateways.

Each test opens a blank page on the gateway's origin with the module imported (``open_harness``),
starts a client from page script and watches what it delivers, as an application would.
"""

from __future__ import annotations

import asyncio
import random
import signal
from typing import Any

import jwt as pyjwt
import pytest
import redis.asyncio
from playwright.async_api import Page

from shared.events import Event
from shared.publisher import AsyncPublisher
from tests.browser.support import BROWSER_TESTS, FreezeProxy, open_harness
from tests.support.gateway import running_gateway, running_gateway_process, token
from tests.support.redis_server import free_port
from tests.support.waiting import until

pytestmark = BROWSER_TESTS

START = """async ({url, type, sub, opts}) => {
    const { connect } = window.tickstream;
    if (window.ws) window.ws.close();
    Object.assign(window, {got: [], resets: [], errors: [], states: [], codes: []});
    if (opts.tokenFromTest) opts.token = () => window.nextToken();
    delete opts.tokenFromTest;
    const ws = connect(url, opts);
    window.ws = ws;
    ws.onStatus(s => {
        if (window.states[window.states.length - 1] !== s.state) window.states.push(s.state);
        const last = window.codes[window.codes.length - 1];
        if (s.closeCode !== null && last !== s.closeCode) window.codes.push(s.closeCode);
    });
    ws.onReset(r => window.resets.push(r));
    ws.onError(e => window.errors.push(e));
    if (!type) return null;
    const handle = ws.subscribe(type, e => window.got.push(e.offset), sub);
    window.handle = handle;
    return await handle.ready;
}"""


async def start_client(page: Page, url: str | list[str], event_type: str | None = "custom", *,
                       sub: dict[str, Any] | None = None, **opts: Any) -> Any:
    args = {"url": url, "type": event_type, "sub": sub or {}, "opts": opts}
    return await asyncio.wait_for(page.evaluate(START, args), 20)


async def js(page: Page, expression: str) -> Any:
    return await page.evaluate(f"() => {expression}")


async def until_js(page: Page, expression: str, timeout: float = 10, what: str = "") -> Any:
    """Wait until a page expression is truthy (polled, like every other wait in the tests)."""
    return await until(lambda: js(page, expression), timeout=timeout, what=what or expression)


class Producer:
    """Publishes ``custom`` events in small batches, without pause, until stopped."""

    def __init__(self, pub: AsyncPublisher, batch: int = 5, pause: float = 0.01) -> None:
        self.pub = pub
        self.offsets: list[str] = []
        self._stop = asyncio.Event()
        self._batch, self._pause = batch, pause
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            self.offsets += await self.pub.publish_many(
                [Event("custom", {"n": n + i}) for i in range(self._batch)])
            n += self._batch
            await asyncio.sleep(self._pause)

    async def stop(self) -> list[str]:
        self._stop.set()
        await self._task
        return self.offsets


# --- pure functions, in the browser -----------------------------------------------------------


async def test_offsets_compare_numerically_backoff_and_token_claims(page: Page, redis_url: str) -> None:
    async with running_gateway(redis_url) as gw:
        await open_harness(page, gw.http)
        rng = random.Random(3)
        big = 2**64 - 1
        values = [0, 1, 9, 10, 99, 100, 1732612345678, 1732612345679, 10**15, big - 1, big]
        offsets = [f"{rng.choice(values)}-{rng.choice(values)}" for _ in range(300)]
        offsets += ["9-0", "10-0", "1-9", "1-10", "007-1", "7-1", f"{big}-{big}", "0-0"]
        pairs = [(a, b) for a, b in zip(offsets, offsets[1:] + offsets[:1], strict=True)]

        def key(offset: str) -> tuple[int, int]:
            ms, seq = offset.split("-")
            return int(ms), int(seq)

        expected = [(key(a) > key(b)) - (key(a) < key(b)) for a, b in pairs]
        got = await page.evaluate("ps => ps.map(([a, b]) => window.tickstream.compareOffsets(a, b))", pairs)
        assert got == expected
        assert await page.evaluate("() => window.tickstream.compareOffsets('9-0', '10-0')") == -1
        assert await page.evaluate("() => window.tickstream.compareOffsets('1-10', '1-9')") == 1
        candidates = ["1-2", "01-2", " 1-2", "1-", "-1", "a-b", 5]
        assert await page.evaluate("xs => xs.map(window.tickstream.isOffset)", candidates) \
            == [True, True, False, False, False, False, False]

        # full jitter: uniform below a ceiling doubling from 0.5 s to 30 s; starts over after 30 s up
        backoff = await page.evaluate("""() => {
            const b = new window.tickstream.Backoff(500, 30000, 30000, () => 1);
            const ceilings = Array.from({length: 9}, (_, i) => b.next(i));
            b.connected(1000);
            const afterShort = b.next(2000);
            b.connected(10000);
            const afterStable = b.next(40000);
            const r = new window.tickstream.Backoff();
            const samples = Array.from({length: 2000}, () => { r.reset(); return r.next(0); });
            return {ceilings, afterShort, afterStable, max: Math.max(...samples), min: Math.min(...samples)};
        }""")
        assert backoff["ceilings"] == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        assert backoff["afterShort"] == 30000  # a connection that did not last does not reset it
        assert backoff["afterStable"] == 500
        assert 0 <= backoff["min"] < 50 and 450 < backoff["max"] <= 500

        jwt = token("alice", ttl=100)
        claims = await page.evaluate("t => window.tickstream.tokenClaims(t)", jwt)
        assert claims == {"exp": pyjwt.decode(jwt, options={"verify_signature": False})["exp"], "iat": None}
        assert await js(page, "window.tickstream.tokenClaims('not-a-jwt')") == {"exp": None, "iat": None}


# --- delivery -------------------------------------------------------------------------------


async def test_batched_by_default_with_filters_last_and_since(page: Page, redis_url: str,
                                                              pub: AsyncPublisher) -> None:
    async with running_gateway(redis_url) as gw:
        history = await pub.publish_many([Event("custom", {"n": n}, symbol="AAAUSDT" if n % 2 else "BBBUSDT")
                                          for n in range(10)])
        await open_harness(page, gw.http)
        reply = await start_client(page, gw.url, sub={"last": 3})
        assert reply["recovered"] is True
        await until_js(page, "window.got.length >= 3", what="the last 3")
        assert await js(page, "window.got") == history[-3:]

        # a burst arrives in far fewer frames than events (?batch=1 is the default)
        burst = await pub.publish_many([Event("custom", {"n": n}, symbol="AAAUSDT") for n in range(2000)])
        await until_js(page, f"window.got.length >= {3 + len(burst)}", what="the burst")
        assert await js(page, "window.got") == history[-3:] + burst
        stats = await js(page, "window.ws.stats")
        assert stats["frames"] < len(burst) / 5, stats

        # resubscribing with a filter continues from the last offset: nothing lost, nothing twice
        await page.evaluate("() => window.ws.subscribe('custom', e => window.got.push(e.offset), "
                            "{symbols: ['bbbusdt']}).ready")
        later = await pub.publish_many([Event("custom", {"n": n}, symbol="AAAUSDT" if n % 2 else "BBBUSDT")
                                        for n in range(10)])
        await until_js(page, f"window.got.length >= {3 + len(burst) + 5}", what="the filtered ones")
        assert (await js(page, "window.got"))[3 + len(burst):] == later[0::2]

        # since: everything after an offset; a second client on the same page
        since = await page.evaluate("""async ([url, since]) => {
            const got = [];
            const ws = window.tickstream.connect(url);
            await ws.subscribe('custom', e => got.push(e.offset), {since}).ready;
            await new Promise(r => setTimeout(r, 300));
            ws.close();
            return {got, status: ws.status.state};
        }""", [gw.url, history[4]])
        assert since["got"] == history[5:] + burst + later
        assert since["status"] == "disconnected"


async def test_unsubscribe_and_refused_subscriptions(page: Page, redis_url: str, pub: AsyncPublisher) -> None:
    async with running_gateway(redis_url) as gw:
        await open_harness(page, gw.http)
        await start_client(page, gw.url)
        refused = await page.evaluate("""() => window.ws.subscribe('trade_executed', () => {}).ready
            .then(() => 'subscribed', e => e.code)""")
        assert refused == "unauthorized"
        assert (await js(page, "window.errors"))[0]["eventType"] == "trade_executed"
        first = await pub.publish("custom", {"n": 1})
        await until_js(page, "window.got.length === 1", what="one event")
        await js(page, "window.handle.unsubscribe()")
        await pub.publish("custom", {"n": 2})
        await pub.publish("signal_generated", {"symbol": "BTCUSDT", "signal": "LONG", "entry_price": 1.0,
                                               "strategy": "s", "confidence": 0.5})
        await js(page, "window.ws.subscribe('signal_generated', () => window.got.push('signal')).ready")
        await pub.publish("signal_generated", {"symbol": "BTCUSDT", "signal": "LONG", "entry_price": 1.0,
                                               "strategy": "s", "confidence": 0.5})
        await until_js(page, "window.got.length === 2", what="the signal")
        assert await js(page, "window.got") == [first, "signal"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_every_offset_exactly_once_in_order_across_a_gateway_restart(
    page: Page, redis_url: str, pub: AsyncPublisher, sig: int
) -> None:
    async with running_gateway_process(redis_url) as gateway:
        await open_harness(page, f"http://127.0.0.1:{gateway.port}")
        await start_client(page, gateway.url, reconnectCap=2000)
        producer = Producer(pub)
        await until_js(page, "window.got.length >= 100", what="events before the restart")
        gateway.signal(sig)
        await gateway.wait()
        await until_js(page, "window.ws.status.state === 'reconnecting'", what="reconnecting")
        down = len(producer.offsets)
        await until(lambda: len(producer.offsets) >= down + 50, what="events published while down")
        await gateway.start()  # same port
        await until_js(page, "window.ws.status.state === 'connected'", timeout=20, what="connected again")
        mark = len(producer.offsets)
        await until_js(page, f"window.got.length >= {mark + 100}", timeout=20, what="events after")
        published = await producer.stop()
        await until_js(page, f"window.got.length >= {len(published)}", timeout=20, what="every event")
        got = await js(page, "window.got")
        assert got == published  # each once, in order, none missing
        assert await js(page, "window.states") == ["connecting", "connected", "reconnecting", "connected"]
        codes = await js(page, "window.codes")  # then 1006 for each attempt while none ran
        assert codes[0] == (1012 if sig == signal.SIGTERM else 1006) and set(codes[1:]) <= {1006}
        assert await js(page, "window.resets") == []


async def test_a_lost_history_reaches_onReset_and_live_events_go_on(
    page: Page, redis_url: str, pub: AsyncPublisher
) -> None:
    async with running_gateway_process(redis_url) as gateway:
        before = await pub.publish_many([Event("custom", {"n": n}) for n in range(5)])
        await open_harness(page, f"http://127.0.0.1:{gateway.port}")
        first = await start_client(page, gateway.url, sub={"since": "0-0"}, reconnectCap=1000)
        await until_js(page, "window.got.length === 5", what="the history")
        gateway.signal(signal.SIGKILL)
        await gateway.wait()
        # the stream is lost while the client is away: a new stream, a new epoch
        client = redis.asyncio.Redis.from_url(redis_url)
        await client.flushall()
        await client.aclose()
        await pub.publish_many([Event("custom", {"n": n}) for n in range(100, 103)])
        await gateway.start()
        await until_js(page, "window.resets.length === 1", timeout=20, what="the reset")
        reset = (await js(page, "window.resets"))[0]
        assert reset["eventType"] == "custom" and reset["resumed"] is True
        assert reset["previousOffset"] == before[-1] and reset["previousEpoch"] == first["epoch"]
        assert reset["epoch"] != first["epoch"]
        after = await pub.publish_many([Event("custom", {"n": n}) for n in range(200, 205)])
        await until_js(page, "window.got.length === 10", what="live events after the reset")
        assert await js(page, "window.got") == before + after


# --- connection health and tokens --------------------------------------------------------------


async def test_a_silent_connection_is_dropped_and_resumed(page: Page, redis_url: str,
                                                          pub: AsyncPublisher) -> None:
    async with running_gateway(redis_url, heartbeat_interval=1.0, heartbeat_timeout=30.0) as gw:
        proxy = FreezeProxy(gw.settings.port)
        await proxy.start()
        try:
            await open_harness(page, gw.http)
            url = f"ws://127.0.0.1:{proxy.port}/ws"
            await start_client(page, url, heartbeatTimeout=1500, pingInterval=0, reconnectCap=500)
            first = await pub.publish("custom", {"n": 0})
            await until_js(page, "window.got.length === 1", what="the first event")
            proxy.freeze()  # nothing moves any more, nothing is closed
            during = await pub.publish_many([Event("custom", {"n": n}) for n in range(1, 4)])
            # heartbeat 1 s + 1.5 s of silence, then a new connection resumes from `first`
            await until_js(page, "window.got.length === 4", timeout=15, what="resumed events")
            assert await js(page, "window.got") == [first, *during]
            assert proxy.connections == 2
            assert await js(page, "window.codes") == [4000]
        finally:
            await proxy.stop()


async def test_token_function_refreshes_in_place_before_exp(page: Page, redis_url: str,
                                                           pub: AsyncPublisher) -> None:
    calls: list[float] = []

    async def next_token() -> str:
        calls.append(asyncio.get_running_loop().time())
        return token("alice", ttl=3)

    async with running_gateway(redis_url) as gw:
        await open_harness(page, gw.http)
        await page.expose_function("nextToken", next_token)
        await start_client(page, gw.url, "trade_executed", tokenFromTest=True)
        assert await js(page, "window.ws.status.user") == "alice"
        # a 3 s token is refreshed with an `auth` message about every 1.5 s; never a reconnect
        await until(lambda: len(calls) >= 4, timeout=15, what="three refreshes")
        offset = await pub.publish("trade_executed", {"trade_id": 1, "symbol": "BTCUSDT", "type": "LONG",
                                                      "entry_price": 1.0, "quantity": 1.0, "leverage": 1},
                                   user="alice")
        await until_js(page, "window.got.length === 1", what="a private event")
        assert await js(page, "window.got") == [offset]
        assert await js(page, "window.ws.stats.connects") == 1
        assert await js(page, "window.states") == ["connecting", "connected"]


async def test_4401_fetches_a_fresh_token_and_a_fixed_refused_token_stops(page: Page, redis_url: str) -> None:
    tokens = [token("alice", ttl=-10), token("alice", ttl=600)]

    async def next_token() -> str:
        return tokens.pop(0)

    async with running_gateway(redis_url) as gw:
        await open_harness(page, gw.http)
        await page.expose_function("nextToken", next_token)
        await start_client(page, gw.url, "trade_executed", tokenFromTest=True)
        assert await js(page, "window.codes") == [4401]
        assert await js(page, "window.ws.status.user") == "alice"
        assert not tokens

        await start_client(page, gw.url, None, token=token("bob", ttl=-10))
        await until_js(page, "window.ws.status.state === 'disconnected'", what="stopped")
        status = await js(page, "window.ws.status")
        assert status["error"]["code"] == 4401 and "expired" in status["error"]["message"]
        assert await js(page, "window.ws.stats.connects") == 1


async def test_set_token_switches_user_and_back_to_anonymous(page: Page, redis_url: str) -> None:
    async with running_gateway(redis_url) as gw:
        await open_harness(page, gw.http)
        await start_client(page, gw.url, "custom", token=token("alice"))
        assert await js(page, "window.ws.status.user") == "alice"
        await page.evaluate("t => window.ws.setToken(t)", token("bob"))
        await until_js(page, "window.ws.status.user === 'bob'", what="bob")
        await js(page, "window.ws.setToken(null)")
        await until_js(page, "window.ws.status.state === 'connected' && window.ws.status.user === null",
                       what="anonymous")
        assert await js(page, "window.ws.stats.connects") == 3


async def test_several_urls_are_tried_in_turn(page: Page, redis_url: str) -> None:
    async with running_gateway(redis_url) as gw:
        await open_harness(page, gw.http)
        nobody = f"ws://127.0.0.1:{free_port()}/ws"
        await start_client(page, [nobody, gw.url], "custom", reconnectBase=50)
        assert await js(page, "window.codes") == [1006]
        assert await js(page, "window.ws.status.state") == "connected"


async def test_origin_refusal_4403_stops_with_an_error(page: Page, redis_url: str) -> None:
    async with running_gateway(redis_url, allowed_origins=("https://app.example",)) as gw:
        await open_harness(page, gw.http)
        await start_client(page, gw.url, None)
        await until_js(page, "window.ws.status.state === 'disconnected'", what="stopped")
        status = await js(page, "window.ws.status")
        assert status["error"]["code"] == 4403
        assert await js(page, "window.states") == ["connecting", "disconnected"]


async def test_policy_close_1008_stops_with_an_error(page: Page, redis_url: str) -> None:
    # A burst alone is tolerated; a violation lasting CLIENT_RATE_ABUSE_SECONDS (here 1) is not.
    async with running_gateway(redis_url, client_rate_limit=5.0, client_rate_abuse_seconds=1) as gw:
        await open_harness(page, gw.http)
        await start_client(page, gw.url, None)
        await until_js(page, "window.ws.status.state === 'connected'", what="connected")
        # the client paces itself; an application writing to the raw socket is not
        await js(page, "{ for (let i = 0; i < 100; i++) window.ws._ws.send('{\"op\":\"ping\"}'); }")
        await until_js(page, "window.ws.status.state === 'disconnected'", what="stopped")
        status = await js(page, "window.ws.status")
        assert status["error"]["code"] == 1008
        assert await js(page, "window.states") == ["connecting", "connected", "disconnected"]


async def test_the_token_goes_in_the_first_message_not_the_url(page: Page, redis_url: str) -> None:
    # tokens in URLs end up in proxy and access logs: the default is an `auth` first message
    async with running_gateway(redis_url) as gw:
        await open_harness(page, gw.http)
        alice = token("alice")
        await start_client(page, gw.url, "trade_executed", token=alice)
        assert await js(page, "window.ws.status.user") == "alice"
        assert alice not in await js(page, "window.ws._ws.url")
        await start_client(page, gw.url, "trade_executed", token=alice, auth="query")
        assert await js(page, "window.ws.status.user") == "alice"
        assert f"token={alice}" in await js(page, "window.ws._ws.url")
