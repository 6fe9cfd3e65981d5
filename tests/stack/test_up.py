"""``tickstream up`` end to end: real processes (redis-server, simulator, ingestor, gateways)
on loopback, driven the way a developer drives it (flags, Ctrl-C), observed from outside."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import redis.asyncio

from tests.stack.support import ROOT, UpStack, alive
from tests.support.gateway import Client, closed_with
from tests.support.redis_server import free_port
from tests.support.waiting import until

pytestmark = pytest.mark.integration


async def readyz_nodes(base: str, attempts: int = 40) -> set[str]:
    """The nodes that answered /readyz 200 on the shared port (fresh connection each time)."""
    nodes = set()
    async with httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0)) as client:
        for _ in range(attempts):
            response = await client.get(f"{base}/readyz", headers={"Connection": "close"})
            if response.status_code == 200:
                nodes.add(response.json()["node"])
    return nodes


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UpStack]:
    """One `tickstream up --simulate` shared by the read-only tests of this module."""
    up = UpStack(tmp_path_factory.mktemp("up") / "state")
    await up.start()
    try:
        await up.ready()
        yield up
    finally:
        await up.cleanup()


@pytest.mark.asyncio(loop_scope="module")
async def test_starts_everything_and_prints_the_dashboard_and_a_status_table(stack: UpStack) -> None:
    assert f"Dashboard: http://127.0.0.1:{stack.port}/" in stack.out
    children = stack.state()["children"]
    assert set(children) == {"redis", "simulator", "ingestor", "gateway-1", "gateway-2"}
    assert all(c["ready"] for c in children.values()), children
    table = "\n".join(stack.out)
    for name, child in children.items():
        assert any(line.split()[:3] == [name, str(child["pid"]), "ready"]
                   for line in stack.out), table
    # Redis is private, on its own port, with AOF persistence in the state folder.
    client = redis.asyncio.Redis(port=stack.redis_port)
    try:
        config = await client.config_get("appendonly")
        assert config == {"appendonly": "yes"}
        assert (await client.config_get("dir"))["dir"] == str(stack.state_dir / "redis")
    finally:
        await client.aclose()


@pytest.mark.asyncio(loop_scope="module")
async def test_serves_the_dashboard_on_the_shared_port(stack: UpStack) -> None:
    async with httpx.AsyncClient() as client:
        page = await client.get(f"{stack.http}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>Tickstream</title>" in page.text
    # Both gateways answer on the one port, each with its own node id.
    nodes = await readyz_nodes(stack.http)
    assert len(nodes) == 2 and all(n.endswith(("-gw1", "-gw2")) for n in nodes), nodes


@pytest.mark.asyncio(loop_scope="module")
async def test_a_websocket_client_receives_price_updates_from_the_simulator(stack: UpStack) -> None:
    client = await Client.open(stack.ws_url)
    try:
        reply = await client.subscribe("price_update")
        assert reply["event_type"] == "price_update"
        events = await client.events_until(3, timeout=30)
    finally:
        await client.close()
    for event in events[:3]:
        assert event["event_type"] == "price_update"
        assert event["symbol"] in ("BTCUSDT", "ETHUSDT")
        assert event["data"]["source"] == "binance"
        assert event["data"]["price"] > 0


@pytest.mark.asyncio(loop_scope="module")
async def test_a_second_up_on_the_same_state_folder_is_refused(stack: UpStack) -> None:
    other = UpStack(stack.state_dir)
    await other.start()
    code = await other.wait(30)
    assert code == 1, other.output()
    assert other.err == [f"tickstream up: another `tickstream up` (pid {stack.state()['pid']}) is "
                         f"using the state folder {stack.state_dir}; stop it or use --state-dir"]


@pytest.mark.asyncio(loop_scope="module")
async def test_a_killed_gateway_is_restarted_and_reported(stack: UpStack) -> None:
    old = stack.child("gateway-1")["pid"]
    os.kill(old, signal.SIGKILL)
    await until(lambda: stack.child("gateway-1")["pid"] != old and stack.child("gateway-1")["ready"],
                30, "gateway-1 restarted and ready")
    new = stack.child("gateway-1")
    assert new["restarts"] == 1 and new["pids"] == [old, new["pid"]]
    assert not alive(old)
    await until(lambda: any(f"gateway-1 is ready again (pid {new['pid']})" in line
                            for line in stack.err), 10, "the restart to be reported")
    assert any(f"gateway-1 (pid {old}) was killed by SIGKILL; restarting it in" in line
               for line in stack.err), stack.output()
    assert len(await readyz_nodes(stack.http)) == 2


async def healthcheck(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tickstream.healthcheck", *args, cwd=ROOT,
        env={**os.environ, **(env or {})}, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


@pytest.mark.asyncio(loop_scope="module")
async def test_the_container_healthcheck_command(stack: UpStack) -> None:
    assert await healthcheck(f"{stack.http}/readyz") == (0, "")
    assert await healthcheck(f"http://127.0.0.1:{stack.ingestor_port}/healthz") == (0, "")
    assert await healthcheck(f"http://127.0.0.1:{stack.simulator_port}/api/v3/ping") == (0, "")
    assert (await healthcheck(env={"PORT": str(stack.port)}))[0] == 0  # default: $PORT/readyz
    assert await healthcheck(f"{stack.http}/nope") == (1, f"healthcheck {stack.http}/nope: HTTP 404\n")
    code, err = await healthcheck(f"http://127.0.0.1:{free_port()}/readyz")
    assert code == 1 and "Connection refused" in err


async def test_ctrl_c_closes_clients_with_1012_and_stops_everything_in_order(tmp_path: Path) -> None:
    up = UpStack(tmp_path / "state")
    await up.start()
    try:
        await up.ready()
        client = await Client.open(up.ws_url)
        await client.subscribe("price_update")
        await client.events_until(1, timeout=30)
        pids = up.started_pids()
        assert len(pids) == 5
        # While it runs: the settings `tickstream publish/tail/token` use, private to the user.
        stack_file, secret_file = up.state_dir / "stack.json", up.state_dir / "jwt_secret"
        settings = json.loads(stack_file.read_text())["settings"]
        assert settings == {"REDIS_URL": f"redis://127.0.0.1:{up.redis_port}/0",
                            "TICKSTREAM_URL": up.ws_url, "JWT_SECRET": str(secret_file)}
        assert stat.S_IMODE(stack_file.stat().st_mode) == stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert up.printed("Other tools: export ") == (
            f"REDIS_URL=redis://127.0.0.1:{up.redis_port}/0 TICKSTREAM_URL={up.ws_url} "
            f'JWT_SECRET="$(cat {secret_file})"')
        up.proc.send_signal(signal.SIGINT)  # type: ignore[union-attr]
        assert await closed_with(client.ws, timeout=30) == 1012
        code = await up.wait(60)
        assert code == 0, up.output()
        assert [p for p in pids if alive(p)] == []
        state = up.state()
        assert state["running"] is False
        assert {c["state"] for c in state["children"].values()} == {"stopped"}
        assert {c["last_exit"] for c in state["children"].values()} == {0}, state
        assert up.err[-1] == "tickstream up: stopped"
        assert not stack_file.exists() and secret_file.exists()  # the secret is kept for next time
        assert "Traceback" not in up.output(last=10_000)
        # In order: gateways first, then the ingestor, the simulator, Redis last.
        exited = {name: c["exited_at"] for name, c in state["children"].items()}
        assert max(exited["gateway-1"], exited["gateway-2"]) <= exited["ingestor"]
        assert exited["ingestor"] <= exited["simulator"] <= exited["redis"]
        for port in (up.port, up.redis_port, up.ingestor_port, up.simulator_port):
            with socket.socket() as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
                sock.bind(("127.0.0.1", port))  # nobody listens there any more
    finally:
        await up.cleanup()


async def test_with_redis_url_no_redis_is_started_and_sigterm_stops_it(
        tmp_path: Path, redis_url: str) -> None:
    up = UpStack(tmp_path / "state", "--gateways", "1",
                 env={"REDIS_URL": redis_url, "JWT_SECRET": "given-secret-0123456789abcdefghijkl"})
    await up.start()
    try:
        await up.ready()
        assert set(up.state()["children"]) == {"simulator", "ingestor", "gateway-1"}
        # A given JWT_SECRET is neither kept nor written down, and no token is printed with it.
        assert not (up.state_dir / "jwt_secret").exists()
        assert json.loads((up.state_dir / "stack.json").read_text())["settings"] == {
            "REDIS_URL": redis_url, "TICKSTREAM_URL": up.ws_url}
        assert not any("token (" in line or "eyJ" in line for line in up.out), up.output()
        assert any(line.split()[:3] == ["redis", "-", "external"] for line in up.out), up.output()
        assert not (up.state_dir / "redis").exists()
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            await until(lambda: client.xlen("tickstream:{price_update}:stream"), 30,
                        "events in the given Redis")
        finally:
            await client.aclose()
        pids = up.started_pids()
        assert await up.stop(signal.SIGTERM) == 0, up.output()
        assert [p for p in pids if alive(p)] == []
    finally:
        await up.cleanup()


async def test_killing_up_itself_leaves_no_stray_process(tmp_path: Path) -> None:
    up = UpStack(tmp_path / "state", "--gateways", "1")
    await up.start()
    try:
        await up.ready()
        pids = up.started_pids()
        assert up.proc is not None
        up.proc.kill()  # SIGKILL: no chance to clean up; the children must go by themselves
        await up.wait(10)
        await until(lambda: not any(alive(p) for p in pids), 30, "every child to exit")
    finally:
        await up.cleanup()


async def test_a_child_configuration_error_stops_the_stack_with_status_2(tmp_path: Path) -> None:
    # The simulator lists only BTCUSDT, so the ingestor refuses ETHUSDT (exit 2): no restart loop.
    up = UpStack(tmp_path / "state", "--symbols", "BTCUSDT,ETHUSDT",
                 env={"SIMULATOR_SYMBOLS": "BTCUSDT"})
    await up.start()
    try:
        code = await up.wait(60)
        assert code == 2, up.output()
        assert any("ETHUSDT is not listed" in line for line in up.err), up.output()
        assert any(line.startswith("tickstream up: ingestor (pid ") and "exited with status 2: a "
                   "configuration error, not restarting it" in line for line in up.err), up.output()
        assert [p for p in up.started_pids() if alive(p)] == []
    finally:
        await up.cleanup()


def run_up(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    import subprocess

    base = {k: v for k, v in os.environ.items() if not k.startswith("TICKSTREAM_")
            and k not in ("REDIS_URL", "PORT", "HOST")}
    proc = subprocess.run([sys.executable, "-m", "tickstream.cli", "up", *args], cwd=ROOT,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout, proc.stderr


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--gateways", "0"], {}, "TICKSTREAM_GATEWAYS: expected 1 to 64 gateways"),
    (["--port", "70000"], {}, "PORT: 70000 is not a TCP port"),
    (["--ready-timeout", "soon"], {}, "--ready-timeout: expected a duration"),
    (["--redis-url", "http://x"], {}, "REDIS_URL: expected redis://, rediss:// or unix://"),
    ([], {"TICKSTREAM_SIMULATE": "maybe"}, "TICKSTREAM_SIMULATE: expected true or false"),
    ([], {"JWT_SECRET": "a", "JWT_PUBLIC_KEY": "b"}, "set JWT_SECRET or JWT_PUBLIC_KEY, not both"),
    (["--simulate", "--symbols", "BTC-USDT"], {}, "SYMBOLS: "),
    ([], {"HEARTBEAT_INTERVAL": "often"}, "HEARTBEAT_INTERVAL: expected a duration"),
])
def test_bad_configuration_is_one_line_and_status_2(
        tmp_path: Path, args: list[str], env: dict[str, str], message: str) -> None:
    code, out, err = run_up("--state-dir", str(tmp_path), "--port", str(free_port()), *args, env=env)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tickstream up: configuration error: {message}"), err
    assert out == ""
    assert not (tmp_path / "up.json").exists()  # nothing was started


def test_a_port_in_use_is_one_line_and_status_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, _, err = run_up("--state-dir", str(tmp_path), "--port", str(port))
    assert code == 2
    assert err.strip() == (f"tickstream up: configuration error: PORT: port {port} on 127.0.0.1 is in "
                           "use (another `tickstream up` or gateway?); choose another with --port")


def test_help_lists_every_flag() -> None:
    code, out, _ = run_up("--help")
    assert code == 0
    for flag in ("--simulate", "--gateways", "--port", "--host", "--redis-url", "--redis-port",
                 "--ingestor-port", "--simulator-port", "--state-dir", "--symbols", "--log-level",
                 "--ready-timeout", "--stop-timeout", "--redis-server"):
        assert flag in out


async def test_redis_url_unreachable_is_reported_and_nothing_stays(tmp_path: Path) -> None:
    up = UpStack(tmp_path / "state", env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    await up.start()
    try:
        assert await up.wait(30) == 1, up.output()
        assert any("cannot reach REDIS_URL redis://127.0.0.1:" in line for line in up.err), up.output()
        assert up.state()["children"] == {}
    finally:
        await up.cleanup()

