"""``tickstream up`` as a user runs it, in a subprocess, on free loopback ports.

Only processes this helper started (``up`` itself, and the children ``up`` lists in its state
file) are ever signalled, by PID.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.redis_server import free_port
from tests.support.waiting import until

ROOT = Path(__file__).resolve().parents[2]

# Settings a developer may have exported that would change what the stack under test does.
_SCRUB = ("REDIS_URL", "SYMBOLS", "PORT", "HOST", "LOG_LEVEL", "NODE_ID", "WORKERS", "JWT_SECRET",
          "JWT_PUBLIC_KEY", "BINANCE_WS_URL", "BINANCE_REST_URL", "SIMULATOR_SYMBOLS", "KEY_PREFIX")


def alive(pid: int) -> bool:
    """Is there a process with this PID that is not a zombie?"""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


class UpStack:
    def __init__(self, state_dir: Path, *args: str, env: dict[str, str] | None = None,
                 simulate: bool = True, redis_port: int | None = None) -> None:
        """``redis_port``: ``--redis-port`` (default: a free port; ``0`` lets ``up`` choose, as a
        Redis Cluster or Sentinel setup needs a run of consecutive free ports)."""
        self.port = free_port()
        self.redis_port = free_port() if redis_port is None else redis_port
        self.ingestor_port = free_port()
        self.simulator_port = free_port()
        self.state_dir = state_dir
        self.args = ["--state-dir", str(state_dir), "--port", str(self.port),
                     "--redis-port", str(self.redis_port), "--ingestor-port", str(self.ingestor_port),
                     "--simulator-port", str(self.simulator_port), "--ready-timeout", "60",
                     *(["--simulate"] if simulate else []), *args]
        base = {k: v for k, v in os.environ.items() if k not in _SCRUB and not k.startswith("TICKSTREAM_")}
        # Quick stops in tests: gateways and the ingestor drain for at most 3 s.
        base.update({"SHUTDOWN_GRACE": "3s", "READER_BLOCK": "0.2", "SIMULATOR_RATE": "200"})
        base.update(env or {})
        self.env = base
        self.proc: asyncio.subprocess.Process | None = None
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers: list[asyncio.Task[None]] = []
        self.started_at = 0.0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tickstream.cli", "up", *self.args, cwd=ROOT, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        self._readers = [asyncio.create_task(self._read(self.proc.stdout, self.out)),
                         asyncio.create_task(self._read(self.proc.stderr, self.err))]

    @staticmethod
    async def _read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        while line := await stream.readline():
            into.append(line.decode(errors="replace").rstrip("\n"))

    def output(self, last: int = 60) -> str:
        return "\n".join(["--- stdout", *self.out[-last:], "--- stderr", *self.err[-last:]])

    async def ready(self, timeout: float = 60.0) -> None:
        def started() -> bool:
            assert self.proc is not None
            if self.proc.returncode is not None:
                raise AssertionError(f"up exited with {self.proc.returncode}\n{self.output()}")
            return any(line.startswith("Dashboard: ") for line in self.out)

        await until(started, timeout, "tickstream up to print the dashboard URL")

    def state(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.state_dir / "up.json").read_text())
        return data

    def child(self, name: str) -> dict[str, Any]:
        child: dict[str, Any] = self.state()["children"][name]
        return child

    def started_pids(self) -> list[int]:
        return [int(entry["pid"]) for entry in self.state()["started_pids"]]

    def printed(self, prefix: str) -> str:
        """The rest of the first stdout line starting with ``prefix`` (``"Redis: "``, ...)."""
        line = next((line for line in self.out if line.startswith(prefix)), None)
        assert line is not None, f"no line starting with {prefix!r}\n{self.output()}"
        return line.removeprefix(prefix)

    async def wait(self, timeout: float = 60.0) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait(self._readers, timeout=5)
        return code

    async def stop(self, sig: int = signal.SIGINT, timeout: float = 60.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await self.wait(timeout)

    async def cleanup(self) -> None:
        """Whatever happened in the test, leave nothing running that this stack started."""
        pids: list[int] = []
        with contextlib.suppress(OSError, ValueError, KeyError):
            pids = self.started_pids()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), 40)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for task in self._readers:
            task.cancel()
