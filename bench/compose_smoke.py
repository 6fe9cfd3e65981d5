"""Drive a running compose stack: a client through HAProxy, one gateway killed, the client resumes.

    .venv/bin/python -m bench.compose_smoke --url http://127.0.0.1:PORT --project NAME

scripts/compose-smoke.sh brings the stack up under podman-compose and runs this against it
(docs/containers.md). Steps, each bounded in time:

1. ``/readyz`` answers 200 through HAProxy; every container's own healthcheck passes (run with
   ``podman healthcheck run``: podman runs none by itself without systemd).
2. A Python client (``shared.client``) subscribes to ``price_update`` through HAProxy and
   receives events.
3. The gateway container serving it (found by the node id's host name) is killed (SIGKILL).
4. The client reconnects through HAProxy to another gateway and receives more events.
5. Per symbol, the trade ids received are contiguous (none missing, none twice) and the offsets
   increase: the resume left no gap. Exit 0 when all hold, 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import itertools
import json
import logging
import re
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from shared.client import Event, Status, connect

log = logging.getLogger("compose_smoke")
LOOPBACK_URL = re.compile(r"http://(?:127\.\d{1,3}\.\d{1,3}\.\d{1,3}|localhost|\[::1\]):\d{1,5}")
PROJECT = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass
class Seen:
    """What the client received, and when the connection changed."""

    events: list[tuple[Event, float]] = field(default_factory=list)
    statuses: list[tuple[Status, float]] = field(default_factory=list)

    def sessions(self) -> list[str]:
        return [s.session or "" for s, _ in self.statuses if s.state == "connected"]


async def until(check: Callable[[], bool | Awaitable[bool]], timeout: float, what: str,
                interval: float = 0.05) -> None:
    """Poll ``check`` until it is true; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        ok = bool(await result) if inspect.isawaitable(result) else bool(result)
        if ok:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(interval)


def engine(args: list[str], timeout: float = 60) -> str:
    """Run a podman command; its stdout."""
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done.stdout


def containers(project: str) -> dict[str, dict[str, Any]]:
    """The project's running containers by name: ``podman inspect`` of each."""
    names = engine(["ps", "--filter", f"label=io.podman.compose.project={project}",
                    "--format", "{{.Names}}"]).split()
    if not names:
        return {}
    return {c["Name"]: c for c in json.loads(engine(["inspect", *names]))}


def service(container: dict[str, Any]) -> str:
    return str(container["Config"]["Labels"].get("com.docker.compose.service", ""))


async def wait_ready(url: str, timeout: float) -> None:
    async def ready() -> bool:
        try:
            async with httpx.AsyncClient(timeout=3) as client:
                return (await client.get(f"{url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    await until(ready, timeout, f"{url}/readyz through HAProxy", interval=0.5)


async def wait_healthy(project: str, timeout: float) -> list[str]:
    """Run every container's healthcheck until each passes; the names checked."""
    pending = {n for n, c in containers(project).items() if c["Config"].get("Healthcheck")}

    def check() -> bool:
        for name in sorted(pending):
            done = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True,
                                  text=True, timeout=30, check=False)
            if done.returncode == 0:
                pending.discard(name)
        return not pending

    checked = sorted(pending)
    try:
        await until(lambda: asyncio.to_thread(check), timeout, "every healthcheck", interval=1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}: still unhealthy: {sorted(pending)}") from None
    return checked


def running(project: str, name: str) -> bool:
    container = containers(project).get(name)
    return container is not None and bool(container["State"]["Running"])


def serving_gateway(project: str, node: str) -> str:
    """The gateway container whose host name starts the node id (``<host[:24]>-<pid>-<hex>``)."""
    host = node.rsplit("-", 2)[0]
    found = [n for n, c in containers(project).items()
             if service(c) == "gateway" and str(c["Config"]["Hostname"])[:24] == host]
    if len(found) != 1:
        raise AssertionError(f"no single gateway container has host name {host!r}: {found}")
    return found[0]


def gaps(seen: Seen) -> list[str]:
    """Problems in what was received: trade ids not contiguous, offsets not increasing."""
    problems = []
    by_symbol: dict[str, list[Event]] = defaultdict(list)
    for event, _ in seen.events:
        by_symbol[event.symbol or ""].append(event)
    for symbol, events in sorted(by_symbol.items()):
        ids = [int(e.data["trade_id"]) for e in events]
        if ids != list(range(ids[0], ids[0] + len(ids))):
            missing = sorted(set(range(ids[0], max(ids) + 1)) - set(ids))
            problems.append(f"{symbol}: trade ids not contiguous ({len(ids) - len(set(ids))} "
                            f"repeated, missing {missing[:10]} of {len(missing)})")
    positions = [e.position for e, _ in seen.events]
    if any(b <= a for a, b in itertools.pairwise(positions)):
        problems.append("offsets do not increase")
    return problems


async def drive(url: str, project: str, count: int, timeout: float) -> int:
    started = time.monotonic()
    await wait_ready(url, timeout)
    healthy = await wait_healthy(project, timeout)
    gateways = sorted(n for n, c in containers(project).items() if service(c) == "gateway")
    print(f"ready through HAProxy in {time.monotonic() - started:.1f} s; healthchecks pass: "
          f"{', '.join(healthy)}")
    if len(gateways) < 2:
        print(f"FAIL: {len(gateways)} gateway container(s) running, need 2 to survive a kill")
        return 1
    seen = Seen()
    ts = connect(url.replace("http://", "ws://", 1) + "/ws", reconnect_base=0.2, reconnect_cap=2.0)
    ts.on_status(lambda status: seen.statuses.append((status, time.monotonic())))
    async with ts:
        sub = await ts.subscribe("price_update")

        async def read() -> None:
            async for event in sub:
                seen.events.append((event, time.monotonic()))

        reader = asyncio.create_task(read())
        try:
            await until(lambda: len(seen.events) >= count, timeout, f"{count} events")
            node = ts.node or ""
            victim = serving_gateway(project, node)
            before = len(seen.events)
            killed_at = time.monotonic()
            engine(["kill", "--signal", "KILL", victim])
            print(f"{before} events from {node} ({victim}); killed {victim}")
            await until(lambda: not running(project, victim), 30, f"{victim} to be gone")
            await until(lambda: len(set(seen.sessions())) >= 2, timeout, "the client to reconnect")

            def since_reconnect() -> int:
                connected_at = [t for s, t in seen.statuses if s.state == "connected"][-1]
                return sum(1 for _, t in seen.events if t >= connected_at)

            await until(lambda: since_reconnect() >= count, timeout, f"{count} events after the reconnect")
        finally:
            reader.cancel()
    connected = [(s, t) for s, t in seen.statuses if s.state == "connected"]
    failures = sum(1 for s, _ in seen.statuses if s.state == "reconnecting")
    resumed, resumed_at = connected[-1]
    first = next(t for _, t in seen.events if t >= resumed_at)
    print(f"resumed on {resumed.node} after {failures} failed connection(s): connected "
          f"{resumed_at - killed_at:.2f} s and first event {first - killed_at:.2f} s after the kill; "
          f"{len(seen.events) - before} events since")
    problems = gaps(seen)
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        symbols = len({e.symbol for e, _ in seen.events})
        print(f"OK: {len(seen.events)} events over {symbols} symbols, trade ids contiguous "
              "across the kill")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compose_smoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="HAProxy's HTTP URL, http://127.0.0.1:PORT")
    parser.add_argument("--project", required=True, help="the compose project name")
    parser.add_argument("--events", type=int, default=50, help="events before and after the kill")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds for each step")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    if not LOOPBACK_URL.fullmatch(url):
        parser.error(f"--url must be http://<loopback address>:<port>, not {url!r}")
    if not PROJECT.fullmatch(args.project):
        parser.error(f"--project must be a compose project name ([a-z0-9_-], 1 to 63), not {args.project!r}")
    if not 1 <= args.events <= 100_000 or not 1 <= args.timeout <= 3600:
        parser.error("--events must be 1 to 100000 and --timeout 1 to 3600 seconds")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(drive(url, args.project, args.events, args.timeout))
    except (AssertionError, RuntimeError) as exc:
        print(f"FAIL: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
