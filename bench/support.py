"""Shared pieces of the benchmarks: processes they start, CPU readings, percentiles."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence

import httpx

from tests.support.redis_server import RedisServer, free_port

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (from /proc)."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


class Gateway:
    """A ``tickstream gateway`` process for a benchmark."""

    def __init__(self, redis_url: str, **env: str) -> None:
        self.port = free_port()
        self.env = dict(os.environ, REDIS_URL=redis_url, PORT=str(self.port), HOST="127.0.0.1",
                        LOG_LEVEL="WARNING", JWT_SECRET="bench-secret-bench-secret-bench-secret",
                        **env)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tickstream.cli", "gateway"],
                                     env=self.env)
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gateway did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def private_redis() -> RedisServer:
    server = RedisServer(extra=["--maxclients", "20000"])
    server.start()
    return server
