"""Fixtures of the browser tests: one headless Chromium per session, a fresh context per test.

Every async test and fixture here runs on the session's event loop (the browser is bound to
the loop it was launched on): test modules carry ``pytestmark = BROWSER_TESTS``.

``TICKSTREAM_DASHBOARD_URL=http://127.0.0.1:8080`` points the dashboard tests at a stack that is
already running (``tickstream up --simulate``): they then publish nothing and look for whatever
symbols arrive; the tests that restart a gateway need one they own and are skipped in that mode.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
from playwright.async_api import Browser, BrowserContext, ConsoleMessage, Error, Page, async_playwright

from shared.publisher import AsyncPublisher, PublishSettings
from tests.browser.support import ensure_chromium, launch


@pytest.fixture(scope="session")
def chromium() -> str:
    path, why = ensure_chromium()
    if path is None:
        pytest.skip(why)
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await launch(pw, chromium)
        yield b
        await b.close()


@dataclass
class PageLog:
    errors: list[str]
    console: list[str]

    def unexpected_errors(self) -> list[str]:
        # a WebSocket that cannot connect while a gateway restarts is logged by Chromium itself,
        # and so is a fetch (the dashboard's history or schemas) refused while it is down
        return [e for e in self.errors if "WebSocket connection to" not in e
                and e != "Failed to load resource: net::ERR_CONNECTION_REFUSED"]


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport={"width": 1440, "height": 900}, device_scale_factor=1)
    ctx.set_default_timeout(15_000)
    yield ctx
    await ctx.close()


@pytest_asyncio.fixture(loop_scope="session")
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    p = await context.new_page()
    await p.route("**/favicon.ico", lambda route: route.fulfill(status=204))  # not the gateway's job
    log = PageLog([], [])

    def on_console(msg: ConsoleMessage) -> None:
        log.console.append(f"{msg.type}: {msg.text}")
        if msg.type == "error":
            log.errors.append(msg.text)

    def on_error(exc: Error) -> None:
        log.errors.append(f"uncaught: {exc}")

    p.on("console", on_console)
    p.on("pageerror", on_error)
    p.log = log  # type: ignore[attr-defined]
    yield p
    assert not log.unexpected_errors(), "errors in the page:\n" + "\n".join(log.errors)


@pytest_asyncio.fixture(loop_scope="session")
async def pub(redis_url: str) -> AsyncIterator[AsyncPublisher]:
    async with AsyncPublisher.from_url(redis_url, PublishSettings(redis_url=redis_url)) as publisher:
        yield publisher


@pytest.fixture
def external_url() -> str | None:
    return os.environ.get("TICKSTREAM_DASHBOARD_URL") or None


@pytest.fixture
def local_only(external_url: str | None) -> None:
    if external_url:
        pytest.skip("TICKSTREAM_DASHBOARD_URL is set: this test needs a gateway it starts itself")
