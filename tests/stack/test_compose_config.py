"""docker-compose.yml against the Compose Specification, and what a schema cannot see.

- The schema: the specification's published JSON schema, stored as data in
  tests/support/compose-spec.json (provenance in compose-spec.README.md), checked with
  ``jsonschema`` on the file as written and as interpolated for each env file in deploy/.
- Semantics: every ``depends_on`` names a service, and a dependency that is required is running
  whenever its dependent is (profiles); every variable the file reads from the shell and every
  one an env file sets is one the stack knows; every variable a Tickstream service sets is a
  setting its command reads; HAProxy's backend names the gateway service, its port and enough
  slots for its replicas; only HAProxy is published, on every interface unless
  TICKSTREAM_BIND says otherwise; every image can be replaced from the environment.
- ``haproxy -c -f deploy/haproxy.cfg``: the real file, as the container reads it.

scripts/compose-smoke.sh runs the same file under podman (docs/containers.md); this module is
the part that fits in ``make test``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import GatewaySettings
from ingestor.settings import IngestorSettings
from shared import settings as settings_module
from simulator.config import SimulatorConfig

ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "tests" / "support" / "compose-spec.json"
COMPOSE_FILES = sorted(p for pattern in ("docker-compose*.yml", "compose*.yml", "deploy/**/*compose*.yml")
                       for p in ROOT.glob(pattern))
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
ENV_FILES = sorted((ROOT / "deploy").glob("**/*.env"))
SETTINGS: dict[str, type[Any]] = {"gateway": GatewaySettings, "ingestor": IngestorSettings,
                                  "simulator": SimulatorConfig}
# Variables only the compose file reads (none is a Tickstream setting). docs/containers.md.
COMPOSE_ONLY = {"COMPOSE_PROFILES", "TICKSTREAM_REDIS_URL", "TICKSTREAM_PORT", "TICKSTREAM_BIND",
                "TICKSTREAM_IMAGE", "REDIS_IMAGE", "HAPROXY_IMAGE"}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^${}]|\$\{[^{}]*\})*))?\}")


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blanks skipped); a malformed line fails the test."""
    pairs = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", line)
        assert match, f"{path.name}: not KEY=VALUE: {line!r}"
        pairs[match.group(1)] = match.group(2)
    return pairs


def interpolate(value: Any, variables: dict[str, str]) -> Any:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}`` (nested), in every string."""
    if isinstance(value, dict):
        return {k: interpolate(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, variables) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match[str]) -> str:
        name, op, default = match.group(1), match.group(2) or "", match.group(3) or ""
        if name in variables and (variables[name] or op != ":-"):
            return variables[name]
        assert "?" not in op, f"{name} is required by the compose file"
        return str(interpolate(default, variables))

    while (new := VARIABLE.sub(one, value)) != value:
        value = new
    return value.replace("$$", "$")


def variables_read(value: Any) -> set[str]:
    """Every ``${VAR}`` the file reads, defaults included."""
    text = json.dumps(value)
    names: set[str] = set()
    while found := VARIABLE.findall(text):
        names |= {name for name, _, _ in found}
        text = " ".join(default for _, _, default in found)
    return names


def env_names(cls: type[Any]) -> set[str]:
    return {spec.env for f in dataclasses.fields(cls)
            if (spec := f.metadata.get(settings_module._META)) is not None and spec.env}


VARIANTS = {"defaults": {}, **{p.relative_to(ROOT).as_posix(): env_file(p) for p in ENV_FILES}}


# -- the Compose Specification's schema ----------------------------------------------------------


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip(
        "jsonschema", reason="jsonschema is not installed (a dev dependency: pip install jsonschema)")
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)  # the stored file is a valid schema of the draft it names
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def schema_errors(validator: Any, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))]


def test_the_stored_schema_is_the_one_its_note_names() -> None:
    note = (ROOT / "tests" / "support" / "compose-spec.README.md").read_text()
    digest = hashlib.sha256(SCHEMA_PATH.read_bytes()).hexdigest()
    assert f"`{digest}`" in note, "compose-spec.json changed: record its source and sha256"
    assert json.loads(SCHEMA_PATH.read_text())["title"] == "Compose Specification"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: p.name)
def test_compose_files_follow_the_specification(validator: Any, path: Path) -> None:
    document = yaml.safe_load(path.read_text())
    assert schema_errors(validator, document) == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_interpolated_file_follows_the_specification(validator: Any, variant: str) -> None:
    assert schema_errors(validator, interpolate(COMPOSE, VARIANTS[variant])) == []


@pytest.mark.parametrize(("path", "value", "complaint"), [
    (("services", "gateway", "depends_on", "redis", "condition"), "service_ready", "service_ready"),
    (("services", "gateway", "expose"), [{"port": 8080}], "is not of type"),
    (("services", "gateway", "healthcheck", "retries"), [3], "[3]"),
    (("services", "redis", "restart_policy"), "always", "restart_policy"),
])
def test_the_schema_refuses_what_compose_would(validator: Any, path: tuple[str, ...], value: Any,
                                               complaint: str) -> None:
    broken = copy.deepcopy(COMPOSE)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = schema_errors(validator, broken)
    assert errors and any(complaint in e for e in errors), errors


# -- what the schema cannot see ------------------------------------------------------------------


def test_dependencies_exist_and_run_whenever_their_dependent_does() -> None:
    for name, spec in SERVICES.items():
        depends = spec.get("depends_on", {})
        targets = depends if isinstance(depends, dict) else {t: {} for t in depends}
        for target, condition in targets.items():
            assert target in SERVICES, f"{name} depends on {target}, which is no service"
            if condition.get("required", True):
                # A service in no profile always runs; one in profiles runs with any of them.
                needed, have = set(spec.get("profiles", [])), set(SERVICES[target].get("profiles", []))
                assert not have or (needed and needed <= have), (
                    f"{name} requires {target}, which runs only with profiles {sorted(have)}: "
                    "mark the dependency `required: false`")


def test_every_variable_read_or_set_by_a_file_is_known() -> None:
    settings = set().union(*(env_names(cls) for cls in SETTINGS.values()))
    read = variables_read(COMPOSE)
    assert read - settings - COMPOSE_ONLY == set(), "the compose file reads unknown variables"
    for path in ENV_FILES:
        unknown = set(env_file(path)) - read - {"COMPOSE_PROFILES"}
        assert unknown == set(), f"{path.name} sets variables the compose file never reads"


def tickstream_services() -> list[str]:
    image = SERVICES["gateway"]["image"]
    return sorted(n for n, s in SERVICES.items() if s.get("image") == image)


@pytest.mark.parametrize("service", tickstream_services())
def test_every_variable_a_tickstream_service_sets_is_a_setting_it_reads(service: str) -> None:
    command = SERVICES[service]["command"][0]
    assert command in SETTINGS, f"{service} runs {command!r}, not a Tickstream component"
    unknown = set(SERVICES[service].get("environment", {})) - env_names(SETTINGS[command])
    assert unknown == set(), f"{service} sets variables `tickstream {command}` does not read"


def haproxy_lines() -> list[list[str]]:
    return [line.split("#")[0].split() for line in HAPROXY_CFG.read_text().splitlines()
            if line.split("#")[0].strip()]


def test_haproxy_backend_covers_the_gateway_replicas() -> None:
    lines = haproxy_lines()
    servers = [words for words in lines if words[0] in ("server", "server-template")]
    assert servers, "deploy/haproxy.cfg sends to no server"
    for words in servers:
        address = words[3] if words[0] == "server-template" else words[2]
        host, port = address.rsplit(":", 1)
        assert host in SERVICES and port in SERVICES[host]["expose"], words
        if words[0] == "server-template":
            slots = re.fullmatch(r"(\d+)-(\d+)", words[2]) or re.fullmatch(r"()(\d+)", words[2])
            assert slots, words
            count = int(slots.group(2)) - int(slots.group(1) or 1) + 1
            assert count >= SERVICES[host]["deploy"]["replicas"], "fewer slots than replicas"
            resolver = words[words.index("resolvers") + 1]
            assert ["resolvers", resolver] in lines, f"no resolvers section {resolver}"
            assert "init-addr" in words, "a name that does not resolve yet must not stop HAProxy"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_only_haproxy_is_published_and_its_address_is_a_setting(variant: str) -> None:
    services = interpolate(SERVICES, VARIANTS[variant])
    published = {name: spec["ports"] for name, spec in services.items() if "ports" in spec}
    assert list(published) == ["haproxy"]
    bind = next(words for words in haproxy_lines() if words[0] == "bind")[1]
    assert published["haproxy"] == [f"0.0.0.0:8080:{bind.rsplit(':', 1)[1]}"]
    local = interpolate(SERVICES["haproxy"]["ports"], {"TICKSTREAM_BIND": "127.0.0.1",
                                                       "TICKSTREAM_PORT": "9000"})
    assert local == ["127.0.0.1:9000:8080"]


def test_every_image_can_be_replaced_from_the_environment() -> None:
    for name, spec in SERVICES.items():
        match = re.fullmatch(r"\$\{([A-Z_]+_IMAGE):-([^${}]+)\}", spec["image"])
        assert match, f"{name}: image {spec['image']!r} is not ${{X_IMAGE:-default}}"
        assert interpolate(spec["image"], {match.group(1): "localhost/x:1"}) == "localhost/x:1"


def test_the_dockerfile_installs_locked_dependencies_before_copying_the_source() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert "ARG BASE_IMAGE=python:3.11-slim" in lines
    assert all(line.split()[1] == "${BASE_IMAGE}" for line in lines if line.startswith("FROM "))
    first_source = next(i for i, line in enumerate(lines) if line.startswith("COPY shared "))
    locked = next(i for i, line in enumerate(lines) if "pip install -c requirements.lock" in line)
    copied_before = [line for line in lines[:locked] if line.startswith("COPY ")]
    assert locked < first_source and copied_before == ["COPY pyproject.toml requirements.lock ./"]
    assert any('pip install --no-deps ".[server]"' in line for line in lines[first_source:])


def test_the_local_images_match_what_the_compose_file_runs() -> None:
    """scripts/containers/: redis has the entry point the ha profile calls, haproxy the path
    compose mounts the configuration at."""
    redis = (ROOT / "scripts" / "containers" / "redis.Containerfile").read_text()
    assert "COPY redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh" in redis
    users = [n for n, s in SERVICES.items() if "docker-entrypoint.sh" in json.dumps(s.get("command"))]
    assert users and all(SERVICES[n]["image"] == SERVICES["redis"]["image"] for n in users)
    haproxy = (ROOT / "scripts" / "containers" / "haproxy.Containerfile").read_text()
    mount = SERVICES["haproxy"]["volumes"][0].split(":")
    assert mount[0] == "./deploy/haproxy.cfg" and f'"{mount[1]}"' in haproxy


# -- HAProxy's own check -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_real_configuration(tmp_path: Path) -> None:
    done = subprocess.run(["haproxy", "-c", "-f", str(HAPROXY_CFG)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    # The check is a real one: the same file with one wrong directive is refused.
    broken = tmp_path / "haproxy.cfg"
    broken.write_text(HAPROXY_CFG.read_text().replace("balance leastconn", "balance fewest"))
    done = subprocess.run(["haproxy", "-c", "-f", str(broken)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode != 0 and "balance only supports" in done.stdout + done.stderr


@pytest.mark.parametrize("script", ["scripts/compose-smoke.sh", "scripts/containers/make-base.sh",
                                    "scripts/containers/redis-entrypoint.sh"])
def test_the_container_scripts_parse(script: str) -> None:
    shell = (ROOT / script).read_text().splitlines()[0].removeprefix("#!").split()[-1]
    done = subprocess.run([shell, "-n", str(ROOT / script)], capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
