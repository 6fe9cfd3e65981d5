"""The JSON form of fault operations (``POST /admin/faults`` and ``--faults``).

A spec is an object whose keys are operations, applied in order::

    {"drop": {"mode": "reset"}}
    {"silence": {"seconds": 5, "scope": "all"}}        # seconds null = until cleared
    {"depth_gap": {"symbol": "BTCUSDT", "events": 1}}
    {"malformed": {"kinds": ["text", "binary"], "every": 5, "count": 10, "replace": false}}
    {"rest": {"status": 500, "delay_ms": 0, "count": 3, "path": "/api/v3/depth"}}
    {"reject": {"seconds": 10, "status": 503}}
    {"shutdown": {"close_after": 1.5}}
    {"clear": true}  or  {"clear": ["silence", "malformed", "rest", "depth_gap", "reject"]}
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from simulator.faults import Faults


class FaultSpecError(ValueError):
    """A fault spec that cannot be applied; the message says why."""


_ARGS: dict[str, dict[str, tuple[type, ...]]] = {
    "drop": {"mode": (str,), "code": (int,), "reason": (str,)},
    "silence": {"seconds": (int, float, type(None)), "scope": (str,)},
    "depth_gap": {"symbol": (str,), "events": (int,)},
    "malformed": {
        "kinds": (list,), "every": (int,), "count": (int, type(None)), "replace": (bool,),
    },
    "rest": {
        "status": (int, type(None)), "delay_ms": (int,), "count": (int, type(None)),
        "path": (str, type(None)), "probability": (int, float),
        "retry_after": (int, type(None)),
    },
    "reject": {"seconds": (int, float), "status": (int,)},
    "shutdown": {"close_after": (int, float, type(None)), "code": (int,), "reason": (str,)},
}
_REQUIRED = {"depth_gap": ("symbol",), "reject": ("seconds",)}
_CLEARABLE = ("silence", "malformed", "rest", "depth_gap", "reject")


def _check_args(op: str, value: Any) -> dict[str, Any]:
    if value is None or value is True:
        value = {}
    if not isinstance(value, Mapping):
        raise FaultSpecError(f"{op}: expected an object of arguments")
    allowed = _ARGS[op]
    for key, arg in value.items():
        if key not in allowed:
            raise FaultSpecError(f"{op}: unknown argument {key!r}; allowed: {sorted(allowed)}")
        types = allowed[key]
        if isinstance(arg, bool) and bool not in types:
            raise FaultSpecError(f"{op}.{key}: wrong type")
        if not isinstance(arg, types):
            raise FaultSpecError(f"{op}.{key}: wrong type")
    for key in _REQUIRED.get(op, ()):
        if key not in value:
            raise FaultSpecError(f"{op}: missing argument {key!r}")
    return dict(value)


def apply_spec(faults: Faults, spec: Any) -> list[dict[str, Any]]:
    """Apply every operation of ``spec``; returns one result object per operation."""
    if not isinstance(spec, Mapping) or not spec:
        raise FaultSpecError("expected a non-empty JSON object of fault operations")
    unknown = [k for k in spec if k not in _ARGS and k != "clear"]
    if unknown:
        raise FaultSpecError(
            f"unknown operation(s) {unknown}; known: {sorted([*_ARGS, 'clear'])}"
        )
    plan: list[tuple[str, Callable[[], Any]]] = []
    for op, value in spec.items():
        plan.append((op, _bind(faults, op, value)))
    results = []
    for op, run in plan:
        try:
            outcome = run()
        except ValueError as exc:
            raise FaultSpecError(f"{op}: {exc}") from None
        results.append({"op": op, "result": outcome})
    return results


def _bind(faults: Faults, op: str, value: Any) -> Callable[[], Any]:
    if op == "clear":
        return _bind_clear(faults, value)
    args = _check_args(op, value)
    if op == "malformed" and "kinds" in args:
        if not all(isinstance(k, str) for k in args["kinds"]):
            raise FaultSpecError("malformed.kinds: expected a list of strings")
        args["kinds"] = tuple(args["kinds"])
    methods: dict[str, Callable[..., Any]] = {
        "drop": faults.drop,
        "silence": faults.silence,
        "depth_gap": faults.depth_gap,
        "malformed": faults.malformed,
        "rest": faults.rest,
        "reject": faults.reject_connections,
        "shutdown": faults.shutdown,
    }
    method = methods[op]
    return lambda: method(**args)


def _bind_clear(faults: Faults, value: Any) -> Callable[[], Any]:
    if value is True:
        return faults.clear
    if not isinstance(value, list) or not all(v in _CLEARABLE for v in value):
        raise FaultSpecError(f"clear: expected true or a list of {list(_CLEARABLE)}")
    actions: dict[str, Callable[[], None]] = {
        "silence": faults.clear_silence,
        "malformed": faults.clear_malformed,
        "rest": faults.clear_rest,
        "depth_gap": faults.state.depth_gaps.clear,
        "reject": lambda: setattr(faults.state, "reject_until", None),
    }

    def run() -> None:
        for name in value:
            actions[name]()

    return run
