"""Real Redis Cluster and Redis Sentinel topologies on loopback, for integration tests and benchmarks.

``RedisClusterServers`` runs N primaries with R replicas each (``redis-server --cluster-enabled yes``,
joined by ``redis-cli --cluster create``); ``RedisSentinelServers`` runs a primary, its replicas and
a quorum of Sentinels (``redis-server sentinel.conf --sentinel``: Debian ships no ``redis-sentinel``).
Every process is a ``RedisServer`` (see ``redis_server.py``): bound to 127.0.0.1 on a free port, with
a temporary directory of its own (its ``redis.log`` is there), and only the processes these objects
started are ever signalled, by their PIDs.

Nothing sleeps to synchronise: every wait polls a condition until a deadline (``TimeoutError``,
with what was still wrong, when it passes). The methods block; from a coroutine whose event loop
must keep running (an in-process gateway, say), call them through ``asyncio.to_thread``::

    new_primary = await asyncio.to_thread(cluster.wait_promoted, old_primary)

Typical use (``flushall`` first heals whatever a previous test broke)::

    with RedisClusterServers() as cluster:
        old = cluster.primary_for_key("stream:BTCUSDT")
        cluster.kill_primary(old)
        new = cluster.wait_promoted(old)
        cluster.restart(old)         # it rejoins as a replica of ``new``
        cluster.flushall()           # heals, gives the original primaries their role back, empties

A forced rollback (a promoted replica lacks acknowledged writes): ``lag_replica(replica)`` (pause
it and cut its link), write to its primary, ``kill_primary(primary)``, ``resume(replica)``,
``wait_promoted(primary)``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.retry import Retry

from tests.support.redis_server import RedisServer, free_port

HOST = "127.0.0.1"
SLOTS = 16384
POLL_INTERVAL = 0.05


# ---------------------------------------------------------------- polling and one-shot queries


def wait_for(problem: Callable[[], str | None], timeout: float, what: str) -> None:
    """Poll ``problem`` (``None`` once the condition holds, else what is still wrong) until ``timeout``."""
    deadline = time.monotonic() + timeout
    while (issue := problem()) is not None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}: {issue}")
        time.sleep(POLL_INTERVAL)  # polling a condition, not synchronising on time


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class _Clients:
    """One short-timeout client per port, retrying once without backoff: a dead node fails a poll
    fast, and a connection left over from before a node's restart is replaced at once."""

    def __init__(self) -> None:
        self._clients: dict[int, redis.Redis] = {}

    def get(self, port: int) -> redis.Redis:
        if port not in self._clients:
            self._clients[port] = redis.Redis(
                host=HOST, port=port, decode_responses=True, socket_timeout=1.0,
                socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 1),
            )
        return self._clients[port]

    def call(self, port: int, *args: str | int) -> Any:
        """The reply of one command (a map may come as a dict or as a flat list: see ``_pairs``)."""
        execute: Callable[..., Any] = self.get(port).execute_command
        return execute(*args)

    def probe(self, port: int, *args: str | int) -> Any:
        """Like ``call``, but ``None`` when the node cannot answer (down, loading, refusing)."""
        try:
            return self.call(port, *args)
        except redis.RedisError:
            return None

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()


def _live(servers: Iterable[RedisServer]) -> list[RedisServer]:
    """The servers whose process runs and is not paused (those that can answer)."""
    return [server for server in servers if server.running and not server.paused]


def _replication(clients: _Clients, server: RedisServer) -> dict[str, Any] | None:
    info = clients.probe(server.port, "INFO", "replication")
    return info if isinstance(info, dict) else None


def _replica_problem(clients: _Clients, server: RedisServer, primary_port: int | None) -> str | None:
    """Why ``server`` is not a replica with its link up (to ``primary_port`` if given), or ``None``."""
    info = _replication(clients, server)
    if info is None:
        return f"{server.port} does not answer INFO"
    if info.get("role") != "slave":
        return f"{server.port} is a {info.get('role')}, not a replica"
    if primary_port is not None and int(info.get("master_port", 0)) != primary_port:
        return f"{server.port} replicates {info.get('master_port')}, not {primary_port}"
    if info.get("master_link_status") != "up":
        return f"{server.port} has master_link_status {info.get('master_link_status')}"
    return None


def _empty_problem(clients: _Clients, servers: Iterable[RedisServer]) -> str | None:
    for server in _live(servers):
        size = clients.probe(server.port, "DBSIZE")
        if size != 0:
            return f"DBSIZE on {server.port} is {size}"
    return None


def _cut_off(clients: _Clients, replica: RedisServer) -> None:
    """SIGSTOP ``replica``, then have its primary drop the replication connection.

    A paused process still receives: the kernel keeps accepting the replication stream into its
    socket buffer, and it applies all of it once resumed. With the connection closed by the primary
    first, writes from now on stay on the primary (a forced rollback if the primary then dies).
    """
    info = _replication(clients, replica)
    if info is None or info.get("role") != "slave":
        raise ValueError(f"{replica.port} is not a replica")
    link = clients.call(replica.port, "CLIENT", "LIST", "TYPE", "master")
    fields = dict(item.split("=", 1) for item in str(link).split() if "=" in item)
    if "laddr" not in fields:
        raise ValueError(f"{replica.port} has no link to its primary")
    replica.pause()
    clients.call(int(info["master_port"]), "CLIENT", "KILL", "ADDR", fields["laddr"])


def _start_logged(server: RedisServer, extra: list[str]) -> None:
    """Set ``server``'s own arguments for its next start, plus a log file in its directory and no
    wait before a full sync (the default, ``repl-diskless-sync-delay 5``, delays every replica 5 s)."""
    server.extra = [*extra, "--logfile", str(server.dir / "redis.log"), "--loglevel", "notice",
                    "--repl-diskless-sync-delay", "0"]


def _check_own(servers: Iterable[RedisServer], server: RedisServer) -> None:
    if not any(server is own for own in servers):
        raise ValueError(f"redis-server on port {server.port} was not started by this topology")


def _stop_all(servers: Iterable[RedisServer]) -> None:
    for server in servers:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            server.kill()  # nothing is persisted: no need for a graceful shutdown
        shutil.rmtree(server.dir, ignore_errors=True)


# ---------------------------------------------------------------- Redis Cluster


@dataclass(frozen=True)
class ClusterNode:
    """One line of ``CLUSTER NODES``: a node as one node of the cluster sees it."""

    node_id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]

    @property
    def is_primary(self) -> bool:
        return "master" in self.flags

    @property
    def failed(self) -> bool:
        return bool(self.flags & {"fail", "fail?", "handshake", "noaddr"})

    @classmethod
    def parse(cls, line: str) -> ClusterNode:
        fields = line.split()
        address = fields[1].split(",")[0].split("@")[0]
        slots: list[tuple[int, int]] = []
        for item in fields[8:]:
            if item.startswith("["):
                continue  # a slot being imported or migrated
            start, _, end = item.partition("-")
            slots.append((int(start), int(end or start)))
        return cls(
            node_id=fields[0], port=int(address.rsplit(":", 1)[1]), flags=frozenset(fields[2].split(",")),
            master_id=None if fields[3] == "-" else fields[3], slots=tuple(slots),
        )


SlotMap = tuple[tuple[int, int, int], ...]  # (first slot, last slot, primary's port), sorted


def _slot_map_problem(slot_map: SlotMap) -> str | None:
    expected = 0
    for start, end, _ in slot_map:
        if start != expected:
            return f"slots {expected}-{start - 1} are not served"
        expected = end + 1
    return None if expected == SLOTS else f"slots {expected}-{SLOTS - 1} are not served"


class RedisClusterServers:
    """A local Redis Cluster: ``primaries`` shards of one primary and ``replicas_per_primary`` replicas.

    Nodes time out after ``node_timeout_ms`` (a failover takes 2 to 3 s with 1000) and any replica
    may be promoted however stale (``cluster-replica-validity-factor 0``); replicas never migrate.
    Startup takes about 2 s (``redis-cli --cluster create`` waits a second for the nodes to meet).
    """

    def __init__(self, primaries: int = 3, replicas_per_primary: int = 1, *,
                 node_timeout_ms: int = 1000) -> None:
        if primaries < 3:
            raise ValueError("redis-cli --cluster create needs at least 3 primaries")
        self.node_timeout_ms = node_timeout_ms
        self.replicas_per_primary = replicas_per_primary
        count = primaries * (1 + replicas_per_primary)
        ports = distinct_free_ports(2 * count)  # a client port and a cluster bus port per node
        self.nodes = [RedisServer(port) for port in ports[:count]]
        for server, bus_port in zip(self.nodes, ports[count:], strict=True):
            _start_logged(server, self._cluster_args(server.dir, bus_port))
        self._primary_count = primaries
        self._clients = _Clients()
        self._seeds: list[RedisServer] = []
        self._ids: dict[int, str] = {}
        self._killed_slots: dict[int, tuple[tuple[int, int], ...]] = {}

    def _cluster_args(self, directory: Path, bus_port: int) -> list[str]:
        return [
            "--cluster-enabled", "yes", "--cluster-config-file", str(directory / "nodes.conf"),
            "--cluster-port", str(bus_port), "--cluster-node-timeout", str(self.node_timeout_ms),
            "--cluster-replica-validity-factor", "0", "--cluster-require-full-coverage", "yes",
            "--cluster-allow-reads-when-down", "no", "--cluster-allow-replica-migration", "no",
        ]

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> None:
        """Start every node, join them with ``redis-cli --cluster create`` and wait for a healthy cluster."""
        for server in self.nodes:
            server.start()
        self._create_cluster(timeout)
        self.wait_healthy(timeout)
        self._ids = {node.port: node.node_id for node in self._view(self.nodes[0]) or ()}
        self._seeds = self.primaries()

    def _create_cluster(self, timeout: float) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed: run `make test` (it installs it)")
        addresses = [f"{HOST}:{server.port}" for server in self.nodes]
        done = subprocess.run(
            [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(self.replicas_per_primary),
             "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout, check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")

    def cleanup(self) -> None:
        """Stop every process this object started and remove their directories."""
        self._clients.close()
        _stop_all(self.nodes)

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()

    @property
    def url(self) -> str:
        """``redis+cluster://`` with the primaries of the cluster as created as seeds."""
        seeds = self._seeds or self.nodes[: self._primary_count]
        return "redis+cluster://" + ",".join(f"{HOST}:{server.port}" for server in seeds)

    # ------------------------------------------------------------ what the cluster says

    def _server(self, port: int) -> RedisServer:
        for server in self.nodes:
            if server.port == port:
                return server
        raise LookupError(f"no node of ours listens on port {port}")

    def _view(self, server: RedisServer) -> list[ClusterNode] | None:
        reply = self._clients.probe(server.port, "CLUSTER", "NODES")
        if not isinstance(reply, str):
            return None
        return [ClusterNode.parse(line) for line in reply.splitlines() if line.strip()]

    def _slot_map(self, server: RedisServer) -> SlotMap | None:
        reply = self._clients.probe(server.port, "CLUSTER", "SLOTS")
        if not isinstance(reply, list):
            return None
        return tuple(sorted((int(entry[0]), int(entry[1]), int(entry[2][1])) for entry in reply))

    def _reference_view(self) -> list[ClusterNode]:
        """``CLUSTER NODES`` from the first live node that answers."""
        for server in _live(self.nodes):
            view = self._view(server)
            if view is not None:
                return view
        raise RuntimeError("no node of the cluster answers")

    def _live_entries(self) -> list[tuple[ClusterNode, RedisServer]]:
        live = {server.port: server for server in _live(self.nodes)}
        return [(node, live[node.port]) for node in self._reference_view()
                if node.port in live and not node.failed]

    def primaries(self) -> list[RedisServer]:
        """The live primaries serving slots, as the cluster sees them now."""
        return [server for node, server in self._live_entries() if node.is_primary and node.slots]

    def replicas(self) -> list[RedisServer]:
        """The live replicas, as the cluster sees them now."""
        return [server for node, server in self._live_entries() if not node.is_primary]

    def replicas_of(self, primary: RedisServer) -> list[RedisServer]:
        """The live replicas of ``primary``, as the cluster sees them now."""
        primary_id = self.node_id(primary)
        return [server for node, server in self._live_entries() if node.master_id == primary_id]

    def node_id(self, server: RedisServer) -> str:
        """The cluster node id of ``server`` (it keeps it across restarts: it is in its nodes.conf)."""
        if server.port not in self._ids:
            self._ids.update({node.port: node.node_id for node in self._reference_view()})
        return self._ids[server.port]

    def primary_for_slot(self, slot: int) -> RedisServer:
        """The primary serving ``slot`` now."""
        for server in _live(self.nodes):
            slot_map = self._slot_map(server)
            if slot_map is None:
                continue
            for start, end, port in slot_map:
                if start <= slot <= end:
                    return self._server(port)
            raise LookupError(f"slot {slot} is not served")
        raise RuntimeError("no node of the cluster answers")

    def primary_for_key(self, key: str | bytes) -> RedisServer:
        """The primary serving ``key`` now (hash tags included)."""
        return self.primary_for_slot(key_slot(key.encode() if isinstance(key, str) else key))

    def health_problem(self) -> str | None:
        """What keeps the cluster from being healthy, or ``None``.

        Healthy: every live node says ``cluster_state:ok``, knows every node, agrees with the others on
        roles and on a slot map that covers all 16384 slots, and every live replica's link is up.
        """
        live = _live(self.nodes)
        if not live:
            return "no node is running"
        summaries: set[tuple[object, ...]] = set()
        for server in live:
            problem = self._node_problem(server, {s.port for s in live}, summaries)
            if problem is not None:
                return problem
        if len(summaries) != 1:
            return "the nodes disagree on roles or slots"
        return None

    def _node_problem(self, server: RedisServer, live_ports: set[int],
                      summaries: set[tuple[object, ...]]) -> str | None:
        info = self._clients.probe(server.port, "CLUSTER", "INFO")
        if not isinstance(info, str) or "cluster_state:ok" not in info:
            return f"{server.port} is not cluster_state:ok"
        view, slot_map = self._view(server), self._slot_map(server)
        if view is None or slot_map is None:
            return f"{server.port} does not answer CLUSTER NODES/SLOTS"
        if len(view) != len(self.nodes):
            return f"{server.port} knows {len(view)} of {len(self.nodes)} nodes"
        if (problem := _slot_map_problem(slot_map)) is not None:
            return f"according to {server.port}, {problem}"
        roles = tuple(sorted((node.node_id, node.is_primary, node.master_id, node.slots, node.failed)
                             for node in view if node.port in live_ports))
        summaries.add((slot_map, roles))
        mine = next(node for node in view if "myself" in node.flags)
        if mine.is_primary:
            return None
        return _replica_problem(self._clients, server, None)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_for(self.health_problem, timeout, "a healthy cluster")

    # ------------------------------------------------------------ failures

    def kill_primary(self, server: RedisServer) -> None:
        """SIGKILL ``server``, a primary (the slots it served are remembered for ``wait_promoted``)."""
        _check_own(self.nodes, server)
        node_id = self.node_id(server)
        owned = next((node.slots for node in self._reference_view() if node.node_id == node_id), ())
        if not owned:
            raise ValueError(f"{server.port} serves no slots: it is not a primary")
        self._killed_slots[server.port] = owned
        server.kill()

    def wait_promoted(self, old_primary: RedisServer, timeout: float = 20.0) -> RedisServer:
        """Wait until a replica of the killed ``old_primary`` serves its slots in a healthy cluster.

        Returns the new primary. If the cluster is still not healthy a few node timeouts after the
        call, the launcher nudges it (again every few node timeouts): a replica still following
        ``old_primary`` gets ``CLUSTER FAILOVER TAKEOVER``, and a node that believes it won the
        election but that the others ignore gets ``CLUSTER BUMPEPOCH`` (Redis 7.0 lets a replica
        that won an election less than 4 node timeouts earlier, and was demoted since, "win" again
        on its stale votes without a new epoch: the others never accept it).
        """
        owned = self._killed_slots.get(old_primary.port)
        if owned is None:
            raise ValueError(f"{old_primary.port} was not killed with kill_primary")
        period = 3 * self.node_timeout_ms / 1000
        nudge_at = time.monotonic() + 2 * period

        def problem() -> str | None:
            nonlocal nudge_at
            if (issue := self._promotion_problem(old_primary, owned[0][0])) is None:
                return None
            if time.monotonic() > nudge_at:
                self._nudge(old_primary, owned)
                nudge_at = time.monotonic() + period
            return issue

        wait_for(problem, timeout, f"a replica of {old_primary.port} to be promoted")
        return self.primary_for_slot(owned[0][0])

    def _promotion_problem(self, old_primary: RedisServer, slot: int) -> str | None:
        if (issue := self.health_problem()) is not None:
            return issue
        if self.primary_for_slot(slot) is old_primary:
            return f"slot {slot} is still served by {old_primary.port}"
        return None

    def _nudge(self, old_primary: RedisServer, owned: tuple[tuple[int, int], ...]) -> None:
        """TAKEOVER on a replica still following ``old_primary``; BUMPEPOCH on an ignored claimant."""
        old_id = self.node_id(old_primary)
        for server in _live(self.nodes):
            mine = next((node for node in self._view(server) or () if "myself" in node.flags), None)
            if mine is None:
                continue
            if not mine.is_primary and mine.master_id == old_id:
                self._clients.probe(server.port, "CLUSTER", "FAILOVER", "TAKEOVER")
            elif mine.is_primary and owned[0] in mine.slots:
                self._clients.probe(server.port, "CLUSTER", "BUMPEPOCH")

    def restart(self, server: RedisServer, timeout: float = 30.0) -> None:
        """Start a killed node again (same port and nodes.conf) and wait until the cluster is healthy.

        A former primary whose slots were handed over rejoins as a replica of the promoted node.
        """
        _check_own(self.nodes, server)
        server.start()
        self.wait_healthy(timeout)

    def pause(self, server: RedisServer) -> None:
        """SIGSTOP one of our nodes (it stops answering, and replicating)."""
        _check_own(self.nodes, server)
        server.pause()

    def resume(self, server: RedisServer) -> None:
        """SIGCONT a node paused by ``pause``."""
        _check_own(self.nodes, server)
        server.resume()

    def lag_replica(self, replica: RedisServer) -> None:
        """Pause ``replica`` and cut its replication link: no write to its primary from now on reaches it.

        See ``_cut_off``: pausing alone is not enough. ``resume`` it (after killing its primary, say).
        """
        _check_own(self.nodes, replica)
        _cut_off(self._clients, replica)

    def heal(self, timeout: float = 60.0, *, restore_roles: bool = True) -> None:
        """Resume paused nodes, restart killed ones, wait for a healthy cluster.

        With ``restore_roles``, the primaries of the cluster as created get their role back
        (``CLUSTER FAILOVER``, which loses no write), so every test starts from the same layout.
        """
        for server in self.nodes:
            if server.paused:
                server.resume()
            if not server.running:
                server.start()
        self.wait_healthy(timeout)
        if not restore_roles:
            return
        primaries = self.primaries()
        promoted = [server for server in primaries if server not in self._seeds]
        demoted = [server for server in self._seeds if server not in primaries]
        if not demoted:
            return
        for server in demoted:
            self._clients.call(server.port, "CLUSTER", "FAILOVER")
        wait_for(lambda: self._roles_problem(demoted), timeout, "the original primaries back")
        # Replicas again, the nodes promoted earlier still hold their election's votes (see
        # ``wait_promoted``): fresh processes forget them, so a failover in the next test is clean.
        for server in promoted:
            server.restart()
        self.wait_healthy(timeout)

    def _roles_problem(self, expected_primaries: list[RedisServer]) -> str | None:
        if (problem := self.health_problem()) is not None:
            return problem
        primaries = self.primaries()
        missing = [server.port for server in expected_primaries if server not in primaries]
        return f"{missing} are not primaries yet" if missing else None

    def flushall(self, timeout: float = 60.0) -> None:
        """Heal the cluster, then empty it: FLUSHALL on every primary, wait for the replicas to follow."""
        self.heal(timeout)
        for server in self.primaries():
            self._clients.call(server.port, "FLUSHALL")
        wait_for(lambda: _empty_problem(self._clients, self.nodes), timeout, "an empty cluster")


# ---------------------------------------------------------------- Redis Sentinel


def _pairs(reply: Any) -> dict[str, str]:
    """A Sentinel state reply (a RESP3 map, or a RESP2 flat ``[field, value, ...]``) as a dict."""
    if isinstance(reply, dict):
        return {str(field): str(value) for field, value in reply.items()}
    if isinstance(reply, list):
        return {str(reply[i]): str(reply[i + 1]) for i in range(0, len(reply) - 1, 2)}
    return {}


def _down(entry: dict[str, str]) -> bool:
    return bool(set(entry.get("flags", "").split(",")) & {"s_down", "o_down", "disconnected"})


class RedisSentinelServers:
    """A primary, ``replicas`` replicas and ``sentinels`` Sentinels monitoring them as ``master_name``.

    ``down_after_ms`` defaults to 2000, not 1000: a Sentinel PINGs every min(down-after, 1000) ms
    and counts from when it (re)connects, so with 1000 it regularly sees the primary it just
    switched to as down before its first PONG, and fails over a second time (about 20 s more).
    A failover takes about 5 s. A former primary restarted as it was comes back a master, until
    the Sentinels turn it into a replica some 20 s later (they wait 8 s after they see it report
    its role, and ask a replica for INFO every 10 s); ``restart(follow_current=True)`` is instant.
    """

    def __init__(self, replicas: int = 2, sentinels: int = 3, master_name: str = "tickstream", *,
                 quorum: int = 2, down_after_ms: int = 2000, failover_timeout_ms: int = 5000) -> None:
        self.master_name = master_name
        ports = distinct_free_ports(1 + replicas + sentinels)
        self.nodes = [RedisServer(port) for port in ports[: 1 + replicas]]
        self.sentinels = [RedisServer(port, sentinel=True) for port in ports[1 + replicas:]]
        self._original_primary = self.nodes[0]
        _start_logged(self._original_primary, [])
        for server in self.nodes[1:]:
            _start_logged(server, ["--replicaof", HOST, str(self._original_primary.port)])
        for sentinel in self.sentinels:
            sentinel.config_file = sentinel.dir / "sentinel.conf"
            sentinel.config_file.write_text(self._sentinel_conf(sentinel, quorum, down_after_ms,
                                                                failover_timeout_ms))
            _start_logged(sentinel, [])
        self._clients = _Clients()

    def _sentinel_conf(self, sentinel: RedisServer, quorum: int, down_after_ms: int,
                       failover_timeout_ms: int) -> str:
        name = self.master_name
        return "\n".join([
            f"port {sentinel.port}", f"bind {HOST}", f'dir "{sentinel.dir}"',
            "sentinel resolve-hostnames no",
            f"sentinel monitor {name} {HOST} {self._original_primary.port} {quorum}",
            f"sentinel down-after-milliseconds {name} {down_after_ms}",
            f"sentinel failover-timeout {name} {failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 2",
            "",
        ])

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 30.0) -> None:
        """Start the primary and its replicas, then (replicas in sync) the Sentinels; wait until ready."""
        for server in self.nodes:
            server.start()
        primary_port = self._original_primary.port
        wait_for(lambda: self._replicas_problem(primary_port), timeout, "the replicas in sync")
        # Sentinels learn the replicas from the primary's INFO: started now, they see them at once.
        for sentinel in self.sentinels:
            sentinel.start()
        self.wait_healthy(timeout)

    def cleanup(self) -> None:
        """Stop every process this object started and remove their directories."""
        self._clients.close()
        _stop_all([*self.sentinels, *self.nodes])

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.cleanup()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.cleanup()

    @property
    def url(self) -> str:
        seeds = ",".join(f"{HOST}:{sentinel.port}" for sentinel in self.sentinels)
        return f"redis+sentinel://{seeds}?sentinel_master_name={self.master_name}"

    # ------------------------------------------------------------ what the Sentinels say

    def _server(self, port: int) -> RedisServer:
        for server in self.nodes:
            if server.port == port:
                return server
        raise LookupError(f"no node of ours listens on port {port}")

    def _reported_primary_port(self, sentinel: RedisServer) -> int | None:
        reply = self._clients.probe(sentinel.port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        return int(reply[1]) if isinstance(reply, list) and len(reply) == 2 else None

    def primary(self) -> RedisServer:
        """The primary as the first Sentinel that answers reports it."""
        for sentinel in _live(self.sentinels):
            port = self._reported_primary_port(sentinel)
            if port is not None:
                return self._server(port)
        raise RuntimeError("no Sentinel answers")

    def replicas(self) -> list[RedisServer]:
        """The live data nodes other than the primary."""
        primary = self.primary()
        return [server for server in _live(self.nodes) if server is not primary]

    def _replicas_problem(self, primary_port: int) -> str | None:
        for server in _live(self.nodes):
            if server.port != primary_port and (
                    problem := _replica_problem(self._clients, server, primary_port)) is not None:
                return problem
        return None

    def health_problem(self) -> str | None:
        """What keeps the setup from being ready, or ``None``.

        Ready: every live Sentinel reports the same primary, which says it is a master and which
        the Sentinel sees up, with every live replica and every other live Sentinel; every live
        replica replicates that primary with its link up.
        """
        sentinels = _live(self.sentinels)
        if not sentinels:
            return "no Sentinel is running"
        reported = {self._reported_primary_port(sentinel) for sentinel in sentinels}
        if len(reported) != 1 or None in reported:
            return f"the Sentinels report primaries {reported}"
        primary_port = reported.pop()
        assert primary_port is not None
        info = _replication(self._clients, self._server(primary_port))
        if info is None or info.get("role") != "master":
            return f"{primary_port}, reported as the primary, is not a master"
        if (problem := self._replicas_problem(primary_port)) is not None:
            return problem
        for sentinel in sentinels:
            if (problem := self._sentinel_problem(sentinel, primary_port, len(sentinels))) is not None:
                return problem
        return None

    def _sentinel_problem(self, sentinel: RedisServer, primary_port: int, live_sentinels: int) -> str | None:
        name, port = self.master_name, sentinel.port
        master = self._clients.probe(port, "SENTINEL", "MASTER", name)
        if _pairs(master).get("flags") != "master":
            return f"Sentinel {port} sees the primary as {master}"
        replicas = self._clients.probe(port, "SENTINEL", "REPLICAS", name)
        others = self._clients.probe(port, "SENTINEL", "SENTINELS", name)
        if not isinstance(replicas, list) or not isinstance(others, list):
            return f"Sentinel {port} does not answer"
        live_replicas = {s.port for s in _live(self.nodes)} - {primary_port}
        seen = {int(entry["port"]) for entry in map(_pairs, replicas)
                if not _down(entry) and entry.get("master-link-status") == "ok"
                and int(entry.get("master-port", 0)) == primary_port}
        if seen != live_replicas:
            return f"Sentinel {port} sees replicas {sorted(seen)}, not {sorted(live_replicas)}"
        if sum(not _down(entry) for entry in map(_pairs, others)) != live_sentinels - 1:
            return f"Sentinel {port} does not see the {live_sentinels - 1} other Sentinels"
        return None

    def wait_healthy(self, timeout: float = 30.0) -> None:
        wait_for(self.health_problem, timeout, "a ready Sentinel setup")

    # ------------------------------------------------------------ failures

    def kill_primary(self) -> RedisServer:
        """SIGKILL the current primary; returns it."""
        primary = self.primary()
        primary.kill()
        return primary

    def wait_failover(self, old_primary: RedisServer, timeout: float = 30.0) -> RedisServer:
        """Wait until every Sentinel reports a new primary, a master, with the replicas following it."""
        def problem() -> str | None:
            if (issue := self.health_problem()) is not None:
                return issue
            return "no failover yet" if self.primary() is old_primary else None

        wait_for(problem, timeout, f"a failover away from {old_primary.port}")
        return self.primary()

    def restart(self, server: RedisServer, timeout: float = 40.0, *, follow_current: bool = False) -> None:
        """Start a killed data node or Sentinel again and wait until the setup is ready.

        A data node restarts with the command line it had: a former primary comes back as a master
        until the Sentinels turn it into a replica (some 20 s: see the class). With
        ``follow_current`` it restarts already replicating the current primary.
        """
        if any(server is sentinel for sentinel in self.sentinels):
            server.start()
        else:
            _check_own(self.nodes, server)
            if follow_current:
                self._follow(server, self.primary())
            server.start()
        self.wait_healthy(timeout)

    def _follow(self, server: RedisServer, primary: RedisServer) -> None:
        _start_logged(server, [] if server is primary else ["--replicaof", HOST, str(primary.port)])

    def lag_replica(self, replica: RedisServer) -> None:
        """Pause ``replica`` and cut its replication link (see ``_cut_off``); ``resume`` it later.

        The Sentinels will not promote it while another replica is up to date: for a forced
        rollback, lag every replica (or run with ``replicas=1``).
        """
        _check_own(self.nodes, replica)
        _cut_off(self._clients, replica)

    def pause(self, server: RedisServer) -> None:
        """SIGSTOP one of our data nodes or Sentinels."""
        _check_own([*self.nodes, *self.sentinels], server)
        server.pause()

    def resume(self, server: RedisServer) -> None:
        """SIGCONT a process paused by ``pause``."""
        _check_own([*self.nodes, *self.sentinels], server)
        server.resume()

    def heal(self, timeout: float = 60.0) -> None:
        """Resume paused processes, restart killed ones (data nodes following the current primary)."""
        for server in [*self.nodes, *self.sentinels]:
            if server.paused:
                server.resume()
        for sentinel in self.sentinels:
            if not sentinel.running:
                sentinel.start()
        primary = self.primary()
        for server in self.nodes:
            if not server.running:
                self._follow(server, primary)
                server.start()
        self.wait_healthy(timeout)

    def flushall(self, timeout: float = 60.0) -> None:
        """Heal, then FLUSHALL on the primary and wait for the replicas to follow."""
        self.heal(timeout)
        self._clients.call(self.primary().port, "FLUSHALL")
        wait_for(lambda: _empty_problem(self._clients, self.nodes), timeout, "an empty Sentinel setup")
