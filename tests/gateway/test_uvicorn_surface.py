"""The parts of uvicorn that gateway/server.py relies on beyond its public API.

gateway/server.py subclasses uvicorn's httptools and websockets-sansio protocols and reads some
of their attributes. uvicorn is pinned to a range in pyproject.toml; this test fails as soon as
an installed uvicorn lacks any name the subclasses use (an attribute that is neither defined by
our subclass nor set or defined by uvicorn's class), so a release that renames one is caught
here rather than as a lost frame in production.
"""

from __future__ import annotations

import ast
import inspect
import re
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from uvicorn.protocols.http import httptools_impl
from uvicorn.protocols.websockets import websockets_sansio_impl

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "gateway" / "server.py"
SINK_NAMES = ("framed", "write_frames", "drained", "_open_for_writes")  # gateway.writer.Sink
BASES = {
    "HttpToolsProtocol": httptools_impl.HttpToolsProtocol,
    "WebSocketsSansIOProtocol": websockets_sansio_impl.WebSocketsSansIOProtocol,
}


def _subclasses() -> dict[str, tuple[type, ast.ClassDef]]:
    found = {}
    for node in ast.parse(SERVER.read_text()).body:
        if isinstance(node, ast.ClassDef):
            for base in node.bases:
                if isinstance(base, ast.Name) and base.id in BASES:
                    found[node.name] = (BASES[base.id], node)
    return found


def _used_and_defined(cls: ast.ClassDef) -> tuple[set[str], set[str]]:
    used: set[str] = set()
    defined = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    defined |= {t.id for n in cls.body if isinstance(n, ast.Assign | ast.AnnAssign)
                for t in (n.targets if isinstance(n, ast.Assign) else [n.target])
                if isinstance(t, ast.Name)}
    for node in ast.walk(cls):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "self":
            used.add(node.attr)
    # what our own __init__ sets is ours (what other methods set may be uvicorn's)
    for init in (n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"):
        for node in ast.walk(init):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                    and isinstance(node.value, ast.Name) and node.value.id == "self":
                defined.add(node.attr)
    return used, defined


def _provided_by(base: type, name: str) -> bool:
    if hasattr(base, name):
        return True
    pattern = re.compile(rf"\bself\.{re.escape(name)}\s*(:[^=\n]+)?=")
    ours = [k for k in base.__mro__ if k.__module__.startswith("uvicorn")]
    return any(pattern.search(inspect.getsource(k)) for k in ours)


def test_the_server_subclasses_both_uvicorn_protocols() -> None:
    assert {base for base, _ in _subclasses().values()} == set(BASES.values())


@pytest.mark.parametrize("name", sorted(_subclasses()))
def test_every_uvicorn_name_a_subclass_uses_exists(name: str) -> None:
    base, cls = _subclasses()[name]
    used, defined = _used_and_defined(cls)
    inherited = used - defined
    assert inherited, "the subclass reads nothing of uvicorn's?"
    missing = sorted(n for n in inherited if not _provided_by(base, n))
    assert missing == [], f"{name}: uvicorn {version('uvicorn')} has no {missing}"
    # the methods the subclass overrides exist on the base (else they are never called)
    overridden = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
                  and not n.name.startswith("_") and n.name not in SINK_NAMES}
    assert sorted(n for n in overridden if not hasattr(base, n)) == []
    # and the writer's Sink methods are ours: uvicorn has none of these names to shadow
    assert sorted(n for n in SINK_NAMES if _provided_by(base, n)) == []


def test_the_module_level_names_used_exist() -> None:
    assert isinstance(httptools_impl.STATUS_LINE, dict)


def test_the_installed_uvicorn_is_in_the_pinned_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = [Requirement(r) for r in project["optional-dependencies"]["server"]]
    uvicorn = next(r for r in pins if r.name == "uvicorn")
    assert uvicorn.specifier and "<" in str(uvicorn.specifier), "uvicorn needs an upper bound"
    assert version("uvicorn") in uvicorn.specifier
