"""The README's commands, copied out of it and run as printed against ``tickstream up --simulate``.

The block after the ``<!-- tested: demo`` marker is run by bash, in a folder whose ``.state`` is
the stack's state folder (where ``make demo`` leaves it), with the virtualenv's ``bin`` first on
the ``PATH`` (what ``source .venv/bin/activate`` does) and no Tickstream variable set. The one
substitution is the one the README asks for: the gateway port, 8080 there, a free port here.
The lines ``up`` itself prints for the user (the ``export``, the ``curl`` and the ``tail`` lines)
are run as printed too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.stack.support import ROOT, UpStack
from tests.support.waiting import until

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("curl") is None, reason="the README's commands use curl")]

MARKER = "<!-- tested: demo"
COMMAND_TIMEOUT = 45.0
OFFSET = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")


def readme_block(readme: str) -> str:
    """The first ```sh block after the marker."""
    start = readme.index(MARKER)
    found = re.compile(r"^```sh\n(.*?)^```$", re.S | re.M).search(readme, start)
    assert found is not None, "no ```sh block after the marker"
    return found.group(1)


def user_env() -> dict[str, str]:
    """A shell as a new user has it: the venv activated, no Tickstream setting exported."""
    drop = ("REDIS_URL", "KEY_PREFIX", "JWT_SECRET", "JWT_PUBLIC_KEY", "JWT_PRIVATE_KEY",
            "JWT_AUDIENCE", "JWT_ISSUER", "PORT", "HOST")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TICKSTREAM_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


async def shell(script: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``script`` with bash (stop at the first failure); kill it if it overstays."""
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", script, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), COMMAND_TIMEOUT)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the bash this test started
        await proc.wait()
        raise AssertionError(f"timed out after {COMMAND_TIMEOUT} s:\n{script}") from None
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def demo(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[UpStack]:
    """``tickstream up --simulate`` with its state in ``<folder>/.state``, where make demo keeps it."""
    folder = tmp_path_factory.mktemp("demo")
    up = UpStack(folder / ".state", "--gateways", "1")
    await up.start()
    try:
        await up.ready()
        yield up
    finally:
        await up.cleanup()


def json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


@pytest.mark.asyncio(loop_scope="module")
async def test_the_readme_block_runs_as_printed(demo: UpStack) -> None:
    block = readme_block((ROOT / "README.md").read_text())
    assert "127.0.0.1:8080" in block  # the port the README says to replace
    script = block.replace("127.0.0.1:8080", f"127.0.0.1:{demo.port}")
    code, out, err = await shell(script, demo.state_dir.parent, user_env())
    assert code == 0, f"{out}\n{err}"
    lines = out.splitlines()
    # tickstream publish: the offset; tail --last 1: that very event.
    assert OFFSET.fullmatch(lines[0]), out
    events = json_lines(out)
    signal_event = next(e for e in events if e.get("event_type") == "signal_generated")
    assert signal_event["offset"] == lines[0] and signal_event["data"]["strategy"] == "breakout"
    prices = [e for e in events if e.get("event_type") == "price_update"]
    assert len(prices) == 3 and {p["symbol"] for p in prices} == {"BTCUSDT"}, out
    # curl: POST /api/publish accepted the minted publisher token; alice's tail got the event.
    reply = next(e for e in events if "offsets" in e)
    assert reply["offsets"] == [reply["offset"]] and OFFSET.fullmatch(reply["offset"])
    trade = next(e for e in events if e.get("event_type") == "trade_executed")
    assert trade["offset"] == reply["offset"] and trade["data"]["trade_id"] == "T-1"
    # Each command said where its settings came from.
    assert demo.proc is not None
    for command in ("publish", "tail", "token"):
        assert f"tickstream {command}: using the running `tickstream up` (pid {demo.proc.pid}" in err, err


@pytest.mark.asyncio(loop_scope="module")
async def test_the_lines_up_prints_work_as_printed(demo: UpStack, tmp_path: Path) -> None:
    env = user_env()
    # The export line, from a folder without .state: publish and mint with what it sets.
    export = "export " + demo.printed("Other tools: export ")
    code, out, err = await shell(f"{export}\ntickstream publish readme_check '{{\"n\":1}}'\n"
                                 "tickstream token bob --role publisher", tmp_path, env)
    assert code == 0, err
    offset, token = out.splitlines()
    assert OFFSET.fullmatch(offset) and token.count(".") == 2
    assert "using the running" not in err  # everything came from the exported variables
    # The curl line: a private trade for alice over HTTP with the printed publisher token.
    code, out, err = await shell(demo.printed("Publish over HTTP: "), tmp_path, env)
    assert code == 0, err
    published = json.loads(out)["offset"]
    # The tail line with alice's printed token receives it (then Ctrl-C, as a user would).
    argv = shlex.split(demo.printed("Alice's private events: "))
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=tmp_path, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    received: list[dict[str, Any]] = []

    async def read() -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            received.append(json.loads(line))

    reader = asyncio.create_task(read())
    try:
        await until(lambda: any(e["offset"] == published for e in received), 30,
                    "the tail line to print the published trade")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 15)
        await asyncio.wait_for(reader, 5)
    assert code == 0
    assert all(e["event_type"] == "trade_executed" for e in received)
