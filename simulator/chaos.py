"""Faults on a schedule, from the start-up flags (``--drop-every``, ``--silence-every``, ...)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from simulator.config import SimulatorConfig
from simulator.faults import Faults

_log = logging.getLogger("tickstream.simulator.chaos")


class Chaos:
    def __init__(self, config: SimulatorConfig, faults: Faults, symbols: list[str]) -> None:
        self.config = config
        self.faults = faults
        self.symbols = symbols
        self.rng = random.Random(f"tickstream-simulator-chaos:{config.seed}")
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        cfg = self.config
        if cfg.malformed_every is not None:
            self.faults.malformed(every=cfg.malformed_every)
        if cfg.rest_fail_rate > 0:
            self.faults.rest(status=cfg.rest_fail_status, count=None,
                             probability=cfg.rest_fail_rate)
        if cfg.rest_delay_ms > 0:
            self.faults.rest(status=None, delay_ms=cfg.rest_delay_ms, count=None)
        periodic: list[tuple[float | None, str, Callable[[], object]]] = [
            (cfg.drop_every, "drop", lambda: self.faults.drop(cfg.drop_mode)),
            (cfg.silence_every, "silence", lambda: self.faults.silence(cfg.silence_for)),
            (cfg.gap_every, "depth gap", self._gap),
            (cfg.shutdown_every, "serverShutdown",
             lambda: self.faults.shutdown(close_after=min(5.0, (cfg.shutdown_every or 2) / 2))),
        ]
        loop = asyncio.get_running_loop()
        for every, name, action in periodic:
            if every is not None:
                self._tasks.append(loop.create_task(self._every(every, name, action)))

    def _gap(self) -> None:
        if self.symbols:
            self.faults.depth_gap(self.rng.choice(self.symbols))

    async def _every(self, every: float, name: str, action: Callable[[], object]) -> None:
        while True:
            await asyncio.sleep(every)
            _log.info("chaos: %s", name)
            try:
                action()
            except Exception:
                _log.exception("chaos action %s failed", name)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
