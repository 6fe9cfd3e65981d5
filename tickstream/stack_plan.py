"""What ``tickstream up`` will start: its settings, ports, state folder and the plan.

Pure decisions made before anything runs (:func:`build_plan`); :mod:`tickstream.up` carries
them out.
"""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.errors import ConfigError
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


@dataclass(frozen=True, slots=True)
class UpSettings:
    """What ``tickstream up`` itself reads; everything else passes through to the children."""

    host: str = setting("127.0.0.1", env="HOST", help="address the gateways listen on")
    port: int = setting(DEFAULT_PORT, env="PORT",
                        help="port every gateway listens on (SO_REUSEPORT); 0 = a free port")
    gateways: int = setting(2, env="TICKSTREAM_GATEWAYS", help="number of gateway processes")
    redis_url: Secret = setting(
        Secret(""), env="REDIS_URL",
        help="use this Redis instead of starting a private redis-server",
    )
    redis_port: int = setting(
        DEFAULT_REDIS_PORT, env="TICKSTREAM_REDIS_PORT",
        help="port of the private redis-server on 127.0.0.1 (if the default is taken: a free one)",
    )
    ingestor_port: int = setting(
        DEFAULT_INGESTOR_PORT, env="TICKSTREAM_INGESTOR_PORT",
        help="port of the ingestor's /healthz, /readyz, /metrics (default taken: a free one)",
    )
    simulator_port: int = setting(
        DEFAULT_SIMULATOR_PORT, env="TICKSTREAM_SIMULATOR_PORT",
        help="port of the simulator with --simulate (default taken: a free one)",
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

    def __post_init__(self) -> None:
        if not 1 <= self.gateways <= 64:
            raise ValueError("TICKSTREAM_GATEWAYS: expected 1 to 64 gateways")
        for name, port in (("PORT", self.port), ("TICKSTREAM_REDIS_PORT", self.redis_port),
                           ("TICKSTREAM_INGESTOR_PORT", self.ingestor_port),
                           ("TICKSTREAM_SIMULATOR_PORT", self.simulator_port)):
            if not 0 <= port <= 65535:
                raise ValueError(f"{name}: {port} is not a TCP port")
        if self.redis_url and not re.match(r"^(redis|rediss|unix)://", self.redis_url):
            raise ValueError("REDIS_URL: expected redis://, rediss:// or unix://")
        if self.log_level and self.log_level.upper() not in _LEVELS:
            raise ValueError(f"LOG_LEVEL: unknown level {self.log_level!r}")
        if self.ready_timeout <= 0 or self.stop_timeout <= 0:
            raise ValueError("TICKSTREAM_READY_TIMEOUT and TICKSTREAM_STOP_TIMEOUT must be positive")


# -- the plan: what to start, validated before anything starts ----------------------------------


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
    notes: list[str] = field(default_factory=list)

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


def _free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _choose_port(label: str, variable: str, port: int, default: int, host: str,
                 notes: list[str]) -> int:
    """0 picks a free port; the default, when taken, falls back to a free one; else it must be free."""
    if port == 0:
        return _free_port(host)
    if _port_free(host, port):
        return port
    if port == default:
        chosen = _free_port(host)
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
    private = not settings.redis_url
    redis_port = 0
    if private:
        if shutil.which(settings.redis_server) is None:
            raise ConfigError(f"TICKSTREAM_REDIS_SERVER: {settings.redis_server!r} not found: install "
                              "redis-server (`make run` does) or give REDIS_URL")
        redis_port = _choose_port("redis", "TICKSTREAM_REDIS_PORT", settings.redis_port,
                                  DEFAULT_REDIS_PORT, "127.0.0.1", notes)
        redis_url = f"redis://127.0.0.1:{redis_port}/0"
    else:
        redis_url = settings.redis_url.reveal()
    ingestor_port = _choose_port("ingestor", "TICKSTREAM_INGESTOR_PORT", settings.ingestor_port,
                                 DEFAULT_INGESTOR_PORT, "127.0.0.1", notes)
    simulator_port = 0
    if simulate:
        simulator_port = _choose_port("simulator", "TICKSTREAM_SIMULATOR_PORT", settings.simulator_port,
                                      DEFAULT_SIMULATOR_PORT, "127.0.0.1", notes)

    env = dict(environ)
    env["REDIS_URL"] = redis_url
    env["PYTHONUNBUFFERED"] = "1"
    if settings.symbols:
        env["SYMBOLS"] = ",".join(settings.symbols)
    if settings.log_level:
        env["LOG_LEVEL"] = settings.log_level.upper()

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
        notes=notes,
    )


# -- probes ------------------------------------------------------------------------------------
