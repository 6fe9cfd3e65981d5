"""What ``pip install tickstream`` puts on a user's machine: the packages, the dependencies, the
public imports, and the one-line error of a server command without the ``server`` extra.

The wheel is built offline from a copy of the source tree by the venv's setuptools (the build
backend's hook, as ``pip wheel --no-build-isolation`` would run it; see the ``dev`` extra) and
installed by pip with ``--target`` into a fresh folder, which the subprocesses put first on
``sys.path`` (ahead of the repository's editable install).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"gateway", "ingestor", "shared", "simulator", "tickstream"}
SERVER_MODULES = ("starlette", "uvicorn", "prometheus_client", "jwt", "httpx")
SERVER_DISTRIBUTIONS = {"starlette", "uvicorn", "pyjwt", "prometheus-client", "httpx"}
BASE_DISTRIBUTIONS = {"redis", "websockets", "msgpack", "orjson"}


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, f"pip {args[0]} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", "node_modules")
    for name in (*sorted(PACKAGES), "tests"):  # tests copied too: the build must leave it out
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    out = tmp_path_factory.mktemp("dist")
    # The PEP 517 hook pip would call, without pip's start-up: about 3 s instead of 8.
    build = "import sys, setuptools.build_meta as backend; print(backend.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", build, str(out)], cwd=src, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, f"building the wheel failed:\n{done.stderr[-3000:]}"
    return out / done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel))
    return target


def _python(target: Path, code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=target, env=env, timeout=60, check=False)


def test_the_wheel_ships_the_components_and_no_tests(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        (top_level,) = [n for n in names if n.endswith(".dist-info/top_level.txt")]
        declared = set(archive.read(top_level).decode().split())
    tops = {name.split("/", 1)[0] for name in names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == PACKAGES
    assert declared == PACKAGES
    assert not [n for n in names if n.startswith(("tests/", "bench/"))]


def test_the_server_dependencies_come_only_with_the_server_extra(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        headers = Parser().parsestr(archive.read(metadata).decode())
    requirements = [Requirement(line) for line in headers.get_all("Requires-Dist") or []]
    base = {r.name.lower() for r in requirements if r.marker is None}
    server = {r.name.lower() for r in requirements
              if r.marker is not None and r.marker.evaluate({"extra": "server"})
              and not r.marker.evaluate({"extra": ""})}
    assert base == BASE_DISTRIBUTIONS
    assert server == SERVER_DISTRIBUTIONS
    assert "server" in (headers.get_all("Provides-Extra") or [])


def test_an_install_has_no_top_level_tests(installed: Path) -> None:
    assert not (installed / "tests").exists()
    assert {p.name for p in installed.iterdir() if p.is_dir() and not p.name.endswith(
        (".dist-info", "bin"))} == PACKAGES


def test_the_public_imports_leave_the_server_out(installed: Path) -> None:
    code = (
        "import sys\n"
        "from tickstream.client import connect\n"
        "from tickstream.publisher import AsyncPublisher, Publisher\n"
        "import tickstream.client, tickstream.publisher\n"
        f"assert tickstream.client.__file__.startswith({str(installed)!r}), tickstream.client.__file__\n"
        f"print(sorted(m for m in {SERVER_MODULES!r} if m in sys.modules))\n"
    )
    done = _python(installed, code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


_BLOCK_SERVER = f"""
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {set(SERVER_MODULES) | {"httptools", "uvloop"}!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from tickstream.cli import main
"""


def test_a_server_command_without_the_extra_says_what_to_install(installed: Path) -> None:
    done = _python(installed, _BLOCK_SERVER + "sys.exit(main(['gateway', '--port', '0']))")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("tickstream gateway: ")
    assert "pip install 'tickstream[server]'" in lines[0]


def test_client_commands_work_without_the_extra(installed: Path) -> None:
    done = _python(installed, _BLOCK_SERVER + "sys.exit(main(['tail', '--help']))")
    assert done.returncode == 0, done.stderr
    assert "usage: tickstream tail" in done.stdout


def test_the_public_modules_export_the_whole_api() -> None:
    import shared.client
    import shared.publisher
    import tickstream.client
    import tickstream.publisher

    assert tickstream.client.__all__ == shared.client.__all__
    for name in shared.client.__all__:
        assert getattr(tickstream.client, name) is getattr(shared.client, name)
    public = importlib.import_module("tickstream.publisher")
    for name in ("AsyncPublisher", "Publisher", "PublishSettings"):
        assert getattr(public, name) is getattr(shared.publisher, name)
    assert {"Event", "ValidationError", "RedisUnavailable", "NotReplicated"} <= set(
        tickstream.publisher.__all__)
    for name in tickstream.publisher.__all__:
        assert getattr(public, name) is not None
