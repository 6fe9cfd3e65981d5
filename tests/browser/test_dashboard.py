"""The dashboard at ``/`` in headless Chromium, against a real gateway and a real Redis."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Page

from shared.events import Event
from shared.publisher import AsyncPublisher, PublishSettings
from tests.browser.support import ARTIFACTS, BROWSER_TESTS, MarketFeed, running
from tests.support.gateway import GatewayProcess, running_gateway, token
from tests.support.waiting import until

pytestmark = BROWSER_TESTS


@dataclass
class Target:
    http: str
    feed: MarketFeed | None  # None: an external stack publishes


@pytest_asyncio.fixture(loop_scope="session")
async def target(request: pytest.FixtureRequest, external_url: str | None) -> AsyncIterator[Target]:
    """The dashboard to test: our gateway with a synthetic market, or TICKSTREAM_DASHBOARD_URL."""
    if external_url:
        yield Target(external_url.rstrip("/"), None)
        return
    redis_url = request.getfixturevalue("redis_url")
    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as pub, \
            running_gateway(redis_url) as gw:
        feed = MarketFeed(pub)
        await feed.seed()
        async with running(feed.run()):
            yield Target(gw.http, feed)


async def state(page: Page) -> str:
    return await page.get_attribute("#conn", "data-state") or ""


async def market_prices(page: Page) -> dict[str, str]:
    result: dict[str, str] = await page.evaluate(
        """() => Object.fromEntries([...document.querySelectorAll('#markets .market')]
              .map(r => [r.dataset.symbol, r.querySelector('.price').textContent]))""")
    return result


async def candle_pixels(page: Page) -> dict[str, Any]:
    """How many of the chart's pixels are candle green and candle red."""
    result: dict[str, Any] = await page.evaluate("""() => {
        const c = document.getElementById('chart');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let green = 0, red = 0;
        for (let i = 0; i < d.length; i += 4) {
            if (d[i] === 0x2e && d[i + 1] === 0xbd && d[i + 2] === 0x85) green++;
            if (d[i] === 0xf6 && d[i + 1] === 0x46 && d[i + 2] === 0x5d) red++;
        }
        return {green, red, candles: Number(c.dataset.candles)};
    }""")
    return result


async def test_dashboard_shows_live_prices_book_candles_and_status(target: Target, page: Page) -> None:
    await page.goto(target.http + "/")
    await until(lambda: _is(page, "connected"), timeout=15, what="status connected")
    node = await page.text_content("#node")
    assert node and node != "—"

    # prices: every symbol gets a row, and the prices move
    prices = await until(lambda: _prices_if(page, 1), timeout=15, what="a price")
    symbol = next(iter(prices))
    if target.feed is not None:
        await until(lambda: _prices_if(page, len(target.feed.symbols)), timeout=15, what="every symbol")  # type: ignore[union-attr]
    first = dict(await market_prices(page))
    await until(lambda: _changed(page, first), timeout=15, what="a price to change")

    # the selected symbol's order book fills both sides
    selected = await page.text_content("#chart-symbol")
    assert selected and selected != "—"
    await until(lambda: page.evaluate(
        "() => document.querySelectorAll('#bids .level[data-price]').length >= 5 && "
        "document.querySelectorAll('#asks .level[data-price]').length >= 5"), timeout=15,
        what="the order book")
    # both sides read in one evaluation: the book may re-render between two separate reads
    best_bid, best_ask = await page.evaluate(
        "() => [document.querySelector('#bids .level:first-child').dataset.price,"
        " document.querySelector('#asks .level:last-child').dataset.price].map(Number)")
    assert 0 < best_bid < best_ask

    # candles are drawn on the canvas (in both colours, with our market's history)
    both = target.feed is not None
    pixels = await until(lambda: _candles_drawn(page, both), timeout=30, what="candles on the chart")
    assert pixels["candles"] >= 1

    # events/s and latency are shown
    await until(lambda: _rate_positive(page), timeout=5, what="events/s above 0")
    await until(lambda: page.evaluate("() => document.getElementById('latency').textContent.endsWith('ms')"),
                timeout=10, what="a latency")

    # clicking another symbol selects it
    others = [s for s in await market_prices(page) if s != selected]
    if others:
        await page.click(f"#markets .market[data-symbol='{others[0]}']")
        await until(lambda: _selected_is(page, others[0]), timeout=5, what="selection to change")
        await page.click(f"#markets .market[data-symbol='{selected}']")
        await until(lambda: _selected_is(page, selected), timeout=5, what="selection to change back")
    await until(lambda: _candles_drawn(page, both), timeout=10, what="candles after reselecting")
    await page.mouse.move(900, 400)  # a crosshair in the screenshot
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "dashboard.png"))
    assert symbol


async def test_dashboard_shows_private_events_only_of_its_user(
    page: Page, redis_url: str, pub: AsyncPublisher, local_only: None
) -> None:
    async with running_gateway(redis_url) as gw:
        await pub.publish("trade_executed", {"trade_id": "t-old", "symbol": "BTCUSDT", "type": "LONG",
                                             "entry_price": 67000.5, "quantity": 0.25, "leverage": 5},
                          user="alice")
        await page.goto(f"{gw.http}/?token={token('alice')}")
        await until(lambda: _is(page, "connected"), timeout=15, what="status connected")
        assert await page.text_content("#user") == "alice"
        assert "token=" not in page.url, "the token stays out of the address bar"
        await until(lambda: _activity_has(page, "t-old"), timeout=10, what="the trade from history")

        await pub.publish("trade_executed", {"trade_id": "t-bob", "symbol": "ETHUSDT", "type": "SHORT",
                                             "entry_price": 3400.0, "quantity": 2, "leverage": 3},
                          user="bob")
        await pub.publish("portfolio_update", {"equity": 125000.5, "pnl": -320.25, "positions": 3},
                          user="alice")
        await pub.publish("risk_event", {"level": "high", "message": "margin ratio 82%"}, user="alice")
        await pub.publish("trade_executed", {"trade_id": "t-new", "symbol": "SOLUSDT", "type": "SHORT",
                                             "entry_price": 171.25, "quantity": 40, "leverage": 2},
                          user="alice")
        await pub.publish("signal_generated", {"symbol": "BTCUSDT", "signal": "LONG", "entry_price": 67100.0,
                                               "strategy": "breakout", "confidence": 0.72})
        await until(lambda: _activity_has(page, "t-new"), timeout=10, what="a live private trade")
        await until(lambda: _activity_has(page, "breakout"), timeout=10, what="a signal")
        items = await page.evaluate("() => [...document.querySelectorAll('#activity .item')]"
                                    ".map(i => i.dataset.type + ' ' + i.textContent)")
        text = "\n".join(items)
        assert "t-bob" not in text, "another user's trade must not be shown"
        assert "margin ratio 82%" in text
        assert "equity" in text and "125,000.50" in text
        assert sum(1 for i in items if i.startswith("trade_executed")) == 2
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "dashboard-private.png"))

        # signing out (an empty token) goes on anonymously
        assert await page.text_content("#signin") == "Sign out"
        await page.click("#signin")
        await until(lambda: _user_is(page, "anonymous"), timeout=15, what="anonymous again")
        await pub.publish("trade_executed", {"trade_id": "t-after", "symbol": "SOLUSDT", "type": "LONG",
                                             "entry_price": 171.0, "quantity": 1, "leverage": 1},
                          user="alice")
        await pub.publish("signal_generated", {"symbol": "SOLUSDT", "signal": "SHORT", "entry_price": 171.0,
                                               "strategy": "marker-after", "confidence": 0.5})
        await until(lambda: _activity_has(page, "marker-after"), timeout=10, what="a later signal")
        assert not await _activity_has(page, "t-after")


async def test_dashboard_with_a_refused_token_goes_on_anonymously(
    page: Page, redis_url: str, local_only: None
) -> None:
    async with running_gateway(redis_url) as gw:
        await page.goto(f"{gw.http}/?token={token('alice', ttl=-5)}")
        await until(lambda: _user_is(page, "token refused"), timeout=15, what="the refusal")
        await until(lambda: _is(page, "connected"), timeout=15, what="connected anonymously")
        assert "expired" in (await page.get_attribute("#user", "title") or "")
        await page.fill("#token", token("alice"))
        assert await page.text_content("#signin") == "Sign in"
        await page.click("#signin")
        await until(lambda: _user_is(page, "alice"), timeout=15, what="signed in")


async def test_dashboard_reconnects_after_gateway_restart(
    page: Page, redis_url: str, pub: AsyncPublisher, local_only: None
) -> None:
    gateway = GatewayProcess(redis_url)
    await gateway.start()
    try:
        feed = MarketFeed(pub)
        await feed.seed(history=5)
        async with running(feed.run()):
            await page.goto(f"http://127.0.0.1:{gateway.port}/")
            await until(lambda: _is(page, "connected"), timeout=15, what="status connected")
            node_before = await page.text_content("#node")
            for sig in (signal.SIGTERM, signal.SIGKILL):
                gateway.signal(sig)
                await gateway.wait()
                await until(lambda: _is_not(page, "connected"), timeout=15, what="status to leave connected")
                assert await state(page) == "reconnecting"
                await gateway.start()
                await until(lambda: _is(page, "connected"), timeout=30, what="status connected again")
                assert await page.text_content("#node") != node_before
                node_before = await page.text_content("#node")
                flowing = f"() => window.tickstream.client.stats.events > {await events_seen(page)} + 20"
                await until(lambda e=flowing: page.evaluate(e), timeout=15, what="events flowing again")
    finally:
        await gateway.stop()


SYMBOLS = "SOLUSDT,BTCUSDT,ETHUSDT"  # neither alphabetical nor the feed's order


async def chart_candles(page: Page) -> int:
    return int(await page.get_attribute("#chart", "data-candles") or 0)


async def stored_candles(page: Page, symbol: str) -> int:
    return int(await page.evaluate(
        f"() => window.tickstream.candles.get('{symbol}')?.get('1m')?.size ?? 0"))


async def test_dashboard_opens_with_candle_history_a_stable_symbol_and_keeps_both(
    page: Page, redis_url: str, pub: AsyncPublisher, local_only: None
) -> None:
    feed = MarketFeed(pub)
    await feed.seed(history=90)
    # then far more book tickers than `last` replays: only a history read finds the candles
    noise = [Event("market_data", {"symbol": "BTCUSDT", "kind": "book_ticker", "bid": 1.0, "bid_qty": 1.0,
                                   "ask": 2.0, "ask_qty": 1.0, "update_id": n}) for n in range(3000)]
    await pub.publish_many(noise)
    gateway = GatewayProcess(redis_url, SYMBOLS=SYMBOLS)
    await gateway.start()
    try:
        await page.goto(f"http://127.0.0.1:{gateway.port}/")
        await until(lambda: _selected_set(page), timeout=15, what="a selected symbol")
        assert await page.text_content("#chart-symbol") == "SOLUSDT", "the first of SYMBOLS"
        rows = await page.evaluate("() => [...document.querySelectorAll('#markets .market')]"
                                   ".map(r => r.dataset.symbol)")
        assert rows == ["SOLUSDT", "BTCUSDT", "ETHUSDT"]
        # the chart shows the retained history at once, not one or two candles
        await until(lambda: _at_least(chart_candles(page), 60), timeout=10, what="60 candles drawn")
        assert await stored_candles(page, "SOLUSDT") == 90
        assert await stored_candles(page, "BTCUSDT") == 90  # every symbol's, for its sparkline

        # the history stays through a gateway restart, and live candles add to it
        gateway.signal(signal.SIGTERM)
        await gateway.wait()
        await until(lambda: _is_not(page, "connected"), timeout=15, what="disconnected")
        await gateway.start()
        await until(lambda: _is(page, "connected"), timeout=30, what="connected again")
        sol = next(i for i in feed.instruments if i.symbol == "SOLUSDT")
        await pub.publish("market_data", feed._candle(sol, sol.candle["open_ms"], sol.price, sol.price,
                                                      sol.price, sol.price, 1.0, 1, True))
        await until(lambda: _at_least(stored_candles(page, "SOLUSDT"), 91), timeout=10,
                    what="a live candle after the history")
        assert await chart_candles(page) >= 60

        # the user's choice wins over the default, across a reload without ?symbol=
        await page.click("#markets .market[data-symbol='ETHUSDT']")
        await until(lambda: _selected_is(page, "ETHUSDT"), timeout=5, what="ETHUSDT selected")
        await page.goto(f"http://127.0.0.1:{gateway.port}/")
        await until(lambda: _selected_set(page), timeout=15, what="a selected symbol")
        assert await page.text_content("#chart-symbol") == "ETHUSDT"
        await until(lambda: _at_least(chart_candles(page), 60), timeout=10, what="ETHUSDT's history")
    finally:
        await gateway.stop()


async def test_dashboard_change_book_and_private_types_come_from_the_gateway(
    page: Page, redis_url: str, pub: AsyncPublisher, local_only: None
) -> None:
    feed = MarketFeed(pub)
    await feed.seed(history=5)
    tickers = {"SOLUSDT": (0.004, "+0.004%"), "BTCUSDT": (-2.5, "-2.50%"), "ETHUSDT": (1.234, "+1.23%")}
    for symbol, (pct, _) in tickers.items():
        inst = next(i for i in feed.instruments if i.symbol == symbol)
        await pub.publish("market_data", dict(feed._ticker(inst), change_percent=pct, change=pct))
    # a thin book: fewer levels than the panel has room for
    await pub.publish("orderbook_update", {"symbol": "SOLUSDT", "bids": [[171.1, 2], [171.0, 3], [170.9, 1]],
                                           "asks": [[171.2, 1], [171.3, 4]], "last_update_id": 9,
                                           "timestamp": "2026-11-26T14:00:00.000Z"})
    private = "trade_executed,portfolio_update,risk_event,audit_note"
    gateway = GatewayProcess(redis_url, SYMBOLS=SYMBOLS, PRIVATE_TYPES=private)
    await gateway.start()
    try:
        await pub.publish("audit_note", {"note": "login from a new device"}, user="alice")
        await page.goto(f"http://127.0.0.1:{gateway.port}/?token={token('alice')}")
        await until(lambda: _is(page, "connected"), timeout=15, what="connected")
        for symbol, (_, shown) in tickers.items():
            cell = f"#markets .market[data-symbol='{symbol}'] .chg"
            await until(lambda c=cell, s=shown: _text_is(page, c, s), timeout=10,
                        what=f"{symbol} 24 h change")
        assert "+0.004%" in (await page.text_content("#chart-change") or "")

        # the order book: the levels it has, and no blank row
        await until(lambda: page.evaluate("() => document.querySelectorAll('#bids .level[data-price]').length"
                                          " === 3"), timeout=10, what="the book")
        rows = await page.evaluate("""() => [...document.querySelectorAll('#asks .level, #bids .level')]
            .filter(r => r.offsetHeight > 0).map(r => r.textContent.trim())""")
        assert len(rows) == 5 and all(rows), rows

        # the private types are the gateway's, and a configured one reaches its user
        async with httpx.AsyncClient() as http:
            index = (await http.get(f"http://127.0.0.1:{gateway.port}/api/schemas")).json()
        wanted = sorted(t["event_type"] for t in index["types"] if t["private"])
        assert wanted == sorted(private.split(","))
        assert sorted(await page.evaluate("() => window.tickstream.privateTypes")) == wanted
        await until(lambda: _activity_has(page, "login from a new device"), timeout=10,
                    what="the configured private type in the activity feed")
    finally:
        await gateway.stop()


async def _selected_set(page: Page) -> bool:
    return (await page.text_content("#chart-symbol")) not in (None, "—")


async def _at_least(value: Awaitable[int], n: int) -> bool:
    return await value >= n


async def _text_is(page: Page, selector: str, text: str) -> bool:
    return (await page.text_content(selector)) == text


async def events_seen(page: Page) -> int:
    return int(await page.evaluate("() => window.tickstream.client.stats.events"))


async def _is(page: Page, wanted: str) -> bool:
    return await state(page) == wanted


async def _is_not(page: Page, wanted: str) -> bool:
    return await state(page) != wanted


async def _prices_if(page: Page, n: int) -> dict[str, str] | None:
    prices = {k: v for k, v in (await market_prices(page)).items() if v != "—"}
    return prices if len(prices) >= n else None


async def _changed(page: Page, before: dict[str, str]) -> bool:
    now = await market_prices(page)
    return any(now.get(k) not in (None, v) for k, v in before.items())


async def _candles_drawn(page: Page, both_colours: bool) -> dict[str, Any] | None:
    pixels = await candle_pixels(page)
    green, red = pixels["green"] > 20, pixels["red"] > 20
    drawn = (green and red) if both_colours else (green or red)
    return pixels if pixels["candles"] > 0 and drawn else None


async def _rate_positive(page: Page) -> bool:
    text = (await page.text_content("#rate")) or "0"
    return int(text.replace(",", "")) > 0


async def _selected_is(page: Page, symbol: str) -> bool:
    return (await page.text_content("#chart-symbol")) == symbol and bool(
        await page.evaluate(f"() => document.querySelector(\"#markets .market[data-symbol='{symbol}']\")"
                            ".classList.contains('selected')"))


async def _activity_has(page: Page, text: str) -> bool:
    content = await page.text_content("#activity") or ""
    return text in content


async def _user_is(page: Page, user: str) -> bool:
    return (await page.text_content("#user")) == user
