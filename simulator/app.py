"""The in-process API: :class:`Simulator` starts everything on one port and stops it."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

import orjson

from simulator.admin import AdminApi
from simulator.chaos import Chaos
from simulator.config import SimulatorConfig
from simulator.engine import MarketEngine
from simulator.fault_spec import apply_spec
from simulator.faults import Faults, FaultState
from simulator.httpio import HttpRequest, HttpResponse
from simulator.hub import Hub
from simulator.market import BookShape
from simulator.replay import ReplaySource
from simulator.rest import RestApi
from simulator.server import SimServer
from simulator.session import WsLimits
from simulator.symbols import parse_symbols
from simulator.view import BookState, MarketView
from simulator.weights import WeightLimiter

_log = logging.getLogger("tickstream.simulator")


class SimulatorState:
    """Read-only access to the simulator's truth, for tests."""

    def __init__(self, sim: Simulator) -> None:
        self._sim = sim

    def symbols(self) -> list[str]:
        return [s.name for s in self._sim.view.specs()]

    def last_trade_id(self, symbol: str) -> int | None:
        return self._sim.view.last_trade_id(symbol.upper())

    def last_agg_trade_id(self, symbol: str) -> int | None:
        return self._sim.view.last_agg_trade_id(symbol.upper())

    def book(self, symbol: str, depth: int | None = None) -> BookState:
        """The true book: ``last_update_id`` and levels as strings, best first."""
        return self._sim.view.book_state(symbol.upper(), depth)

    def connections(self) -> int:
        return len(self._sim.server.sessions)


class Simulator:
    """A Binance-Spot-compatible exchange on one port, with fault injection.

    ``Simulator(SimulatorConfig(...))`` or ``Simulator(port=0, rate=200, ...)``; use
    ``async with`` or :meth:`start` / :meth:`stop`.
    """

    def __init__(self, config: SimulatorConfig | None = None, **overrides: Any) -> None:
        config = config or SimulatorConfig()
        if overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.hub = Hub()
        self.fault_state = FaultState(config.seed)
        self.market: MarketEngine | None = None
        self.replay: ReplaySource | None = None
        view: MarketView
        if config.replay is not None:
            self.replay = ReplaySource(
                Path(config.replay), self.hub, config.replay_speed, config.history,
                config.kline_history,
            )
            view = self.replay.store
        else:
            shape = BookShape(
                initial_levels=min(300, config.book_levels),
                min_levels=min(100, config.book_levels // 2),
                max_levels=config.book_levels,
            )
            self.market = MarketEngine(
                parse_symbols(config.symbols), self.hub, self.fault_state,
                seed=config.seed, rate=config.rate, history=config.history,
                kline_history=config.kline_history, shape=shape,
            )
            view = self.market
        self.view: MarketView = view
        self.limits = WsLimits(
            ping_interval=config.ping_interval,
            pong_timeout=config.pong_timeout,
            message_rate=config.message_rate,
            max_streams=config.max_streams,
            lifetime=config.lifetime,
        )
        self.server = SimServer(self.hub, self.fault_state, self.limits, self._http)
        self.faults = Faults(self.fault_state, self.server)
        self.state = SimulatorState(self)
        self.weights = WeightLimiter(config.weight_limit, config.weight_window)
        self.rest = RestApi(view, self.weights, self.fault_state)
        self.admin = AdminApi(view, self.faults, self.server, self.market)
        self._chaos = Chaos(config, self.faults, [s.name for s in view.specs()])
        self._started = False

    # ---- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def host(self) -> str:
        host = self.config.host
        return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host

    @property
    def url_ws(self) -> str:
        """Base WebSocket URL: append ``/ws/<stream>`` or ``/stream?streams=...``."""
        return f"ws://{self._netloc()}"

    @property
    def url_rest(self) -> str:
        """Base REST URL: append ``/api/v3/...``."""
        return f"http://{self._netloc()}"

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    # ---- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind (port 0 = a free port) and start the market or the replay."""
        if self._started:
            raise RuntimeError("simulator already started")
        await self.server.start(self.config.host, self.config.port)
        self._started = True
        if self.market is not None:
            await self.market.start()
        if self.replay is not None and self.config.replay_autostart:
            self.replay.begin()
        if self.config.faults:
            apply_spec(self.faults, orjson.loads(self.config.faults))
        self._chaos.start()
        _log.info("simulator listening: ws=%s rest=%s", self.url_ws, self.url_rest)

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._chaos.stop()
        if self.market is not None:
            await self.market.stop()
        if self.replay is not None:
            await self.replay.stop()
        await self.server.stop()
        _log.info("simulator stopped")

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- HTTP ----------------------------------------------------------------------------

    async def _http(self, req: HttpRequest) -> HttpResponse:
        if req.path.startswith("/api/"):
            return await self.rest.handle(req)
        if req.path.startswith("/admin/"):
            return await self.admin.handle(req)
        if req.path == "/":
            return HttpResponse.json(200, {
                "name": "tickstream simulator",
                "ws": self.url_ws,
                "rest": self.url_rest,
                "symbols": self.state.symbols(),
                "time": time.time_ns() // 1_000_000,
            })
        return HttpResponse.json(404, {"code": -1000, "msg": f"Unknown endpoint {req.path}"})
