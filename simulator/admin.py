"""Admin HTTP endpoints: inspect the simulator's truth and break it at run time.

- ``GET /admin/state[?symbol=BTCUSDT][&depth=N]``: source, connections, per symbol the last
  trade and aggregate trade ids and the true book (``depth`` levels per side, default all).
- ``GET /admin/faults``: the faults in force.
- ``POST /admin/faults``: apply a fault spec (see :mod:`simulator.fault_spec`).
- ``DELETE /admin/faults``: clear every lasting fault.
- ``POST /admin/market``: ``{"paused": bool, "rate": float, "status": {"BTCUSDT": "HALT"},
  "generate": {"events": N, "symbol": "BTCUSDT"}}`` (market mode only).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from simulator.engine import MarketEngine
from simulator.fault_spec import FaultSpecError, apply_spec
from simulator.faults import Faults
from simulator.httpio import HttpRequest, HttpResponse
from simulator.server import SimServer
from simulator.view import MarketView


def _error(status: int, msg: str) -> HttpResponse:
    return HttpResponse.json(status, {"error": msg})


class AdminApi:
    def __init__(
        self, view: MarketView, faults: Faults, server: SimServer, engine: MarketEngine | None
    ) -> None:
        self.view = view
        self.faults = faults
        self.server = server
        self.engine = engine

    async def handle(self, req: HttpRequest) -> HttpResponse:
        path, method = req.path.rstrip("/"), req.method
        try:
            if path == "/admin/state" and method == "GET":
                return HttpResponse.json(200, self.state(req))
            if path == "/admin/faults":
                if method == "GET":
                    return HttpResponse.json(200, self.faults.status())
                if method == "DELETE":
                    self.faults.clear()
                    return HttpResponse.json(200, self.faults.status())
                if method == "POST":
                    applied = apply_spec(self.faults, _json_body(req))
                    return HttpResponse.json(
                        200, {"applied": applied, "faults": self.faults.status()}
                    )
            if path == "/admin/market" and method == "POST":
                return self.market(_json_body(req))
        except FaultSpecError as exc:
            return _error(400, str(exc))
        except (ValueError, KeyError) as exc:
            return _error(400, str(exc).strip("'\""))
        return _error(404, f"no admin endpoint {method} {req.path}")

    def state(self, req: HttpRequest) -> dict[str, Any]:
        only = req.param("symbol")
        depth_text = req.param("depth")
        depth = int(depth_text) if depth_text else None
        if depth is not None and depth < 0:
            raise ValueError("depth must be >= 0")
        symbols = {}
        for spec in self.view.specs():
            if only is not None and spec.name != only.upper():
                continue
            symbols[spec.name] = {
                "status": spec.status,
                "lastTradeId": self.view.last_trade_id(spec.name),
                "lastAggTradeId": self.view.last_agg_trade_id(spec.name),
                "book": self.view.book_state(spec.name, depth).to_json(),
            }
        if only is not None and not symbols:
            raise ValueError(f"unknown symbol {only!r}")
        return {
            "time": time.time_ns() // 1_000_000,
            "source": self.view.describe(),
            "connections": [
                {"id": s.id, "combined": s.combined, "streams": s.subscriptions()}
                for s in self.server.sessions.values()
            ],
            "symbols": symbols,
        }

    def market(self, body: Any) -> HttpResponse:
        engine = self.engine
        if engine is None:
            return _error(409, "market controls need market mode (not replay)")
        if not isinstance(body, dict):
            raise FaultSpecError("expected a JSON object")
        unknown = set(body) - {"paused", "rate", "status", "generate"}
        if unknown:
            raise FaultSpecError(f"unknown field(s) {sorted(unknown)}")
        if "rate" in body:
            rate = body["rate"]
            if isinstance(rate, bool) or not isinstance(rate, int | float):
                raise FaultSpecError("rate: expected a number")
            engine.set_rate(float(rate))
        if "paused" in body:
            if not isinstance(body["paused"], bool):
                raise FaultSpecError("paused: expected true or false")
            if body["paused"]:
                engine.pause()
            else:
                engine.resume()
        for symbol, status in (body.get("status") or {}).items():
            engine.set_status(str(symbol), str(status))
        generate = body.get("generate")
        if generate is not None:
            if not isinstance(generate, dict) or not isinstance(generate.get("events"), int):
                raise FaultSpecError("generate: expected {\"events\": N, \"symbol\"?: ...}")
            engine.generate(generate["events"], generate.get("symbol"))
        return HttpResponse.json(200, engine.describe())


def _json_body(req: HttpRequest) -> Any:
    if not req.body:
        raise FaultSpecError("expected a JSON body")
    try:
        return orjson.loads(req.body)
    except orjson.JSONDecodeError as exc:
        raise FaultSpecError(f"invalid JSON body: {exc}") from None
