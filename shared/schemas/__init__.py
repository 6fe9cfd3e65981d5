"""JSON Schemas of the built-in event types and of the HTTP publish body, compiled once.

The documents live in :mod:`shared.schemas.documents` (served by the gateway at
``/api/schemas``); :mod:`shared.schemas.validator` checks values against them. Validation runs
once per published event (:func:`shared.events.prepare` calls :func:`schema_for` and
:func:`violations`), so each document is compiled at import.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.schemas.documents import BUILTIN, PUBLISH
from shared.schemas.validator import SchemaError, Validator, compile_schema

__all__ = ["BUILTIN", "PUBLISH", "SchemaError", "Validator", "builtin_types", "document",
           "publish_validator", "schema_for", "violations"]

_VALIDATORS: Mapping[str, Validator] = {name: compile_schema(doc) for name, doc in BUILTIN.items()}
_PUBLISH = compile_schema(PUBLISH)


def builtin_types() -> list[str]:
    """The built-in event types that have a schema, in the contract's order."""
    return list(BUILTIN)


def document(event_type: str) -> Mapping[str, Any] | None:
    """The schema document of a built-in type's ``data``, or None for other types."""
    return BUILTIN.get(event_type)


def publish_validator() -> Validator:
    """The compiled schema of the ``POST /api/publish`` body."""
    return _PUBLISH


def schema_for(event_type: str, data: Mapping[str, Any] | None = None) -> Validator | None:
    """The compiled schema ``data`` must satisfy, or None for types without one (open types).

    ``data`` is unused (``market_data`` picks its fields by ``kind`` inside its document); it is
    kept so callers need not change."""
    return _VALIDATORS.get(event_type)


def violations(schema: Validator, data: Mapping[str, Any]) -> list[str]:
    """Human-readable reasons ``data`` breaks ``schema`` (empty when it complies)."""
    return [] if schema.is_valid(data) else schema.problems(data, root="data")
