"""What ``tickstream up`` will start: its settings, ports, state folder and the plan.

Pure decisions made before anything runs (:func:`build_plan`); :mod:`tickstream.up` carries
them out.
"""

from __future__ import annotations

import random
import re
import shutil
import socket
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.errors import ConfigError
from shared.redisconn import parse_redis_url
from shared.settings import Secret, parse_duration, setting

DEFAULT_PORT = 8080
DEFAULT_REDIS_PORT = 6399
DEFAULT_INGESTOR_PORT = 9100
DEFAULT_SIMULATOR_PORT = 9443
STATE_FILE = "up.json"
LOCK_FILE = "up.lock"
STOP_MARGIN = 5.0
"""Added to a component's own SHUTDOWN_GRACE to get how long ``up`` waits for it."""

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_URL_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel",
                "rediss+sentinel")

# -- the private Redis topologies (``--redis``) --------------------------------------------------

LOOPBACK = "127.0.0.1"
REDIS_TOPOLOGIES = ("single", "cluster", "sentinel")
REDIS_FOLDERS = {"single": "redis", "cluster": "redis-cluster", "sentinel": "redis-sentinel"}
CLUSTER_NODES = 6
"""3 primaries and 1 replica each (``redis-cli --cluster create --cluster-replicas 1``)."""
CLUSTER_REPLICAS = 1
CLUSTER_SEEDS = 3
"""How many nodes the children's ``redis+cluster://`` URL lists (any one of them is enough)."""
CLUSTER_BUS_OFFSET = 10000
"""Redis Cluster's bus port is the client port + 10000 (its default)."""
CLUSTER_NODE_TIMEOUT_MS = 2000
SENTINEL_MASTER = "tickstream"
SENTINEL_DATA_NODES = 3
"""A primary and 2 replicas."""
SENTINELS = 3
SENTINEL_QUORUM = 2
SENTINEL_DOWN_AFTER_MS = 2000
SENTINEL_FAILOVER_TIMEOUT_MS = 10000


@dataclass(frozen=True, slots=True)
class UpSettings:
    """What ``tickstream up`` itself reads; everything else passes through to the children."""

    host: str = setting("127.0.0.1", env="HOST", help="address the gateways listen on")
    port: int = setting(DEFAULT_PORT, env="PORT",
                        help="port every gateway listens on (SO_REUSEPORT); 0 = a free port")
    gateways: int = setting(2, env="TICKSTREAM_GATEWAYS", help="number of gateway processes")
    ingestors: int = setting(
        1, env="TICKSTREAM_INGESTORS",
        help="number of ingestor processes: one leader, the others standbys that take over",
    )
    redis_url: Secret = setting(
        Secret(""), env="REDIS_URL",
        help="use this Redis instead of starting a private redis-server",
    )
    redis_port: int = setting(
        DEFAULT_REDIS_PORT, env="TICKSTREAM_REDIS_PORT",
        help="port of the private redis-server on 127.0.0.1 (a free one if it is taken)",
    )
    ingestor_port: int = setting(
        DEFAULT_INGESTOR_PORT, env="TICKSTREAM_INGESTOR_PORT",
        help="port of the ingestor's /healthz, /readyz, /metrics (a free one if it is taken)",
    )
    simulator_port: int = setting(
        DEFAULT_SIMULATOR_PORT, env="TICKSTREAM_SIMULATOR_PORT",
        help="port of the simulator with --simulate (a free one if it is taken)",
    )
    state_dir: str = setting(
        "", env="TICKSTREAM_STATE",
        help="state folder: Redis data, up.json with the PIDs started (default: ./.state)",
    )
    symbols: tuple[str, ...] = setting(
        (), env="SYMBOLS", help="symbols to ingest, passed to the ingestor (and the simulator)",
    )
    log_level: str = setting("", env="LOG_LEVEL", help="log level of every child (their default: INFO)")
    ready_timeout: float = setting(
        60.0, env="TICKSTREAM_READY_TIMEOUT", parse=parse_duration,
        help="how long to wait for the stack to become ready",
    )
    stop_timeout: float = setting(
        15.0, env="TICKSTREAM_STOP_TIMEOUT", parse=parse_duration,
        help="how long a child has after SIGTERM before SIGKILL (at least its SHUTDOWN_GRACE + 5 s)",
    )
    redis_server: str = setting(
        "redis-server", env="TICKSTREAM_REDIS_SERVER", help="the redis-server program to run",
    )
    redis_topology: str = setting(
        "single", env="TICKSTREAM_REDIS", flag="--redis",
        help="the private Redis: single (one redis-server), cluster (a 6-node Redis Cluster: 3 "
             "primaries, 3 replicas) or sentinel (a primary, 2 replicas, 3 Sentinels); not with "
             "REDIS_URL",
    )

    def __post_init__(self) -> None:
        if not 1 <= self.gateways <= 64:
            raise ValueError("TICKSTREAM_GATEWAYS: expected 1 to 64 gateways")
        if not 1 <= self.ingestors <= 8:
            raise ValueError("TICKSTREAM_INGESTORS: expected 1 to 8 ingestors")
        for name, port in (("PORT", self.port), ("TICKSTREAM_REDIS_PORT", self.redis_port),
                           ("TICKSTREAM_INGESTOR_PORT", self.ingestor_port),
                           ("TICKSTREAM_SIMULATOR_PORT", self.simulator_port)):
            if not 0 <= port <= 65535:
                raise ValueError(f"{name}: {port} is not a TCP port")
        if self.redis_url:
            scheme, sep, _ = self.redis_url.partition("://")
            if not sep or scheme.lower() not in _URL_SCHEMES:
                raise ValueError("REDIS_URL: expected redis://, rediss:// or unix:// (one server), "
                                 "redis+cluster://host:port,... (Redis Cluster) or "
                                 "redis+sentinel://host:port,...?sentinel_master_name=NAME")
            try:
                parse_redis_url(str(self.redis_url))
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        if self.redis_topology not in REDIS_TOPOLOGIES:
            raise ValueError(f"TICKSTREAM_REDIS: expected single, cluster or sentinel, "
                             f"got {self.redis_topology!r}")
        if self.redis_url and self.redis_topology != "single":
            raise ValueError(f"TICKSTREAM_REDIS: --redis {self.redis_topology} starts a private Redis, "
                             "but REDIS_URL names one to use: give one or the other")
        if self.log_level and self.log_level.upper() not in _LEVELS:
            raise ValueError(f"LOG_LEVEL: unknown level {self.log_level!r}")
        if self.ready_timeout <= 0 or self.stop_timeout <= 0:
            raise ValueError("TICKSTREAM_READY_TIMEOUT and TICKSTREAM_STOP_TIMEOUT must be positive")


# -- the plan: what to start, validated before anything starts ----------------------------------


@dataclass(frozen=True, slots=True)
class RedisLayout:
    """The private Redis ``up`` runs: its topology, the ports of its processes, its folder."""

    kind: str
    folder: Path
    """``<state>/redis`` (single: the data itself), ``<state>/redis-cluster``, ``<state>/redis-sentinel``."""
    ports: tuple[int, ...]
    """The data nodes (cluster: all six; sentinel: the first one is the primary of a new setup)."""
    sentinel_ports: tuple[int, ...] = ()
    reused: bool = False
    """The ports were those of the topology already in ``folder`` (a restart)."""

    @property
    def url(self) -> str:
        return redis_url_for(self.kind, self.ports, self.sentinel_ports)

    def node_dir(self, port: int) -> Path:
        return self.folder if self.kind == "single" else self.folder / str(port)

    def sentinel_dir(self, port: int) -> Path:
        return self.folder / f"sentinel-{port}"

    def sentinel_conf(self, port: int) -> Path:
        return self.sentinel_dir(port) / "sentinel.conf"

    def data_names(self) -> dict[str, int]:
        """Child name -> port of each data node: ``redis`` alone, or ``redis-1`` ... ``redis-N``."""
        if self.kind == "single":
            return {"redis": self.ports[0]}
        return {f"redis-{i}": port for i, port in enumerate(self.ports, 1)}

    def sentinel_names(self) -> dict[str, int]:
        return {f"sentinel-{i}": port for i, port in enumerate(self.sentinel_ports, 1)}

    def describe(self) -> str:
        if self.kind == "cluster":
            primaries = len(self.ports) // (1 + CLUSTER_REPLICAS)
            return f"Redis Cluster: {primaries} primaries, {len(self.ports) - primaries} replicas"
        if self.kind == "sentinel":
            return (f"Sentinel: master {SENTINEL_MASTER!r}, a primary, {len(self.ports) - 1} replicas, "
                    f"{len(self.sentinel_ports)} sentinels")
        return "one redis-server"


@dataclass
class Plan:
    settings: UpSettings
    simulate: bool
    state_dir: Path
    env: dict[str, str]
    redis_url: str
    private_redis: bool
    redis_port: int
    port: int
    ingestor_port: int
    simulator_port: int
    simulator_symbols: tuple[str, ...]
    gateway_nodes: list[str]
    ingestor_node: str
    gateway_stop: float
    ingestor_stop: float
    standby_ingestors: list[tuple[str, int]] = field(default_factory=list)  # (node, port)
    notes: list[str] = field(default_factory=list)
    redis: RedisLayout | None = None
    """The private Redis (``None`` with ``REDIS_URL``)."""
    redis_cli: str = ""
    """``redis-cli``, to create a Redis Cluster."""
    jwt_secret_file: Path | None = None
    """The JWT secret ``up`` keeps in the state folder (``None``: JWT_SECRET or JWT_PUBLIC_KEY given)."""

    @property
    def probe_host(self) -> str:
        host = self.settings.host
        if host in ("0.0.0.0", ""):
            return "127.0.0.1"
        if host == "::":
            return "::1"
        return host

    @property
    def base_url(self) -> str:
        host = self.probe_host
        return f"http://{'[' + host + ']' if ':' in host else host}:{self.port}"


def parse_bool(text: str, name: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected true or false, got {text!r}")


def _port_free(host: str, port: int) -> bool:
    """Can ``port`` be bound on ``host`` without SO_REUSEPORT (so nobody listens there)?"""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _free_port(host: str = "127.0.0.1", avoid: Collection[int] = ()) -> int:
    """A port the kernel says is free, other than ``avoid``: the ports this plan already gave
    out are not bound yet, so the kernel may offer one of them again."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in avoid:
            return port
    raise ConfigError(f"no free port on {host}")


def _choose_port(label: str, variable: str, port: int, default: int, host: str,
                 notes: list[str], avoid: Collection[int] = ()) -> int:
    """0 picks a free port; the default, when taken, falls back to a free one; else it must be
    free. ``avoid``: ports already given to another part of the stack."""
    if port == 0:
        return _free_port(host, avoid)
    if port not in avoid and _port_free(host, port):
        return port
    if port == default:
        chosen = _free_port(host, avoid)
        notes.append(f"{label}: port {port} is taken, using {chosen}")
        return chosen
    raise ConfigError(f"{variable}: port {port} on {host} is in use; choose another")


def _short_host() -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname().split(".")[0])[:24] or "host"


def state_folder(settings: UpSettings) -> Path:
    """The state folder, created if needed: ``--state-dir``, ``$TICKSTREAM_STATE`` or ``./.state``."""
    state_dir = Path(settings.state_dir or Path.cwd() / ".state").expanduser().resolve()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"TICKSTREAM_STATE: cannot create {state_dir}: {exc.strerror}") from None
    return state_dir


# -- the private Redis: ports, arguments, URLs (pure) --------------------------------------------


def redis_url_for(kind: str, ports: Sequence[int], sentinel_ports: Sequence[int] = ()) -> str:
    """The ``REDIS_URL`` the children get for a private Redis of this topology."""
    if kind == "cluster":
        return "redis+cluster://" + ",".join(f"{LOOPBACK}:{p}" for p in ports[:CLUSTER_SEEDS])
    if kind == "sentinel":
        return ("redis+sentinel://" + ",".join(f"{LOOPBACK}:{p}" for p in sentinel_ports)
                + f"?sentinel_master_name={SENTINEL_MASTER}")
    return f"redis://{LOOPBACK}:{ports[0]}/0"


def redis_server_args(server: str, port: int, data_dir: Path) -> list[str]:
    """One loopback ``redis-server`` in the foreground with AOF persistence in ``data_dir``."""
    return [server, "--port", str(port), "--bind", LOOPBACK, "--protected-mode", "yes",
            "--dir", str(data_dir), "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--loglevel", "warning", "--logfile", ""]


def cluster_node_args(server: str, port: int, data_dir: Path) -> list[str]:
    """A Redis Cluster node; its ``nodes.conf`` (the cluster as it knows it) is in ``data_dir``."""
    return [*redis_server_args(server, port, data_dir),
            "--cluster-enabled", "yes", "--cluster-config-file", str(data_dir / "nodes.conf"),
            "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS),
            # A replica's first sync starts at once (the default waits 5 s for more replicas).
            "--repl-diskless-sync-delay", "0"]


def cluster_create_args(cli: str, ports: Sequence[int]) -> list[str]:
    return [cli, "--cluster", "create", *(f"{LOOPBACK}:{p}" for p in ports),
            "--cluster-replicas", str(CLUSTER_REPLICAS), "--cluster-yes"]


def sentinel_node_args(server: str, port: int, data_dir: Path, primary: int) -> list[str]:
    """A data node of the Sentinel setup: the primary when ``primary == port``, else its replica."""
    args = [*redis_server_args(server, port, data_dir), "--repl-diskless-sync-delay", "0"]
    if primary != port:
        args += ["--replicaof", LOOPBACK, str(primary)]
    return args


def sentinel_conf_text(port: int, sentinel_dir: Path, primary: int) -> str:
    """A new Sentinel's configuration file (Sentinel rewrites it as it learns the setup)."""
    name = SENTINEL_MASTER
    return "\n".join([
        "# Written by `tickstream up --redis sentinel`; Sentinel rewrites it (the current primary,",
        "# its replicas, the other sentinels): keep it to keep what the sentinels know.",
        f"port {port}",
        f"bind {LOOPBACK}",
        "daemonize no",
        f'dir "{sentinel_dir}"',
        'logfile ""',
        "loglevel warning",
        "sentinel resolve-hostnames no",
        f"sentinel monitor {name} {LOOPBACK} {primary} {SENTINEL_QUORUM}",
        f"sentinel down-after-milliseconds {name} {SENTINEL_DOWN_AFTER_MS}",
        f"sentinel failover-timeout {name} {SENTINEL_FAILOVER_TIMEOUT_MS}",
        f"sentinel parallel-syncs {name} 1",
        "",
    ])


def sentinel_args(server: str, conf: Path) -> list[str]:
    return [server, str(conf), "--sentinel"]


def sentinel_primary_in_configs(texts: Iterable[str], ports: Sequence[int],
                                master: str = SENTINEL_MASTER) -> int | None:
    """The primary that the sentinels' (rewritten) configuration files name, if one of ``ports``.

    Each file says ``sentinel monitor NAME HOST PORT QUORUM`` (the primary it last knew) and
    ``sentinel config-epoch NAME N`` (bumped by each failover): the newest epoch wins, then the
    port most files name.
    """
    votes: Counter[tuple[int, int]] = Counter()
    for text in texts:
        port, epoch = None, 0
        for line in text.splitlines():
            words = line.split()
            if words[:3] == ["sentinel", "monitor", master] and len(words) >= 5 and words[4].isdigit():
                port = int(words[4])
            elif words[:3] == ["sentinel", "config-epoch", master] and len(words) >= 4 \
                    and words[3].isdigit():
                epoch = int(words[3])
        if port is not None and port in ports:
            votes[(epoch, port)] += 1
    if not votes:
        return None
    return max(votes, key=lambda key: (key[0], votes[key]))[1]


def parse_info(text: str) -> dict[str, str]:
    """``CLUSTER INFO``/``INFO`` text as a dict."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition(":")
        if sep and not key.startswith("#"):
            fields[key] = value
    return fields


def cluster_action(infos: Sequence[Mapping[str, str]]) -> Literal["create", "join"]:
    """``create`` when no node knows another or owns a slot (a new cluster), else ``join``.

    A second ``up`` on the same state folder finds the nodes' ``nodes.conf``: they know each
    other already and rejoin by themselves.
    """
    formed = any(int(info.get("cluster_known_nodes", "1")) > 1
                 or int(info.get("cluster_slots_assigned", "0")) > 0 for info in infos)
    return "join" if formed else "create"


def cluster_problem(infos: Mapping[int, Mapping[str, str] | None], nodes: int = CLUSTER_NODES) -> str | None:
    """What keeps the cluster from serving (every node ``cluster_state:ok`` and knowing all), or None."""
    for port, info in sorted(infos.items()):
        if info is None:
            return f"node {port} does not answer CLUSTER INFO"
        if info.get("cluster_state") != "ok":
            return f"node {port} is cluster_state:{info.get('cluster_state', '?')}"
        if int(info.get("cluster_known_nodes", "0")) != nodes:
            return f"node {port} knows {info.get('cluster_known_nodes')} of {nodes} nodes"
    return None


PortProblem = Callable[[int], str | None]


def run_problem(start: int, count: int, problem: PortProblem) -> str | None:
    """Why ports ``start`` ... ``start + count - 1`` cannot all be used, or None."""
    for port in range(start, start + count):
        if port > 65535:
            return f"port {port} is past 65535"
        if (issue := problem(port)) is not None:
            return issue
    return None


def choose_port_run(label: str, variable: str, port: int, default: int, count: int,
                    problem: PortProblem, candidates: Iterable[int], notes: list[str]) -> int:
    """The first of ``count`` consecutive usable ports: from ``port`` when they are usable.

    ``0`` picks a run starting at one of ``candidates``; so does the default when it is taken
    (with a note); a port given explicitly must be usable, else :class:`ConfigError`.
    """
    last = f"{port}-{port + count - 1}"
    if port:
        issue = run_problem(port, count, problem)
        if issue is None:
            return port
        if port != default:
            raise ConfigError(f"{variable}: {label} needs ports {last}, but {issue}; choose another")
    for start in candidates:
        if start and run_problem(start, count, problem) is None:
            if port:
                notes.append(f"{label}: {issue} (ports {last}), using ports {start}-{start + count - 1}")
            return start
    raise ConfigError(f"{variable}: found no {count} consecutive free ports for {label}")


def layout_from_names(kind: str, names: Iterable[str], has_file: Callable[[str], bool]) -> tuple[
        tuple[int, ...], tuple[int, ...]] | None:
    """The ports of the topology a previous ``up`` left in its folder, from the folder's entries.

    Cluster: ``<port>/nodes.conf`` for each of the 6 nodes. Sentinel: ``<port>/`` for each data
    node and ``sentinel-<port>/sentinel.conf`` for each sentinel. ``None`` when there is none;
    :class:`ConfigError` when it is incomplete (to be removed by hand: it may hold data).
    """
    entries = list(names)
    if kind == "cluster":
        data = sorted(int(n) for n in entries if n.isdigit() and has_file(f"{n}/nodes.conf"))
        sentinels: list[int] = []
        expected = (CLUSTER_NODES, 0)
    else:
        data = sorted(int(n) for n in entries if n.isdigit())
        sentinels = sorted(int(n.removeprefix("sentinel-")) for n in entries
                           if n.startswith("sentinel-") and n.removeprefix("sentinel-").isdigit()
                           and has_file(f"{n}/sentinel.conf"))
        expected = (SENTINEL_DATA_NODES, SENTINELS)
    if not data and not sentinels:
        return None
    if (len(data), len(sentinels)) != expected:
        found = f"{len(data)} data nodes" + (f" and {len(sentinels)} sentinels" if kind == "sentinel" else "")
        raise ConfigError(f"TICKSTREAM_STATE: the Redis {kind} folder holds {found}, not "
                          f"{expected[0]}{f' and {expected[1]}' if kind == 'sentinel' else ''}; "
                          "remove it (its data with it) to start a new one")
    return tuple(data), tuple(sentinels)


def _port_problem(port: int) -> str | None:
    return None if _port_free(LOOPBACK, port) else f"port {port} is in use"


def _cluster_port_problem(port: int) -> str | None:
    bus = port + CLUSTER_BUS_OFFSET
    if bus > 65535:
        return f"its cluster bus port {bus} is past 65535"
    if not _port_free(LOOPBACK, port):
        return f"port {port} is in use"
    if not _port_free(LOOPBACK, bus):
        return f"cluster bus port {bus} is in use"
    return None


def _ephemeral_low() -> int:
    """The first port the kernel hands out to outgoing connections (they come and go there)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _candidate_ports(count: int, bus: bool, tries: int = 200) -> Iterable[int]:
    """Where a run of ``count`` ports may start: below the ephemeral range (bus ports included),
    where no outgoing connection takes a port for a while; then ports the kernel says are free."""
    top = _ephemeral_low() - count - (CLUSTER_BUS_OFFSET if bus else 0)
    pick = random.Random()
    if top > 10000:
        for _ in range(tries):
            yield pick.randrange(10000, top)
    for _ in range(tries):
        yield _free_port(LOOPBACK)


def plan_redis(settings: UpSettings, state_dir: Path, notes: list[str],
               avoid: Collection[int] = ()) -> RedisLayout:
    """The private Redis: ports (those of the topology already in the state folder, if any)."""
    kind = settings.redis_topology
    folder = state_dir / REDIS_FOLDERS[kind]
    if kind == "single":
        port = _choose_port("redis", "TICKSTREAM_REDIS_PORT", settings.redis_port, DEFAULT_REDIS_PORT,
                            LOOPBACK, notes, avoid)
        return RedisLayout("single", folder, (port,))
    problem = _cluster_port_problem if kind == "cluster" else _port_problem
    previous = None
    if folder.is_dir():
        previous = layout_from_names(kind, (e.name for e in folder.iterdir()),
                                     lambda rel: (folder / rel).is_file())
    if previous is not None:
        data, sentinels = previous
        for port in (*data, *sentinels):
            if (issue := problem(port)) is not None:
                raise ConfigError(f"TICKSTREAM_REDIS_PORT: the Redis {kind} in {folder} runs on ports "
                                  f"{', '.join(map(str, (*data, *sentinels)))}, but {issue} (another "
                                  "`tickstream up`?); free it, or remove the folder to start a new one")
        if settings.redis_port not in (0, DEFAULT_REDIS_PORT, data[0]):
            notes.append(f"redis: {folder} holds a Redis {kind} on ports starting at {data[0]}: "
                         f"using them, not {settings.redis_port}")
        return RedisLayout(kind, folder, data, sentinels, reused=True)
    data_count = CLUSTER_NODES if kind == "cluster" else SENTINEL_DATA_NODES
    count = data_count + (SENTINELS if kind == "sentinel" else 0)
    start = choose_port_run(f"redis {kind}", "TICKSTREAM_REDIS_PORT", settings.redis_port,
                            DEFAULT_REDIS_PORT, count, problem,
                            _candidate_ports(count, kind == "cluster"), notes)
    ports = tuple(range(start, start + count))
    return RedisLayout(kind, folder, ports[:data_count], ports[data_count:])


def redis_cli_for(server: str) -> str | None:
    """``redis-cli`` next to the given ``redis-server`` when it has a folder, else on the PATH."""
    if "/" in server:
        sibling = Path(server).with_name("redis-cli")
        if sibling.is_file():
            return str(sibling)
    return shutil.which("redis-cli")


def build_plan(settings: UpSettings, simulate: bool, environ: Mapping[str, str]) -> Plan:
    """Resolve ports, the state folder and the children's environment; check their settings.

    Raises :class:`ConfigError` (one line, exit 2) for anything a child would refuse, so that a
    mistake is reported before anything starts.
    """
    from gateway.settings import GatewaySettings
    from ingestor.settings import IngestorSettings
    from shared.settings import from_args

    notes: list[str] = []
    state_dir = state_folder(settings)

    port = settings.port or _free_port(settings.host or "127.0.0.1")
    if not _port_free(settings.host, port):
        raise ConfigError(f"PORT: port {port} on {settings.host} is in use (another `tickstream up` "
                          "or gateway?); choose another with --port")
    taken = {port}  # every port given out so far: none is bound until the children start
    private = not settings.redis_url
    redis_port = 0
    layout: RedisLayout | None = None
    redis_cli = ""
    if private:
        if shutil.which(settings.redis_server) is None:
            raise ConfigError(f"TICKSTREAM_REDIS_SERVER: {settings.redis_server!r} not found: install "
                              "redis-server (`make run` does) or give REDIS_URL")
        if settings.redis_topology == "cluster":
            redis_cli = redis_cli_for(settings.redis_server) or ""
            if not redis_cli:
                raise ConfigError("TICKSTREAM_REDIS: --redis cluster needs redis-cli (to create the "
                                  "cluster): install it (it comes with redis-server)")
        layout = plan_redis(settings, state_dir, notes, avoid=taken)
        redis_port = layout.ports[0]
        redis_url = layout.url
        taken.update(layout.ports, layout.sentinel_ports,
                     (p + CLUSTER_BUS_OFFSET for p in layout.ports if layout.kind == "cluster"))
    else:
        redis_url = settings.redis_url.reveal()
    ingestor_port = _choose_port("ingestor", "TICKSTREAM_INGESTOR_PORT", settings.ingestor_port,
                                 DEFAULT_INGESTOR_PORT, "127.0.0.1", notes, taken)
    taken.add(ingestor_port)
    simulator_port = 0
    if simulate:
        simulator_port = _choose_port("simulator", "TICKSTREAM_SIMULATOR_PORT", settings.simulator_port,
                                      DEFAULT_SIMULATOR_PORT, "127.0.0.1", notes, taken)
        taken.add(simulator_port)
    standby_ports: list[int] = []
    for _ in range(2, settings.ingestors + 1):
        standby_ports.append(_free_port("127.0.0.1", taken))
        taken.add(standby_ports[-1])

    env = dict(environ)
    env["REDIS_URL"] = redis_url
    env["PYTHONUNBUFFERED"] = "1"
    if settings.symbols:
        env["SYMBOLS"] = ",".join(settings.symbols)
    if settings.log_level:
        env["LOG_LEVEL"] = settings.log_level.upper()
    jwt_secret_file = None
    if not env.get("JWT_SECRET") and not env.get("JWT_PUBLIC_KEY"):
        # Tokens work out of the box: a secret made once, kept in the state folder (0600).
        from tickstream.stackfile import keep_secret, read_secret

        jwt_secret_file = keep_secret(state_dir)
        env["JWT_SECRET"] = read_secret(jwt_secret_file)
        env.pop("JWT_PUBLIC_KEY", None)

    host = _short_host()
    nodes = [f"{host}-gw{i}" for i in range(1, settings.gateways + 1)]
    ingestor_node = f"{host}-ingestor"

    # The children's own validation, run here: a bad JWT_SECRET or SYMBOLS stops `up` at once.
    gateway = from_args(GatewaySettings, None, environ=env, host=settings.host, port=port,
                        workers=1, node=nodes[0])
    sim_urls: dict[str, Any] = {}
    simulator_symbols: tuple[str, ...] = ()
    if simulate:
        sim_urls = {"binance_ws_url": f"ws://127.0.0.1:{simulator_port}",
                    "binance_rest_url": f"http://127.0.0.1:{simulator_port}"}
    ingestor = from_args(IngestorSettings, None, environ=env, host="127.0.0.1", port=ingestor_port,
                         node=ingestor_node, **sim_urls)
    if simulate:
        from simulator.config import SimulatorConfig

        # The simulator must list what the ingestor asks for (unless told otherwise).
        if "SIMULATOR_SYMBOLS" not in env and settings.symbols:
            simulator_symbols = ingestor.symbols
        from_args(SimulatorConfig, None, environ=env, host="127.0.0.1", port=simulator_port,
                  **({"symbols": simulator_symbols} if simulator_symbols else {}))
    return Plan(
        settings=settings, simulate=simulate, state_dir=state_dir, env=env, redis_url=redis_url,
        private_redis=private, redis_port=redis_port, port=port, ingestor_port=ingestor_port,
        simulator_port=simulator_port, simulator_symbols=simulator_symbols, gateway_nodes=nodes,
        ingestor_node=ingestor_node,
        gateway_stop=max(settings.stop_timeout, gateway.shutdown_grace + STOP_MARGIN),
        ingestor_stop=max(settings.stop_timeout, ingestor.shutdown_grace + STOP_MARGIN),
        standby_ingestors=[(f"{ingestor_node}-{i}", standby_port)
                           for i, standby_port in enumerate(standby_ports, start=2)],
        notes=notes, redis=layout, redis_cli=redis_cli, jwt_secret_file=jwt_secret_file,
    )
