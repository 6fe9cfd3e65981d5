"""``tickstream gateway``: run one gateway (or ``--workers N`` sharing the port)."""

from __future__ import annotations

import argparse
import sys

from shared.settings import add_arguments, from_args


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from gateway.settings import GatewaySettings

    add_arguments(parser, GatewaySettings)


def run(args: argparse.Namespace) -> int:
    from gateway.server import serve, serve_workers
    from gateway.settings import GatewaySettings
    from shared.logsetup import configure

    settings = from_args(GatewaySettings, args)
    configure(settings.log_level, settings.node)
    if settings.workers > 1:
        argv = [a for a in sys.argv[2:] if not a.startswith("--workers")]
        return serve_workers(settings, argv)
    serve(settings)
    return 0
