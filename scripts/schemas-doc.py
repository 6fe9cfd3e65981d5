#!/usr/bin/env python3
"""Generate docs/http-api.md's field tables from the JSON Schemas (shared/schemas/documents.py).

    scripts/schemas-doc.py            print the generated section
    scripts/schemas-doc.py --write    replace the section in docs/http-api.md
    scripts/schemas-doc.py --check    exit 1 (with a one-line reason) if the doc differs

The section sits between ``<!-- schemas:begin -->`` and ``<!-- schemas:end -->``; a test runs
``--check``, so the doc and the schemas cannot disagree.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.schemas.documents import BUILTIN, EVENT, MARKET_DATA_KINDS, PUBLISH  # noqa: E402

DOC = ROOT / "docs" / "http-api.md"
BEGIN, END = "<!-- schemas:begin -->", "<!-- schemas:end -->"


def type_text(schema: Mapping[str, Any]) -> str:
    spec = schema.get("type")
    if spec is None:
        return "string" if "enum" in schema or "const" in schema else "any"
    names = [spec] if isinstance(spec, str) else list(spec)
    if "array" in names and "items" in schema:
        inner = schema["items"]
        if inner.get("type") == "array":
            return f"array of [{', '.join([type_text(inner['items'])] * inner.get('minItems', 1))}]"
        return f"array of {type_text(inner)}"
    return " or ".join(names)


def rule_text(schema: Mapping[str, Any]) -> str:
    rules = []
    if "const" in schema:
        rules.append(f"`{schema['const']}`")
    if "enum" in schema:
        rules.append(" / ".join(f"`{c}`" for c in schema["enum"]))
    if schema.get("minLength") == 1:
        rules.append("non-empty")
    elif "minLength" in schema:
        rules.append(f"at least {schema['minLength']} characters")
    if "pattern" in schema:
        rules.append(f"`{schema['pattern']}`")
    low, high = schema.get("minimum"), schema.get("maximum")
    if low is not None and high is not None:
        rules.append(f"{low} to {high}")
    elif low is not None:
        rules.append(f"≥ {low}")
    elif high is not None:
        rules.append(f"≤ {high}")
    return "; ".join(rules)


def table(properties: Mapping[str, Any], required: list[str]) -> list[str]:
    lines = ["| field | type | required | rule | description |", "| --- | --- | --- | --- | --- |"]
    for name, schema in properties.items():
        rule = rule_text(schema).replace("|", "\\|")
        lines.append(f"| `{name}` | {type_text(schema)} | {'yes' if name in required else 'no'} | "
                     f"{rule} | {schema.get('description', '')} |")
    return lines


def section() -> str:
    out = ["### The publish body (`/api/schemas/publish`)", "", PUBLISH["description"], "",
           "Each event:", "", *table(EVENT["properties"], EVENT["required"]), "",
           "No other field is accepted."]
    for name, doc in BUILTIN.items():
        out += ["", f"### `{name}` (`/api/schemas/{name}`)", "", doc["description"], ""]
        if doc["properties"]:
            out += table(doc["properties"], doc["required"])
        else:
            out.append("Any JSON object: no field is required.")
        if name == "market_data":
            for kind, fields in MARKET_DATA_KINDS.items():
                out += ["", f"With `kind` = `{kind}`, also (all required):", "",
                        *table(fields, list(fields))]
    out += ["", "Extra fields in `data` are allowed: a producer may add information without "
            "breaking consumers."]
    return "\n".join(out)


def replaced(text: str) -> str:
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise SystemExit(f"{DOC.relative_to(ROOT)}: markers {BEGIN} ... {END} not found")
    return f"{head}{BEGIN}\n{section()}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="update docs/http-api.md")
    mode.add_argument("--check", action="store_true", help="fail if docs/http-api.md is stale")
    args = parser.parse_args()
    if not (args.write or args.check):
        print(section())
        return 0
    text = DOC.read_text(encoding="utf-8")
    new = replaced(text)
    if args.write:
        DOC.write_text(new, encoding="utf-8")
        return 0
    if new != text:
        print(f"{DOC.relative_to(ROOT)}: field tables differ from the schemas: "
              "run scripts/schemas-doc.py --write", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
