"""Avro schemas for topics: validating a schema document, resolving its named types and
references, and mapping it to the typed Arrow column the topic stores.

A topic's value schema must be an Avro record; each field becomes a column of the
``value`` struct. Avro can say things an Arrow column cannot hold (recursive types,
unions of several non-null types), and those are refused here, at schema time, with a
path into the document, so no record is ever accepted that could not be stored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from odradek.errors import InvalidSchema
from odradek.schemas.avro_binary import decode_records
from odradek.schemas.avro_check import check_records
from odradek.schemas.avro_encode import encode_records
from odradek.schemas.avro_nodes import AvroField, AvroNode
from odradek.schemas.model import (
    DEFAULT_KEY,
    ENUM_KEY,
    CompiledSchema,
    schema_bytes_max,
    schema_depth_max,
    schema_fields_max,
)

# Avro spec, "Names": each part of a full name starts with a letter or underscore.
_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_PRIMITIVE_ARROW_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "int": pa.int32(),
    "long": pa.int64(),
    "float": pa.float32(),
    "double": pa.float64(),
    "bytes": pa.binary(),
    "string": pa.utf8(),
}
_PRIMITIVE_NAMES = frozenset([*_PRIMITIVE_ARROW_TYPES, "null"])
# Avro spec: a float is written as 4 bytes, a double as 8; every other value takes at
# least one byte (a varint, a length or a branch index).
_FLOATING_BYTES = {"float": 4, "double": 8}

# Logical types on a primitive: (underlying type, logical type) -> Arrow type.
_LOGICAL_ARROW_TYPES: dict[tuple[str, str], pa.DataType] = {
    ("long", "timestamp-millis"): pa.timestamp("ms", tz="UTC"),
    ("long", "timestamp-micros"): pa.timestamp("us", tz="UTC"),
    ("long", "local-timestamp-millis"): pa.timestamp("ms"),
    ("long", "local-timestamp-micros"): pa.timestamp("us"),
    ("int", "date"): pa.date32(),
    ("int", "time-millis"): pa.time32("ms"),
    ("long", "time-micros"): pa.time64("us"),
    ("string", "uuid"): pa.utf8(),
}

# Arrow's decimal128 holds at most 38 decimal digits.
_DECIMAL128_PRECISION_MAX = 38

_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


class AvroCodec:
    """Avro binary payloads (no registry header) to and from the topic's value column."""

    def __init__(self, root: AvroNode) -> None:
        self.root = root

    def decode(self, payloads: pa.Array) -> pa.StructArray:
        return decode_records(self.root, payloads)

    def encode(self, values: pa.StructArray) -> pa.Array:
        return encode_records(self.root, values)

    def check(self, values: pa.StructArray) -> None:
        check_records(self.root, values)


def compile_avro(schema: Mapping[str, Any] | str) -> CompiledSchema:
    """Validate an Avro schema (a JSON document or its text) and compile it for a topic."""
    document = _load_document(schema)
    compiler = _Compiler()
    root = compiler.compile(document, "", None, 0)
    if root.kind != "record":
        raise InvalidSchema(f"a topic's value schema must be an Avro record, not {_describe(document)}")
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    value_type = root.arrow_type
    assert isinstance(value_type, pa.StructType)
    return CompiledSchema(kind="AVRO", text=text, value_type=value_type, codec=AvroCodec(root))


def avro_root(compiled: CompiledSchema) -> AvroNode:
    """The codec tree of a compiled Avro schema (for tests and tools)."""
    codec = compiled.codec
    if not isinstance(codec, AvroCodec):
        raise TypeError("not a compiled Avro schema")
    return codec.root


def _load_document(schema: Mapping[str, Any] | str) -> Any:
    if isinstance(schema, str):
        if len(schema.encode()) > schema_bytes_max:
            raise InvalidSchema(f"the Avro schema is larger than {schema_bytes_max} bytes")
        try:
            return json.loads(schema)
        except (ValueError, RecursionError) as error:
            raise InvalidSchema(f"the Avro schema is not valid JSON: {error}") from None
    if not isinstance(schema, Mapping):
        raise InvalidSchema("an Avro schema is a JSON object or its text")
    try:
        text = json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as error:
        raise InvalidSchema(f"the Avro schema is not a JSON document: {error}") from None
    if len(text.encode()) > schema_bytes_max:
        raise InvalidSchema(f"the Avro schema is larger than {schema_bytes_max} bytes")
    return json.loads(text)


def _describe(document: Any) -> str:
    if isinstance(document, dict):
        return f"a {document.get('type')!r}"
    if isinstance(document, list):
        return "a union"
    return repr(document)


def _at(path: str) -> str:
    return f"at {path}" if path else "at the root"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Compiler:
    """One pass over a schema document: named types are registered as they are defined
    and may be referenced by name afterwards, as the Avro spec says."""

    def __init__(self) -> None:
        self.named: dict[str, AvroNode] = {}
        self.defining: set[str] = set()
        self.fields_total = 0

    def compile(self, schema: Any, path: str, namespace: str | None, depth: int) -> AvroNode:
        if depth > schema_depth_max:
            raise InvalidSchema(f"the Avro schema nests deeper than {schema_depth_max} levels {_at(path)}")
        if isinstance(schema, str):
            return self._named_or_primitive(schema, path, namespace)
        if isinstance(schema, list):
            return self._union(schema, path, namespace, depth)
        if not isinstance(schema, dict):
            raise InvalidSchema(f"an Avro type is a name, an object or a union (list) {_at(path)}")
        type_name = schema.get("type")
        if not isinstance(type_name, str):
            raise InvalidSchema(f"an Avro type object needs a 'type' name {_at(path)}")
        if type_name in ("record", "error"):
            return self._record(schema, path, namespace, depth)
        if type_name == "enum":
            return self._enum(schema, path, namespace)
        if type_name == "fixed":
            return self._fixed(schema, path, namespace)
        if type_name == "array":
            if "items" not in schema:
                raise InvalidSchema(f"an Avro array needs 'items' {_at(path)}")
            items = self.compile(schema["items"], _join(path, "items"), namespace, depth + 1)
            if items.encoded_bytes_min == 0:
                raise InvalidSchema(
                    f"Avro array items {_at(_join(path, 'items'))} take no bytes (a fixed of size 0 or a "
                    "record without fields), so a payload could declare any number of them"
                )
            return AvroNode("array", pa.list_(_arrow_field("item", items)), child=items)
        if type_name == "map":
            if "values" not in schema:
                raise InvalidSchema(f"an Avro map needs 'values' {_at(path)}")
            values = self.compile(schema["values"], _join(path, "values"), namespace, depth + 1)
            key_field = pa.field("key", pa.utf8(), nullable=False)
            return AvroNode("map", pa.map_(key_field, _arrow_field("value", values)), child=values)
        if type_name in _PRIMITIVE_ARROW_TYPES:
            return _primitive(type_name, schema)
        return self._named_or_primitive(type_name, _join(path, "type"), namespace)

    def _named_or_primitive(self, name: str, path: str, namespace: str | None) -> AvroNode:
        if name == "null":
            raise InvalidSchema(
                f"'null' can only be one branch of a two-branch union (an optional field) {_at(path)}"
            )
        if name in _PRIMITIVE_ARROW_TYPES:
            return _primitive(name, None)
        candidates = [name] if "." in name or not namespace else [f"{namespace}.{name}", name]
        for full_name in candidates:
            if full_name in self.defining:
                raise InvalidSchema(
                    f"the Avro type {full_name!r} refers to itself {_at(path)}: recursive types cannot be "
                    "stored as columns"
                )
            if full_name in self.named:
                return self.named[full_name]
        raise InvalidSchema(f"unknown Avro type name {name!r} {_at(path)}")

    def _union(self, branches: list[Any], path: str, namespace: str | None, depth: int) -> AvroNode:
        null_positions = [i for i, branch in enumerate(branches) if _is_null_type(branch)]
        if len(branches) != 2 or len(null_positions) != 1:
            raise InvalidSchema(
                f"the Avro union {_at(path)} cannot be one column: only a union of null and one other "
                "type (an optional field) is supported; use optional fields instead of a union of types"
            )
        null_branch = null_positions[0]
        value_branch = 1 - null_branch
        inner = self.compile(branches[value_branch], f"{path}[{value_branch}]", namespace, depth)
        if inner.kind == "optional":
            raise InvalidSchema(f"an Avro union cannot contain a union {_at(path)}")
        return AvroNode("optional", inner.arrow_type, child=inner, null_branch=null_branch)

    def _full_name(self, schema: dict[str, Any], path: str, namespace: str | None) -> tuple[str, str | None]:
        name = schema.get("name")
        if not isinstance(name, str) or not _valid_full_name(name):
            raise InvalidSchema(f"an Avro named type needs a valid 'name' {_at(_join(path, 'name'))}")
        if "." in name:
            full_name = name
        else:
            declared = schema.get("namespace", namespace)
            if declared is not None and not isinstance(declared, str):
                raise InvalidSchema(f"an Avro namespace is a string {_at(_join(path, 'namespace'))}")
            if declared and not _valid_full_name(declared):
                raise InvalidSchema(f"invalid Avro namespace {declared!r} {_at(_join(path, 'namespace'))}")
            full_name = f"{declared}.{name}" if declared else name
        if full_name.rsplit(".", 1)[-1] in _PRIMITIVE_NAMES:
            raise InvalidSchema(f"an Avro named type cannot be called {name!r} {_at(_join(path, 'name'))}")
        if full_name in self.named or full_name in self.defining:
            raise InvalidSchema(f"the Avro type {full_name!r} is defined twice {_at(_join(path, 'name'))}")
        own_namespace = full_name.rsplit(".", 1)[0] if "." in full_name else None
        return full_name, own_namespace

    def _record(self, schema: dict[str, Any], path: str, namespace: str | None, depth: int) -> AvroNode:
        full_name, own_namespace = self._full_name(schema, path, namespace)
        declared_fields = schema.get("fields")
        if not isinstance(declared_fields, list):
            raise InvalidSchema(f"an Avro record needs a 'fields' list {_at(path)}")
        self.defining.add(full_name)
        fields: list[AvroField] = []
        seen: set[str] = set()
        for position, declared in enumerate(declared_fields):
            field_path = _join(path, f"fields[{position}]")
            if not isinstance(declared, dict):
                raise InvalidSchema(f"an Avro record field is an object {_at(field_path)}")
            name = declared.get("name")
            if not isinstance(name, str) or not _NAME_PATTERN.fullmatch(name):
                raise InvalidSchema(f"an Avro field needs a valid 'name' {_at(_join(field_path, 'name'))}")
            if name in seen:
                raise InvalidSchema(f"duplicate Avro field name {name!r} {_at(_join(field_path, 'name'))}")
            seen.add(name)
            if "type" not in declared:
                raise InvalidSchema(f"an Avro field needs a 'type' {_at(field_path)}")
            self.fields_total += 1
            if self.fields_total > schema_fields_max:
                raise InvalidSchema(f"the Avro schema has more than {schema_fields_max} fields")
            node = self.compile(declared["type"], _join(field_path, "type"), own_namespace, depth + 1)
            has_default = "default" in declared
            if has_default and not _default_fits(node, declared["default"]):
                raise InvalidSchema(
                    f"the default of Avro field {name!r} does not fit its type "
                    f"{_at(_join(field_path, 'default'))}"
                )
            fields.append(AvroField(name, node, has_default, declared.get("default")))
        self.defining.discard(full_name)
        arrow_type = pa.struct(
            [_arrow_field(item.name, item.node, item.has_default, item.default) for item in fields]
        )
        encoded_bytes_min = sum(item.node.encoded_bytes_min for item in fields)
        node = AvroNode(
            "record", arrow_type, fields=tuple(fields), name=full_name, encoded_bytes_min=encoded_bytes_min
        )
        self.named[full_name] = node
        return node

    def _enum(self, schema: dict[str, Any], path: str, namespace: str | None) -> AvroNode:
        full_name, _ = self._full_name(schema, path, namespace)
        symbols = schema.get("symbols")
        if not isinstance(symbols, list) or not symbols:
            raise InvalidSchema(f"an Avro enum needs a non-empty 'symbols' list {_at(path)}")
        for position, symbol in enumerate(symbols):
            if not isinstance(symbol, str) or not _NAME_PATTERN.fullmatch(symbol):
                raise InvalidSchema(f"invalid Avro enum symbol {_at(_join(path, f'symbols[{position}]'))}")
        if len(set(symbols)) != len(symbols):
            raise InvalidSchema(f"duplicate Avro enum symbols {_at(_join(path, 'symbols'))}")
        if "default" in schema and schema["default"] not in symbols:
            raise InvalidSchema(f"the Avro enum default is not a symbol {_at(_join(path, 'default'))}")
        node = AvroNode("enum", pa.utf8(), symbols=tuple(symbols), name=full_name)
        self.named[full_name] = node
        return node

    def _fixed(self, schema: dict[str, Any], path: str, namespace: str | None) -> AvroNode:
        full_name, _ = self._full_name(schema, path, namespace)
        size = schema.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise InvalidSchema(f"an Avro fixed needs a non-negative integer 'size' {_at(path)}")
        node = AvroNode("fixed", pa.binary(size), size=size, name=full_name, encoded_bytes_min=size)
        decimal = _decimal(schema, size)
        if decimal is not None:
            precision, scale = decimal
            node = AvroNode(
                "fixed",
                pa.decimal128(precision, scale),
                logical="decimal",
                size=size,
                precision=precision,
                scale=scale,
                name=full_name,
                encoded_bytes_min=size,
            )
        self.named[full_name] = node
        return node


def _primitive(type_name: str, schema: dict[str, Any] | None) -> AvroNode:
    logical = schema.get("logicalType") if schema is not None else None
    if type_name == "bytes" and schema is not None:
        decimal = _decimal(schema, None)
        if decimal is not None:
            precision, scale = decimal
            return AvroNode(
                "bytes", pa.decimal128(precision, scale), logical="decimal", precision=precision, scale=scale
            )
    arrow_type = _LOGICAL_ARROW_TYPES.get((type_name, logical)) if isinstance(logical, str) else None
    encoded_bytes_min = _FLOATING_BYTES.get(type_name, 1)
    if arrow_type is None:
        return AvroNode(
            type_name,  # type: ignore[arg-type]
            _PRIMITIVE_ARROW_TYPES[type_name],
            encoded_bytes_min=encoded_bytes_min,
        )
    return AvroNode(type_name, arrow_type, logical=logical)  # type: ignore[arg-type]


def _decimal(schema: dict[str, Any], fixed_size: int | None) -> tuple[int, int] | None:
    """(precision, scale) of a valid decimal logical type Arrow can hold, else None (the
    Avro spec says an invalid logical type is read as its underlying type)."""
    if schema.get("logicalType") != "decimal":
        return None
    precision = schema.get("precision")
    scale = schema.get("scale", 0)
    if not isinstance(precision, int) or isinstance(precision, bool) or precision < 1:
        return None
    if not isinstance(scale, int) or isinstance(scale, bool) or not 0 <= scale <= precision:
        return None
    if precision > _DECIMAL128_PRECISION_MAX:
        return None
    if fixed_size is not None and precision > math.floor(math.log10(2 ** (8 * fixed_size - 1) - 1)):
        return None
    return precision, scale


def _valid_full_name(name: str) -> bool:
    return all(_NAME_PATTERN.fullmatch(part) for part in name.split("."))


def _is_null_type(schema: Any) -> bool:
    return schema == "null" or (isinstance(schema, dict) and schema.get("type") == "null")


def _arrow_field(name: str, node: AvroNode, has_default: bool = False, default: Any = None) -> pa.Field:
    base = node.inner if node.kind == "optional" else node
    metadata: dict[bytes, bytes] = {}
    if base.kind == "enum":
        metadata[ENUM_KEY] = json.dumps(list(base.symbols)).encode()
    if has_default:
        metadata[DEFAULT_KEY] = json.dumps(default, sort_keys=True, separators=(",", ":")).encode()
    return pa.field(name, node.arrow_type, nullable=node.kind == "optional", metadata=metadata or None)


def _default_fits(node: AvroNode, value: Any) -> bool:
    """Whether a JSON default is a value of the type (for a union: of its first branch)."""
    kind = node.kind
    if kind == "optional":
        return value is None if node.null_branch == 0 else _default_fits(node.inner, value)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        low, high = (_INT_MIN, _INT_MAX) if kind == "int" else (_LONG_MIN, _LONG_MAX)
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
    if kind in ("float", "double"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind in ("bytes", "fixed"):
        # Avro writes bytes defaults as a string of code points 0-255.
        if not isinstance(value, str) or any(ord(character) > 255 for character in value):
            return False
        return kind == "bytes" or len(value) == node.size
    if kind == "enum":
        return value in node.symbols
    if kind == "array":
        return isinstance(value, list) and all(_default_fits(node.inner, item) for item in value)
    if kind == "map":
        return isinstance(value, dict) and all(_default_fits(node.inner, item) for item in value.values())
    if kind == "record":
        if not isinstance(value, dict):
            return False
        for field in node.fields:
            if field.name in value:
                if not _default_fits(field.node, value[field.name]):
                    return False
            elif not field.has_default:
                return False
        return True
    return False  # pragma: no cover - every kind is handled above
