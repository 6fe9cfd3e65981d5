"""deploy/haproxy.cfg in front of real gateways: WebSockets through the load balancer.

The config is the repository's, with only what Docker provides replaced (the DNS resolver and
the ``gateway`` host name become the loopback port of ``tickstream up``'s gateways). Skipped
when ``haproxy`` is not installed (``apt-get install haproxy``).
"""

from __future__ import annotations

import asyncio
import re
import shutil
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.stack.support import UpStack
from tests.support.gateway import Client, closed_with
from tests.support.redis_server import free_port
from tests.support.waiting import until

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed"),
]

ROOT = Path(__file__).resolve().parents[2]


def local_config(gateway_port: int, listen_port: int) -> str:
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    text = re.sub(r"^resolvers docker\n(?:[ \t]+.*\n|[ \t]*\n)*", "", text, flags=re.M)
    text = re.sub(r"^(\s*)bind :8080$", rf"\1bind 127.0.0.1:{listen_port}", text, flags=re.M)
    text, count = re.subn(r"^(\s*)server-template \S+ \S+ gateway:8080 (.*?) resolvers docker "
                          r"init-addr none$", rf"\1server gateway 127.0.0.1:{gateway_port} \2",
                          text, flags=re.M)
    assert count == 1, "the server-template line changed: update this test"
    return text


@pytest.fixture
async def behind_haproxy(tmp_path: Path) -> AsyncIterator[tuple[UpStack, int]]:
    up = UpStack(tmp_path / "state")
    await up.start()
    lb_port = free_port()
    config = tmp_path / "haproxy.cfg"
    config.write_text(local_config(up.port, lb_port))
    check = await asyncio.create_subprocess_exec("haproxy", "-c", "-f", str(config),
                                                 stdout=asyncio.subprocess.PIPE,
                                                 stderr=asyncio.subprocess.STDOUT)
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()
    haproxy = await asyncio.create_subprocess_exec(
        "haproxy", "-db", "-f", str(config), stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    try:
        await up.ready()

        async def lb_ready() -> bool:
            async with httpx.AsyncClient() as client:
                try:
                    return (await client.get(f"http://127.0.0.1:{lb_port}/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

        await until(lb_ready, 30, "HAProxy to route to the gateways")
        yield up, lb_port
    finally:
        if haproxy.returncode is None:
            haproxy.send_signal(signal.SIGTERM)
            await asyncio.wait_for(haproxy.wait(), 10)
        await up.cleanup()


async def test_websocket_events_and_the_1012_close_go_through_haproxy(
        behind_haproxy: tuple[UpStack, int]) -> None:
    up, lb_port = behind_haproxy
    async with httpx.AsyncClient() as client:
        page = await client.get(f"http://127.0.0.1:{lb_port}/")
    assert page.status_code == 200 and "<title>Tickstream</title>" in page.text
    ws = await Client.open(f"ws://127.0.0.1:{lb_port}/ws")
    await ws.subscribe("price_update")
    events = await ws.events_until(2, timeout=30)
    assert events[0]["event_type"] == "price_update"
    # Stopping the stack: the gateway's 1012 reaches the client through the load balancer.
    assert up.proc is not None
    up.proc.send_signal(signal.SIGTERM)
    assert await closed_with(ws.ws, timeout=30) == 1012
    assert await up.wait(60) == 0
