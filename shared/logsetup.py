"""Stdlib logging for every component: one line per record, with node and connection id.

Loggers are ``tickstream.<component>.<module>``. Code that works on behalf of one connection
logs through :func:`conn_logger`, so every line carries ``conn=<id>``; other lines show
``conn=-``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s node=%(node)s conn=%(conn)s %(message)s"


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


def configure(level: str = "INFO", node: str = "-", stream: Any = None) -> None:
    """Install the Tickstream format on the root logger (idempotent)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    handler.addFilter(_Defaults(node))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_tickstream", False):
            root.removeHandler(old)
    handler._tickstream = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())


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
