"""``tickstream tail EVENT_TYPE [...]``: subscribe through a gateway and print events as JSON lines.

One JSON line per event on stdout (the event message as received); connection status and
reset notices on stderr. It is a :mod:`shared.client` application: it reconnects (rotating
through the URLs given), resumes every type from its last offset, and exits 0 on SIGINT,
SIGTERM or after ``--count`` events; a bad argument or a refused token is a one-line error
with a non-zero status.

``--since OFFSET`` needs exactly one EVENT_TYPE (offsets are ordered per type, so one offset
cannot mean anything for two types); with several types give ``--since TYPE=OFFSET`` once per
type that should replay; the others start live (or with ``--last N``, which applies to every
type). ``--conflate-ms N`` asks the gateway for at most one event per symbol per N ms, the
newest (every type; kept across reconnects).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.errors import ConfigError, InvalidOffset
from shared.events import is_event_type
from shared.offsets import parse_offset
from tickstream import stackfile

if TYPE_CHECKING:
    from shared.client import Client, Event, Reset, Status, Subscription

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
MAX_LAST = 100_000
MIN_CONFLATE_MS, MAX_CONFLATE_MS = 10, 60_000


@dataclass(frozen=True, slots=True)
class Plan:
    urls: list[str]
    token: str | None
    event_types: list[str]
    symbols: list[str] | None
    since: dict[str, str] = field(default_factory=dict)
    last: int | None = None
    count: int | None = None
    format: str = "json"
    batch: bool = True
    quiet: bool = False
    conflate_ms: int | None = None


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("event_types", nargs="+", metavar="EVENT_TYPE", help="e.g. price_update")
    parser.add_argument("--symbols", help="comma list of symbols to keep, e.g. BTCUSDT,ETHUSDT")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--since", action="append", metavar="[TYPE=]OFFSET",
                       help="replay every event after OFFSET, then live; with several types give "
                            "TYPE=OFFSET (repeatable)")
    start.add_argument("--last", type=int, metavar="N",
                       help="start with the last N retained events of each type")
    parser.add_argument("--url", help=f"gateway WebSocket URL, or a comma list tried in turn "
                                      f"(env TICKSTREAM_URL; default: the running `tickstream up`'s, "
                                      f"else {DEFAULT_URL})")
    parser.add_argument("--token", help="JWT for private events (env TICKSTREAM_TOKEN)")
    parser.add_argument("--count", type=int, metavar="N", help="exit after printing N events")
    parser.add_argument("--conflate-ms", type=int, metavar="N",
                        help="at most one event per symbol every N ms, the newest "
                             f"({MIN_CONFLATE_MS} to {MAX_CONFLATE_MS})")
    parser.add_argument("--format", choices=("json", "msgpack"), default="json",
                        help="wire format (default json; the output is JSON either way)")
    parser.add_argument("--no-batch", dest="batch", action="store_false",
                        help="one message per frame (lowest latency, more CPU)")
    parser.add_argument("--quiet", "-q", action="store_true", help="no status lines on stderr")
    parser.add_argument("--verbose", "-v", action="store_true", help="client log lines on stderr")


def plan_from(args: argparse.Namespace, stack_url: str | None = None) -> Plan:
    """Check the arguments; ConfigError (one line) for anything wrong.

    ``stack_url``: the running stack's URL, used when neither ``--url`` nor ``TICKSTREAM_URL``
    is given.
    """
    types: list[str] = list(dict.fromkeys(args.event_types))
    for event_type in types:
        if not is_event_type(event_type):
            raise ConfigError(f"EVENT_TYPE {event_type!r} must match ^[a-z][a-z0-9_]{{0,63}}$")
    since: dict[str, str] = {}
    for item in args.since or []:
        event_type, sep, offset = item.rpartition("=")
        if not sep:
            if len(types) != 1:
                raise ConfigError("--since OFFSET needs exactly one EVENT_TYPE; with several, "
                                  "give --since TYPE=OFFSET for each")
            event_type = types[0]
        if event_type not in types:
            raise ConfigError(f"--since {item}: {event_type!r} is not one of the EVENT_TYPEs")
        try:
            parse_offset(offset)
        except InvalidOffset as exc:
            raise ConfigError(f"--since: {exc}") from None
        since[event_type] = offset
    if args.last is not None and not 0 <= args.last <= MAX_LAST:
        raise ConfigError(f"--last must be from 0 to {MAX_LAST}")
    if args.count is not None and args.count < 1:
        raise ConfigError("--count must be at least 1")
    conflate_ms = getattr(args, "conflate_ms", None)
    if conflate_ms is not None and not MIN_CONFLATE_MS <= conflate_ms <= MAX_CONFLATE_MS:
        raise ConfigError(f"--conflate-ms must be from {MIN_CONFLATE_MS} to {MAX_CONFLATE_MS}")
    url_text = args.url or os.environ.get("TICKSTREAM_URL") or stack_url or DEFAULT_URL
    urls = [u.strip() for u in url_text.split(",") if u.strip()]
    for url in urls:
        if not url.startswith(("ws://", "wss://")):
            raise ConfigError(f"--url / TICKSTREAM_URL: {url!r} is not a ws:// or wss:// URL")
    symbols = [s.strip().upper() for s in args.symbols.split(",") if s.strip()] if args.symbols else None
    return Plan(urls=urls, token=args.token or os.environ.get("TICKSTREAM_TOKEN") or None,
                event_types=types, symbols=symbols, since=since, last=args.last, count=args.count,
                format=args.format, batch=args.batch, quiet=args.quiet, conflate_ms=conflate_ms)


def run(args: argparse.Namespace) -> int:
    from shared.logsetup import configure

    found = stackfile.resolve("tail", {"TICKSTREAM_URL": bool(args.url)}, announce=not args.quiet)
    plan = plan_from(args, found.get("TICKSTREAM_URL"))
    configure("INFO" if args.verbose else "CRITICAL")
    return asyncio.run(Tail(plan).run())


def _say(text: str) -> None:
    print(f"tickstream tail: {text}", file=sys.stderr, flush=True)


class Tail:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.printed = 0
        self.stop = asyncio.Event()
        self.out = sys.stdout.buffer
        self.subs: list[Subscription] = []

    async def run(self) -> int:
        from shared.client import ClientClosed, ClientError, connect

        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self.stop.set)
        plan = self.plan
        try:
            client = connect(plan.urls, token=plan.token, format=plan.format,  # type: ignore[arg-type]
                             batch=plan.batch)
            if not plan.quiet:
                client.on_status(self.status)
            client.on_reset(self.reset)
            client.start()
            for event_type in plan.event_types:
                self.subs.append(client.subscribe(
                    event_type, symbols=plan.symbols, since=plan.since.get(event_type),
                    last=plan.last, callback=self.emit, raise_on_reset=False,
                    conflate_ms=plan.conflate_ms))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        try:
            await self._until_done(client)
        except ClientClosed:
            pass
        except ClientError as exc:
            _say(str(exc))
            return 1
        finally:
            await client.close()
            self._flush()
        return 0

    async def _until_done(self, client: Client) -> None:
        """Return on SIGINT/SIGTERM or --count; raise a fatal client or subscription error."""
        waits = {asyncio.ensure_future(self.stop.wait()), asyncio.ensure_future(client.wait_closed()),
                 *(asyncio.ensure_future(sub.wait_subscribed()) for sub in self.subs)}
        try:
            while waits:
                done, waits = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()  # a refused subscription or token raises here
                if self.stop.is_set() or client.error is not None:
                    return
        finally:
            for task in waits:
                task.cancel()

    def emit(self, event: Event) -> None:
        if self.stop.is_set():
            return
        import orjson

        try:
            self.out.write(orjson.dumps(event.as_dict()) + b"\n")
            self.printed += 1
            if self.plan.count is not None and self.printed >= self.plan.count:
                self.stop.set()
                self.out.flush()
            elif not any(sub.pending for sub in self.subs):
                self.out.flush()
        except BrokenPipeError:  # `tickstream tail ... | head`: the reader went away
            self._silence_stdout()
            self.stop.set()

    def _flush(self) -> None:
        try:
            self.out.flush()
        except (BrokenPipeError, ValueError):
            self._silence_stdout()

    def _silence_stdout(self) -> None:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    def status(self, status: Status) -> None:
        if status.state == "connected":
            latency = f", latency {status.latency * 1000:.1f} ms" if status.latency is not None else ""
            _say(f"connected to {status.url} (node {status.node}{latency})")
        elif status.state == "reconnecting":
            from shared.client.wire import describe

            why = f"disconnected ({describe(status.code, status.reason)})" if status.code else status.reason
            _say(f"{why}; reconnecting in {status.delay or 0:.2f} s")

    def reset(self, reset: Reset) -> None:
        _say(f"reset: {reset.event_type} cannot resume from {reset.since} (earliest retained "
             f"{reset.earliest}); continuing live after {reset.offset}")
