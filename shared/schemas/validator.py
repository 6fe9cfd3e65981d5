"""A small, strict validator for the subset of JSON Schema (draft 2020-12) Tickstream's documents use.

:func:`compile_schema` turns a schema document into a :class:`Validator` once; validating is
then a tree of closures. Each node has two paths: ``valid`` (booleans only, the cost paid by
every event that complies) and ``explain`` (run only after ``valid`` said no; it names each
failing field in a one-line message).

Supported keywords: ``type``, ``enum``, ``const``, ``minLength``, ``maxLength``, ``pattern``,
``minimum``, ``maximum``, ``exclusiveMinimum``, ``exclusiveMaximum``, ``required``,
``properties``, ``additionalProperties``, ``items``, ``minItems``, ``maxItems``, ``allOf``,
``if``/``then``/``else`` and local ``$ref`` (``#/$defs/NAME``). Annotations (``title``,
``description``, ``examples``, ...) are ignored. Any other keyword is refused when compiling, so
a document can never say more than the code checks.

Semantics follow the specification, with two choices stated: a ``pattern`` must be anchored
(``^...$``) and is applied with :func:`re.fullmatch` (no trailing-newline loophole); ``number``
and ``integer`` exclude booleans and non-finite floats (JSON has neither).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Valid = Callable[[Any], bool]
Explain = Callable[[Any, str, list[str]], None]

ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "$comment", "title", "description", "default",
                         "examples", "deprecated", "readOnly", "writeOnly"})
KEYWORDS = frozenset({"type", "enum", "const", "minLength", "maxLength", "pattern", "minimum",
                      "maximum", "exclusiveMinimum", "exclusiveMaximum", "required", "properties",
                      "additionalProperties", "items", "minItems", "maxItems", "allOf", "if", "then",
                      "else", "$ref"})
STRING_KEYWORDS = frozenset({"minLength", "maxLength", "pattern"})
TYPES = ("null", "boolean", "integer", "number", "string", "array", "object")


class SchemaError(ValueError):
    """A schema document uses something this validator does not implement."""


def _number(v: Any) -> bool:
    t = type(v)
    if t is float:
        return math.isfinite(v)
    if t is int:
        return True
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _integer(v: Any) -> bool:
    t = type(v)
    if t is int:
        return True
    if t is float:
        return math.isfinite(v) and v.is_integer()
    return isinstance(v, int) and not isinstance(v, bool)


TYPE_CHECKS: Mapping[str, Valid] = {
    "null": lambda v: v is None,
    "boolean": lambda v: v is True or v is False,
    "integer": _integer,
    "number": _number,
    "string": lambda v: type(v) is str or isinstance(v, str),
    "array": lambda v: type(v) is list or isinstance(v, list | tuple),
    "object": lambda v: type(v) is dict or isinstance(v, Mapping),
}


def type_name(v: Any) -> str:
    """The JSON type of a Python value, for messages."""
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if TYPE_CHECKS[name](v):
            return name
    return type(v).__name__


def shown(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def label(path: str) -> str:
    return f"field {path!r} " if path else ""


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def child(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


@dataclass(frozen=True, slots=True)
class Node:
    valid: Valid
    explain: Explain


def _fuse(checks: list[Valid]) -> Valid:
    """One predicate that holds when every one of ``checks`` does (unrolled for the short lists
    every document has: this is the path each published event takes)."""
    if not checks:
        return lambda v: True
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        a, b = checks
        return lambda v: a(v) and b(v)
    if len(checks) == 3:
        a, b, c = checks
        return lambda v: a(v) and b(v) and c(v)
    rest = tuple(checks)
    return lambda v: all(check(v) for check in rest)


def _all(nodes: list[Node]) -> Node:
    if len(nodes) == 1:
        return nodes[0]

    def explain(v: Any, path: str, out: list[str]) -> None:
        for n in nodes:
            if not n.valid(v):
                n.explain(v, path, out)

    return Node(_fuse([n.valid for n in nodes]), explain)


def _typed(type_node: Node, nodes: list[Node]) -> Node:
    """``type`` of one JSON type and the keywords of that type: those are checked only once the
    type is right (and their messages are only given then)."""
    if not nodes:
        return type_node
    rest = _all(nodes)
    is_type, rest_valid = type_node.valid, rest.valid

    def explain(v: Any, path: str, out: list[str]) -> None:
        (rest if is_type(v) else type_node).explain(v, path, out)

    return Node(lambda v: is_type(v) and rest_valid(v), explain)


def _when(applies: Valid, node: Node) -> Node:
    """``node`` applied only to instances ``applies`` accepts (keywords of one JSON type)."""
    inner = node.valid
    return Node(lambda v: not applies(v) or inner(v), node.explain)


def _leaf(ok: Valid, why: Callable[[Any], str]) -> Node:
    def explain(v: Any, path: str, out: list[str]) -> None:
        out.append(f"{label(path)}{why(v)}")

    return Node(ok, explain)


def _bound(bound: Any, compare: Callable[[Any, Any], bool], sign: str) -> Node:
    if not _number(bound):
        raise SchemaError(f"a numeric bound must be a number, got {shown(bound)}")
    return _leaf(lambda v: compare(v, bound), lambda v: f"must be {sign} {bound}, got {shown(v)}")


BOUNDS: Mapping[str, tuple[Callable[[Any, Any], bool], str]] = {
    "minimum": (lambda v, b: v >= b, ">="), "maximum": (lambda v, b: v <= b, "<="),
    "exclusiveMinimum": (lambda v, b: v > b, ">"), "exclusiveMaximum": (lambda v, b: v < b, "<"),
}


class _Compiler:
    def __init__(self, root: Mapping[str, Any] | bool) -> None:
        self.root: Mapping[str, Any] = root if isinstance(root, Mapping) else {}
        self.refs: dict[str, Node] = {}
        self._resolving: set[str] = set()

    def ref(self, target: str) -> Node:
        match = re.fullmatch(r"#/\$defs/([A-Za-z0-9_]+)", target)
        if match is None:
            raise SchemaError(f"only local $ref '#/$defs/NAME' is supported, got {target!r}")
        if target in self._resolving:
            raise SchemaError(f"recursive $ref {target!r} is not supported")
        if target not in self.refs:
            defs = self.root.get("$defs", {})
            if match.group(1) not in defs:
                raise SchemaError(f"$ref {target!r} names no definition")
            self._resolving.add(target)
            self.refs[target] = self.node(defs[match.group(1)])
            self._resolving.discard(target)
        return self.refs[target]

    def node(self, schema: Any) -> Node:
        if schema is True or schema == {}:
            return Node(lambda v: True, lambda v, p, o: None)
        if schema is False:
            return _leaf(lambda v: False, lambda v: "is not allowed")
        if not isinstance(schema, Mapping):
            raise SchemaError(f"a schema must be an object or a boolean, got {shown(schema)}")
        unknown = set(schema) - KEYWORDS - ANNOTATIONS
        if unknown:
            raise SchemaError(f"unsupported keywords: {', '.join(sorted(unknown))}")
        general: list[Node] = []
        if "$ref" in schema:
            general.append(self.ref(schema["$ref"]))
        if "enum" in schema or "const" in schema:
            general.append(self.enum_node(schema))
        general.extend(self.node(sub) for sub in schema.get("allOf", ()))
        if "if" in schema:
            general.append(self.conditional(schema))
        elif "then" in schema or "else" in schema:
            raise SchemaError("'then'/'else' without 'if'")
        groups = {"string": self.string_nodes(schema), "number": self.number_nodes(schema),
                  "array": self.array_nodes(schema), "object": self.object_nodes(schema)}
        spec = schema.get("type")
        if isinstance(spec, str):
            own = groups.get("number" if spec == "integer" else spec, [])
            typed = _typed(self.type_node(spec), own)
            if spec == "string" and set(schema) & STRING_KEYWORDS == {"minLength"}:
                low = schema["minLength"]  # the common "non-empty string": a single call
                typed = Node(lambda v: (type(v) is str or isinstance(v, str)) and len(v) >= low,
                             typed.explain)
            return _all([typed, *general])
        nodes = [self.type_node(spec)] if spec is not None else []
        for name, group in groups.items():
            nodes.extend(_when(TYPE_CHECKS[name], n) for n in group)
        nodes.extend(general)
        return _all(nodes) if nodes else self.node(True)

    def type_node(self, spec: Any) -> Node:
        names = [spec] if isinstance(spec, str) else list(spec)
        if not names or any(n not in TYPES for n in names):
            raise SchemaError(f"type must be some of {'/'.join(TYPES)}, got {shown(spec)}")
        checks = tuple(TYPE_CHECKS[n] for n in names)
        if len(checks) == 1:
            ok = checks[0]
        elif len(checks) == 2:
            a, b = checks
            ok = lambda v: a(v) or b(v)  # noqa: E731
        else:
            ok = lambda v: any(c(v) for c in checks)  # noqa: E731
        wanted = " or ".join(names)
        return _leaf(ok, lambda v: f"must be {wanted}, got {type_name(v)}")

    def enum_node(self, schema: Mapping[str, Any]) -> Node:
        choices = list(schema["enum"]) if "enum" in schema else [schema["const"]]
        if not all(isinstance(c, str) for c in choices):
            raise SchemaError("enum and const support strings only")
        allowed = frozenset(choices)
        text = f"be {shown(choices[0])}" if len(choices) == 1 else "be one of " + "/".join(choices)
        return _leaf(lambda v: type(v) is str and v in allowed, lambda v: f"must {text}, got {shown(v)}")

    def string_nodes(self, schema: Mapping[str, Any]) -> list[Node]:
        nodes = []
        low, high = schema.get("minLength"), schema.get("maxLength")
        if low is not None:
            why = "must not be empty" if low == 1 else f"must be at least {low} characters"
            nodes.append(_leaf(lambda v: len(v) >= low, lambda v: why))
        if high is not None:
            nodes.append(_leaf(lambda v: len(v) <= high, lambda v: f"must be at most {high} characters"))
        if "pattern" in schema:
            pattern = schema["pattern"]
            if not (pattern.startswith("^") and pattern.endswith("$")):
                raise SchemaError(f"patterns must be anchored with ^...$, got {pattern!r}")
            fullmatch = re.compile(pattern).fullmatch
            nodes.append(_leaf(lambda v: fullmatch(v) is not None,
                               lambda v: f"must match {pattern}, got {shown(v)}"))
        if len(nodes) > 1:
            # one predicate for all of them: the common "non-empty string" is a single call
            checks = tuple(n.valid for n in nodes)
            return [Node(lambda v: all(c(v) for c in checks), _all(nodes).explain)]
        return nodes

    def number_nodes(self, schema: Mapping[str, Any]) -> list[Node]:
        return [_bound(schema[key], compare, sign) for key, (compare, sign) in BOUNDS.items()
                if key in schema]

    def array_nodes(self, schema: Mapping[str, Any]) -> list[Node]:
        nodes = []
        low, high = schema.get("minItems"), schema.get("maxItems")
        if low is not None:
            nodes.append(_leaf(lambda v: len(v) >= low, lambda v: f"must have at least {_items(low)}"))
        if high is not None:
            nodes.append(_leaf(lambda v: len(v) <= high, lambda v: f"must have at most {_items(high)}"))
        if "items" in schema:
            nodes.append(self.items_node(self.node(schema["items"])))
        return nodes

    @staticmethod
    def items_node(item: Node) -> Node:
        item_valid = item.valid

        def valid(v: Any) -> bool:
            return all(item_valid(x) for x in v)

        def explain(v: Any, path: str, out: list[str]) -> None:
            for i, x in enumerate(v):
                if not item_valid(x):
                    item.explain(x, f"{path}[{i}]", out)

        return Node(valid, explain)

    def object_nodes(self, schema: Mapping[str, Any]) -> list[Node]:
        required = tuple(schema.get("required", ()))
        properties = {k: self.node(s) for k, s in schema.get("properties", {}).items()}
        extra = schema.get("additionalProperties", True)
        if not required and not properties and extra is True:
            return []
        extra_node = None if extra is True else self.node(extra)
        # Required fields with a schema: one lookup each (a KeyError is a missing field).
        both = tuple((k, properties[k].valid) for k in required if k in properties)
        only_required = tuple(k for k in required if k not in properties)
        optional = tuple((k, n.valid) for k, n in properties.items() if k not in required)
        extra_valid = None if extra_node is None else extra_node.valid

        def valid(v: Any) -> bool:
            try:
                for key, check in both:
                    if not check(v[key]):
                        return False
            except KeyError:
                return False
            for key in only_required:
                if key not in v:
                    return False
            for key, check in optional:
                if key in v and not check(v[key]):
                    return False
            if extra_valid is not None:
                return all(extra_valid(v[k]) for k in v if k not in properties)
            return True

        def explain(v: Any, path: str, out: list[str]) -> None:
            out.extend(f"missing field {child(path, k)!r}" for k in required if k not in v)
            for key, n in properties.items():
                if key in v and not n.valid(v[key]):
                    n.explain(v[key], child(path, key), out)
            if extra_node is not None:
                for key in v:
                    if key not in properties and not extra_node.valid(v[key]):
                        if extra is False:
                            out.append(f"unknown field {child(path, str(key))!r}")
                        else:
                            extra_node.explain(v[key], child(path, str(key)), out)

        return [Node(valid, explain)]

    def conditional(self, schema: Mapping[str, Any]) -> Node:
        test = self.node(schema["if"]).valid
        then = self.node(schema.get("then", True))
        other = self.node(schema.get("else", True))

        def valid(v: Any) -> bool:
            return then.valid(v) if test(v) else other.valid(v)

        def explain(v: Any, path: str, out: list[str]) -> None:
            (then if test(v) else other).explain(v, path, out)

        return Node(valid, explain)


class Validator:
    """A compiled schema document: :meth:`problems` lists what breaks it, one line each."""

    def __init__(self, document: Mapping[str, Any] | bool) -> None:
        self.document = document
        self._node = _Compiler(document).node(document)
        self.is_valid: Valid = self._node.valid

    def problems(self, value: Any, root: str = "value") -> list[str]:
        """Empty when ``value`` complies; else each problem, naming the field (``root`` for the
        value itself)."""
        if self.is_valid(value):
            return []
        out: list[str] = []
        self._node.explain(value, "", out)
        return [p if p.startswith(("field ", "missing ", "unknown ")) else f"{root} {p}" for p in out]


def compile_schema(document: Mapping[str, Any] | bool) -> Validator:
    """Compile ``document`` (raises :class:`SchemaError` for what is not supported)."""
    return Validator(document)
