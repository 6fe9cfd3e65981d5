"""docs/http-api.md is true: its curl examples, run against a real gateway, answer as documented,
and its field tables are the schemas'.

Each ```sh block that runs curl is followed by an ```http block: the status line, optional
headers, a blank line and the JSON body. The commands run in bash as written, with only the base
URL replaced and ``$TOKEN`` (publisher role) / ``$USER_TOKEN`` (no role) set to tokens minted
with the gateway's secret. A documented body matches when: its objects' keys are found in the
answer with matching values (the answer may have more keys); lists match item by item (all of
them, unless the documented list ends with ``"..."``); ``"..."`` matches anything; an offset
(``<ms>-<seq>``) matches any offset, but the same documented offset within one answer must be
the same answered one; any other value must be equal.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import InProcessGateway, token

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "http-api.md"
DOC_BASE = "http://localhost:8080"
OFFSET = re.compile(r"[0-9]+-[0-9]+")
BLOCK = re.compile(r"```(sh|http)\n(.*?)```", re.S)

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")]


@dataclass
class Example:
    command: str
    status: int
    headers: dict[str, str]
    body: Any


def examples(text: str) -> list[Example]:
    found: list[Example] = []
    pending: str | None = None
    for kind, content in BLOCK.findall(text):
        if kind == "sh":
            pending = content if "curl " in content else None
            continue
        assert pending is not None, f"a response block without its curl command:\n{content}"
        head, _, body = content.partition("\n\n")
        status_line, *header_lines = head.splitlines()
        headers = dict(line.lower().split(": ", 1) for line in header_lines)
        found.append(Example(pending, int(status_line.split()[1]), headers, json.loads(body)))
        pending = None
    return found


def matches(documented: Any, answered: Any, bound: dict[str, str], where: str = "body") -> None:
    if documented == "...":
        return
    if isinstance(documented, str) and OFFSET.fullmatch(documented):
        assert isinstance(answered, str) and OFFSET.fullmatch(answered), f"{where}: {answered!r} is no offset"
        assert bound.setdefault(documented, answered) == answered, \
            f"{where}: expected the same offset as {bound[documented]!r}"
        return
    if isinstance(documented, dict):
        assert isinstance(answered, dict), f"{where}: expected an object, got {answered!r}"
        for key, value in documented.items():
            assert key in answered, f"{where}: no {key!r} in the answer {answered!r}"
            matches(value, answered[key], bound, f"{where}.{key}")
        return
    if isinstance(documented, list):
        assert isinstance(answered, list), f"{where}: expected a list, got {answered!r}"
        open_ended = bool(documented) and documented[-1] == "..."
        items = documented[:-1] if open_ended else documented
        assert len(answered) >= len(items) if open_ended else len(answered) == len(items), \
            f"{where}: {len(answered)} items, documented {len(documented)}"
        for i, value in enumerate(items):
            matches(value, answered[i], bound, f"{where}[{i}]")
        return
    assert documented == answered, f"{where}: documented {documented!r}, answered {answered!r}"


async def run(command: str, base: str, env: dict[str, str]) -> tuple[int, dict[str, str], Any]:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-c", command.replace(DOC_BASE, base), env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, f"curl failed ({proc.returncode}): {err.decode()}"
    head, _, body = out.decode().partition("\r\n\r\n")
    status_line, *header_lines = head.split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, json.loads(body)


def test_the_doc_has_an_example_of_every_documented_status() -> None:
    found = examples(DOC.read_text())
    assert {e.status for e in found} >= {200, 400, 401, 403, 404}
    assert sum("/api/publish" in e.command for e in found) >= 7


async def test_every_curl_example_answers_as_documented(gw: InProcessGateway) -> None:
    env = {"PATH": "/usr/bin:/bin", "TOKEN": token("svc", roles=["publisher"]),
           "USER_TOKEN": token("alice")}
    found = examples(DOC.read_text())
    for example in found:
        status, headers, body = await run(example.command, gw.http, env)
        label = example.command.splitlines()[0]
        assert status == example.status, f"{label}: status {status}, body {body}"
        for name, value in example.headers.items():
            assert headers.get(name, "").split(";")[0] == value, f"{label}: header {name}"
        try:
            matches(example.body, body, {})
        except AssertionError as exc:
            raise AssertionError(f"{label}: {exc}") from None


def test_the_field_tables_are_generated_from_the_schemas() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "schemas-doc.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    text = DOC.read_text()
    for name in ("price_update", "market_data", "orderbook_update", "signal_generated",
                 "trade_executed", "portfolio_update", "risk_event"):
        assert f"### `{name}` (`/api/schemas/{name}`)" in text
