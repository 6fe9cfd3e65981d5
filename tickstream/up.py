"""``tickstream up``: the whole stack on one machine, supervised by one process.

What it starts, in this order:

1. a private Redis (unless ``REDIS_URL`` is given), bound to 127.0.0.1, with ``appendonly yes``,
   its data in the state folder (``--state-dir``/``TICKSTREAM_STATE``, default ``./.state``):
   with ``--redis single`` (the default) one ``redis-server`` on ``--redis-port`` (default 6399;
   a free one if that is taken), data in ``<state>/redis``; with ``--redis cluster`` a 6-node
   Redis Cluster, with ``--redis sentinel`` a primary, 2 replicas and 3 Sentinels, on consecutive
   ports from ``--redis-port`` (see :mod:`tickstream.stack_redis`);
2. with ``--simulate``, ``tickstream simulator`` (loopback, ``--simulator-port``, default 9443);
3. N gateways (``--gateways``, default 2), each ``tickstream gateway --workers 1`` with its own
   node id, all on one port (``--port``/``PORT``, default 8080) thanks to SO_REUSEPORT;
4. ``tickstream ingestor`` (HTTP endpoints on ``--ingestor-port``, default 9100), pointed at the
   simulator with ``--simulate``, at Binance otherwise.

It waits until each is ready (Redis answers PING, and a cluster or Sentinel setup serves; the
simulator's ``/api/v3/ping``; the ingestor's ``/readyz``; for gateways, ``/readyz`` on the
shared port answered by that node), writes ``<state>/stack.json`` (the settings ``tickstream
publish``, ``tail`` and ``token`` take from the running stack, :mod:`tickstream.stackfile`),
prints a status table, the dashboard URL, the ``REDIS_URL`` the children use, an ``export``
line, and with the kept JWT secret two tokens and a ``curl`` and a ``tail`` line to try them;
then it supervises: a child that dies is restarted with backoff.
SIGINT or SIGTERM stops gateways (SIGTERM: clients get 1012), then the ingestor, the simulator
and Redis (sentinels before data nodes), each with a bounded wait before SIGKILL. The PIDs it
started are kept in ``<state>/up.json``. Settings the children read (``REDIS_URL``,
``SYMBOLS``, ``JWT_SECRET``, ``LOG_LEVEL``, ...) pass to them through the environment;
``HOST``/``PORT``/``NODE_ID`` are set per child by flags. Without ``JWT_SECRET`` or
``JWT_PUBLIC_KEY``, the gateways get a secret made once and kept in ``<state>/jwt_secret``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import re
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import IO

from shared.errors import TickstreamError
from shared.settings import Secret
from tickstream import stackfile
from tickstream.stack_plan import (
    LOCK_FILE,
    STATE_FILE,
    Plan,
    UpSettings,
    build_plan,
    parse_bool,
    state_folder,
)
from tickstream.stack_redis import form_cluster, redis_specs, roles, wait_sentinels
from tickstream.supervisor import ChildSpec, Supervisor


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from shared.settings import add_arguments

    parser.description = (
        "Run the whole stack on this machine: a private Redis (one server, a Redis Cluster or "
        "Sentinel with --redis; unless REDIS_URL is given), the ingestor (live Binance, or the "
        "local simulator with --simulate) and N gateways sharing one port. Ctrl-C stops "
        "everything in order."
    )
    parser.epilog = (
        "Every other setting of the components (JWT_SECRET, KEY_PREFIX, RETENTION, "
        "HEARTBEAT_INTERVAL, SIMULATOR_RATE, ...) is read by them from the environment."
    )
    parser.add_argument(
        "--simulate", action="store_const", const=True, default=None,
        help="start `tickstream simulator` and point the ingestor at it (offline) "
             "[env TICKSTREAM_SIMULATE]",
    )
    add_arguments(parser, UpSettings)


class HttpProbes:
    """HTTP readiness probes over one client that never reuses a connection.

    A fresh connection per request matters for the gateways: the kernel spreads the connections
    to a SO_REUSEPORT port over the processes listening on it, so polling ``/readyz`` on the
    shared port soon hears from every gateway, each answer naming its node.
    """

    def __init__(self) -> None:
        import httpx

        self.client = httpx.AsyncClient(
            timeout=1.0, limits=httpx.Limits(max_keepalive_connections=0), trust_env=False,
            headers={"Connection": "close"},
        )
        self.nodes_ready: dict[str, float] = {}

    async def ok(self, url: str, since: float = 0.0) -> bool:
        return (await self.client.get(url)).status_code == 200

    def gateway(self, url: str, node: str) -> Callable[[float], Awaitable[bool]]:
        async def probe(since: float) -> bool:
            response = await self.client.get(url)
            answered = time.monotonic()
            if response.status_code == 200:
                with contextlib.suppress(ValueError, AttributeError):
                    self.nodes_ready[str(response.json().get("node"))] = answered
            return self.nodes_ready.get(node, -1.0) > since

        return probe

    async def aclose(self) -> None:
        await self.client.aclose()


# -- running -----------------------------------------------------------------------------------


def _lock_state(state_dir: Path) -> IO[str]:
    """Hold an exclusive lock on the state folder for as long as ``up`` runs."""
    handle = open(state_dir / LOCK_FILE, "a+")  # noqa: SIM115 - held until exit
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        other = "?"
        with contextlib.suppress(OSError, ValueError, KeyError):
            other = str(json.loads((state_dir / STATE_FILE).read_text())["pid"])
        raise TickstreamError(f"another `tickstream up` (pid {other}) is using the state folder "
                              f"{state_dir}; stop it or use --state-dir") from None
    return handle


def _specs(plan: Plan, probes: HttpProbes) -> dict[str, ChildSpec]:
    py = [sys.executable, "-m", "tickstream.cli"]
    env = plan.env
    specs = redis_specs(plan)
    if plan.simulate:
        sim = [*py, "simulator", "--host", "127.0.0.1", "--port", str(plan.simulator_port)]
        if plan.simulator_symbols:
            sim += ["--symbols", ",".join(plan.simulator_symbols)]
        sim_url = f"http://127.0.0.1:{plan.simulator_port}"
        specs["simulator"] = ChildSpec(
            "simulator", sim, env, lambda since: probes.ok(f"{sim_url}/api/v3/ping"), stage=2,
            stop_timeout=plan.settings.stop_timeout, address=sim_url, note="Binance-compatible, offline",
        )
    # One ingestor, or a group (--ingestors N): same SYMBOLS, one lease; the first to take it
    # publishes, the others stand by.
    members = [("ingestor", plan.ingestor_node, plan.ingestor_port)]
    members += [(f"ingestor-{i}", node, port)
                for i, (node, port) in enumerate(plan.standby_ingestors, 2)]
    for name, node, port in members:
        ingestor = [*py, "ingestor", "--host", "127.0.0.1", "--port", str(port), "--node", node]
        if plan.simulate:
            ingestor += ["--binance-ws-url", f"ws://127.0.0.1:{plan.simulator_port}",
                         "--binance-rest-url", f"http://127.0.0.1:{plan.simulator_port}"]
        ingestor_url = f"http://127.0.0.1:{port}"
        specs[name] = ChildSpec(
            name, ingestor, env, partial(probes.ok, f"{ingestor_url}/readyz"), stage=1,
            stop_timeout=plan.ingestor_stop, address=f"{ingestor_url}/readyz",
            note=("simulator" if plan.simulate else "Binance") + (" (group)" if len(members) > 1 else ""),
        )
    readyz = f"{plan.base_url}/readyz"
    metrics_base = _metrics_base(env)
    for index, node in enumerate(plan.gateway_nodes, 1):
        # A fixed METRICS_PORT is a base: gateway i serves its own /metrics on base + i - 1.
        metrics = [] if not metrics_base else ["--metrics-port", str(metrics_base + index - 1)]
        specs[f"gateway-{index}"] = ChildSpec(
            f"gateway-{index}",
            [*py, "gateway", "--workers", "1", "--host", plan.settings.host, "--port", str(plan.port),
             "--node", node, *metrics],
            env, probes.gateway(readyz, node), stage=0, stop_timeout=plan.gateway_stop,
            address=plan.base_url, note=f"node {node}",
        )
    return specs


def _metrics_base(env: Mapping[str, str]) -> int | None:
    """The gateways' METRICS_PORT when it is a fixed port (0 or empty need no assignment)."""
    from gateway.settings import parse_metrics_port

    return parse_metrics_port(env.get("METRICS_PORT", ""))


def _table(sup: Supervisor, plan: Plan, notes: dict[str, str] | None = None) -> str:
    rows = [("NAME", "PID", "STATUS", "ADDRESS", "")]
    if not plan.private_redis:
        rows.append(("redis", "-", "external", _shown_url(plan), ""))
    for child in sorted(sup.children.values(), key=lambda c: -c.spec.stage):
        status = "ready" if child.ready else "restarting" if child.state == "restarting" else "not ready"
        note = ", ".join(n for n in ((notes or {}).get(child.name, ""), child.spec.note) if n)
        rows.append((child.name, str(child.pid or "-"), status, child.spec.address, note))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  " + "  ".join(cell.ljust(widths[i]) if i < 4 else cell for i, cell in enumerate(row)).rstrip()
        for row in rows
    )


def _shown_url(plan: Plan) -> str:
    """``REDIS_URL`` as printed and recorded: a given one without its passwords."""
    if plan.private_redis:
        return plan.redis_url
    return re.sub(r"([?&]sentinel_password=)[^&]*", r"\1***", Secret(plan.redis_url).redacted())


def _redis_line(plan: Plan) -> str:
    what = plan.redis.describe() if plan.redis is not None else "external"
    return f"Redis: {_shown_url(plan)} ({what})"


def _ws_url(plan: Plan) -> str:
    return f"{plan.base_url.replace('http', 'ws', 1)}/ws"


def client_settings(plan: Plan) -> dict[str, str]:
    """What the stack file tells ``tickstream publish``, ``tail`` and ``token``."""
    settings = {"REDIS_URL": plan.redis_url, "TICKSTREAM_URL": _ws_url(plan)}
    for name in ("KEY_PREFIX", "JWT_AUDIENCE", "JWT_ISSUER"):
        if plan.env.get(name):
            settings[name] = plan.env[name]
    if plan.jwt_secret_file is not None:
        settings["JWT_SECRET"] = str(plan.jwt_secret_file)
    return settings


DEMO_USER = "alice"
DEMO_TOKEN_TTL = 86400
DEMO_TRADE = ('{"event_type":"trade_executed","user":"alice","data":{"trade_id":"T-1",'
              '"symbol":"BTCUSDT","type":"LONG","entry_price":65000,"quantity":0.01,"leverage":5}}')


def client_lines(plan: Plan) -> list[str]:
    """How to reach the stack from a shell: its settings, and with the kept secret, tokens to try."""
    quote = shlex.quote
    here = plan.state_dir == (Path.cwd() / ".state").resolve()
    where = "in this folder" if here else f"with TICKSTREAM_STATE={quote(str(plan.state_dir))}"
    exports = [f"REDIS_URL={quote(_shown_url(plan))}", f"TICKSTREAM_URL={quote(_ws_url(plan))}"]
    for name in ("KEY_PREFIX", "JWT_AUDIENCE", "JWT_ISSUER"):
        if plan.env.get(name):
            exports.append(f"{name}={quote(plan.env[name])}")
    if plan.jwt_secret_file is not None:
        exports.append(f'JWT_SECRET="$(cat {quote(str(plan.jwt_secret_file))})"')
    lines = [
        _redis_line(plan),
        f"Settings: {plan.state_dir / stackfile.STACK_FILE} (`tickstream publish`, `tail` and "
        f"`token` run {where} use them)",
        f"Other tools: export {' '.join(exports)}",
    ]
    if plan.jwt_secret_file is None:
        return lines
    from tickstream.token import TokenSettings, mint

    keys = TokenSettings(jwt_secret=Secret(plan.env["JWT_SECRET"]),
                         jwt_audience=plan.env.get("JWT_AUDIENCE", ""),
                         jwt_issuer=plan.env.get("JWT_ISSUER", ""))
    role = plan.env.get("PUBLISHER_ROLE") or "publisher"
    publisher = mint(keys, "demo-publisher", [role], DEMO_TOKEN_TTL)
    user = mint(keys, DEMO_USER, [], DEMO_TOKEN_TTL)
    return [*lines,
            f"Publisher token (role {role}, 24 h): {publisher}",
            f"User token ({DEMO_USER}, 24 h): {user}",
            f"Publish over HTTP: curl -sS -w '\\n' -X POST {plan.base_url}/api/publish -H "
            f"'Authorization: Bearer {publisher}' -H 'Content-Type: application/json' -d '{DEMO_TRADE}'",
            f"{DEMO_USER.title()}'s private events: tickstream tail trade_executed --last 5 "
            f"--url {_ws_url(plan)} --token {user}"]


async def _redis_reachable(url: str) -> str | None:
    from shared.topology import Topology

    topology = Topology(url, name="tickstream-up", socket_timeout=3.0, socket_connect_timeout=3.0)
    try:
        await (await topology.any()).ping()
        return None
    except Exception as exc:  # any failure is reported the same way
        return f"{type(exc).__name__}: {exc}"
    finally:
        await topology.aclose()


async def run_stack(plan: Plan, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    out = out or sys.stdout
    started = time.monotonic()
    probes = HttpProbes()
    specs = _specs(plan, probes)
    sup = Supervisor(state_file=plan.state_dir / STATE_FILE, out=out, err=err,
                     prefix_width=max(len(name) for name in specs))
    sup.info = {"redis_url": _shown_url(plan),
                "redis_topology": plan.redis.kind if plan.redis is not None else "external"}
    sup.write_state()
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if not sup.stop_requested.is_set():
            sup.report(f"{signal.Signals(signum).name}: stopping (again to kill at once)")
            sup.request_stop(0)
        else:
            sup.report(f"{signal.Signals(signum).name} again: killing what is left")
            sup.kill_all()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal, signum)

    def fail(message: str, code: int = 1) -> None:
        sup.report(message)
        sup.request_stop(code)

    timeout = plan.settings.ready_timeout
    try:
        for note in plan.notes:
            sup.report(note)
        await _bring_up(sup, plan, specs, timeout, fail)
        if not sup.stop_requested.is_set():
            elapsed = time.monotonic() - started
            notes = await roles(plan.redis) if plan.redis is not None and plan.redis.kind != "single" else {}
            try:
                stackfile.write(plan.state_dir, client_settings(plan))
            except OSError as exc:
                sup.report(f"cannot write {plan.state_dir / stackfile.STACK_FILE}: {exc}")
            lines = "\n".join(client_lines(plan))
            print(f"tickstream up: stack started in {elapsed:.1f} s\n{_table(sup, plan, notes)}\n"
                  f"\nDashboard: {plan.base_url}/\nWebSocket: {_ws_url(plan)}\n{lines}"
                  f"\nPIDs: {plan.state_dir / STATE_FILE}\nCtrl-C stops everything.",
                  file=out, flush=True)
            await sup.stop_requested.wait()
    except OSError as exc:
        fail(f"cannot start: {exc}")
    finally:
        stackfile.remove(plan.state_dir)
        await sup.shutdown()
        await probes.aclose()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
    left = [c.name for c in sup.children.values() if c.running]
    if left:  # pragma: no cover - shutdown SIGKILLs and waits; this would be a bug
        sup.report(f"still running: {', '.join(left)}")
        return 1
    sup.report("stopped")
    return sup.exit_code


async def _bring_up(sup: Supervisor, plan: Plan, specs: dict[str, ChildSpec], within: float,
                    fail: Callable[[str, int], None]) -> None:
    deadline = time.monotonic() + within

    async def must_be_ready(*names: str) -> bool:
        children = [sup.children[n] for n in names]
        missing = await sup.wait_ready(children, deadline - time.monotonic())
        if sup.stop_requested.is_set():
            return False
        if missing:
            fail(f"{', '.join(c.name for c in missing)} not ready after {within:g} s; stopping", 1)
            return False
        return True

    layout = plan.redis
    if layout is not None:
        data = list(layout.data_names())
        for name in data:
            await sup.start(specs[name])
        if not await must_be_ready(*data):
            return
        problem = None
        if layout.kind == "cluster":
            problem = await form_cluster(sup, plan, deadline)
        elif layout.kind == "sentinel":
            sentinels = list(layout.sentinel_names())
            for name in sentinels:
                await sup.start(specs[name])
            if not await must_be_ready(*sentinels):
                return
            problem = await wait_sentinels(sup, layout, deadline)
        if sup.stop_requested.is_set():
            return
        if problem is not None:
            fail(f"{problem}; stopping", 1)
            return
    else:
        problem = await _redis_reachable(plan.redis_url)
        if problem is not None:
            fail(f"cannot reach REDIS_URL {_shown_url(plan)}: {problem}", 1)
            return
    gateways = [name for name in specs if name.startswith("gateway-")]
    for name in gateways:
        await sup.start(specs[name])
    if "simulator" in specs:
        await sup.start(specs["simulator"])
        if not await must_be_ready("simulator"):
            return
    ingestors = [name for name in specs if name == "ingestor" or name.startswith("ingestor-")]
    for name in ingestors:
        await sup.start(specs[name])
    if not await must_be_ready(*gateways):
        return
    # The ingestor may wait on Binance: report it in the table rather than give up.
    missing = await sup.wait_ready([sup.children[name] for name in ingestors],
                                   deadline - time.monotonic())
    if missing and not sup.stop_requested.is_set():
        hint = "" if plan.simulate else "; offline? use --simulate (make demo)"
        sup.report(f"the ingestor is not ready after {within:g} s (see its lines above); "
                   f"the gateways serve anyway{hint}")


def run(args: argparse.Namespace) -> int:
    from shared.settings import from_args

    settings = from_args(UpSettings, args)
    simulate = args.simulate if args.simulate is not None else parse_bool(
        os.environ.get("TICKSTREAM_SIMULATE", ""), "TICKSTREAM_SIMULATE")
    lock = _lock_state(state_folder(settings))
    try:
        plan = build_plan(settings, bool(simulate), os.environ)
        return asyncio.run(run_stack(plan))
    finally:
        lock.close()
