"""How many events per second the browser client delivers on one tab (a measurement, not a test).

    .venv/bin/python -m tests.browser.throughput                 # batching (the default), 10 s
    .venv/bin/python -m tests.browser.throughput --no-batch      # one message per frame
    .venv/bin/python -m tests.browser.throughput --seconds 20 --batch-ms 20 --publishers 3
    .venv/bin/python -m tests.browser.throughput --replay 150000  # catch-up: since=0-0 of a backlog
    .venv/bin/python -m tests.browser.throughput --synthetic      # the client alone, no network

A private redis-server, one ``tickstream gateway`` process and headless Chromium; publishers in
this process push ``price_update`` events (the ingestor's shape) as fast as they can, in
pipelines of ``--chunk``. The page subscribes through gateway/static/tickstream.js and counts
events in its callback (and checks their order); it reports each second's count. Everything
shares this machine's CPUs, so the figure is a floor for what one tab can take. With
``--replay N`` nothing is published during the run: N events are published first and the page
subscribes with ``since: '0-0'``, so the publisher is out of the way (the gateway's replay is
what feeds the page). ``--synthetic`` measures the client alone: frames of 1,000 events are
handed to it by a stand-in WebSocket in the page (parse, order check, callback: its CPU cost).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime

from playwright.async_api import async_playwright

from shared.events import Event
from shared.publisher import AsyncPublisher, PublishSettings
from tests.browser.support import ensure_chromium, launch, median, open_harness
from tests.support.gateway import GatewayProcess
from tests.support.redis_server import RedisServer
from tests.support.waiting import until

COUNTER = """async ({url, batch, batchMs, since}) => {
    const { connect, compareOffsets } = window.tickstream;
    const m = {events: 0, disorder: 0, last: null, perSecond: [], frames: 0};
    window.m = m;
    let mark = 0;
    setInterval(() => { m.perSecond.push(m.events - mark); mark = m.events; }, 1000);
    const opts = {batch};
    if (batchMs !== null) opts.batchMs = batchMs;
    const ws = connect(url, opts);
    window.ws = ws;
    await ws.subscribe('price_update', (e) => {
        if (m.last !== null && compareOffsets(e.offset, m.last) <= 0) m.disorder++;
        m.last = e.offset;
        m.events++;
    }, since ? {since} : {}).ready;
}"""


SYNTHETIC = """async ({frames, perFrame}) => {
    const { connect } = window.tickstream;
    let socket = null;
    class StandIn {
        constructor() {
            this.readyState = 0; socket = this;
            setTimeout(() => {
                this.readyState = 1; this.onopen();
                this.onmessage({data: JSON.stringify({type: 'welcome', node: 'stand-in', heartbeat: 30})});
            });
        }
        send(text) {
            const m = JSON.parse(text);
            if (m.op === 'subscribe') setTimeout(() => this.onmessage({data: JSON.stringify({
                type: 'subscribed', id: m.id, event_type: m.event_type, epoch: 'e', offset: '0-0',
                recovered: true})}));
        }
        close() {}
    }
    let events = 0;
    const ws = connect('ws://stand-in.invalid/ws', {WebSocket: StandIn, pingInterval: 0});
    await ws.subscribe('price_update', () => { events++; }).ready;
    const base = 1732612345678;
    const data = [];
    for (let f = 0; f < frames; f++) {
        const items = [];
        for (let i = 0; i < perFrame; i++) {
            const n = f * perFrame + i;
            items.push({event_type: 'price_update', offset: `${base + Math.floor(n / 10)}-${n % 10}`,
                symbol: 'BTCUSDT', ts: base, data: {symbol: 'BTCUSDT', price: 67000 + n % 100,
                volume: 0.0123, timestamp: '2026-11-26T15:00:00.000Z', trade_id: n, side: 'buy',
                source: 'binance'}});
        }
        data.push(JSON.stringify(items));
    }
    const t0 = performance.now();
    for (const frame of data) socket.onmessage({data: frame});
    const ms = performance.now() - t0;
    ws.close();
    return {events, ms, bytes: data.reduce((a, d) => a + d.length, 0)};
}"""


async def synthetic(args: argparse.Namespace) -> None:
    chromium, why = ensure_chromium()
    if chromium is None:
        raise SystemExit(why)
    redis_server = RedisServer()
    redis_server.start()
    gateway = GatewayProcess(redis_server.url)  # serves the page and the module
    try:
        await gateway.start()
        async with async_playwright() as pw:
            browser = await launch(pw, chromium)
            page = await browser.new_page()
            await open_harness(page, f"http://127.0.0.1:{gateway.port}")
            result = await page.evaluate(SYNTHETIC, {"frames": 300, "perFrame": 1000})
            await browser.close()
        rate = result["events"] / result["ms"] * 1000
        print(f"browser client alone (stand-in socket), {result['events']:,} price_update events in "
              f"frames of 1,000 ({result['bytes'] / result['events']:.0f} bytes each):")
        print(f"  {result['ms']:,.0f} ms = {rate:,.0f} events/s on one core "
              "(JSON.parse, order check, de-duplication, callback)")
    finally:
        await gateway.stop()
        redis_server.cleanup()


def trade(n: int) -> Event:
    return Event("price_update", {
        "symbol": "BTCUSDT", "price": 67000.0 + (n % 1000) / 100, "volume": 0.0123,
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"), "trade_id": n,
        "side": "buy" if n % 2 else "sell", "source": "binance",
    })


async def measure(args: argparse.Namespace) -> None:
    chromium, why = ensure_chromium()
    if chromium is None:
        raise SystemExit(why)
    redis_server = RedisServer()
    redis_server.start()
    gateway = GatewayProcess(redis_server.url, SLOW_CLIENT_MAX_BYTES="64MiB")
    try:
        await gateway.start()
        async with async_playwright() as pw, AsyncPublisher.from_url(
                redis_server.url, PublishSettings(redis_url=redis_server.url)) as pub:
            browser = await launch(pw, chromium)
            page = await browser.new_page()
            await open_harness(page, f"http://127.0.0.1:{gateway.port}")
            published = 0
            if args.replay:
                while published < args.replay:
                    await pub.publish_many([trade(i) for i in range(published, published + 5000)])
                    published += 5000
            started = time.monotonic()
            await page.evaluate(COUNTER, {"url": gateway.url, "batch": not args.no_batch,
                                          "batchMs": args.batch_ms, "since": "0-0" if args.replay else None})
            stop = asyncio.Event()

            async def publisher(k: int) -> None:
                nonlocal published
                n = k * 10**9
                while not stop.is_set():
                    await pub.publish_many([trade(n + i) for i in range(args.chunk)])
                    n += args.chunk
                    published += args.chunk

            if not args.replay:
                started = time.monotonic()
                tasks = [asyncio.create_task(publisher(k)) for k in range(args.publishers)]
                await asyncio.sleep(args.seconds)
                stop.set()
                await asyncio.gather(*tasks)
            elapsed = time.monotonic() - started
            try:  # let the page catch up with what was published
                await until(lambda: page.evaluate(f"() => window.m.events >= {published}"), timeout=60,
                            interval=0.2, what="the page to receive every event")
            except AssertionError as exc:
                print(exc)
            drained = time.monotonic() - started
            m = await page.evaluate("() => window.m")
            stats = await page.evaluate("() => window.ws.stats")
            await browser.close()
        rates = [r for r in m["perSecond"] if r > 0]
        steady = rates[1:-1] or rates
        mode = "batch=0" if args.no_batch else f"batch=1 batch_ms={args.batch_ms or 'default (5)'}"
        if args.replay:
            mode += f", replay of {args.replay:,} events (since=0-0)"
        print(f"browser client, one tab, {mode}, {os.cpu_count()} CPUs shared by publisher, redis, "
              "gateway and Chromium")
        if not args.replay:
            print(f"  published   {published:>9,} events in {elapsed:5.1f} s = "
                  f"{published / elapsed:>9,.0f} events/s")
        print(f"  delivered   {m['events']:>9,} events by {drained:5.1f} s = "
              f"{m['events'] / drained:>9,.0f} events/s (all of them: {m['events'] == published})")
        print(f"  per second  median {median(steady):,.0f}, peak {max(rates, default=0):,}  "
              f"(page counter, steady seconds)")
        per_frame = m["events"] / max(1, stats["frames"])
        print(f"  frames      {stats['frames']:,} ({per_frame:.1f} events/frame), "
              f"out of order {m['disorder']}, duplicates dropped {stats['duplicates']}, "
              f"connections {stats['connects']}")
    finally:
        await gateway.stop()
        redis_server.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--no-batch", action="store_true", help="connect without ?batch=1")
    parser.add_argument("--batch-ms", type=int, default=None, help="&batch_ms=N (gateway default 5)")
    parser.add_argument("--publishers", type=int, default=2, help="concurrent publishing tasks")
    parser.add_argument("--chunk", type=int, default=500, help="events per publish_many")
    parser.add_argument("--replay", type=int, default=0, help="publish N events first, then replay them")
    parser.add_argument("--synthetic", action="store_true", help="the client alone, without a network")
    args = parser.parse_args()
    asyncio.run(synthetic(args) if args.synthetic else measure(args))


if __name__ == "__main__":
    main()
