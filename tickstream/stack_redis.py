"""The private Redis of ``tickstream up`` as supervised children: one server, a Cluster, Sentinel.

:mod:`tickstream.stack_plan` decides the ports, arguments and URLs (pure); this module turns a
:class:`~tickstream.stack_plan.RedisLayout` into :class:`~tickstream.supervisor.ChildSpec`\\ s and
brings the topology up:

* ``single``: one ``redis-server`` (child ``redis``), ready when it answers ``PING``.
* ``cluster``: six nodes (``redis-1`` ... ``redis-6``), then, unless their ``nodes.conf`` shows
  that they formed a cluster before, ``redis-cli --cluster create ... --cluster-replicas 1``;
  ready when every node says ``cluster_state:ok`` and knows the five others.
* ``sentinel``: three data nodes (``redis-1`` ... ``redis-3``) and three Sentinels
  (``sentinel-1`` ... ``sentinel-3``). Before each start of a data node, the primary is looked up
  (the running sentinels, else their configuration files, which they rewrite on each failover,
  else the first node of a new setup): a node that is not the primary starts as its replica, so
  neither a restart of ``up`` nor the restart of a crashed node forces an old primary back. Ready
  when every sentinel names the same primary and that node says it is one.

Nothing here sleeps to synchronise: every wait polls a condition until a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio
import redis.asyncio.retry
from redis.backoff import NoBackoff

from tickstream.stack_plan import (
    LOOPBACK,
    SENTINEL_MASTER,
    SENTINEL_QUORUM,
    Plan,
    RedisLayout,
    cluster_action,
    cluster_create_args,
    cluster_node_args,
    cluster_problem,
    parse_info,
    redis_server_args,
    sentinel_args,
    sentinel_conf_text,
    sentinel_node_args,
    sentinel_primary_in_configs,
)
from tickstream.supervisor import ChildSpec, Supervisor

POLL_INTERVAL = 0.05
QUERY_TIMEOUT = 1.0
DATA_STAGE = 4
"""Data nodes stop last; with Sentinel, the sentinels (stage 3) stop first: no failover on the way."""
SENTINEL_STAGE = 3
SINGLE_STAGE = 3


async def command(port: int, *args: str) -> Any:
    """One command to a loopback Redis (a fresh connection: nodes come and go)."""
    client = redis.asyncio.Redis(host=LOOPBACK, port=port, socket_timeout=QUERY_TIMEOUT,
                                 socket_connect_timeout=QUERY_TIMEOUT, decode_responses=True, protocol=2,
                                 retry=redis.asyncio.retry.Retry(NoBackoff(), 0))
    try:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    finally:
        await client.aclose()


async def probe(port: int, *args: str) -> Any:
    """Like :func:`command`, but ``None`` when the node cannot answer."""
    try:
        return await command(port, *args)
    except (redis.RedisError, OSError):
        return None


async def info(port: int, section: str) -> dict[str, str] | None:
    """``INFO section`` of a node as text fields, or ``None`` when it cannot answer."""
    reply = await probe(port, "INFO", section)
    if isinstance(reply, dict):  # redis-py parses INFO
        return {str(key): str(value) for key, value in reply.items()}
    return parse_info(reply) if isinstance(reply, str) else None


def ping_probe(port: int) -> Callable[[float], Awaitable[bool]]:
    async def ping(since: float) -> bool:
        return await command(port, "PING") is True

    return ping


# -- specs -----------------------------------------------------------------------------------------


def redis_specs(plan: Plan) -> dict[str, ChildSpec]:
    """The children of the private Redis (none with ``REDIS_URL``), in start order."""
    layout = plan.redis
    if layout is None:
        return {}
    server, env, stop = plan.settings.redis_server, plan.env, plan.settings.stop_timeout
    specs: dict[str, ChildSpec] = {}
    if layout.kind == "single":
        port = layout.ports[0]
        layout.folder.mkdir(parents=True, exist_ok=True)
        specs["redis"] = ChildSpec(
            "redis", redis_server_args(server, port, layout.folder), env, ping_probe(port),
            stage=SINGLE_STAGE, stop_timeout=stop, address=layout.url, note=f"AOF in {layout.folder}",
        )
        return specs
    # With Sentinel, the primary the sentinels' files name (a restart), else the first node (new).
    # Each start asks the running sentinels first (``prepare``); this is the fallback.
    known = layout.ports[0]
    if layout.kind == "sentinel":
        known = sentinel_primary_in_configs(_config_texts(layout), layout.ports) or known
    for name, port in layout.data_names().items():
        data = layout.node_dir(port)
        data.mkdir(parents=True, exist_ok=True)
        if layout.kind == "cluster":
            argv = cluster_node_args(server, port, data)
            prepare = None
        else:
            argv = sentinel_node_args(server, port, data, known)
            prepare = _data_node_argv(layout, server, port, data)
        specs[name] = ChildSpec(
            name, argv, env, ping_probe(port), stage=DATA_STAGE, stop_timeout=stop,
            address=f"{LOOPBACK}:{port}", note=f"AOF in {data}", prepare=prepare,
        )
    for name, port in layout.sentinel_names().items():
        conf = layout.sentinel_conf(port)
        _write_sentinel_conf(layout, port)
        specs[name] = ChildSpec(
            name, sentinel_args(server, conf), env, ping_probe(port), stage=SENTINEL_STAGE,
            stop_timeout=stop, address=f"{LOOPBACK}:{port}", note=f"config in {conf}",
            prepare=_sentinel_argv(layout, server, port),
        )
    return specs


def _config_texts(layout: RedisLayout) -> list[str]:
    texts = []
    for port in layout.sentinel_ports:
        with contextlib.suppress(OSError):
            texts.append(layout.sentinel_conf(port).read_text())
    return texts


def _write_sentinel_conf(layout: RedisLayout, port: int) -> None:
    """A new sentinel's configuration, unless it has one (which it rewrote: keep what it knows)."""
    conf = layout.sentinel_conf(port)
    if conf.exists():
        return
    primary = sentinel_primary_in_configs(_config_texts(layout), layout.ports) or layout.ports[0]
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(sentinel_conf_text(port, conf.parent, primary))


def _sentinel_argv(layout: RedisLayout, server: str, port: int) -> Callable[[], Awaitable[list[str]]]:
    async def argv() -> list[str]:
        _write_sentinel_conf(layout, port)  # in case it was removed while `up` ran
        return sentinel_args(server, layout.sentinel_conf(port))

    return argv


def _data_node_argv(layout: RedisLayout, server: str, port: int,
                    data: Path) -> Callable[[], Awaitable[list[str]]]:
    async def argv() -> list[str]:
        return sentinel_node_args(server, port, data, await current_primary(layout))

    return argv


async def sentinel_answers(layout: RedisLayout) -> dict[int, int | None]:
    """Sentinel port -> the primary's port it names (``None``: no answer, or not one of ours)."""
    async def ask(port: int) -> int | None:
        reply = await probe(port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER)
        if isinstance(reply, list) and len(reply) == 2 and str(reply[1]).isdigit():
            primary = int(reply[1])
            return primary if primary in layout.ports else None
        return None

    answers = await asyncio.gather(*(ask(port) for port in layout.sentinel_ports))
    return dict(zip(layout.sentinel_ports, answers, strict=True))


async def current_primary(layout: RedisLayout) -> int:
    """The port of the primary now: what most running sentinels say, else their files, else new."""
    votes = Counter(p for p in (await sentinel_answers(layout)).values() if p is not None)
    if votes:
        return votes.most_common(1)[0][0]
    return sentinel_primary_in_configs(_config_texts(layout), layout.ports) or layout.ports[0]


# -- bringing it up --------------------------------------------------------------------------------


async def _poll(problem: Callable[[], Awaitable[str | None]], deadline: float,
                stop: asyncio.Event) -> str | None:
    """Poll until ``problem`` says None (returns None), a stop (None) or the deadline (the problem)."""
    while True:
        issue = await problem()
        if issue is None or stop.is_set():
            return None
        if time.monotonic() >= deadline:
            return issue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), POLL_INTERVAL)


async def cluster_infos(layout: RedisLayout) -> dict[int, dict[str, str] | None]:
    async def cluster_info(port: int) -> dict[str, str] | None:
        reply = await probe(port, "CLUSTER", "INFO")
        if isinstance(reply, dict):
            return {str(key): str(value) for key, value in reply.items()}
        return parse_info(reply) if isinstance(reply, str) else None

    replies = await asyncio.gather(*(cluster_info(port) for port in layout.ports))
    return dict(zip(layout.ports, replies, strict=True))


async def form_cluster(sup: Supervisor, plan: Plan, deadline: float) -> str | None:
    """Create the cluster if it is new, then wait for it to serve; what went wrong, or None."""
    layout = plan.redis
    assert layout is not None and layout.kind == "cluster"
    infos = await cluster_infos(layout)
    answered = [info for info in infos.values() if info is not None]
    if len(answered) != len(infos):
        return f"Redis Cluster: {cluster_problem(infos)}"
    if cluster_action(answered) == "create":
        primaries = len(layout.ports) // 2
        sup.report(f"redis cluster: creating it ({primaries} primaries, "
                   f"{len(layout.ports) - primaries} replicas)")
        env = {**plan.env, "TERM": "dumb"}  # no colour codes in redis-cli's output
        code, lines = await sup.run_once("redis-cli", cluster_create_args(plan.redis_cli, layout.ports),
                                         env, deadline - time.monotonic())
        if sup.stop_requested.is_set():
            return None
        if code != 0:
            what = "did not finish in time" if code is None else f"exited with status {code}"
            tail = " | ".join(line for line in lines[-5:] if line.strip())
            return f"redis-cli --cluster create {what}: {tail}"
    else:
        sup.report(f"redis cluster: the nodes in {layout.folder} rejoin the cluster they formed")

    async def problem() -> str | None:
        return cluster_problem(await cluster_infos(layout))

    issue = await _poll(problem, deadline, sup.stop_requested)
    if issue is not None:
        return f"the Redis Cluster is not ok: {issue} (if it cannot recover, remove {layout.folder})"
    return None


async def sentinel_problem(layout: RedisLayout) -> str | None:
    """What keeps the Sentinel setup from serving, or None: all sentinels agree on a primary."""
    answers = await sentinel_answers(layout)
    primaries = set(answers.values())
    if None in primaries:
        silent = [port for port, primary in answers.items() if primary is None]
        return f"sentinel {silent[0]} names no primary of ours for {SENTINEL_MASTER!r}"
    if len(primaries) != 1:
        return f"the sentinels disagree on the primary: {sorted(p for p in primaries if p)}"
    primary = next(iter(primaries))
    assert primary is not None
    role = (await info(primary, "replication") or {}).get("role")
    if role != "master":
        return f"the sentinels' primary {primary} says it is {role or 'unreachable'}"
    return None


async def wait_sentinels(sup: Supervisor, layout: RedisLayout, deadline: float) -> str | None:
    issue = await _poll(lambda: sentinel_problem(layout), deadline, sup.stop_requested)
    return None if issue is None else f"Sentinel is not ready: {issue}"


async def roles(layout: RedisLayout) -> dict[str, str]:
    """Child name -> what it is now (``primary``, ``replica of 127.0.0.1:6399``, ``sentinel``)."""
    async def role(port: int) -> str:
        fields = await info(port, "replication") or {}
        if fields.get("role") == "master":
            return "primary"
        if fields.get("role") == "slave":
            return f"replica of {fields.get('master_host', '?')}:{fields.get('master_port', '?')}"
        return "role unknown"

    names = layout.data_names()
    found = await asyncio.gather(*(role(port) for port in names.values()))
    prefix = "cluster " if layout.kind == "cluster" else ""
    described = {name: prefix + text for name, text in zip(names, found, strict=True)}
    for name in layout.sentinel_names():
        described[name] = f"sentinel of {SENTINEL_MASTER!r} (quorum {SENTINEL_QUORUM})"
    return described
