"""``tickstream simulator``: run the simulator until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from shared.errors import ConfigError
from shared.logsetup import configure
from shared.settings import add_arguments, from_args
from simulator.config import SimulatorConfig

_log = logging.getLogger("tickstream.simulator.cli")

DESCRIPTION = (
    "A local Binance-Spot-compatible exchange (WebSocket streams and REST on one port) "
    "with a seeded market model or JSONL replay, and fault injection "
    "(POST /admin/faults). Flags win over environment variables."
)


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's flags to ``parser``."""
    if parser.description is None:
        parser.description = DESCRIPTION
    add_arguments(parser, SimulatorConfig)


def run(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; 0 on a clean stop, 2 on bad configuration."""
    from simulator.fault_spec import FaultSpecError

    try:
        config = from_args(SimulatorConfig, args)
    except ConfigError as exc:
        print(f"tickstream simulator: {exc}", file=sys.stderr)
        return 2
    configure(config.log_level, fmt=config.log_format)
    try:
        return asyncio.run(_serve(config))
    except (ConfigError, FaultSpecError) as exc:
        print(f"tickstream simulator: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"tickstream simulator: cannot listen on {config.host}:{config.port}: {exc}",
              file=sys.stderr)
        return 1


async def _serve(config: SimulatorConfig) -> int:
    from simulator.app import Simulator

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    sim = Simulator(config)
    await sim.start()
    try:
        print(f"simulator ws={sim.url_ws} rest={sim.url_rest}", file=sys.stderr, flush=True)
        await stop.wait()
        _log.info("signal received, stopping")
    finally:
        await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickstream simulator")
    configure_parser(parser)
    return run(parser.parse_args(argv))
