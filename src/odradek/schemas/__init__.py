"""Broker-side schemas: compiling Avro, JSON Schema and Arrow schemas into typed Arrow
columns, checking compatibility between versions, and validating values.

:func:`compile_schema` is the one entry point: it takes any form a caller may give
(a JSON Schema or Avro dict, either as JSON text, a ``pa.Schema``, or a kind and the
canonical text stored for it) and returns a :class:`~odradek.schemas.model.CompiledSchema`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from odradek.errors import InvalidSchema
from odradek.schemas.model import CompiledSchema, schema_bytes_max

KINDS = ("AVRO", "JSON", "ARROW")


def compile_schema(schema: object, kind: str | None = None) -> CompiledSchema:
    """Compile a schema in any accepted form; ``kind`` forces the language."""
    if kind is not None:
        kind = _check_kind(kind)
    if isinstance(schema, pa.Schema):
        if kind not in (None, "ARROW"):
            raise InvalidSchema(f"a pyarrow.Schema is an Arrow schema, not {kind}")
        from odradek.schemas.arrow_schema import compile_arrow

        return compile_arrow(schema)
    if isinstance(schema, (bytes, bytearray, memoryview)):
        try:
            schema = bytes(schema).decode()
        except UnicodeDecodeError as exc:
            raise InvalidSchema(f"a schema given as bytes must be UTF-8 text: {exc}") from exc
    if kind == "ARROW":
        if not isinstance(schema, str):
            raise InvalidSchema("an Arrow schema is a pyarrow.Schema (or its stored text)")
        from odradek.schemas.arrow_schema import arrow_schema_from_text, compile_arrow

        return compile_arrow(arrow_schema_from_text(schema))
    document = _document(schema)
    if kind is None:
        kind = _guess_kind(document)
    if kind == "AVRO":
        from odradek.schemas.avro import compile_avro

        if not isinstance(document, Mapping):
            raise InvalidSchema("a topic's Avro value schema must be a record, not a union or a name")
        return compile_avro(document)
    from odradek.schemas.jsonschema import compile_json_schema

    return compile_json_schema(document)  # type: ignore[arg-type]


def _check_kind(kind: object) -> str:
    if not isinstance(kind, str) or kind.upper() not in KINDS:
        raise InvalidSchema(f"a schema's kind is one of {', '.join(KINDS)}, got {kind!r}")
    return kind.upper()


def _document(schema: object) -> Mapping[str, Any] | list[Any]:
    if isinstance(schema, str):
        if len(schema.encode()) > schema_bytes_max:
            raise InvalidSchema(f"a schema is at most {schema_bytes_max} bytes of JSON")
        try:
            schema = json.loads(schema)
        except (ValueError, RecursionError) as exc:
            raise InvalidSchema(f"the schema is not valid JSON: {exc}") from exc
    if isinstance(schema, (Mapping, list)):
        return schema
    raise InvalidSchema(
        "a schema is a JSON Schema dict, an Avro schema dict (or either as JSON text) or a "
        f"pyarrow.Schema, got {type(schema).__name__}"
    )


def _guess_kind(document: Mapping[str, Any] | list[Any]) -> str:
    if isinstance(document, Mapping):
        declared = document.get("type")
        if declared in ("record", "error") or "fields" in document:
            return "AVRO"
        if "$schema" in document or "properties" in document or declared == "object":
            return "JSON"
    raise InvalidSchema(
        "cannot tell whether the schema is Avro (a record with 'fields') or JSON Schema "
        "(an object with 'properties'); a topic's value schema must be one of those, or a "
        "pyarrow.Schema"
    )
