"""Field validation shared by the WebSocket and REST parsers.

Converters take ``(value, event, field name)`` and return the converted value or raise the
precise :exc:`~ingestor.binance.errors.ProtocolError` subclass naming the field. A *spec* lists a
message's ``(key, converter)`` pairs in dataclass order; :func:`extract` applies it. orjson only
produces exact built-in types, so checks use ``type(x) is ...`` (which also keeps ``bool`` out of
integer fields).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final

import orjson

from ingestor.binance.errors import (
    BinaryFrame,
    InvalidFieldType,
    InvalidFieldValue,
    InvalidJSON,
    MissingField,
    ProtocolError,
)
from ingestor.binance.messages import Level
from ingestor.binance.streams import KLINE_INTERVALS

MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z: larger times are rejected (microsecond timestamps would land here)."""

_INF: Final = math.inf
_EXCERPT_LENGTH: Final = 80
_JSON_TYPES: Final = {
    dict: "object", list: "array", str: "string", int: "integer", float: "number",
    bool: "boolean", type(None): "null",
}  # fmt: skip


def show(value: object) -> str:
    kind = _JSON_TYPES.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text[:30]}{'...' if len(text) > 30 else ''}"


def wrong_type(event: str, name: str, expected: str, value: object) -> InvalidFieldType:
    return InvalidFieldType(f"{event}: field {name!r} must be {expected}, got {show(value)}", event, name)


def bad_value(event: str, name: str, why: str, value: object) -> InvalidFieldValue:
    return InvalidFieldValue(f"{event}: field {name!r} {why}, got {show(value)}", event, name)


def to_symbol(v: Any, event: str, name: str) -> str:
    if type(v) is not str:
        raise wrong_type(event, name, "a string", v)
    if not v:
        raise bad_value(event, name, "must not be empty", v)
    return v


def to_str(v: Any, event: str, name: str) -> str:
    if type(v) is not str:
        raise wrong_type(event, name, "a string", v)
    return v


def to_int(v: Any, event: str, name: str) -> int:
    if type(v) is not int:
        raise wrong_type(event, name, "an integer", v)
    return v


def to_time(v: Any, event: str, name: str) -> int:
    if type(v) is not int:
        raise wrong_type(event, name, "an integer (ms)", v)
    if not 0 <= v <= MAX_TIMESTAMP_MS:
        raise bad_value(event, name, "must be a millisecond time within years 1970..9999", v)
    return v


def to_bool(v: Any, event: str, name: str) -> bool:
    if type(v) is not bool:
        raise wrong_type(event, name, "a boolean", v)
    return v


def to_signed(v: Any, event: str, name: str) -> float:
    if type(v) is not str:
        raise wrong_type(event, name, "a decimal string", v)
    try:
        number = float(v)
    except ValueError:
        raise bad_value(event, name, "must be a decimal number", v) from None
    if not math.isfinite(number):
        raise bad_value(event, name, "must be finite", v)
    return number


def to_unsigned(v: Any, event: str, name: str) -> float:
    number = to_signed(v, event, name)
    if number < 0.0:
        raise bad_value(event, name, "must not be negative", v)
    return number


def to_interval(v: Any, event: str, name: str) -> str:
    if type(v) is not str:
        raise wrong_type(event, name, "a string", v)
    if v not in KLINE_INTERVALS:
        raise bad_value(event, name, "must be a kline interval", v)
    return v


def to_object(v: Any, event: str, name: str) -> dict[str, Any]:
    if type(v) is not dict:
        raise wrong_type(event, name, "an object", v)
    return v


def to_levels(v: Any, event: str, name: str) -> tuple[Level, ...]:
    """``[["price", "qty"], ...]`` -> tuple of validated string pairs (extra items ignored)."""
    if type(v) is not list:
        raise wrong_type(event, name, "an array of [price, quantity]", v)
    levels: list[Level] = []
    append = levels.append
    for level in v:
        if type(level) is list and len(level) >= 2:
            price, qty = level[0], level[1]
            if type(price) is str and type(qty) is str:
                try:
                    if 0.0 <= float(price) < _INF and 0.0 <= float(qty) < _INF:
                        append((price, qty))
                        continue
                except ValueError:
                    pass
        raise bad_value(event, name, "must hold [price, quantity] pairs of decimal strings", level)
    return tuple(levels)


Converter = Callable[[Any, str, str], Any]
Spec = tuple[tuple[str, Converter], ...]


def extract(o: dict[str, Any], event: str, spec: Spec, prefix: str = "") -> list[Any]:
    """Convert ``o``'s fields in ``spec`` order, raising the precise error of the first bad one."""
    values: list[Any] = []
    for key, convert in spec:
        try:
            value = o[key]
        except KeyError:
            name = prefix + key
            raise MissingField(f"{event}: missing field {name!r}", event, name) from None
        values.append(convert(value, event, prefix + key))
    return values


def fail(o: dict[str, Any], event: str, spec: Spec) -> ProtocolError:
    """Slow path after a rejected fast path: the error naming the first bad field."""
    try:
        extract(o, event, spec)
    except ProtocolError as exc:
        return exc
    return InvalidFieldValue(f"{event}: fields are inconsistent", event, "")


def excerpt(data: object) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data[: _EXCERPT_LENGTH + 1])
        text = raw[:_EXCERPT_LENGTH].decode("utf-8", "backslashreplace")
        more = len(raw) > _EXCERPT_LENGTH
    else:
        text = data if isinstance(data, str) else repr(data)
        more = len(text) > _EXCERPT_LENGTH
        text = text[:_EXCERPT_LENGTH]
    return repr(text) + ("..." if more else "")


def loads(data: bytes | str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        if isinstance(data, bytes | bytearray | memoryview):
            try:
                bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                raise BinaryFrame("frame is binary, not UTF-8 text", excerpt(data)) from None
        raise InvalidJSON(f"frame is not valid JSON ({exc})", excerpt(data)) from None


@contextmanager
def framed(data: object) -> Iterator[None]:
    """Attach an excerpt of ``data`` to a ProtocolError raised inside the block."""
    try:
        yield
    except ProtocolError as exc:
        exc.excerpt = exc.excerpt or excerpt(data)
        raise
