"""Helpers for the browser tests: Chromium, a synthetic market, a harness page, a freezing proxy.

Chromium is Debian's ``/usr/bin/chromium`` (``scripts/ensure-browser.sh`` installs it), driven by
Playwright's Python package over CDP. Playwright never downloads a browser here.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Playwright

from shared.events import Event
from shared.publisher import AsyncPublisher

# Every browser test module: on the session's event loop (where the browser lives), and needing
# real sockets and a real redis-server.
BROWSER_TESTS = [pytest.mark.asyncio(loop_scope="session"), pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
ENSURE_BROWSER = ROOT / "scripts" / "ensure-browser.sh"

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]


def find_chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_chromium() -> tuple[str | None, str]:
    """Chromium's path, installing it with scripts/ensure-browser.sh if missing: (path, why not)."""
    path = find_chromium()
    if path:
        return path, ""
    try:
        done = subprocess.run([str(ENSURE_BROWSER)], capture_output=True, text=True, timeout=900,
                              check=False)
        why = (done.stderr or done.stdout).strip().splitlines()
        reason = why[-1] if why else f"exit status {done.returncode}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        reason = str(exc)
    path = find_chromium()
    return path, "" if path else f"chromium is not installed and could not be installed: {reason}"


async def launch(pw: Playwright, executable: str) -> Browser:
    return await pw.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True,
                                    timeout=30_000)


async def open_harness(page: Page, http: str) -> None:
    """A page on the gateway's origin with the browser client imported as ``window.tickstream``.

    The page is the gateway's ``/healthz`` (a real page of that origin: Chromium's local network
    access checks block a loopback WebSocket from a page the test would fulfil itself); it stays
    loaded across gateway restarts.
    """
    await page.goto(f"{http}/healthz")
    await page.evaluate("import('/static/tickstream.js').then(m => { window.tickstream = m; })")


# --- a synthetic market -----------------------------------------------------------------------


def iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Instrument:
    symbol: str
    price: float
    qty: float  # a typical trade size
    tick: float
    candle: dict[str, Any] = field(default_factory=dict)
    day_open: float = 0.0
    trade_id: int = 1000
    update_id: int = 1


class MarketFeed:
    """Publishes what the ingestor would: trades, 1m candles, tickers and order books.

    ``seed()`` publishes ``history`` closed candles ending now (so a chart has something to draw
    at once) and a ticker per symbol; ``run()`` then publishes live events ``rate`` times a
    second until cancelled.
    """

    def __init__(self, pub: AsyncPublisher, *, seed: int = 7, rate: float = 10.0) -> None:
        self.pub = pub
        self.rng = random.Random(seed)
        self.rate = rate
        self.instruments = [
            Instrument("BTCUSDT", 67250.0, 0.05, 0.01),
            Instrument("ETHUSDT", 3480.0, 0.8, 0.01),
            Instrument("SOLUSDT", 171.2, 12.0, 0.001),
        ]
        self.published = 0

    @property
    def symbols(self) -> list[str]:
        return [i.symbol for i in self.instruments]

    def _walk(self, inst: Instrument, scale: float = 1.0) -> float:
        inst.price = max(inst.tick, inst.price * (1 + self.rng.gauss(0, 0.0006 * scale)))
        inst.price = round(inst.price / inst.tick) * inst.tick
        return inst.price

    def _candle(self, inst: Instrument, open_ms: int, o: float, h: float, low: float, c: float,
                volume: float, trades: int, closed: bool) -> dict[str, Any]:
        return {
            "symbol": inst.symbol, "kind": "candle", "interval": "1m", "open_time": iso(open_ms),
            "close_time": iso(open_ms + 59_999), "open": o, "high": h, "low": low, "close": c,
            "volume": round(volume, 4), "quote_volume": round(volume * c, 2), "trades": trades,
            "closed": closed,
        }

    async def seed(self, history: int = 90) -> None:
        now_minute = int(time.time() // 60 * 60_000)
        events: list[Event] = []
        for inst in self.instruments:
            start = inst.price
            inst.day_open = start * (1 + self.rng.uniform(-0.03, 0.03))
            for k in range(history, 0, -1):
                o = inst.price
                ticks = [self._walk(inst, 1.6) for _ in range(12)]
                h, low, c = max(o, *ticks), min(o, *ticks), ticks[-1]
                volume = inst.qty * self.rng.uniform(20, 120) * (1 + 2 * abs(c - o) / o * 100)
                events.append(Event("market_data", self._candle(
                    inst, now_minute - k * 60_000, o, h, low, c, volume, self.rng.randint(40, 400), True)))
            inst.candle = {"open_ms": now_minute, "o": inst.price, "h": inst.price, "l": inst.price,
                           "v": 0.0, "n": 0}
            events.append(Event("market_data", self._ticker(inst)))
        await self._publish(events)

    def _ticker(self, inst: Instrument) -> dict[str, Any]:
        last = inst.price
        change = last - inst.day_open
        spread = inst.tick * 2
        return {
            "symbol": inst.symbol, "kind": "ticker", "last": last, "open": inst.day_open,
            "high": max(last, inst.day_open) * 1.01, "low": min(last, inst.day_open) * 0.99,
            "volume": round(inst.qty * 52_000, 3), "quote_volume": round(inst.qty * 52_000 * last, 2),
            "change": round(change, 6), "change_percent": round(change / inst.day_open * 100, 3),
            "bid": last - spread / 2, "ask": last + spread / 2,
        }

    def _book(self, inst: Instrument) -> dict[str, Any]:
        mid = inst.price
        step = max(inst.tick, round(mid * 0.00005 / inst.tick) * inst.tick)
        bids, asks = [], []
        for n in range(20):
            size = round(inst.qty * self.rng.uniform(0.2, 6) * (1 + n / 6), 5)
            bids.append([round(mid - step * (n + 1), 8), size])
            size = round(inst.qty * self.rng.uniform(0.2, 6) * (1 + n / 6), 5)
            asks.append([round(mid + step * (n + 1), 8), size])
        inst.update_id += self.rng.randint(1, 9)
        return {"symbol": inst.symbol, "bids": bids, "asks": asks, "last_update_id": inst.update_id,
                "timestamp": iso(time.time() * 1000)}

    def tick_events(self, tick: int) -> list[Event]:
        """One round of live events (called ``rate`` times a second)."""
        now = time.time() * 1000
        events: list[Event] = []
        for index, inst in enumerate(self.instruments):
            c = inst.candle
            minute = int(now // 60_000 * 60_000)
            if minute != c["open_ms"]:
                events.append(Event("market_data", self._candle(
                    inst, c["open_ms"], c["o"], c["h"], c["l"], inst.price, c["v"], c["n"], True)))
                inst.candle = c = {"open_ms": minute, "o": inst.price, "h": inst.price,
                                   "l": inst.price, "v": 0.0, "n": 0}
            for _ in range(self.rng.randint(1, 3)):
                old = inst.price
                price = self._walk(inst)
                qty = round(inst.qty * self.rng.expovariate(1.0), 5) or inst.qty
                inst.trade_id += 1
                c["h"], c["l"] = max(c["h"], price), min(c["l"], price)
                c["v"] += qty
                c["n"] += 1
                events.append(Event("price_update", {
                    "symbol": inst.symbol, "price": price, "volume": qty, "timestamp": iso(now),
                    "trade_id": inst.trade_id, "side": "buy" if price >= old else "sell",
                    "source": "binance"}))
            events.append(Event("orderbook_update", self._book(inst)))
            if tick % int(self.rate * 3) == 1 + index * int(self.rate):  # a signal every 3 s
                events.append(Event("signal_generated", {
                    "symbol": inst.symbol, "signal": self.rng.choice(["LONG", "SHORT", "NEUTRAL"]),
                    "entry_price": inst.price, "strategy": self.rng.choice(["breakout", "mean-revert"]),
                    "confidence": round(self.rng.uniform(0.4, 0.95), 2)}))
            if tick % max(1, int(self.rate // 2)) == 0:
                events.append(Event("market_data", self._candle(
                    inst, c["open_ms"], c["o"], c["h"], c["l"], inst.price, c["v"], c["n"], False)))
                events.append(Event("market_data", self._ticker(inst)))
        return events

    async def _publish(self, events: list[Event]) -> None:
        await self.pub.publish_many(events)
        self.published += len(events)

    async def run(self) -> None:
        tick = 0
        period = 1.0 / self.rate
        next_at = time.monotonic()
        while True:
            await self._publish(self.tick_events(tick))
            tick += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))


@contextlib.asynccontextmanager
async def running(coro: Any) -> Any:
    """Run ``coro`` as a task for the duration of the block, then cancel it."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class FreezeProxy:
    """A loopback TCP proxy whose open connections can be frozen: bytes stop flowing both ways,
    nothing is closed (a dead NAT entry, a suspended laptop). New connections flow normally."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._frozen: set[asyncio.Event] = set()
        self._live: set[asyncio.Event] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def freeze(self) -> None:
        """Freeze every connection open now."""
        for gate in list(self._live):
            gate.clear()
            self._frozen.add(gate)
        self._live.clear()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.transport.abort()
            return
        gate = asyncio.Event()
        gate.set()
        self._live.add(gate)
        self._writers.update((client_w, up_w))

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(65536):
                await gate.wait()  # frozen: hold the bytes forever
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(pump(client_r, up_w)), asyncio.create_task(pump(up_r, client_w))]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_w, up_w):
            self._writers.discard(writer)
            writer.transport.abort()
        self._live.discard(gate)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return math.nan
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
