"""A real ``redis-server`` on a free loopback port, owned by the test (or benchmark) process.

Only the process this object started is ever signalled, by its PID.
It can also run a Sentinel (``config_file`` plus ``sentinel=True``): see ``redis_topology.py``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    def __init__(self, port: int | None = None, *, appendonly: bool = False,
                 appendfsync: str = "everysec", extra: list[str] | None = None,
                 config_file: Path | None = None, sentinel: bool = False) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run `make test` (it installs it)")
        self.binary = binary
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tickstream-redis-"))
        self.appendonly = appendonly
        self.appendfsync = appendfsync
        self.extra = extra or []
        self.config_file = config_file  # passed first: Sentinel needs one (it rewrites it)
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None
        self.paused = False

    @property
    def running(self) -> bool:
        """Whether the process we started is alive (it may be paused)."""
        return self.proc is not None and self.proc.poll() is None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        leading = [str(self.config_file)] if self.config_file is not None else []
        if self.sentinel:
            leading.append("--sentinel")
        args = [
            self.binary, *leading, "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.dir), "--save", "", "--protected-mode", "yes",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", self.appendfsync, "--daemonize", "no", "--loglevel", "warning",
            *self.extra,
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.paused = False
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        try:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not answer on port {self.port}")
                time.sleep(0.02)  # polling a condition, not synchronising on time
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            if self.paused and sig != signal.SIGKILL:
                os.kill(self.proc.pid, signal.SIGCONT)  # a stopped process acts on SIGTERM once continued
            self.proc.wait(timeout)
        self.proc = None
        self.paused = False

    def pause(self) -> None:
        """SIGSTOP the process: it stays up but answers nothing (a stalled node)."""
        if self.proc is None or self.proc.poll() is not None:
            raise RuntimeError(f"redis-server on port {self.port} is not running")
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT a process paused by ``pause``."""
        if self.proc is not None and self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
        self.paused = False

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
