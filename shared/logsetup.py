"""Stdlib logging for every component: one line per record, with node and connection id.

Loggers are ``tickstream.<component>.<module>``. Code that works on behalf of one connection
logs through :func:`conn_logger`, so every line carries ``conn=<id>``; other lines show
``conn=-``. A short machine-readable event name can be given with ``extra={"event": "..."}``.

Two formats (``LOG_FORMAT``): ``text``, one human-readable line per record, and ``json``, one
JSON object per line with ``ts`` (UTC, ISO 8601), ``level``, ``logger``, ``msg``, ``node``,
``conn`` (when the record is about a connection), ``event`` and any other ``extra`` field, and
``exc`` (the traceback) when there is one. Nothing else in a JSON log is a bare line: Python
warnings and uncaught exceptions go through the same formatter.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import orjson

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s node=%(node)s conn=%(conn)s %(message)s"
LOG_FORMATS = ("text", "json")
_LOG_FORMAT = re.compile(r"text|json")
# What every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "taskName", "node", "conn",
}


def parse_log_format(text: str) -> str:
    """``LOG_FORMAT``: ``text`` or ``json`` (case and surrounding spaces ignored)."""
    value = text.strip().lower()
    if not _LOG_FORMAT.fullmatch(value):
        raise ValueError(f"expected text or json, got {text[:40]!r}")
    return value


def checked_log_format(value: str) -> str:
    """A settings field's ``LOG_FORMAT`` value, normalised; the error names the variable."""
    try:
        return parse_log_format(value)
    except ValueError as exc:
        raise ValueError(f"LOG_FORMAT: {exc}") from None


class _Defaults(logging.Filter):
    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "conn"):
            record.conn = "-"
        if not hasattr(record, "node"):
            record.node = self.node
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module docstring for the fields)."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
                  .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "node": getattr(record, "node", "-"),
        }
        conn = getattr(record, "conn", "-")
        if conn != "-":
            line["conn"] = conn
        for key, value in extras.items():
            line.setdefault(key, value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger("tickstream").critical("uncaught exception", exc_info=(kind, exc, tb),
                                             extra={"event": "uncaught_exception"})


def configure(level: str = "INFO", node: str = "-", stream: Any = None, fmt: str | None = None) -> None:
    """Install the Tickstream format on the root logger (idempotent).

    ``fmt`` is ``text`` or ``json``; ``None`` reads ``LOG_FORMAT`` from the environment
    (default ``text``), for the callers that do not pass their settings' value.
    """
    chosen = parse_log_format(fmt if fmt is not None else os.environ.get("LOG_FORMAT", "text"))
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(_FORMAT))
    handler.addFilter(_Defaults(node))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tickstream", False):
            root.removeHandler(old)
    handler._tickstream = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    if chosen == "json":
        logging.captureWarnings(True)
        if sys.excepthook is sys.__excepthook__:
            sys.excepthook = _log_uncaught


class ConnLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger whose every line names the connection it is about."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(self.extra or {})
        extra.update(kwargs.get("extra") or {})
        kwargs["extra"] = extra
        return msg, kwargs


def conn_logger(logger: logging.Logger, conn_id: str) -> ConnLogger:
    return ConnLogger(logger, {"conn": conn_id})
