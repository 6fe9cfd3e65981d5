"""The gateway's fan-out path in one process, without sockets: the Python work per delivery.

    .venv/bin/python -m bench.hotpath              # about 20 s
    .venv/bin/python -m bench.hotpath --subscribers 1000 --rounds 200

A real Hub, Subscriptions and Writers on the node's Flusher, writing to a sink that joins each
flush into one ``bytes`` (what the socket's write would be handed) and drops it. Reported:
CPU microseconds per delivered event, for runs of 1, 5 and 50 events per read, JSON frames
built once and shared (``framed``: no extension, the default) or framed by the library per
connection (``messages``: what a permessage-deflate connection costs before compressing), and
batch mode. What the fan-out benchmark measures on top of this is the kernel: one ``write``
per connection per flush, through loopback to the clients.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import msgpack

from gateway.hub import Hub
from gateway.protocol import JSON_WIRE
from gateway.subscription import Subscription
from gateway.values import Frame, StreamEntry
from gateway.writer import Flusher, Writer


class NullSink:
    def __init__(self, framed: bool) -> None:
        self.framed = framed
        self.bytes = 0

    def write_frames(self, frames: list[Frame], binary: bool) -> bool:
        self.bytes += len(b"".join(frames))
        return True

    async def drained(self) -> bool:
        return True


class Owner:
    user: str | None = None
    is_admin = False

    def slow_consumer(self, why: str) -> None:
        raise RuntimeError(why)

    def close(self, code: int, reason: str) -> None:
        raise RuntimeError(reason)


def entries(n: int) -> list[StreamEntry]:
    out = []
    for i in range(n):
        ms = 1_796_000_000_000 + i
        data = msgpack.packb({"symbol": "BTCUSDT", "price": 65000.5 + i % 100, "volume": 0.01,
                              "timestamp": "2026-11-26T14:00:00.000Z", "trade_id": i, "side": "buy",
                              "source": "bench"})
        out.append(StreamEntry("trade", f"{ms}-0", (ms, 0), "BTCUSDT", "", data))
    return out


async def measure(subscribers: int, per_read: int, rounds: int, framed: bool, batch: bool) -> float:
    hub: Hub[Any] = Hub()
    flusher = Flusher()
    sinks = []
    for _ in range(subscribers):
        sink = NullSink(framed)
        writer = Writer(_never, JSON_WIRE, max_bytes=1 << 30, batch=batch, batch_ms=0.0, sink=sink,
                        flusher=flusher)
        sub = Subscription(Owner(), writer, "trade", None)
        sub.recovering = False
        hub.index(sub)
        sinks.append(sink)
    stream = entries(per_read * rounds)
    await asyncio.sleep(0)
    start = time.process_time()
    for r in range(rounds):
        hub.dispatch("trade", stream[r * per_read:(r + 1) * per_read])
        await asyncio.sleep(0)  # the flusher's callback: one write per connection
    elapsed = time.process_time() - start
    assert all(s.bytes for s in sinks)
    return elapsed / (subscribers * per_read * rounds) * 1e6


async def _never(frame: Frame) -> None:
    raise AssertionError("the sink takes every write")


async def main(subscribers: int, rounds: int) -> None:
    print(f"{subscribers} subscribers; CPU microseconds per delivery (no sockets)")
    for per_read in (1, 5, 50):
        figures = []
        for name, framed, batch in (("framed", True, False), ("messages", False, False),
                                    ("batch=1", True, True)):
            n = max(1, rounds // per_read) if per_read > 1 else rounds
            figures.append(f"{name} {await measure(subscribers, per_read, n, framed, batch):5.2f}")
        print(f"  {per_read:>2} events per read: " + "   ".join(figures))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.subscribers, args.rounds))
