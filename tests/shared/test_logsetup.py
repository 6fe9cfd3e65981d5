"""The log formats every component shares: text lines, or one JSON object per line."""

from __future__ import annotations

import io
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.logsetup import configure, conn_logger, parse_log_format


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A stream to configure logging onto; the root logger is put back as it was afterwards."""
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, sys.excepthook
    out = io.StringIO()
    try:
        yield out
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
        sys.excepthook = hook
        logging.captureWarnings(False)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    parsed = [orjson.loads(line) for line in out.getvalue().splitlines()]
    assert all(isinstance(line, dict) for line in parsed)
    return parsed


def test_json_lines_carry_node_conn_event_and_extra_fields(stream: io.StringIO) -> None:
    configure("INFO", "gw-1", stream=stream, fmt="json")
    log = logging.getLogger("tickstream.test")
    log.info("plain %s", "line")
    conn_logger(log, "c0ffee").info("closing with %d", 4008, extra={"event": "close", "code": 4008})
    log.debug("not shown at INFO")
    first, second = lines(stream)
    assert first["msg"] == "plain line" and first["node"] == "gw-1" and first["level"] == "INFO"
    assert first["logger"] == "tickstream.test" and "conn" not in first and "event" not in first
    assert first["ts"].endswith("Z") and first["ts"][10] == "T"
    assert second == {**second, "msg": "closing with 4008", "conn": "c0ffee", "event": "close",
                      "code": 4008}


def test_json_exceptions_stay_on_one_line_and_odd_values_are_strings(stream: io.StringIO) -> None:
    configure("INFO", "n", stream=stream, fmt="json")
    log = logging.getLogger("tickstream.test")
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        log.exception("it failed", extra={"where": Path("/tmp/x"), "peer": ("127.0.0.1", 5)})
    [line] = lines(stream)
    assert stream.getvalue().count("\n") == 1
    assert line["msg"] == "it failed" and line["level"] == "ERROR"
    assert "Traceback" in line["exc"] and "ValueError: bad\nvalue" in line["exc"]
    assert line["where"] == "/tmp/x" and line["peer"] == ["127.0.0.1", 5]


def test_an_extra_field_cannot_replace_a_standard_one(stream: io.StringIO) -> None:
    configure("INFO", "n", stream=stream, fmt="json")
    logging.getLogger("x").warning("m", extra={"ts": "forged", "level": "forged"})
    [line] = lines(stream)
    assert line["level"] == "WARNING" and line["ts"] != "forged"


def test_json_mode_routes_warnings_and_uncaught_exceptions_through_the_formatter(
    stream: io.StringIO,
) -> None:
    configure("INFO", "n", stream=stream, fmt="json")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("careful", UserWarning, stacklevel=1)
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    warned, crashed = lines(stream)
    assert warned["logger"] == "py.warnings" and "careful" in warned["msg"]
    assert crashed["event"] == "uncaught_exception" and "RuntimeError: boom" in crashed["exc"]


def test_text_format_is_unchanged_and_the_environment_picks_the_format(
    stream: io.StringIO, monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure("INFO", "gw-2", stream=stream)
    conn_logger(logging.getLogger("tickstream.t"), "abc").info("hello")
    logging.getLogger("tickstream.t").info("world")
    first, second = stream.getvalue().splitlines()
    assert first.endswith("INFO    tickstream.t node=gw-2 conn=abc hello")
    assert second.endswith("node=gw-2 conn=- world")
    monkeypatch.setenv("LOG_FORMAT", "json")
    again = io.StringIO()
    configure("INFO", "gw-2", stream=again)  # replaces the handler installed above
    logging.getLogger("tickstream.t").info("now json")
    assert orjson.loads(again.getvalue())["msg"] == "now json"
    assert stream.getvalue().count("\n") == 2  # the old handler is gone


@pytest.mark.parametrize(("text", "expected"), [("text", "text"), ("JSON", "json"), (" json ", "json")])
def test_log_format_values(text: str, expected: str) -> None:
    assert parse_log_format(text) == expected


@pytest.mark.parametrize("text", ["", "jsonl", "json,text", "xml", "text\njson"])
def test_bad_log_formats_are_refused_with_one_line(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expected text or json, got ") as info:
        parse_log_format(text)
    assert "\n" not in str(info.value)
