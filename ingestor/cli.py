"""``tickstream ingestor``: run the Binance ingestor until SIGTERM or SIGINT.

Every setting is a flag or an environment variable (``tickstream ingestor --help``). Bad
configuration, including a symbol the exchange does not list, exits with one line and status 2
(raised as :class:`~shared.errors.ConfigError` and printed by ``tickstream/cli.py``); an exchange
that cannot be reached at start exits with status 1.

The process runs on uvloop, with the cyclic garbage collector made less eager (the modules
loaded at start are frozen out of its scans, and a young-generation collection waits for
100,000 allocations instead of 700): when processing falls behind, the backlog's live objects
would otherwise be rescanned constantly (see bench/ingest.py).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
from typing import TYPE_CHECKING

from shared.settings import add_arguments, from_args

if TYPE_CHECKING:
    from ingestor.settings import IngestorSettings


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from ingestor.settings import IngestorSettings

    add_arguments(parser, IngestorSettings)


def run(args: argparse.Namespace) -> int:
    from ingestor.settings import IngestorSettings
    from shared.logsetup import configure

    settings = from_args(IngestorSettings, args)
    configure(settings.log_level, settings.node, fmt=settings.log_format)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    gc.collect()
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
        return asyncio.run(serve(settings))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(serve(settings))


async def serve(settings: IngestorSettings) -> int:
    """Start the ingestor, wait for SIGTERM/SIGINT, stop it gracefully."""
    from ingestor.service import Ingestor

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    ingestor = Ingestor(settings)
    await ingestor.start()
    try:
        await stopping.wait()
    finally:
        await ingestor.stop()
    return 0
