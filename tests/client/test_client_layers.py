"""The client's modules form layers: no import cycle among shared/client/*.py, counting the
imports made only for type checking (``if TYPE_CHECKING:``) and those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = "shared.client"
SOURCES = Path(__file__).resolve().parents[2] / "shared" / "client"


def module_names(directory: Path) -> set[str]:
    return {path.stem for path in directory.glob("*.py")}


def imports_of(source: str, package: str, modules: set[str]) -> set[str]:
    """The modules of ``package`` (by short name, ``__init__`` for the package) that ``source``
    imports anywhere: top level, under ``if TYPE_CHECKING:``, in a function; absolute or relative."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found |= _targets(alias.name, [], package, modules)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolved against the package itself
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            found |= _targets(name, [alias.name for alias in node.names], package, modules)
    return found


def _targets(name: str, names: list[str], package: str, modules: set[str]) -> set[str]:
    """What one import statement depends on. ``from shared.client import x`` depends on the
    package's ``__init__`` unless every ``x`` is a module; ``import shared.client.x`` on x only
    (running the package's ``__init__`` first is no dependency of the importer's own)."""
    if name == package:
        wanted = {n for n in names if n in modules}
        return wanted if names and len(wanted) == len(names) else wanted | {"__init__"}
    if name.startswith(package + "."):
        module = name[len(package) + 1:].split(".")[0]
        return {module} if module in modules else {"__init__"}
    return set()


def import_graph(directory: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(directory)
    graph: dict[str, set[str]] = {}
    for module in sorted(modules):
        graph[module] = imports_of((directory / f"{module}.py").read_text(), package, modules) - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (``[a, b, ..., a]``) if there is any, else None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)) is not None:
            return cycle
    return None


def test_no_import_cycle_among_the_client_modules() -> None:
    graph = import_graph(SOURCES, PACKAGE)
    assert {"client", "connection", "subscription"} <= graph.keys()
    assert "connection" in graph["client"] and "subscription" in graph["client"]  # parsed at all
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


@pytest.mark.parametrize("layer", ["connection", "subscription"])
def test_connection_and_subscription_know_their_owner_only_by_protocol(layer: str) -> None:
    graph = import_graph(SOURCES, PACKAGE)
    assert "client" not in graph[layer]
    assert "connection" not in graph["subscription"] and "subscription" not in graph["connection"]
    source = (SOURCES / f"{layer}.py").read_text()
    protocols = [node.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ClassDef)
                 and any(isinstance(b, ast.Name) and b.id == "Protocol" for b in node.bases)]
    assert f"{layer.capitalize()}Owner" in protocols


def test_the_checker_sees_type_checking_relative_and_function_imports(tmp_path: Path) -> None:
    (tmp_path / "__init__.py").write_text("from pkg.a import A\n")
    (tmp_path / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    from pkg.b import B\n")
    (tmp_path / "b.py").write_text("def f() -> None:\n    from . import c\n")
    (tmp_path / "c.py").write_text("from .a import A\nimport os\n")
    graph = import_graph(tmp_path, "pkg")
    assert graph == {"__init__": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    (tmp_path / "c.py").write_text("import pkg\n")  # the package's __init__ imports a: a cycle too
    assert find_cycle(import_graph(tmp_path, "pkg")) == ["__init__", "a", "b", "c", "__init__"]
    (tmp_path / "c.py").write_text("import os\n")
    assert find_cycle(import_graph(tmp_path, "pkg")) is None
