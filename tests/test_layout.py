"""The dependency rules of the layout, checked on the source (not by convention)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

FORBIDDEN = {
    "shared": {"gateway", "ingestor", "simulator", "tickstream"},
    "gateway": {"ingestor", "simulator", "tickstream"},
    "ingestor": {"gateway", "simulator", "tickstream"},
    "simulator": {"ingestor", "gateway", "tickstream"},
}
# Sans-I/O modules: pure code, no sockets, no event loop, no Redis.
SANS_IO = ["ingestor/binance", "ingestor/orderbook.py", "ingestor/normalize.py",
           "ingestor/gaps.py", "shared/publish_plan.py", "shared/events.py", "shared/schemas.py",
           "shared/client/wire.py", "shared/client/model.py", "shared/client/tokens.py",
           "shared/client/options.py", "shared/client/errors.py", "gateway/recovery.py",
           "gateway/protocol.py", "ingestor/lease.py", "gateway/conflate.py"]
IO_MODULES = {"asyncio", "socket", "websockets", "redis", "httpx", "uvicorn", "starlette"}


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(rel: str) -> list[Path]:
    target = ROOT / rel
    if target.is_file():
        return [target]
    return sorted(target.rglob("*.py")) if target.exists() else []


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_respect_the_layering(package: str) -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imports_of(path) & FORBIDDEN[package])
        for path in sources(package)
        if imports_of(path) & FORBIDDEN[package]
    }
    assert offenders == {}


def test_simulator_uses_only_generic_helpers_from_shared() -> None:
    allowed = {"shared.settings", "shared.errors", "shared.logsetup", "shared.backoff"}
    for path in sources("simulator"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("shared"):
                assert node.module in allowed, f"{path.name} imports {node.module}"


def test_sans_io_modules_do_no_io() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imports_of(path) & IO_MODULES)
        for rel in SANS_IO for path in sources(rel)
        if imports_of(path) & IO_MODULES
    }
    assert offenders == {}
