"""Exceptions raised by the sans-I/O Binance code.

Every exception this package raises on purpose derives from :exc:`BinanceError`::

    BinanceError
    ├── ProtocolError                 a frame or REST body that is not a message we know
    │   ├── BinaryFrame               bytes that are not UTF-8 text
    │   ├── InvalidJSON               text that is not JSON
    │   ├── UnexpectedShape           JSON of the wrong overall shape (not an object, bad wrapper)
    │   ├── UnknownEvent              an object whose event kind we do not handle
    │   ├── MissingField              a required field is absent
    │   ├── InvalidFieldType          a field has the wrong JSON type
    │   └── InvalidFieldValue         a field has the right type but an impossible value
    └── InvalidStream (ValueError)    a stream name we cannot subscribe to
        └── RetiredStream             a stream Binance has retired (e.g. ``!ticker@arr``)

:func:`ingestor.binance.parser.parse_frame` raises only :exc:`ProtocolError` subclasses, whatever
its input: a caller that catches :exc:`ProtocolError` has caught every failure of the parser.
"""

from __future__ import annotations

__all__ = [
    "BinanceError",
    "BinaryFrame",
    "InvalidFieldType",
    "InvalidFieldValue",
    "InvalidJSON",
    "InvalidStream",
    "MissingField",
    "ProtocolError",
    "RetiredStream",
    "UnexpectedShape",
    "UnknownEvent",
]


class BinanceError(Exception):
    """Base class of every exception raised by :mod:`ingestor.binance`."""


class ProtocolError(BinanceError):
    """The exchange sent something the parser cannot turn into a message.

    ``reason`` says what is wrong; ``excerpt`` is a short, printable prefix of the offending frame
    (filled in by the parser's entry points, so that logs show what actually arrived).
    """

    def __init__(self, reason: str, excerpt: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.excerpt = excerpt

    def __str__(self) -> str:
        if self.excerpt:
            return f"{self.reason}; frame: {self.excerpt}"
        return self.reason


class BinaryFrame(ProtocolError):
    """The frame is bytes that do not decode as UTF-8: not a Binance text frame."""


class InvalidJSON(ProtocolError):
    """The frame is text but not valid JSON."""


class UnexpectedShape(ProtocolError):
    """The JSON is valid but not an object (or array of objects) of a known envelope."""


class UnknownEvent(ProtocolError):
    """A JSON object with an event kind (``e``) we do not handle, or with no recognisable kind."""

    def __init__(self, reason: str, event: str | None = None, excerpt: str = "") -> None:
        super().__init__(reason, excerpt)
        self.event = event


class _FieldError(ProtocolError):
    """A problem with one field of an otherwise recognised message."""

    def __init__(self, reason: str, event: str, field: str, excerpt: str = "") -> None:
        super().__init__(reason, excerpt)
        self.event = event
        self.field = field


class MissingField(_FieldError):
    """A field the message kind requires is absent."""


class InvalidFieldType(_FieldError):
    """A field holds the wrong JSON type (e.g. a number where Binance sends a decimal string)."""


class InvalidFieldValue(_FieldError):
    """A field has the right type but a value that cannot be right (negative price, bad interval)."""


class InvalidStream(BinanceError, ValueError):
    """A stream name or one of its parts (symbol, interval, speed) is not valid."""


class RetiredStream(InvalidStream):
    """A stream Binance no longer serves; the message names the replacement."""
