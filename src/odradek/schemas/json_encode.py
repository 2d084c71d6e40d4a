"""Typed Arrow values → JSON text, whole arrays at a time.

:func:`encode_json` builds the text with Arrow string kernels, field by field: numbers
cast to strings, strings escaped and quoted, structs and maps assembled with
``binary_join_element_wise``, lists with ``binary_join`` over their flattened items,
bytes as base64 computed with NumPy on the data buffer.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek.errors import InvalidSchema
from odradek.schemas.arrays import offsets_and_data
from odradek.schemas.json_forms import (
    BASE64_ALPHABET,
    is_binary_like,
    is_list_like,
    is_string_like,
    list_parts,
)

# Bytes that must be escaped inside a JSON string (RFC 8259, section 7), with the short
# escapes where JSON has one.
_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPES = {code: _SHORT_ESCAPES.get(code, f"\\u{code:04x}") for code in range(0x20)}


def encode_json(values: pa.Array) -> pa.Array:
    """One JSON text per element, as a utf8 array: ``null`` for a null element,
    structs and maps as objects, lists as arrays, NaN and infinities as ``null``,
    bytes as base64 strings, timestamps as ISO-8601 strings (with ``Z`` when the type
    has a time zone: the instant in UTC; naive timestamps carry no zone), dates and
    times as ISO-8601 strings, durations as integers, decimals as JSON numbers."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return _encode(values)


def _quote(text: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise('"', text, '"', "")


def _escape(text: pa.Array) -> pa.Array:
    """JSON string escapes, applied only for the bytes that occur (a histogram of the
    data buffer says which): most text needs none."""
    offsets, data = offsets_and_data(text)
    counts = np.bincount(data[int(offsets[0]) : int(offsets[-1])], minlength=256)
    if counts[ord("\\")]:
        text = pc.replace_substring(text, "\\", "\\\\")
    if counts[ord('"')]:
        text = pc.replace_substring(text, '"', '\\"')
    for code in np.flatnonzero(counts[:0x20]):
        text = pc.replace_substring(text, chr(code), _ESCAPES[int(code)])
    return text


def _encode(array: pa.Array) -> pa.Array:
    """JSON texts of ``array``'s elements; null elements are ``null``."""
    data_type = array.type
    if len(array) == 0:
        return pa.array([], pa.string())
    if pa.types.is_null(data_type):
        return pc.cast(pc.fill_null(pa.nulls(len(array), pa.string()), "null"), pa.string())
    if pa.types.is_dictionary(data_type):
        return _encode(array.dictionary_decode())
    if pa.types.is_boolean(data_type):
        text = pc.if_else(array, "true", "false")
    elif pa.types.is_integer(data_type):
        text = array.cast(pa.string())
    elif pa.types.is_decimal(data_type):
        text = _decimal_text(array)
    elif pa.types.is_floating(data_type):
        wide = array.cast(pa.float32()) if pa.types.is_float16(data_type) else array
        text = pc.if_else(pc.is_finite(wide), wide.cast(pa.string()), "null")
    elif is_string_like(data_type):
        text = _quote(_escape(array.cast(pa.string())))
    elif is_binary_like(data_type):
        text = _quote(_base64_text(array))
    elif pa.types.is_timestamp(data_type):
        text = _quote(_timestamp_text(array))
    elif pa.types.is_date(data_type) or pa.types.is_time(data_type):
        text = _quote(array.cast(pa.string()))
    elif pa.types.is_duration(data_type):
        text = array.cast(pa.int64()).cast(pa.string())
    elif pa.types.is_struct(data_type):
        text = _encode_struct(array)
    elif pa.types.is_map(data_type):
        text = _encode_map(array)
    elif is_list_like(data_type):
        text = _encode_list(array)
    else:
        raise InvalidSchema(f"values of type {data_type} have no JSON form")
    if array.null_count:
        text = pc.if_else(array.is_null(), "null", text)
    return text


def _decimal_text(array: pa.Array) -> pa.Array:
    """Decimals as their digits; a negative scale is first widened to scale 0, which
    Arrow's decimal-to-string cast does not print."""
    data_type = array.type
    if data_type.scale < 0:
        precision = data_type.precision - data_type.scale
        widened = pa.decimal128(precision, 0) if precision <= 38 else pa.decimal256(precision, 0)
        array = array.cast(widened)
    return array.cast(pa.string())


def _timestamp_text(array: pa.Array) -> pa.Array:
    data_type = array.type
    if data_type.tz is None:
        return pc.strftime(array, format="%Y-%m-%dT%H:%M:%S")
    in_utc = array.cast(pa.timestamp(data_type.unit, "UTC"))
    return pc.strftime(in_utc, format="%Y-%m-%dT%H:%M:%SZ")


def _base64_text(array: pa.Array) -> pa.Array:
    """Base64 (RFC 4648, padded) of each element, computed with NumPy over the whole
    data buffer: each element's bytes are copied into a zero-filled run of whole
    3-byte groups, every group becomes 4 characters, and the characters standing for
    the zero fill become ``=``. Null elements come out as empty strings."""
    if pa.types.is_fixed_size_binary(array.type) or pa.types.is_binary_view(array.type):
        array = array.cast(pa.binary())
    offsets, data = offsets_and_data(array)
    lengths = np.diff(offsets)
    groups = (lengths + 2) // 3
    group_starts = np.cumsum(groups) - groups
    body = data[int(offsets[0]) : int(offsets[-1])]
    padded = np.zeros(int(groups.sum()) * 3, np.uint8)
    shift = np.repeat(group_starts * 3 - (offsets[:-1] - offsets[0]), lengths)
    padded[shift + np.arange(len(body))] = body
    triples = padded.reshape(-1, 3).astype(np.uint32)
    words = (triples[:, 0] << 16) | (triples[:, 1] << 8) | triples[:, 2]
    sextets = np.stack([(words >> 18) & 63, (words >> 12) & 63, (words >> 6) & 63, words & 63], axis=1)
    text = BASE64_ALPHABET[sextets.reshape(-1)]
    ends = (group_starts + groups) * 4
    remainders = lengths % 3
    text[ends[remainders == 1] - 2] = ord("=")
    text[ends[remainders != 0] - 1] = ord("=")
    text_offsets = np.concatenate([[0], ends]).astype(np.int64)
    large = int(text_offsets[-1]) >= 2**31
    return pa.Array.from_buffers(
        pa.large_string() if large else pa.string(),
        len(lengths),
        [None, pa.py_buffer(text_offsets.astype(np.int64 if large else np.int32)), pa.py_buffer(text)],
    )


def _encode_struct(array: pa.StructArray) -> pa.Array:
    data_type = array.type
    if data_type.num_fields == 0:
        return pc.cast(pc.fill_null(pa.nulls(len(array), pa.string()), "{}"), pa.string())
    pieces: list[Any] = []
    for position, field in enumerate(data_type):
        name = json.dumps(field.name, ensure_ascii=False)
        pieces += [("{" if position == 0 else ",") + name + ":", _encode(array.field(position))]
    return pc.binary_join_element_wise(*pieces, "}", "")


def _rebuilt_list(offsets: np.ndarray, items: pa.Array) -> pa.Array:
    if int(offsets[-1]) < 2**31:
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), items)
    return pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), items)


def _encode_list(array: pa.Array) -> pa.Array:
    data_type = array.type
    if not (pa.types.is_list(data_type) or pa.types.is_large_list(data_type)):
        array = array.cast(pa.large_list(data_type.value_field))
    offsets, items = list_parts(array)
    joined = pc.binary_join(_rebuilt_list(offsets, _encode(items)), ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _encode_map(array: pa.MapArray) -> pa.Array:
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    low, high = int(offsets[0]), int(offsets[-1])
    keys, items = array.keys.slice(low, high - low), array.items.slice(low, high - low)
    if is_string_like(keys.type):
        key_text = _quote(_escape(keys.cast(pa.string())))
    else:
        encoded_keys = _encode(keys)
        already_quoted = (
            is_binary_like(keys.type)
            or pa.types.is_timestamp(keys.type)
            or pa.types.is_date(keys.type)
            or pa.types.is_time(keys.type)
        )
        key_text = encoded_keys if already_quoted else _quote(_escape(encoded_keys))
    entries = pc.binary_join_element_wise(key_text, ":", _encode(items), "")
    joined = pc.binary_join(_rebuilt_list(offsets - low, entries), ",")
    return pc.binary_join_element_wise("{", joined, "}", "")
