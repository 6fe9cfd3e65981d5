"""Settings: flags win over the environment, bad values give a one-line reason."""

from __future__ import annotations

import argparse

import pytest

from shared.errors import ConfigError
from shared.publisher import PublishSettings
from shared.retention import Retention, parse_retention
from shared.settings import CommonSettings, Secret, add_arguments, from_args, parse_duration, parse_size


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
