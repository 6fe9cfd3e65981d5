"""``tickstream publish EVENT_TYPE JSON``: publish one event and print its offset.

Without ``--redis-url``/``REDIS_URL`` it publishes to the running ``tickstream up`` of the state
folder (:mod:`tickstream.stackfile`), else to the default ``redis://127.0.0.1:6379/0``.
"""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from shared.errors import RedisUnavailable, ValidationError
from shared.events import Event
from shared.settings import add_arguments, from_args
from tickstream import stackfile


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from shared.publisher import PublishSettings

    parser.add_argument("event_type", help="e.g. signal_generated")
    parser.add_argument("json", help="the event's data as a JSON object ('-' reads stdin)")
    parser.add_argument("--symbol", help="routing symbol, e.g. BTCUSDT")
    parser.add_argument("--user", help="the one user allowed to receive the event")
    parser.add_argument("--idempotency-key", dest="idempotency_key", metavar="KEY",
                        help="a repeat within the window returns the first offset")
    add_arguments(parser, PublishSettings)


def run(args: argparse.Namespace) -> int:
    from shared.publisher import Publisher, PublishSettings

    given = {"REDIS_URL": args.redis_url is not None, "KEY_PREFIX": args.key_prefix is not None}
    found = stackfile.resolve("publish", given)
    settings = from_args(PublishSettings, args, {**os.environ, **found})
    text = sys.stdin.read() if args.json == "-" else args.json
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        print(f"tickstream publish: JSON is not valid: {exc}", file=sys.stderr)
        return 2
    event = Event(args.event_type, data, args.symbol, args.user, args.idempotency_key)
    with Publisher.from_url(settings.redis_url, settings) as publisher:
        try:
            offset = publisher.publish_many([event])[0]
        except ValidationError as exc:
            print(f"tickstream publish: invalid event: {exc}", file=sys.stderr)
            return 2
        except RedisUnavailable as exc:
            hint = ""
            if not found and not given["REDIS_URL"] and "REDIS_URL" not in os.environ:
                hint = (f" (REDIS_URL is not set and no `tickstream up` is running with the state "
                        f"folder {stackfile.state_dir()}: set REDIS_URL, or run this in the folder "
                        "of `make demo`)")
            print(f"tickstream publish: {exc}{hint}", file=sys.stderr)
            return 1
    print(offset)
    return 0
