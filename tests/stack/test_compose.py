"""docker-compose.yml, the Dockerfile and deploy/haproxy.cfg, checked against the code.

No Docker engine is needed: the compose file is parsed (PyYAML), every service's command is run
through the real ``tickstream`` argument parser, every environment variable it sets must be a
setting that command reads (from the settings dataclasses' metadata), the values must pass the
settings' own validation, and ports and healthchecks must match the settings' defaults. The
``ha`` profile's Sentinel setup is checked against deploy/sentinel/ (and those configuration
files are loaded by a real redis-server when one is installed).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from gateway.settings import GatewaySettings
from ingestor.settings import IngestorSettings
from shared import settings as settings_module
from shared.redisconn import parse_redis_url
from shared.settings import from_args, parse_duration
from simulator.config import SimulatorConfig
from tickstream.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
HAPROXY = (ROOT / "deploy" / "haproxy.cfg").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()

SETTINGS: dict[str, type[Any]] = {
    "gateway": GatewaySettings,
    "ingestor": IngestorSettings,
    "simulator": SimulatorConfig,
}
OUR_SERVICES = ["ingestor", "gateway", "simulator"]
SENTINEL_DIR = ROOT / "deploy" / "sentinel"
HA_DATA = ["redis-primary", "redis-replica-1", "redis-replica-2"]
HA_SENTINELS = ["sentinel-1", "sentinel-2", "sentinel-3"]
HA_SERVICES = [*HA_DATA, *HA_SENTINELS]


def env_file(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


HA_VARIABLES = env_file(SENTINEL_DIR / "ha.env")


def env_names(cls: type[Any]) -> set[str]:
    """The environment variables a settings class reads (from its fields' metadata)."""
    names = set()
    for field in dataclasses.fields(cls):
        spec = field.metadata.get(settings_module._META)
        if spec is not None and spec.env:
            names.add(spec.env)
    return names


def interpolate(value: str, variables: dict[str, str] | None = None) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}`` (nested), with ``variables`` as the shell."""
    variables = variables or {}
    pattern = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-((?:[^${}]|\$\{[^}]*\})*))?\}")
    while True:
        new = pattern.sub(lambda m: variables.get(m.group(1)) or interpolate(m.group(2) or "",
                                                                              variables), value)
        if new == value:
            return new
        value = new


def environment(service: str, variables: dict[str, str] | None = None) -> dict[str, str]:
    env = SERVICES[service].get("environment", {})
    assert isinstance(env, dict), f"{service}: write environment as a mapping"
    return {k: interpolate(str(v), variables) for k, v in env.items()}


def image_env() -> dict[str, str]:
    """``ENV`` of the Dockerfile's final stage (what every container starts with)."""
    final = DOCKERFILE.split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", final, re.M):
        for item in shlex.split(block.replace("\\\n", " ")):
            key, _, value = item.partition("=")
            env[key] = value
    return env


def healthcheck_url(service: str) -> str:
    test = SERVICES[service]["healthcheck"]["test"]
    assert test[:4] == ["CMD", "python", "-m", "tickstream.healthcheck"], test
    return str(test[4])


# -- services and commands -----------------------------------------------------------------------


def test_the_services_the_contract_names() -> None:
    assert set(SERVICES) == {"redis", "ingestor", "ingestor-b", "gateway", "haproxy", "simulator",
                             *HA_SERVICES}
    assert SERVICES["simulator"]["profiles"] == ["simulate"]
    assert all(SERVICES[name]["profiles"] == ["ha"] for name in HA_SERVICES)
    assert all("profiles" not in s for name, s in SERVICES.items()
               if name not in ("simulator", *HA_SERVICES))


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_command_is_a_real_tickstream_command(service: str) -> None:
    command = SERVICES[service]["command"]
    assert command[0] == service
    args = build_parser().parse_args(command)  # exits (SystemExit) on an unknown flag
    assert args.command == service
    assert SERVICES[service]["image"] == SERVICES["gateway"]["image"]
    assert SERVICES[service]["build"] == "."


@pytest.mark.parametrize("service", OUR_SERVICES)
def test_every_variable_set_is_one_the_command_reads(service: str) -> None:
    known = env_names(SETTINGS[service])
    # The parser the CLI builds shows the same variables (add_arguments names them: "[env NAME]").
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    sub = cast("dict[str, argparse.ArgumentParser]", choices)[service]
    flags = {name for a in sub._actions if a.option_strings and a.help
             for name in re.findall(r"\[env ([A-Z][A-Z0-9_]*)\]", a.help)}
    assert known <= flags
    unknown = set(environment(service)) - known
    assert unknown == set(), f"{service} sets variables it does not read: {sorted(unknown)}"
    for key in image_env():
        assert key in known or key in ("PATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE"), key


@pytest.mark.parametrize("service", OUR_SERVICES)
@pytest.mark.parametrize("variables", [{}, {"BINANCE_WS_URL": "ws://simulator:9443",
                                            "BINANCE_REST_URL": "http://simulator:9443",
                                            "SYMBOLS": "SOLUSDT"}, HA_VARIABLES])
def test_the_values_pass_the_settings_validation(service: str, variables: dict[str, str]) -> None:
    env = {**image_env(), **environment(service, variables)}
    settings = from_args(SETTINGS[service], None, environ=env)
    assert settings.host == "0.0.0.0"  # reachable from the other containers
    if service == "simulator" and "SYMBOLS" in variables:
        assert settings.symbols == ("SOLUSDT",)  # the simulator lists what the ingestor asks for


# -- ports and healthchecks ----------------------------------------------------------------------


@pytest.mark.parametrize(("service", "path"), [("gateway", "/readyz"), ("ingestor", "/healthz"),
                                                ("simulator", "/api/v3/ping")])
def test_ports_and_healthchecks_match_the_settings(service: str, path: str) -> None:
    cls = SETTINGS[service]
    default_port = {f.name: f.default for f in dataclasses.fields(cls)}["port"]
    port = from_args(cls, None, environ={**image_env(), **environment(service)}).port
    assert port == default_port, f"{service} runs on {port}, its documented default is {default_port}"
    assert healthcheck_url(service) == f"http://127.0.0.1:{port}{path}"
    assert SERVICES[service]["expose"] == [str(port)]
    assert f" {port}" in re.search(r"^EXPOSE .*$", DOCKERFILE, re.M).group(0)  # type: ignore[union-attr]


def test_the_gateway_is_replicated_and_drains_within_its_stop_grace_period() -> None:
    gateway = SERVICES["gateway"]
    assert gateway["deploy"]["replicas"] >= 2
    assert "ports" not in gateway  # only the load balancer is published
    grace = from_args(GatewaySettings, None, environ=environment("gateway")).shutdown_grace
    assert parse_duration(gateway["stop_grace_period"]) > grace
    assert "NODE_ID" not in environment("gateway")  # each replica makes its own node id


def test_redis_has_aof_a_volume_and_a_ping_healthcheck() -> None:
    redis = SERVICES["redis"]
    assert re.match(r"^redis:7(\.|$|-)", interpolate(redis["image"]))
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume = redis["volumes"][0]
    assert volume.split(":")[1] == "/data" and volume.split(":")[0] in COMPOSE["volumes"]
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for service in ("ingestor", "gateway"):
        assert environment(service)["REDIS_URL"] == "redis://redis:6379/0"
        assert SERVICES[service]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_simulate_profile_points_the_ingestor_at_the_simulator() -> None:
    lines = (ROOT / "deploy" / "simulate.env").read_text().splitlines()
    variables = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    assert variables["COMPOSE_PROFILES"] == "simulate"
    port = from_args(SimulatorConfig, None, environ={**image_env(), **environment("simulator")}).port
    env = environment("ingestor", variables)
    assert env["BINANCE_WS_URL"] == f"ws://simulator:{port}"
    assert env["BINANCE_REST_URL"] == f"http://simulator:{port}"
    # Without the file, live Binance (the contract's defaults).
    live = from_args(IngestorSettings, None, environ=environment("ingestor"))
    defaults = IngestorSettings()
    assert (live.binance_ws_url, live.binance_rest_url) == (defaults.binance_ws_url,
                                                            defaults.binance_rest_url)
    dependency = SERVICES["ingestor"]["depends_on"]["simulator"]
    assert dependency == {"condition": "service_healthy", "required": False}


# -- the ha profile: Redis Sentinel --------------------------------------------------------------


def conf(path: Path) -> list[list[str]]:
    """A Redis configuration file's directives, split in words (comments and blanks dropped)."""
    return [shlex.split(line) for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def directive(lines: list[list[str]], *words: str) -> list[str]:
    """The arguments of the one directive starting with ``words``."""
    found = [line[len(words):] for line in lines if line[:len(words)] == list(words)]
    assert len(found) == 1, f"{' '.join(words)}: {found}"
    return found[0]


def shell(service: str) -> str:
    command = SERVICES[service]["command"]
    assert command[:2] == ["sh", "-c"] and len(command) == 3, command
    return str(command[2])


def test_the_ha_env_file_points_the_ingestor_and_the_gateways_at_the_sentinels() -> None:
    assert HA_VARIABLES["COMPOSE_PROFILES"] == "ha"
    urls = {environment(service, HA_VARIABLES)["REDIS_URL"] for service in ("ingestor", "gateway")}
    assert urls == {HA_VARIABLES["TICKSTREAM_REDIS_URL"]}
    target = parse_redis_url(urls.pop())
    sentinel_conf = conf(SENTINEL_DIR / "sentinel.conf")
    port = int(directive(sentinel_conf, "port")[0])
    assert target.kind == "sentinel"
    assert list(target.nodes) == [(name, port) for name in HA_SENTINELS]
    name, host, primary_port, quorum = directive(sentinel_conf, "sentinel", "monitor")
    assert target.master_name == name
    assert host == "redis-primary" and int(primary_port) == int(directive(conf(SENTINEL_DIR / "redis.conf"),
                                                                          "port")[0])
    assert len(HA_SENTINELS) // 2 < int(quorum) <= len(HA_SENTINELS)
    # Without the file: the plain redis service, as before.
    assert {environment(s)["REDIS_URL"] for s in ("ingestor", "gateway")} == {"redis://redis:6379/0"}
    for service in ("ingestor", "gateway"):
        depends = SERVICES[service]["depends_on"]
        for sentinel in HA_SENTINELS:
            assert depends[sentinel] == {"condition": "service_healthy", "required": False}


def test_sentinels_use_hostnames_and_keep_their_rewritten_config() -> None:
    sentinel_conf = conf(SENTINEL_DIR / "sentinel.conf")
    assert directive(sentinel_conf, "sentinel", "resolve-hostnames") == ["yes"]
    assert directive(sentinel_conf, "sentinel", "announce-hostnames") == ["yes"]
    assert directive(sentinel_conf, "dir") == ["/data"]
    name = directive(sentinel_conf, "sentinel", "monitor")[0]
    assert int(directive(sentinel_conf, "sentinel", "down-after-milliseconds", name)[0]) >= 1000
    port = directive(sentinel_conf, "port")[0]
    for service in HA_SENTINELS:
        spec = SERVICES[service]
        assert spec["image"] == SERVICES["redis"]["image"]
        # A copy in the service's own volume, made once: Sentinel rewrites it, a restart keeps it.
        assert shell(service) == (
            "[ -f /data/sentinel.conf ] || cp /etc/tickstream/sentinel.conf /data/sentinel.conf; "
            f"exec docker-entrypoint.sh redis-server /data/sentinel.conf --sentinel announce-ip {service}")
        volumes = spec["volumes"]
        assert "./deploy/sentinel:/etc/tickstream:ro" in volumes
        data = next(v for v in volumes if v.endswith(":/data"))
        assert data.split(":")[0] in COMPOSE["volumes"]
        assert spec["healthcheck"]["test"] == ["CMD", "redis-cli", "-p", port, "ping"]
        assert set(spec["depends_on"]) == set(HA_DATA)  # it resolves their names as it starts


def test_data_nodes_start_as_written_once_then_as_sentinel_left_them() -> None:
    redis_conf = conf(SENTINEL_DIR / "redis.conf")
    assert directive(redis_conf, "appendonly") == ["yes"] and directive(redis_conf, "dir") == ["/data"]
    port = directive(redis_conf, "port")[0]
    assert not [line for line in redis_conf if line[0] in ("replicaof", "slaveof")]
    start = "exec docker-entrypoint.sh redis-server /data/redis.conf --replica-announce-ip"
    assert shell("redis-primary") == ("[ -f /data/redis.conf ] || cp /etc/tickstream/redis.conf "
                                      f"/data/redis.conf; {start} redis-primary")
    for service in HA_DATA[1:]:
        # The replica's role goes into its copy (never on the command line, which would win over
        # what Sentinel rewrote after a failover).
        assert shell(service) == (
            "[ -f /data/redis.conf ] || { cp /etc/tickstream/redis.conf /data/redis.conf && "
            f"echo 'replicaof redis-primary {port}' >> /data/redis.conf; }}; {start} {service}")
    names = [SERVICES[s]["volumes"] for s in HA_DATA]
    data_volumes = [next(v for v in volumes if v.endswith(":/data")).split(":")[0] for volumes in names]
    assert len(set(data_volumes)) == 3 and set(data_volumes) <= set(COMPOSE["volumes"])
    for service in HA_DATA:
        assert SERVICES[service]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
        assert "ports" not in SERVICES[service]


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_the_sentinel_configuration_files_load_in_a_real_redis_server(tmp_path: Path) -> None:
    """deploy/sentinel/*.conf as the containers run them, on loopback: localhost for the names."""
    import redis

    from tests.support.redis_server import free_port
    from tests.support.waiting import until_sync

    data_port, sentinel_port = free_port(), free_port()
    procs = []
    try:
        for name, extra in (("redis.conf", ["--port", str(data_port)]),
                            ("sentinel.conf", ["--sentinel", "announce-ip", "sentinel-1",
                                               "--port", str(sentinel_port)])):
            text = (SENTINEL_DIR / name).read_text().replace("/data", str(tmp_path))
            text = text.replace("redis-primary 6379", f"localhost {data_port}")
            copy = tmp_path / name
            copy.write_text(text + "bind 127.0.0.1\n")
            procs.append(subprocess.Popen(["redis-server", str(copy), *extra],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
        client = redis.Redis(port=sentinel_port, socket_timeout=1, decode_responses=True)

        def named() -> object:
            assert all(p.poll() is None for p in procs), [p.stderr.read() for p in procs if p.stderr]
            try:
                return client.sentinel_get_master_addr_by_name("tickstream")
            except redis.RedisError:
                return None

        assert until_sync(named, 10, "the sentinel to name the primary") == ("localhost", data_port)
        client.close()
        assert 'sentinel announce-ip "sentinel-1"' in (tmp_path / "sentinel.conf").read_text()
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


def test_depends_on_names_existing_services() -> None:
    for name, service in SERVICES.items():
        for target in service.get("depends_on", {}):
            assert target in SERVICES, f"{name} depends on unknown {target}"


# -- the load balancer ---------------------------------------------------------------------------


def haproxy_section(kind: str, name: str) -> list[str]:
    match = re.search(rf"^{kind} {name}\n((?:[ \t]+.*\n|\s*\n)*)", HAPROXY, re.M)
    assert match, f"no {kind} {name} in deploy/haproxy.cfg"
    return [line.split("#")[0].strip() for line in match.group(1).splitlines()
            if line.split("#")[0].strip()]


def test_haproxy_sends_to_the_gateway_port_and_checks_readyz() -> None:
    backend = haproxy_section("backend", "gateways")
    assert "balance leastconn" in backend
    assert "option httpchk GET /readyz" in backend
    servers = [line for line in backend if line.startswith(("server ", "server-template "))]
    assert servers
    gateway_port = from_args(GatewaySettings, None, environ=environment("gateway")).port
    for line in servers:
        address = next(word for word in line.split() if ":" in word)
        host, port = address.rsplit(":", 1)
        assert host == "gateway" and int(port) == gateway_port, line


def test_haproxy_listens_where_compose_publishes_it() -> None:
    frontend = haproxy_section("frontend", "tickstream")
    bind = next(line for line in frontend if line.startswith("bind "))
    port = int(bind.split()[1].rsplit(":", 1)[1])
    published = SERVICES["haproxy"]["ports"]
    assert [interpolate(p) for p in published] == [f"0.0.0.0:8080:{port}"]
    assert SERVICES["haproxy"]["volumes"] == ["./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]


def test_haproxy_timeouts_suit_websockets() -> None:
    timeouts = dict(re.findall(r"^\s*timeout ([a-z-]+)\s+(\S+)", HAPROXY, re.M))
    heartbeat = from_args(GatewaySettings, None, environ=environment("gateway")).heartbeat_interval
    assert parse_duration(timeouts["tunnel"]) >= 3600
    # Idle limits above the heartbeat: a live but quiet client is never cut.
    assert parse_duration(timeouts["client"]) > heartbeat
    assert parse_duration(timeouts["server"]) > heartbeat
    assert parse_duration(timeouts["connect"]) <= 10


# -- the image -----------------------------------------------------------------------------------


def test_dockerfile_is_slim_non_root_pinned_and_health_checked() -> None:
    stages = re.findall(r"^FROM (\S+)", DOCKERFILE, re.M)
    assert re.search(r"^ARG BASE_IMAGE=python:3\.11-slim$", DOCKERFILE, re.M)
    assert stages and all(s == "${BASE_IMAGE}" for s in stages)
    final = DOCKERFILE.split("\nFROM ")[-1]
    user = re.findall(r"^USER (\S+)", final, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert "-c requirements.lock" in DOCKERFILE
    assert re.search(r"^HEALTHCHECK .*\n?.*CMD \[\"python\", \"-m\", \"tickstream.healthcheck\"\]",
                     final, re.M)
    assert re.search(r'^ENTRYPOINT \["tickstream"\]', final, re.M)
    copied = set(re.findall(r"^COPY (\S+) \./\1$", DOCKERFILE, re.M))
    packages = {"shared", "gateway", "ingestor", "simulator", "tickstream"}
    assert packages <= copied


def test_dockerignore_keeps_local_state_out_of_the_image() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", ".venv", ".state", ".env"} <= ignored
    copied = set(re.findall(r"^COPY (\S+) ", DOCKERFILE, re.M)) - {"--from=build"}
    assert not copied & ignored, "the Dockerfile copies something .dockerignore leaves out"


def test_every_runtime_dependency_is_pinned_by_the_lock() -> None:
    pinned = {canonicalize_name(line.split("==")[0])
              for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}

    def closure(name: str, extras: set[str], seen: set[str]) -> None:
        name = canonicalize_name(name)
        if name in seen:
            return
        seen.add(name)
        for text in importlib.metadata.requires(name) or []:
            req = Requirement(text)
            if req.marker is not None and not any(
                    req.marker.evaluate({"extra": extra}) for extra in (extras or {""})):
                continue
            closure(req.name, set(req.extras), seen)

    seen: set[str] = set()
    closure("tickstream", {"server"}, seen)  # the image installs .[server]
    assert {"uvicorn", "uvloop", "httptools", "hiredis", "cryptography", "httpx"} <= seen  # extras walked
    missing = sorted(seen - pinned - {"tickstream"})
    assert missing == [], f"runtime dependencies not in requirements.lock: {missing}"


def test_two_ingestors_form_one_group() -> None:
    a, b = SERVICES["ingestor"], SERVICES["ingestor-b"]
    assert a["command"] == b["command"] == ["ingestor"]
    shared = {k: v for k, v in a["environment"].items() if k != "NODE_ID"}
    assert {k: v for k, v in b["environment"].items() if k != "NODE_ID"} == shared  # same group
    assert a["environment"]["NODE_ID"] != b["environment"]["NODE_ID"]  # own health keys
