"""``tickstream <command>``: one console script for every component.

Each command lives in a module exposing ``configure_parser(parser)`` and ``run(args) -> int``;
heavy imports happen inside ``run`` so ``--help`` stays fast. Errors a user can fix
(:class:`~shared.errors.ConfigError`, invalid input) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Sequence

from shared.errors import ConfigError, TickstreamError

COMMANDS: dict[str, tuple[str, str]] = {
    "ingestor": ("ingestor.cli", "the Binance ingestor"),
    "gateway": ("gateway.cli", "one gateway (Starlette under uvicorn)"),
    "simulator": ("simulator.cli", "a local Binance-compatible exchange"),
    "up": ("tickstream.up", "the whole stack on one machine"),
    "publish": ("tickstream.publish_cmd", "publish one event from the shell"),
    "tail": ("tickstream.tail", "subscribe and print events as JSON lines"),
    "token": ("tickstream.token", "mint a JWT with the gateways' key and print it"),
    "migrate-keys": ("tickstream.migrate_keys",
                     "move Redis keys of the layout before hash tags (stop publishers first)"),
}


def _available() -> dict[str, tuple[str, str]]:
    """The commands whose module is present (components land one by one)."""
    found = {}
    for name, (module, summary) in COMMANDS.items():
        try:
            if importlib.util.find_spec(module) is not None:
                found[name] = (module, summary)
        except ModuleNotFoundError:
            continue
    return found


def version() -> str:
    """The installed distribution's version, else the source tree's (``pyproject.toml``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tickstream")
    except PackageNotFoundError:
        import tomllib
        from pathlib import Path

        try:
            with (Path(__file__).resolve().parents[1] / "pyproject.toml").open("rb") as handle:
                return str(tomllib.load(handle)["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tickstream",
        description="Real-time events from producers to WebSocket clients through Redis Streams.",
    )
    parser.add_argument("--version", action="version", version=f"tickstream {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, summary) in _available().items():
        cmd = sub.add_parser(name, help=summary, description=summary)
        importlib.import_module(module).configure_parser(cmd)
        cmd.set_defaults(_module=module)
    return parser


SERVER_EXTRA_MODULES = frozenset({
    "starlette", "uvicorn", "httptools", "uvloop", "watchfiles", "anyio", "h11", "jwt",
    "cryptography", "prometheus_client", "httpx", "httpcore",
})
"""What ``pip install 'tickstream[server]'`` brings (imported by the server-side commands)."""


def missing_server_extra(exc: ModuleNotFoundError) -> str | None:
    """The one-line message when ``exc`` is a module of the ``server`` extra, else None."""
    name = (exc.name or "").partition(".")[0]
    if name not in SERVER_EXTRA_MODULES:
        return None
    return f"needs the server extra ({name} is not installed): pip install 'tickstream[server]'"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = importlib.import_module(args._module).run(args)
        return code
    except ConfigError as exc:
        print(f"tickstream {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except TickstreamError as exc:
        print(f"tickstream {args.command}: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        hint = missing_server_extra(exc)
        if hint is None:
            raise
        print(f"tickstream {args.command}: {hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
