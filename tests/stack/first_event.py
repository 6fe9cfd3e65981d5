"""Measure: from ``tickstream up --simulate`` being started to the first ``price_update`` a
WebSocket client receives (and how long the Ctrl-C stop then takes).

    .venv/bin/python -m tests.stack.first_event [runs]

Each run uses free loopback ports and a fresh state folder (an empty Redis). The client connects
as soon as the gateway port accepts, subscribes live (no replay), and the clock stops at the first
event it receives.
"""

from __future__ import annotations

import asyncio
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.stack.support import UpStack
from tests.support.gateway import Client


async def one_run() -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory(prefix="tickstream-first-event-") as tmp:
        up = UpStack(Path(tmp) / "state", env={"SIMULATOR_RATE": "50", "LOG_LEVEL": "WARNING"})
        start = time.monotonic()
        await up.start()
        try:
            while True:
                try:
                    client = await Client.open(up.ws_url, open_timeout=2)
                    break
                except OSError:
                    await asyncio.sleep(0.02)
            await client.subscribe("price_update")
            await client.events_until(1, timeout=60)
            first = time.monotonic() - start
            await up.ready()
            ready = next(float(line.split(" in ")[1].split(" s")[0]) for line in up.out
                         if line.startswith("tickstream up: stack started in"))
            await client.close()
            stop_at = time.monotonic()
            assert await up.stop(signal.SIGINT) == 0, up.output()
            return first, ready, time.monotonic() - stop_at
        finally:
            await up.cleanup()


async def main(runs: int) -> None:
    results = [await one_run() for _ in range(runs)]
    for i, (first, ready, stop) in enumerate(results, 1):
        print(f"run {i}: first price_update {first:.2f} s, `up` reported ready {ready:.1f} s, "
              f"Ctrl-C to exit {stop:.2f} s")
    if runs > 1:
        print(f"median first price_update: {statistics.median(r[0] for r in results):.2f} s")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3))
