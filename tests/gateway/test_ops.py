"""What an operator sees of a running gateway: workers, port 0, per-process metrics, logs.

Every gateway here is a real ``tickstream gateway`` process (or, for the heartbeat counter, a
real in-process uvicorn server) on 127.0.0.1; only the PIDs these tests started are signalled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis.asyncio
from prometheus_client import generate_latest
from websockets.asyncio.client import connect

from gateway.settings import GatewaySettings
from ingestor.metrics import IngestorMetrics
from shared.keys import Keys
from shared.settings import from_args
from tests.support.gateway import SECRET, running_gateway
from tests.support.raw_ws import DeafClient
from tests.support.redis_server import free_port
from tests.support.waiting import until
from tickstream.cli import build_parser, main

PROCESS_METRICS = ("process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds",
                   "process_start_time_seconds")


class GatewayCli:
    """``tickstream gateway ARGS`` in its own process, its log (stderr) in a file."""

    def __init__(self, redis_url: str, *args: str, **env: str) -> None:
        self.args = args
        self.env = dict(os.environ, REDIS_URL=redis_url, HOST="127.0.0.1", JWT_SECRET=SECRET,
                        READER_BLOCK="0.2", LOG_LEVEL="INFO", **env)
        self.env.pop("PORT", None)
        self.log_path = Path(tempfile.mkdtemp(prefix="tickstream-ops-")) / "gateway.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "tickstream.cli", "gateway", *self.args],
                                         env=self.env, stdout=subprocess.DEVNULL, stderr=log)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def found(self, pattern: str, count: int = 1, timeout: float = 20) -> list[re.Match[str]]:
        """Wait until the log holds ``count`` matches of ``pattern`` (the process must live)."""
        def matches() -> list[re.Match[str]]:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}: {self.log()[-2000:]}")
            found = list(re.finditer(pattern, self.log(), re.MULTILINE))
            return found if len(found) >= count else []
        return await until(matches, timeout, f"{count} log lines matching {pattern!r}", interval=0.05)

    async def wait(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return await asyncio.wait_for(asyncio.to_thread(self.proc.wait), timeout)

    def worker_pids(self) -> list[int]:
        return [int(m) for m in re.findall(r"worker \d+: pid (\d+)", self.log())]

    async def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            await self.wait()
        for pid in self.worker_pids():  # they get SIGTERM when the parent dies; make sure
            if _alive(pid) and b"tickstream.cli" in _cmdline(pid):
                os.kill(pid, signal.SIGKILL)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.asynccontextmanager
async def gateway_cli(redis_url: str, *args: str, **env: str) -> Any:
    gw = GatewayCli(redis_url, *args, **env)
    gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def ready(port: int) -> None:
    async with httpx.AsyncClient() as http:
        async def ok() -> bool:
            try:
                return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == 200
            except httpx.TransportError:
                return False
        await until(ok, 20, f"/readyz on port {port}", interval=0.05)


async def welcome(port: int) -> dict[str, Any]:
    async with connect(f"ws://127.0.0.1:{port}/ws", close_timeout=2) as ws:
        message = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
    assert message["type"] == "welcome"
    return dict(message)


def sample(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in the scrape"
    return float(match.group(1))


@pytest.mark.parametrize("flag", [["--workers", "2"], ["--workers=2"]])
async def test_workers_2_runs_two_serving_processes_that_stop_on_sigterm(
    redis_url: str, flag: list[str]
) -> None:
    port = free_port()
    async with gateway_cli(redis_url, *flag, "--port", str(port), "--node", "ops") as gw:
        await gw.found(r"worker \d+: pid \d+", count=2)
        pids = gw.worker_pids()
        await ready(port)
        nodes: set[str] = set()
        for _ in range(60):  # every connection is new: the kernel spreads them over both workers
            nodes.add((await welcome(port))["node"])
            if len(nodes) == 2:
                break
        assert nodes == {"ops-w0", "ops-w1"}
        assert all(_alive(pid) for pid in pids) and os.getpid() not in pids
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        assert await gw.wait() == 0
        assert not any(_alive(pid) for pid in pids)  # reaped by the parent before it exited
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass


async def test_a_worker_that_dies_stops_the_gateway_with_its_status(redis_url: str) -> None:
    port = free_port()
    async with gateway_cli(redis_url, "--workers", "2", "--port", str(port)) as gw:
        await gw.found(r"worker \d+: pid \d+", count=2)
        await ready(port)
        first, second = gw.worker_pids()
        os.kill(first, signal.SIGKILL)
        assert await gw.wait() == 128 + signal.SIGKILL
        assert not _alive(second)
        assert f"worker 0 (pid {first}) exited with status 137; stopping the other workers" in gw.log()


async def test_port_0_is_bound_and_reported_in_the_log_and_the_health_key(redis_url: str) -> None:
    async with gateway_cli(redis_url, "--port", "0", "--node", "zero") as gw:
        match = (await gw.found(r"gateway zero listening on http://127\.0\.0\.1:(\d+)$"))[0]
        port = int(match.group(1))
        assert port != 0
        await ready(port)
        assert (await welcome(port))["node"] == "zero"
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            key = Keys().health("gateway", "zero")
            async def health_key() -> bytes | None:
                value = await client.get(key)
                return value if isinstance(value, bytes) else None
            health = await until(health_key, 10, "the health key")
        finally:
            await client.aclose()
        assert orjson.loads(health)["port"] == port
        async with httpx.AsyncClient() as http:  # the access log is off by default
            assert (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
        assert "GET /healthz" not in gw.log() and "GET /readyz" not in gw.log()


async def test_each_worker_is_scraped_as_itself_on_its_metrics_port(redis_url: str) -> None:
    async with gateway_cli(redis_url, "--workers", "2", "--port", "0", "--metrics-port", "0",
                           "--node", "m") as gw:
        lines = await gw.found(r"gateway (m-w\d) serves its metrics on (http://127\.0\.0\.1:\d+)/metrics$",
                               count=2)
        targets = {m.group(1): m.group(2) + "/metrics" for m in lines}
        port = int((await gw.found(r"2 workers listening on http://127\.0\.0\.1:(\d+)$"))[0].group(1))
        await ready(port)
        assert sorted(targets) == ["m-w0", "m-w1"]
        seen: dict[str, list[float]] = {node: [] for node in targets}
        connections = 24
        async with httpx.AsyncClient() as http:
            async def scrape_all() -> dict[str, str]:
                return {node: (await http.get(target)).text for node, target in targets.items()}

            for _ in range(connections):
                await welcome(port)  # each connection is sent one message: its welcome
                for node, text in (await scrape_all()).items():
                    assert f'tickstream_gateway_info{{node="{node}"}} 1.0' in text
                    seen[node].append(sample(text, "tickstream_messages_sent_total"))

            async def all_counted() -> bool:
                texts = await scrape_all()
                return sum(sample(t, "tickstream_messages_sent_total") for t in texts.values()) \
                    == connections
            await until(all_counted, 10, "every welcome counted by one worker")
            texts = await scrape_all()
            for node, values in seen.items():
                assert values == sorted(values), f"{node}'s counter went down: {values}"
                assert sample(texts[node], "tickstream_messages_sent_total") >= values[-1]
            assert all(values[-1] > 0 for values in seen.values())  # both served some
            for text in texts.values():
                for name in PROCESS_METRICS:
                    assert sample(text, name) > 0
                assert sample(text, "tickstream_max_connections") == 10000
            refused = await http.get(targets["m-w0"].replace("/metrics", "/healthz"))
            assert refused.status_code == 404  # the metrics port serves /metrics only


async def test_json_logs_name_node_and_conn_and_the_access_log_can_be_turned_on(
    redis_url: str,
) -> None:
    port = free_port()
    async with gateway_cli(redis_url, "--port", str(port), "--node", "js", "--access-log", "true",
                           LOG_FORMAT="json") as gw:
        await ready(port)
        hello = await welcome(port)
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"http://127.0.0.1:{port}/healthz?probe=1")).status_code == 200
        await gw.found(r'"msg":"disconnected')
        await gw.found(r'"path":"/healthz\?probe=1"')
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        assert await gw.wait() == 0
    lines = [orjson.loads(line) for line in gw.log().splitlines() if line.strip()]
    assert lines and all(isinstance(line, dict) and line["node"] == "js" for line in lines)
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    about_conn = [line for line in lines if line["msg"].startswith(("connected from", "disconnected"))]
    assert len(about_conn) == 2 and all(line["conn"] == hello["session"] for line in about_conn)
    assert all(line["conn"] == hello["session"] for line in lines if "conn" in line)
    listening = next(line for line in lines if line.get("event") == "listening")
    assert "conn" not in listening
    assert listening["port"] == port
    access = [line for line in lines if line.get("event") == "http_access"]
    assert {(a["method"], a["path"], a["status"]) for a in access} >= {("GET", "/healthz?probe=1", 200),
                                                                       ("GET", "/readyz", 200)}
    assert all(a["logger"] == "uvicorn.access" for a in access)


async def test_heartbeat_timeouts_are_counted_per_close(redis_url: str) -> None:
    async with running_gateway(redis_url, heartbeat_interval=1.0, heartbeat_timeout=1.0) as gw, \
            httpx.AsyncClient(base_url=gw.http) as http:
        before = (await http.get("/metrics")).text
        assert sample(before, "tickstream_heartbeat_timeouts_total") == 0
        codes = await asyncio.gather(*(DeafClient(gw.url).run_until_closed(timeout=10) for _ in range(2)))
        assert codes == [4001, 4001]
        after = (await http.get("/metrics")).text
        assert sample(after, "tickstream_heartbeat_timeouts_total") == 2
        assert sample(after, 'tickstream_connection_closes_total{code="4001"}') == 2
        assert "# TYPE tickstream_heartbeat_timeouts_total counter" in after


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--log-format", "xml"], {}, "--log-format: expected text or json, got 'xml'"),
    ([], {"LOG_FORMAT": "jsonl"}, "LOG_FORMAT: expected text or json, got 'jsonl'"),
    (["--access-log", "maybe"], {}, "--access-log: expected true or false, got 'maybe'"),
    (["--metrics-port", "9x"], {}, "--metrics-port: expected a port from 0 to 65535"),
    (["--metrics-port", "65536"], {}, "--metrics-port: expected a port from 0 to 65535"),
    (["--workers", "2", "--port", "9201", "--metrics-port", "9200"], {},
     "METRICS_PORT: 9200..9201 includes PORT 9201"),
    (["--workers", "0"], {}, "WORKERS: from 1 to 256"),
])
def test_bad_ops_settings_exit_2_with_one_line(
    args: list[str], env: dict[str, str], message: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["gateway", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("tickstream gateway: ") and message in err, err


def test_ops_settings_are_read_whole_from_flags_and_environment() -> None:
    parsed = build_parser().parse_args(["gateway", "--workers=3", "--metrics-port", "9300"])
    settings = from_args(GatewaySettings, parsed, environ={"LOG_FORMAT": " JSON ", "ACCESS_LOG": "on",
                                                            "PORT": "0"})
    assert (settings.workers, settings.metrics_port, settings.port) == (3, 9300, 0)
    assert (settings.log_format, settings.access_log) == ("json", True)
    defaults = from_args(GatewaySettings, None, environ={"METRICS_PORT": ""})
    assert (defaults.metrics_port, defaults.log_format, defaults.access_log) == (None, "text", False)


def test_a_taken_port_is_one_line_and_status_1() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "tickstream.cli", "gateway", "--workers", "2",
                               "--port", str(port)], capture_output=True, text=True, timeout=30,
                              check=False)
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"cannot listen on http://127.0.0.1:{port}: Address already in use")
    assert "Traceback" not in done.stderr and "worker" not in done.stderr


def test_the_ingestor_registry_has_process_metrics() -> None:
    text = generate_latest(IngestorMetrics().registry).decode()
    for name in PROCESS_METRICS:
        assert sample(text, name) > 0
