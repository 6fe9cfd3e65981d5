"""A Binance-Spot-compatible exchange on loopback, with fault injection.

WebSocket market streams and the REST endpoints the ingestor needs, on one port, fed by a
seeded market model (or a recorded JSONL capture), for offline use and tests. It shares
no protocol code with the ingestor: every payload is built from the protocol reference.

    async with Simulator(port=0, rate=200) as sim:
        sim.url_ws, sim.url_rest, sim.faults.drop(), sim.state.book("BTCUSDT")

The names below are imported on first use, so ``tickstream simulator --help`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.app import Simulator, SimulatorState
    from simulator.config import SimulatorConfig
    from simulator.fault_spec import FaultSpecError
    from simulator.faults import Faults
    from simulator.view import BookState

_EXPORTS = {
    "BookState": "simulator.view",
    "FaultSpecError": "simulator.fault_spec",
    "Faults": "simulator.faults",
    "Simulator": "simulator.app",
    "SimulatorConfig": "simulator.config",
    "SimulatorState": "simulator.app",
}

__all__ = [
    "BookState",
    "FaultSpecError",
    "Faults",
    "Simulator",
    "SimulatorConfig",
    "SimulatorState",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
