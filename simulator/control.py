"""Live control methods: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET/GET_PROPERTY.

Replies as Binance sends them: ``{"result": ..., "id": ...}`` on success,
``{"error": {"code": N, "msg": "..."}, "id": ...}`` otherwise, with codes
0 unknown property, 1 invalid value type, 2 invalid request, 3 invalid JSON,
4 too many subscriptions.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import orjson

from simulator.streams import parse_stream

METHODS = ("SUBSCRIBE", "UNSUBSCRIBE", "LIST_SUBSCRIPTIONS", "SET_PROPERTY", "GET_PROPERTY")
_ID_STRING = re.compile(r"^[A-Za-z0-9]{1,36}$")
_INT64 = (-(2**63), 2**63 - 1)

Reply = dict[str, Any]


class ControlTarget(Protocol):
    """The connection state the methods read and change."""

    combined: bool
    max_streams: int

    def subscriptions(self) -> list[str]: ...

    def add_streams(self, streams: list[str]) -> None: ...

    def remove_streams(self, streams: list[str]) -> None: ...


def error(code: int, msg: str, req_id: Any = None) -> Reply:
    return {"error": {"code": code, "msg": msg}, "id": req_id}


def _valid_id(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return _INT64[0] <= value <= _INT64[1]
    return isinstance(value, str) and bool(_ID_STRING.fullmatch(value))


def _json_error(exc: orjson.JSONDecodeError) -> str:
    return f"Invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"


def handle(message: bytes | str, target: ControlTarget) -> Reply:
    """Apply one client message to ``target``; returns the reply to send."""
    try:
        request = orjson.loads(message)
    except orjson.JSONDecodeError as exc:
        return error(3, _json_error(exc))
    if not isinstance(request, dict):
        return error(2, "Invalid request: expected a JSON object")
    req_id = request.get("id")
    if not _valid_id(req_id):
        return error(
            2,
            "Invalid request: request ID must be a 64-bit signed integer, an alphanumeric "
            "string of at most 36 characters, or null",
        )
    if "method" not in request:
        return error(2, "Invalid request: missing field `method`", req_id)
    method = request["method"]
    if method not in METHODS:
        expected = ", ".join(f"`{m}`" for m in METHODS)
        shown = method if isinstance(method, str) else orjson.dumps(method).decode()
        return error(
            2, f"Invalid request: unknown variant `{shown}`, expected one of {expected}", req_id
        )
    params = request.get("params", [])
    if not isinstance(params, list):
        return error(2, "Invalid request: params must be a list", req_id)
    if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
        return _streams(method, params, req_id, target)
    if method == "LIST_SUBSCRIPTIONS":
        if params:
            return error(2, "Invalid request: too many parameters", req_id)
        return {"result": target.subscriptions(), "id": req_id}
    return _property(method, params, req_id, target)


def _streams(method: str, params: list[Any], req_id: Any, target: ControlTarget) -> Reply:
    if not params:
        return error(2, "Invalid request: missing parameters", req_id)
    if not all(isinstance(p, str) and parse_stream(p) is not None for p in params):
        return error(2, "Invalid request: invalid stream", req_id)
    streams = list(dict.fromkeys(params))
    if method == "UNSUBSCRIBE":
        target.remove_streams(streams)
        return {"result": None, "id": req_id}
    current = set(target.subscriptions())
    new = [s for s in streams if s not in current]
    if len(current) + len(new) > target.max_streams:
        return error(4, "Too many subscriptions", req_id)
    target.add_streams(new)
    return {"result": None, "id": req_id}


def _property(method: str, params: list[Any], req_id: Any, target: ControlTarget) -> Reply:
    expected = 2 if method == "SET_PROPERTY" else 1
    if len(params) > expected:
        return error(2, "Invalid request: too many parameters", req_id)
    if len(params) < expected:
        return error(2, "Invalid request: missing parameters", req_id)
    name = params[0]
    if not isinstance(name, str):
        return error(2, "Invalid request: property name must be a string", req_id)
    if name != "combined":
        return error(0, "Unknown property", req_id)
    if method == "GET_PROPERTY":
        return {"result": target.combined, "id": req_id}
    value = params[1]
    if not isinstance(value, bool):
        return error(1, "Invalid value type: expected Boolean", req_id)
    target.combined = value
    return {"result": None, "id": req_id}
