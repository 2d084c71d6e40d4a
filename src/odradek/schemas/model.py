"""What every schema kind gives the engine: the typed Arrow column it stores and the
codec that turns payloads into that column and back.

A topic's schema is written in one of three languages (Avro, JSON Schema, Arrow). Each
is compiled into a :class:`CompiledSchema`:

* ``value_type`` — the ``pa.StructType`` of the topic's stored ``value`` column. Its
  fields carry the facts that compatibility checks need and Arrow types cannot say:
  ``field.nullable`` (the field may be absent or null) and, in the field metadata,
  :data:`DEFAULT_KEY` (a JSON-encoded default value; present only when the schema
  declares one) and :data:`ENUM_KEY` (a JSON-encoded list of the allowed string symbols,
  for Avro enums and JSON Schema string enums; the column itself is ``utf8``). Nested
  structs, lists and maps carry the same facts on their fields.
* ``decode(payloads)`` — a binary array of payloads in the schema's own encoding (Avro
  binary for Avro, JSON text for JSON Schema; no registry header) → a struct array of
  ``value_type``. Vectorized or native, never a Python loop over records and fields.
* ``encode(values)`` — the inverse: a struct array of ``value_type`` → binary payloads.
* ``check(values)`` — constraints beyond the Arrow type (required fields, enum symbols,
  minimum/maximum, patterns, lengths...) on a struct array of ``value_type``.

Every refusal of a record raises :class:`odradek.errors.SchemaViolation` with the
record's index *within the array given* and the field path (``"amount"``,
``"address.city"``, ``"items[3].sku"``); the caller offsets the index. Every refusal of
a schema raises :class:`odradek.errors.InvalidSchema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import pyarrow as pa

from odradek import limits

SchemaKind = Literal["AVRO", "JSON", "ARROW"]

# Field metadata key holding a field's default, JSON-encoded (UTF-8 bytes).
DEFAULT_KEY = b"odradek.default"

# Field metadata key holding an enum's symbols, a JSON-encoded list of strings.
ENUM_KEY = b"odradek.enum"

# Bounds on what a schema may be (odradek.limits says why).
schema_bytes_max = limits.schema_bytes_max
schema_depth_max = limits.schema_depth_max
schema_fields_max = limits.schema_fields_max


class Codec(Protocol):
    def decode(self, payloads: pa.Array) -> pa.StructArray:
        """Binary payloads (no registry header) → values; SchemaViolation on a bad one."""
        ...

    def encode(self, values: pa.StructArray) -> pa.Array:
        """Values of ``value_type`` → binary payloads in the schema's own encoding."""
        ...

    def check(self, values: pa.StructArray) -> None:
        """Raise SchemaViolation for the first record breaking a constraint."""
        ...


@dataclass(frozen=True)
class CompiledSchema:
    kind: SchemaKind
    # The schema as its language writes it, canonical (stable key order, no whitespace):
    # Avro and JSON Schema as JSON text, Arrow as base64 of the IPC-serialized schema.
    text: str
    value_type: pa.StructType
    codec: Codec = field(compare=False, repr=False)
    # Free-form facts for documents generated from the schema (AsyncAPI): e.g. the
    # JSON Schema equivalent of the schema as a dict.
    extras: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
