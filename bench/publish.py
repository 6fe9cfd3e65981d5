"""Publish throughput: batched and one-by-one, against raw pipelined XADD of the same payloads.

    .venv/bin/python -m bench.publish [--events 200000] [--batch 1000] [--redis-url URL]

Starts a private redis-server on a free loopback port unless ``--redis-url`` is given (the
benchmark then writes under the ``tickstream-bench`` prefix and deletes what it wrote).
The payload is a realistic ``price_update``. Prints one line per mode and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import time
from typing import Any

import redis.asyncio

from shared.events import Event, prepare
from shared.keys import Keys
from shared.publisher import AsyncPublisher, PublishSettings
from shared.retention import Retention, RetentionPolicy


def price_events(n: int) -> list[Event]:
    rng = random.Random(7)
    return [
        Event("price_update", {
            "symbol": "BTCUSDT", "price": round(65000 + rng.random() * 100, 2),
            "volume": round(rng.random(), 5), "timestamp": "2026-11-26T14:00:00.123Z",
            "trade_id": 3_000_000_000 + i, "side": "buy" if i % 2 else "sell", "source": "binance",
        })
        for i in range(n)
    ]


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(url: str, n: int, batch: int, single: int) -> dict[str, Any]:
    prefix = "tickstream-bench"
    keys = Keys(prefix)
    retention = RetentionPolicy({}, Retention(n * 2, 0))
    settings = PublishSettings(redis_url=url, key_prefix=prefix, retention=retention)  # type: ignore[arg-type]
    client = redis.asyncio.Redis.from_url(url)
    events = price_events(n)
    results: dict[str, Any] = {}

    async def clean() -> None:
        names = [k async for k in client.scan_iter(f"{prefix}:*")]
        if names:
            await client.delete(*names)

    await clean()
    async with AsyncPublisher.from_url(url, settings) as pub:
        await pub.publish_many(events[:batch])  # warm-up: script loaded, connection open
        await clean()
        t0, c0 = time.perf_counter(), cpu()
        for start in range(0, n, batch):
            await pub.publish_many(events[start:start + batch])
        wall, used = time.perf_counter() - t0, cpu() - c0
        assert await client.xlen(keys.stream("price_update")) == n
        results["batched"] = (n / wall, used / n * 1e6)
        await clean()

        t0, c0 = time.perf_counter(), cpu()
        for event in events[:single]:
            await pub.publish_many([event])
        wall, used = time.perf_counter() - t0, cpu() - c0
        results["one-by-one"] = (single / wall, used / single * 1e6)
        await clean()

    # Raw pipelined XADD of the same payloads (encoded the same way, trimming by count too).
    stream = keys.stream("price_update")
    t0, c0 = time.perf_counter(), cpu()
    for start in range(0, n, batch):
        async with client.pipeline(transaction=False) as pipe:
            for event in events[start:start + batch]:
                p = prepare(event)
                pipe.xadd(stream, {"d": p.payload, "s": p.symbol, "u": p.user},
                          maxlen=n * 2, approximate=True)
            await pipe.execute()
    wall, used = time.perf_counter() - t0, cpu() - c0
    results["raw XADD pipelined"] = (n / wall, used / n * 1e6)
    await clean()
    await client.aclose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--single", type=int, default=20_000, help="events for the one-by-one run")
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()
    server = None
    url = args.redis_url
    if url is None:
        from tests.support.redis_server import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    try:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        results = asyncio.run(run(url, args.events, args.batch, args.single))
    finally:
        if server is not None:
            server.cleanup()
    print(f"publish benchmark: {args.events} price_update events, batches of {args.batch}, "
          f"python {os.sys.version.split()[0]}")
    for mode, (rate, us) in results.items():
        print(f"  {mode:<20} {rate:>10,.0f} events/s   {us:6.2f} us client CPU/event")
    ratio = results["raw XADD pipelined"][0] / results["batched"][0]
    print(f"  raw XADD / batched publish throughput ratio: {ratio:.2f}x")


if __name__ == "__main__":
    main()
