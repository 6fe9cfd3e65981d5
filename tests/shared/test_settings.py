"""Settings: flags win over the environment, bad values give a one-line reason."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from shared.errors import ConfigError
from shared.publisher import PublishSettings
from shared.retention import Retention, parse_retention
from shared.settings import (
    CommonSettings,
    Secret,
    add_arguments,
    from_args,
    parse_duration,
    parse_size,
    setting,
)


def _parse(argv: list[str], env: dict[str, str]) -> PublishSettings:
    parser = argparse.ArgumentParser()
    add_arguments(parser, PublishSettings)
    return from_args(PublishSettings, parser.parse_args(argv), env)


def test_flag_wins_over_environment_which_wins_over_default() -> None:
    assert _parse([], {}).redis_url == "redis://127.0.0.1:6379/0"
    assert _parse([], {"REDIS_URL": "redis://h:1/2"}).redis_url == "redis://h:1/2"
    assert _parse(["--redis-url", "unix:///tmp/r.sock"], {"REDIS_URL": "redis://h:1/2"}).redis_url == "unix:///tmp/r.sock"


def test_bad_values_name_the_source() -> None:
    with pytest.raises(ConfigError, match=r"^REDIS_URL: expected redis://"):
        _parse([], {"REDIS_URL": "http://x"})
    with pytest.raises(ConfigError, match=r"^--max-event-bytes: invalid literal"):
        _parse(["--max-event-bytes", "lots"], {})
    with pytest.raises(ConfigError, match=r"^RETENTION: expected TYPE=COUNT/AGE"):
        _parse([], {"RETENTION": "price_update=10"})


def test_secrets_are_redacted_in_repr() -> None:
    settings = from_args(CommonSettings, None, {"REDIS_URL": "redis://user:hunter2@db:6379/0"})
    assert "hunter2" not in repr(settings)
    assert "redis://user:***@db:6379/0" in repr(settings)
    assert settings.redis_url.reveal() == "redis://user:hunter2@db:6379/0"
    assert "s3cret" not in repr(Secret("s3cret"))


def test_settings_are_frozen() -> None:
    settings = CommonSettings()
    with pytest.raises(AttributeError):
        settings.redis_url = Secret("redis://other")  # type: ignore[misc]


def test_durations_and_sizes() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("30") == 30
    assert parse_duration("24h") == 86400
    assert parse_size("4MiB") == 4 * 1024 * 1024
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_retention_overrides_and_fallback() -> None:
    policy = parse_retention("price_update=10/1m,*=5/0")
    assert policy.for_type("price_update") == Retention(10, 60_000)
    assert policy.for_type("anything") == Retention(5, 0)
    assert policy.for_type("orderbook_update").max_len == 20_000  # default kept
    with pytest.raises(ValueError, match="event_type"):
        parse_retention("Bad-Name=1/1h")


@dataclass(frozen=True, slots=True)
class _Shown:
    url: Secret = setting(Secret("redis://u:pw@h:1/0"), env="SHOWN_URL", help="where")
    node: str = setting("", env="NODE_ID", help="id (default: host-pid)")
    wait: float = setting(90.0, env="SHOWN_WAIT", parse=parse_duration, help="how long")
    tick: float = setting(0.25, env="SHOWN_TICK", parse=parse_duration, help="how often")
    size: int = setting(4 * 1024 * 1024, env="SHOWN_SIZE", parse=parse_size, help="how big")
    count: int = setting(5, env="SHOWN_COUNT", help="how many, in %")
    rate: float = setting(2.5, env="SHOWN_RATE", help="per second")
    names: tuple[str, ...] = setting(("b", "a"), env="SHOWN_NAMES", help="which")
    none: tuple[str, ...] = setting((), env="SHOWN_NONE", help="empty list")
    flag: bool = setting(False, env="SHOWN_FLAG", help="on or off")
    path: str = setting("", env="SHOWN_PATH", help="a file", metavar="FILE")


def _help_of(cls: type[object]) -> dict[str, str]:
    parser = argparse.ArgumentParser()
    add_arguments(parser, cls)
    return {action.option_strings[0]: f"{action.metavar} | {action.help}" % {}
            for action in parser._actions if action.option_strings and action.dest != "help"}


def test_help_names_the_kind_of_value_and_the_default_as_one_types_it() -> None:
    assert _help_of(_Shown) == {
        "--url": "URL | where (default: redis://u:***@h:1/0) [env SHOWN_URL]",
        "--node": "NODE | id (default: host-pid) [env NODE_ID]",
        "--wait": "DURATION | how long (default: 90s) [env SHOWN_WAIT]",
        "--tick": "DURATION | how often (default: 250ms) [env SHOWN_TICK]",
        "--size": "SIZE | how big (default: 4MiB) [env SHOWN_SIZE]",
        "--count": "N | how many, in % (default: 5) [env SHOWN_COUNT]",
        "--rate": "NUMBER | per second (default: 2.5) [env SHOWN_RATE]",
        "--names": "LIST | which (default: b,a) [env SHOWN_NAMES]",
        "--none": "LIST | empty list [env SHOWN_NONE]",
        "--flag": "BOOL | on or off (default: false) [env SHOWN_FLAG]",
        "--path": "FILE | a file [env SHOWN_PATH]",
    }


def test_durations_and_sizes_are_written_back_in_a_form_their_parser_reads() -> None:
    from ingestor.settings import parse_span
    from shared.settings import format_duration, format_size

    cases = {86400.0: "1d", 7200.0: "2h", 90.0: "90s", 120.0: "2m", 0.1: "100ms", 1.5: "1.5s"}
    for seconds, text in cases.items():
        assert format_duration(seconds) == text
        assert parse_duration(text) == seconds
    assert format_duration(85800.0) == "1430m"  # parse_duration reads no compound form
    assert format_duration(85800.0, parse_span) == "23h50m"
    assert format_size(65536) == "64KiB" and format_size(1000) == "1000"
    assert parse_size(format_size(3 * 1024**3)) == 3 * 1024**3
