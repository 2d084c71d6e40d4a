"""Arrow schemas as topic schemas: a ``pa.Schema`` whose fields become the fields of the
topic's ``value`` struct column.

An Arrow schema is already the stored type, so compiling it is mostly refusing what
cannot be stored or compared sensibly across versions (unions, dictionaries, extension
types, run-end encoding, list views, empty structs, map keys that are not plain values,
nesting and field counts past the bounds of :mod:`odradek.schemas.model`) and reading
field defaults. Payloads of an Arrow-schema'd topic travel as JSON text (the codec), so
Kafka clients without Arrow can still produce and consume.
"""

from __future__ import annotations

import base64
import binascii
import json

import pyarrow as pa

from odradek.errors import InvalidSchema
from odradek.schemas.conform import check_values, default_of
from odradek.schemas.model import (
    DEFAULT_KEY,
    ENUM_KEY,
    CompiledSchema,
    schema_bytes_max,
    schema_depth_max,
    schema_fields_max,
)

__all__ = ["ArrowCodec", "arrow_schema_from_text", "compile_arrow"]

# The field metadata key under which an Arrow schema written by hand may give a
# field's JSON default; it is stored under DEFAULT_KEY, the key every schema kind uses.
PLAIN_DEFAULT_KEY = b"default"


class ArrowCodec:
    """Values of an Arrow-schema'd topic to and from JSON payloads, one object each."""

    def __init__(self, value_type: pa.StructType) -> None:
        self.value_type = value_type

    def decode(self, payloads: pa.Array) -> pa.StructArray:
        from odradek.schemas.json_values import decode_json

        values: pa.StructArray = decode_json(payloads, self.value_type)
        self.check(values)
        return values

    def encode(self, values: pa.StructArray) -> pa.Array:
        from odradek.schemas.json_values import encode_json

        payloads: pa.Array = encode_json(values)
        return payloads

    def check(self, values: pa.StructArray) -> None:
        # Required fields, and the enum symbols an Arrow schema may carry in metadata.
        check_values(values, self.value_type)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _refused_kind(data_type: pa.DataType) -> str | None:
    """Why a type cannot be a topic's column type, or None when it can."""
    if isinstance(data_type, pa.BaseExtensionType):
        return "an extension type (its meaning lives outside the schema)"
    if pa.types.is_union(data_type):
        return "a union (a field holds one type; use optional fields instead)"
    if pa.types.is_dictionary(data_type):
        return "dictionary-encoded (an encoding, not a type: declare the value type)"
    if pa.types.is_run_end_encoded(data_type):
        return "run-end encoded (an encoding, not a type: declare the value type)"
    if pa.types.is_list_view(data_type) or pa.types.is_large_list_view(data_type):
        return "a list view (declare a list)"
    return None


class _Compiler:
    """One pass over a schema's fields: checks bounds and kinds, reads defaults."""

    def __init__(self) -> None:
        self.field_count = 0

    def fields(self, fields: list[pa.Field], path: str, depth: int) -> list[pa.Field]:
        if not fields:
            where = f"struct `{path}`" if path else "the schema"
            raise InvalidSchema(f"{where} has no fields: a value needs at least one")
        seen: set[str] = set()
        compiled = []
        for field in fields:
            if field.name in seen:
                raise InvalidSchema(f"field `{_join(path, field.name)}` appears twice")
            seen.add(field.name)
            self.field_count += 1
            if self.field_count > schema_fields_max:
                raise InvalidSchema(f"the schema has more than {schema_fields_max} fields")
            compiled.append(self.field(field, _join(path, field.name), depth))
        return compiled

    def field(self, field: pa.Field, path: str, depth: int) -> pa.Field:
        if depth > schema_depth_max:
            raise InvalidSchema(f"field `{path}` is nested deeper than {schema_depth_max} levels")
        compiled = field.with_type(self.data_type(field.type, path, depth))
        metadata = dict(compiled.metadata or {})
        if PLAIN_DEFAULT_KEY in metadata:
            plain_default = metadata.pop(PLAIN_DEFAULT_KEY)
            metadata.setdefault(DEFAULT_KEY, plain_default)
        if metadata != dict(compiled.metadata or {}):
            compiled = compiled.with_metadata(metadata) if metadata else compiled.remove_metadata()
        self.check_enum(compiled, path)
        self.check_default(compiled, path)
        return compiled

    def data_type(self, data_type: pa.DataType, path: str, depth: int) -> pa.DataType:
        why = _refused_kind(data_type)
        if why is not None:
            raise InvalidSchema(f"field `{path}` is {why}")
        if pa.types.is_struct(data_type):
            return pa.struct(self.fields(list(data_type), path, depth + 1))
        if pa.types.is_map(data_type):
            key_type = data_type.key_type
            if pa.types.is_nested(key_type) or _refused_kind(key_type) is not None:
                raise InvalidSchema(f"the keys of map `{path}` are {key_type}: map keys must be plain values")
            item = self.field(data_type.item_field, f"{path}[]", depth + 1)
            return pa.map_(data_type.key_field, item, keys_sorted=data_type.keys_sorted)
        if pa.types.is_list(data_type) or pa.types.is_large_list(data_type):
            item = self.field(data_type.value_field, f"{path}[]", depth + 1)
            return pa.large_list(item) if pa.types.is_large_list(data_type) else pa.list_(item)
        if pa.types.is_fixed_size_list(data_type):
            item = self.field(data_type.value_field, f"{path}[]", depth + 1)
            return pa.list_(item, data_type.list_size)
        return data_type

    @staticmethod
    def check_enum(field: pa.Field, path: str) -> None:
        metadata = field.metadata or {}
        if ENUM_KEY not in metadata:
            return
        try:
            symbols = json.loads(metadata[ENUM_KEY])
        except ValueError as error:
            raise InvalidSchema(f"the enum symbols of field `{path}` are not JSON: {error}") from error
        valid = (
            isinstance(symbols, list)
            and bool(symbols)
            and all(isinstance(symbol, str) for symbol in symbols)
            and len(set(symbols)) == len(symbols)
        )
        if not valid:
            raise InvalidSchema(f"the enum symbols of field `{path}` must be a list of distinct strings")
        if not (pa.types.is_string(field.type) or pa.types.is_large_string(field.type)):
            raise InvalidSchema(f"field `{path}` is an enum, so its type must be string, not {field.type}")

    @staticmethod
    def check_default(field: pa.Field, path: str) -> None:
        try:
            default = default_of(field)
        except InvalidSchema as error:
            raise InvalidSchema(f"field `{path}`: {error.message}") from error
        if default is None:
            return
        if not default.is_valid and not field.nullable:
            raise InvalidSchema(f"field `{path}` is required, so its default cannot be null")
        metadata = field.metadata or {}
        if (
            default.is_valid
            and ENUM_KEY in metadata
            and default.as_py() not in json.loads(metadata[ENUM_KEY])
        ):
            raise InvalidSchema(f"the default of enum field `{path}` is not one of its symbols")


def compile_arrow(schema: pa.Schema) -> CompiledSchema:
    """Validate an Arrow schema and compile it for a topic: its fields are the value's.

    The stored text is the IPC serialization of the compiled fields without
    schema-level metadata, base64-encoded, so it is canonical: compiling the schema it
    decodes to gives the same text.
    """
    if not isinstance(schema, pa.Schema):
        raise InvalidSchema(f"an Arrow schema is a pyarrow.Schema, not {type(schema).__name__}")
    fields = _Compiler().fields(list(schema), "", 1)
    value_type = pa.struct(fields)
    serialized = pa.schema(fields).serialize().to_pybytes()
    text = base64.b64encode(serialized).decode("ascii")
    if len(text) > schema_bytes_max:
        raise InvalidSchema(f"the schema is larger than {schema_bytes_max} bytes")
    return CompiledSchema(kind="ARROW", text=text, value_type=value_type, codec=ArrowCodec(value_type))


def arrow_schema_from_text(text: str) -> pa.Schema:
    """The schema stored as ``text`` (see :func:`compile_arrow`)."""
    if len(text) > schema_bytes_max:
        raise InvalidSchema(f"the schema is larger than {schema_bytes_max} bytes")
    try:
        serialized = base64.b64decode(text.strip(), validate=True)
        schema: pa.Schema = pa.ipc.read_schema(pa.py_buffer(serialized))
    except (binascii.Error, ValueError, pa.ArrowException) as error:
        raise InvalidSchema(f"not a base64-encoded Arrow IPC schema: {error}") from error
    return schema
