"""``tickstream publish EVENT_TYPE JSON``: publish one event and print its offset."""

from __future__ import annotations

import argparse
import sys

import orjson

from shared.errors import RedisUnavailable, ValidationError
from shared.events import Event
from shared.settings import add_arguments, from_args


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from shared.publisher import PublishSettings

    parser.add_argument("event_type", help="e.g. signal_generated")
    parser.add_argument("json", help="the event's data as a JSON object ('-' reads stdin)")
    parser.add_argument("--symbol", help="routing symbol, e.g. BTCUSDT")
    parser.add_argument("--user", help="the one user allowed to receive the event")
    parser.add_argument("--idempotency-key", dest="idempotency_key",
                        help="a repeat within the window returns the first offset")
    add_arguments(parser, PublishSettings)


def run(args: argparse.Namespace) -> int:
    from shared.publisher import Publisher, PublishSettings

    settings = from_args(PublishSettings, args)
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
            print(f"tickstream publish: {exc}", file=sys.stderr)
            return 1
    print(offset)
    return 0
