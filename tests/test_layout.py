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
           "ingestor/gaps.py", "shared/publish_plan.py", "shared/events.py", "shared/schemas",
           "shared/client/wire.py", "shared/client/model.py", "shared/client/tokens.py",
           "shared/client/options.py", "shared/client/errors.py", "shared/client/checks.py",
           "gateway/recovery.py",
           "gateway/protocol.py", "ingestor/lease.py", "gateway/conflate.py",
           "gateway/values.py", "gateway/ratelimit.py", "gateway/wsframe.py"]
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
    assert target.exists(), f"{rel} is listed here but does not exist"
    return sorted(target.rglob("*.py"))


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


def gateway_imports(path: Path) -> set[str]:
    """The gateway modules ``path`` imports, wherever the import is (``if TYPE_CHECKING:``,
    inside a function): ``gateway.x``, ``from gateway.x import y``, ``from gateway import x``."""
    modules = {p.stem for p in (ROOT / "gateway").glob("*.py")}
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # relative: from . import x / from .x import y
            base = "gateway" + (f".{node.module}" if node.module else "")
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "gateway" and parts[1] in modules:
                found.add(parts[1])
    found.discard(path.stem)
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), as sorted names."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for dep in sorted(graph.get(name, ())):
            if dep not in index:
                visit(dep)
                low[name] = min(low[name], low[dep])
            elif dep in on_stack:
                low[name] = min(low[name], index[dep])
        if low[name] == index[name]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == name:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return groups


def test_import_cycles_are_found() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_gateway_modules_import_each_other_in_one_direction() -> None:
    """No cycle among gateway modules, counting imports under ``if TYPE_CHECKING:`` too."""
    graph = {path.stem: gateway_imports(path) for path in sorted((ROOT / "gateway").glob("*.py"))}
    assert graph["hub"] <= {"values"}, "the hub knows subscribers only by its protocol"
    assert graph["values"] <= {"wsframe"} and graph["wsframe"] == set(), "the bottom of the gateway"
    assert import_cycles(graph) == []
