"""Settings read once at start-up, from flags and the environment (flags win).

A settings class is a frozen dataclass whose fields are declared with :func:`setting`::

    @dataclass(frozen=True, slots=True)
    class GatewaySettings(CommonSettings):
        port: int = setting(8080, env="PORT", help="TCP port to listen on")

:func:`add_arguments` turns the fields into ``argparse`` flags (``--port``) and
:func:`from_args` builds the object: a flag given on the command line wins over the
environment variable, which wins over the default. A value that does not parse raises
:class:`~shared.errors.ConfigError` with a one-line reason naming the flag and variable.

Field types understood: ``str``, ``int``, ``float``, ``bool``, :class:`Secret`,
``tuple[str, ...]`` (comma list) and ``X | None`` of those. ``parse=`` overrides the parser
(e.g. :func:`parse_duration` for ``"30s"``, ``"5m"``, ``"24h"``).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from shared.errors import ConfigError
from shared.redisconn import parse_redis_url

T = TypeVar("T")

_META = "tickstream.setting"


class Secret(str):
    """A string whose ``repr`` never shows its value (tokens, passwords, keys)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Secret({self.redacted()!r})"

    def redacted(self) -> str:
        """The value with anything secret masked: a URL keeps all but its password."""
        value = str.__str__(self)
        if "://" in value:
            parts = urlsplit(value)
            if parts.password is None:
                return value
            host = parts.netloc.rsplit("@", 1)[-1]
            return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))
        return "***" if value else ""

    def reveal(self) -> str:
        return str.__str__(self)


@dataclasses.dataclass(frozen=True, slots=True)
class _Spec:
    env: str | None
    flag: str | None
    help: str
    parse: Callable[[str], Any] | None
    metavar: str | None = None


def setting(
    default: Any,
    *,
    env: str | None = None,
    flag: str | None = None,
    help: str = "",
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
) -> Any:
    """Declare a settings field: its default, environment variable, flag, help and placeholder.

    ``metavar`` is the placeholder ``--help`` shows after the flag; without it, one is derived
    from the field's type (see :func:`add_arguments`).
    """
    spec = _Spec(env, flag, help, parse, metavar)
    return dataclasses.field(default=default, metadata={_META: spec})


# Settings are checked whole (fullmatch) and in ASCII (\d and \s would take any Unicode digit/space).
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", re.ASCII)
_SIZE = re.compile(r"\s*(\d+)\s*(B|KiB|MiB|GiB|KB|MB|GB)?\s*", re.ASCII)
_KEY_PREFIX = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_UNITS = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"250ms"``, ``"30"``, ``"30s"``, ``"5m"``, ``"24h"``, ``"7d"`` -> seconds (float)."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"expected a duration such as 30s, 5m or 24h, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_size(text: str) -> int:
    """``"4MiB"``, ``"512KiB"``, ``"1048576"`` -> bytes."""
    match = _SIZE.fullmatch(text)
    if not match:
        raise ValueError(f"expected a size such as 4MiB or 65536, got {text!r}")
    mult = {None: 1, "B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3,
            "KB": 1000, "MB": 1000**2, "GB": 1000**3}[match.group(2)]
    return int(match.group(1)) * mult


def _parse_bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _parse_list(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _parser_for(tp: Any) -> Callable[[str], Any]:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1:
            parse_inner = _parser_for(inner[0])
            return lambda text: None if text.strip() == "" else parse_inner(text)
    if origin is tuple:
        return _parse_list
    if tp is bool:
        return _parse_bool
    if tp is int:
        return int
    if tp is float:
        return float
    if tp is Secret:
        return Secret
    if tp is str:
        return str
    raise TypeError(f"no parser for settings type {tp!r}")


def _flag_name(field: dataclasses.Field[Any], spec: _Spec) -> str:
    return spec.flag or "--" + field.name.replace("_", "-")


def _fields(cls: type[Any]) -> list[tuple[dataclasses.Field[Any], _Spec]]:
    return [(f, f.metadata[_META]) for f in dataclasses.fields(cls) if _META in f.metadata]


# -- how --help shows a field ------------------------------------------------------------------


def _probe(parse: Callable[[str], Any], text: str, expected: float) -> bool:
    """Does this parser read ``text`` as ``expected``? (how a field's value kind is recognised)"""
    try:
        return bool(parse(text) == expected)
    except Exception:  # any parser's refusal means "not this kind"
        return False


def format_duration(seconds: float, parse: Callable[[str], Any] = parse_duration) -> str:
    """Seconds as one would type them: ``86400.0`` -> ``"1d"``, ``0.5`` -> ``"500ms"``.

    A compound form (``"23h50m"``) is used only when ``parse`` reads it back.
    """
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            whole = f"{int(seconds // size)}{unit}"
            break
    else:
        millis = seconds * 1000
        whole = f"{int(millis)}ms" if 0 < seconds < 1 and millis == int(millis) else f"{seconds:g}s"
    if seconds >= 3600 and seconds % 60 == 0 and seconds % 3600:
        compound = f"{int(seconds // 3600)}h{int(seconds % 3600 // 60)}m"
        if _probe(parse, compound, seconds):
            return compound
    return whole


def format_size(size: int) -> str:
    """Bytes as one would type them: ``4194304`` -> ``"4MiB"``."""
    for unit, mult in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= mult and size % mult == 0:
            return f"{size // mult}{unit}"
    return str(size)


def _describe(name: str, tp: Any, default: Any, parse: Callable[[str], Any] | None) -> tuple[str, str]:
    """A field's ``--help`` placeholder and its default as text (``""``: nothing to show).

    The placeholder says what kind of value the flag takes (``DURATION``, ``SIZE``, ``N``,
    ``LIST``, ``BOOL``, or the last word of the field's name for text: ``URL``, ``HOST``), never
    the environment variable, which the help names separately.
    """
    inner = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (types.UnionType, typing.Union) and len(inner) == 1:
        tp = inner[0]
    last = name.rsplit("_", 1)[-1].upper()
    if default is None or (isinstance(default, str | tuple | frozenset) and not default):
        shown = ""
    elif isinstance(default, Secret):
        shown = default.redacted()
    elif isinstance(default, bool):
        shown = "true" if default else "false"
    elif isinstance(default, frozenset):
        shown = ",".join(sorted(default))
    elif isinstance(default, tuple):
        shown = ",".join(map(str, default))
    else:
        shown = str(default)
    if parse is not None and _probe(parse, "2s", 2.0):
        return "DURATION", format_duration(float(default), parse) if shown else ""
    if parse is not None and _probe(parse, "2KiB", 2048):
        return "SIZE", format_size(int(default)) if shown else ""
    if parse is not None:
        return last, shown
    if tp is bool:
        return "BOOL", shown
    if typing.get_origin(tp) is tuple:
        return "LIST", shown
    if tp is int:
        return ("PORT" if last == "PORT" else "N"), shown
    if tp is float:
        return "NUMBER", f"{default:g}" if shown else ""
    return last, shown


def add_arguments(parser: argparse.ArgumentParser, cls: type[Any]) -> None:
    """Add one flag per field of ``cls``; the help shows the default and the variable.

    The help reads ``--idempotency-window DURATION  how long ... (default: 1d) [env
    IDEMPOTENCY_WINDOW]``: the placeholder names the kind of value (:func:`_describe`), the
    default is written the way one would type it, and an empty default is not shown.
    """
    hints = typing.get_type_hints(cls)
    for field, spec in _fields(cls):
        metavar, default = _describe(field.name, hints[field.name], field.default, spec.parse)
        shown = f" (default: {default})" if default and "default" not in spec.help else ""
        env = f" [env {spec.env}]" if spec.env else ""
        parser.add_argument(
            _flag_name(field, spec),
            dest=field.name,
            default=None,
            metavar=spec.metavar or metavar,
            help=f"{spec.help}{shown}{env}".replace("%", "%%"),
        )


def from_args(
    cls: type[T],
    args: argparse.Namespace | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> T:
    """Build ``cls`` from flags (win), then the environment, then defaults.

    ``overrides`` set fields directly (for tests and for the ``up`` supervisor).
    """
    env = os.environ if environ is None else environ
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for field, spec in _fields(cls):
        if field.name in overrides:
            values[field.name] = overrides.pop(field.name)
            continue
        raw: str | None = getattr(args, field.name, None) if args is not None else None
        source = _flag_name(field, spec)
        if raw is None and spec.env and spec.env in env:
            raw, source = env[spec.env], spec.env
        if raw is None:
            continue
        parse = spec.parse or _parser_for(hints[field.name])
        try:
            values[field.name] = parse(raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None
    if overrides:
        raise TypeError(f"unknown settings: {', '.join(sorted(overrides))}")
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def coerce_secrets(obj: Any) -> None:
    """Wrap plain strings given for ``Secret`` fields (direct construction in code and tests)."""
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if hints.get(field.name) is Secret and isinstance(value, str) and not isinstance(value, Secret):
            object.__setattr__(obj, field.name, Secret(value))


@dataclasses.dataclass(frozen=True, slots=True)
class CommonSettings:
    """What every component reads."""

    redis_url: Secret = setting(
        Secret("redis://127.0.0.1:6379/0"),
        env="REDIS_URL",
        help="Redis URL: redis://, rediss://, unix:// (one server), "
             "redis+cluster://host:port,... or redis+sentinel://host:port,...?sentinel_master_name=N",
    )
    key_prefix: str = setting(
        "tickstream", env="KEY_PREFIX", help="prefix of every Redis key Tickstream writes"
    )
    log_level: str = setting("INFO", env="LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR")

    def __post_init__(self) -> None:
        coerce_secrets(self)
        try:
            parse_redis_url(self.redis_url)
        except ConfigError as exc:
            message = str(exc).removeprefix("REDIS_URL: ").removeprefix("REDIS_URL ")
            raise ValueError(f"REDIS_URL: {message}") from None
        if self.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
            raise ValueError(f"LOG_LEVEL: unknown level {self.log_level!r}")
        if not _KEY_PREFIX.fullmatch(self.key_prefix):
            raise ValueError("KEY_PREFIX: letters, digits, '_', '-', '.' only")
