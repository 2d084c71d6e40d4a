"""JSON text ⇄ typed Arrow values, whole arrays at a time.

Any schema'd topic accepts values as JSON text, and typed values go back out as JSON
text where a client needs bytes (reads across topics, consumer groups, the CLI, Kafka
consumers of JSON Schema topics). Both directions are native:

* :func:`decode_json` joins the payloads into newline-delimited JSON and hands them to
  Arrow's JSON reader with the value type as its explicit schema. Raw newline bytes can
  only be whitespace in JSON (inside strings they must be escaped), so they are
  replaced by spaces first and every payload stays one line. Only when the reader
  refuses does an error path look at single payloads, to name the first bad record.
* :func:`encode_json` builds the text with Arrow string kernels, field by field:
  numbers cast to strings, strings escaped and quoted, structs and maps assembled with
  ``binary_join_element_wise``, lists with ``binary_join`` over their flattened items.
"""

from __future__ import annotations

import base64
import io
import json
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from odradek.errors import SchemaViolation

# Arrow's JSON reader splits its input into blocks of this size; a block must hold at
# least one whole line, and an append is at most 64 MiB (limits.append_bytes_max_default).
_READ_BLOCK_BYTES = 64 * 1024 * 1024 + 1024

_COLUMN_IN_ERROR = re.compile(r"Column\(/([^)]*)\)")

# Control characters other than \b \f \n \r \t, which have short escapes.
_OTHER_CONTROL = [chr(c) for c in range(0x20) if chr(c) not in "\b\f\n\r\t"]


# -- JSON text → values -----------------------------------------------------------------


def decode_json(payloads: pa.Array, value_type: pa.StructType) -> pa.StructArray:
    """Each payload is one JSON object; the result has exactly ``value_type``.

    Refused (SchemaViolation naming the first bad record and the field path): invalid
    JSON, a payload that is not exactly one object, a field of the wrong type, a field
    the type does not have. Required-field and other rules are the schema's check.
    """
    if isinstance(payloads, pa.ChunkedArray):
        payloads = payloads.combine_chunks()
    count = len(payloads)
    if count == 0:
        return pa.array([], value_type)
    if payloads.null_count:
        index = int(np.flatnonzero(payloads.is_null().to_numpy(zero_copy_only=False))[0])
        raise SchemaViolation(f"record {index} has no value", index, "")
    if _has_map(value_type):
        return _decode_with_python(payloads, value_type)
    try:
        decoded = _read(_one_per_line(payloads), value_type)
        if len(decoded) == count:
            return decoded
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    raise _locate(payloads, value_type)


def _has_map(data_type: pa.DataType) -> bool:
    if pa.types.is_map(data_type):
        return True
    if pa.types.is_struct(data_type):
        return any(_has_map(field.type) for field in data_type)
    if (
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
    ):
        return _has_map(data_type.value_type)
    return False


def _is_list_type(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
    )


def _decode_with_python(payloads: pa.Array, value_type: pa.StructType) -> pa.StructArray:
    """Arrow's JSON reader has no maps: such types go through Python's json (a loop over
    records, so a map-typed schema ingests JSON text more slowly than others)."""
    from odradek.schemas.conform import values_from_python

    documents = []
    for index, payload in enumerate(payloads.to_pylist()):
        try:
            document = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise SchemaViolation(f"record {index} is not valid JSON: {exc}", index, "") from None
        if not isinstance(document, dict):
            raise SchemaViolation(
                f"record {index} is JSON {type(document).__name__}, not an object", index, ""
            )
        documents.append(document)
    return values_from_python(documents, value_type)


def _one_per_line(payloads: pa.Array) -> bytes:
    text = payloads.cast(pa.binary())
    text = pc.replace_substring(text, b"\n", b" ")
    text = pc.replace_substring(text, b"\r", b" ")
    # A blank payload would be a skipped blank line; "\x00" makes it a parse error.
    text = pc.if_else(pc.equal(pc.binary_length(text), 0), pa.scalar(b"\x00"), text)
    lines = pc.binary_join_element_wise(text, pa.scalar(b"\n"), pa.scalar(b""))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    return bytes(data.to_pybytes()[int(offsets[0]) : int(offsets[-1])])


def _read(text: bytes, value_type: pa.StructType) -> pa.StructArray:
    schema = pa.schema(list(value_type))
    table = pa_json.read_json(
        io.BytesIO(text),
        read_options=pa_json.ReadOptions(use_threads=True, block_size=max(len(text) + 1, 1 << 20)),
        parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
    )
    if table.num_rows == 0:
        return pa.array([], value_type)
    columns = [column.combine_chunks() for column in table.columns]
    columns = [c if c.type == f.type else c.cast(f.type) for c, f in zip(columns, value_type)]
    return pa.StructArray.from_arrays(columns, fields=list(value_type))


def _locate(payloads: pa.Array, value_type: pa.StructType) -> SchemaViolation:
    """The violation of the first payload Arrow's reader refuses (the error path)."""
    low, high = 0, len(payloads)  # the first bad payload is in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _refused(payloads.slice(low, middle - low), value_type):
            high = middle
        else:
            low = middle
    violation = _explain(payloads[low].as_py(), value_type)
    message = violation.message.replace("record 0", f"record {low}", 1)
    return SchemaViolation(message, low, violation.path)


def _refused(payloads: pa.Array, value_type: pa.StructType) -> bool:
    try:
        return len(_read(_one_per_line(payloads), value_type)) != len(payloads)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return True


def _explain(payload: bytes, value_type: pa.StructType) -> SchemaViolation:
    """Why one payload is refused, with the field path where it can be told."""
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError) as exc:
        return SchemaViolation(f"record 0 is not valid JSON: {exc}", 0, "")
    if not isinstance(document, dict):
        return SchemaViolation(f"record 0 is JSON {type(document).__name__}, not an object", 0, "")
    try:
        _read(_one_per_line(pa.array([payload], pa.binary())), value_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        reason = str(exc).removeprefix("JSON parse error: ")
        found = _COLUMN_IN_ERROR.search(reason)
        if found:
            path = found.group(1).replace("/", ".")
            return SchemaViolation(f"record 0, field `{path}`: wrong JSON type ({reason})", 0, path)
        from odradek.schemas.conform import values_from_python

        try:  # finds unknown fields (and their paths) and type mismatches
            values_from_python([document], value_type)
        except SchemaViolation as violation:
            return violation
        return SchemaViolation(f"record 0 does not fit the schema: {reason}", 0, "")
    return SchemaViolation("record 0 could not be read as one JSON object", 0, "")


# -- values → JSON text -----------------------------------------------------------------


def encode_json(values: pa.Array) -> pa.Array:
    """One JSON text per element (``null`` for a null element), as a utf8 array."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return _encode(values)


def _quote(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(pa.scalar('"'), text, pa.scalar('"'), pa.scalar(""))


def _escape(text: pa.Array) -> pa.Array:
    text = pc.replace_substring(text, "\\", "\\\\")
    text = pc.replace_substring(text, '"', '\\"')
    for raw, escaped in (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"), ("\b", "\\b"), ("\f", "\\f")):
        text = pc.replace_substring(text, raw, escaped)
    if pc.any(pc.match_substring_regex(text, "[\\x00-\\x1f]")).as_py():
        for character in _OTHER_CONTROL:
            text = pc.replace_substring(text, character, f"\\u{ord(character):04x}")
    return text


def _nulls_as_json(encoded: pa.Array, source: pa.Array) -> pa.Array:
    if source.null_count == 0:
        return encoded
    return pc.if_else(source.is_null(), pa.scalar("null"), encoded)


def _encode(array: pa.Array) -> pa.Array:
    data_type = array.type
    if pa.types.is_null(data_type):
        return pa.array(["null"] * len(array), pa.utf8())
    if pa.types.is_dictionary(data_type):
        return _encode(array.cast(data_type.value_type))
    if pa.types.is_boolean(data_type):
        text = pc.if_else(array, pa.scalar("true"), pa.scalar("false"))
    elif pa.types.is_integer(data_type) or pa.types.is_decimal(data_type):
        text = array.cast(pa.utf8())
    elif pa.types.is_floating(data_type):
        finite = pc.is_finite(array)
        text = pc.if_else(finite, array.cast(pa.utf8()), pa.scalar("null"))
    elif pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        text = _quote(_escape(array.cast(pa.utf8())))
    elif (
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    ):
        # No Arrow kernel encodes base64; binary fields are rare in typed values.
        encoded = [None if v is None else base64.b64encode(v).decode() for v in array.to_pylist()]
        text = _quote(pa.array(encoded, pa.utf8()))
    elif pa.types.is_timestamp(data_type):
        text = _quote(_timestamp_text(array))
    elif pa.types.is_date(data_type):
        text = _quote(pc.strftime(array, format="%Y-%m-%d"))
    elif pa.types.is_time(data_type) or pa.types.is_duration(data_type):
        text = (
            _quote(array.cast(pa.utf8()))
            if pa.types.is_time(data_type)
            else array.cast(pa.int64()).cast(pa.utf8())
        )
    elif pa.types.is_struct(data_type):
        text = _encode_struct(array)
    elif pa.types.is_map(data_type):
        text = _encode_map(array)
    elif pa.types.is_fixed_size_list(data_type) or pa.types.is_large_list(data_type):
        text = _encode_list(array.cast(pa.list_(data_type.value_field)))
    elif pa.types.is_list(data_type):
        text = _encode_list(array)
    else:
        # A type without a kernel path: Python's json on its values (never hit by the
        # types schemas compile to; kept so that nothing is ever silently dropped).
        text = pa.array([json.dumps(v, default=str) for v in array.to_pylist()], pa.utf8())
    return _nulls_as_json(text, array)


def _is_binary_type(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
    )


def _timestamp_text(array: pa.Array) -> pa.Array:
    # Arrow's %S prints the fraction of a second for units finer than seconds.
    seconds = pc.strftime(array, format="%Y-%m-%dT%H:%M:%S")
    suffix = "Z" if array.type.tz is not None else ""
    return pc.binary_join_element_wise(seconds, pa.scalar(suffix), pa.scalar(""))


def _encode_struct(array: pa.StructArray) -> pa.Array:
    if array.type.num_fields == 0:
        return pa.array(["{}"] * len(array), pa.utf8())
    children = array.flatten()
    pieces: list[Any] = []
    for position, (field, child) in enumerate(zip(array.type, children)):
        name = json.dumps(field.name, ensure_ascii=False)
        pieces += [pa.scalar(("{" if position == 0 else ",") + name + ":"), _encode(child)]
    pieces += [pa.scalar("}"), pa.scalar("")]
    return pc.binary_join_element_wise(*pieces)


def _relative_offsets(array: pa.Array) -> pa.Array:
    offsets = array.offsets.to_numpy()
    return pa.array((offsets - offsets[0]).astype(np.int32))


def _encode_list(array: pa.ListArray) -> pa.Array:
    items = _encode(pc.list_flatten(array))
    rebuilt = pa.ListArray.from_arrays(_relative_offsets(array), items)
    joined = pc.binary_join(rebuilt, pa.scalar(","))
    return pc.binary_join_element_wise(pa.scalar("["), joined, pa.scalar("]"), pa.scalar(""))


def _encode_map(array: pa.MapArray) -> pa.Array:
    keys = array.keys
    values = array.items
    offsets = array.offsets.to_numpy()
    low, high = int(offsets[0]), int(offsets[-1])
    keys, values = keys.slice(low, high - low), values.slice(low, high - low)
    key_text = _quote(_escape(keys.cast(pa.utf8())))
    entries = pc.binary_join_element_wise(key_text, pa.scalar(":"), _encode(values), pa.scalar(""))
    rebuilt = pa.ListArray.from_arrays(_relative_offsets(array), entries)
    joined = pc.binary_join(rebuilt, pa.scalar(","))
    return pc.binary_join_element_wise(pa.scalar("{"), joined, pa.scalar("}"), pa.scalar(""))
