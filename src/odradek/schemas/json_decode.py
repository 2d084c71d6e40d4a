"""JSON text → typed Arrow values, whole arrays at a time (the native path).

:func:`decode_json` joins the payloads into newline-delimited JSON and hands them to
Arrow's JSON reader with the value type as its explicit schema (types the reader cannot
produce are read as their JSON form, e.g. dates as strings, and converted after). Raw
line breaks can only be whitespace in JSON, and inside strings they are invalid, so
they become tabs (also whitespace, also invalid inside strings): every payload stays
one line and its validity does not change. Whatever this path refuses, or cannot
express (maps, a batch mixing timestamp forms), goes to the strict per-record reading
(json_records.py), which names the first offending record and the path inside it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas.arrays import offsets_and_data
from odradek.schemas.conform import check_nulls
from odradek.schemas.json_forms import (
    BASE64_VALUES,
    is_binary_like,
    is_list_like,
    list_parts,
    times_from_text,
)
from odradek.schemas.json_records import decode_per_record

# Arrow's JSON reader parses its input in blocks; a block must hold at least one whole
# line. One mebibyte is the reader's own default block size.
read_block_bytes_min = 1 << 20


class _NotNative(Exception):
    """The native path cannot decode these payloads; the per-record reading decides."""


def decode_json(payloads: pa.Array, value_type: pa.StructType) -> pa.StructArray:
    """Each payload is the UTF-8 JSON text of exactly one object; the result has exactly
    ``value_type``.

    Refused with a :class:`SchemaViolation` naming the first offending record and the
    field path: a null payload, invalid UTF-8 or JSON (``NaN`` and ``Infinity`` too), a
    payload that is not exactly one object, a field of the wrong JSON type or nested
    deeper than the type, a field the type does not declare (a columnar topic stores
    declared fields only), a number out of its type's range (integers beyond int64, a
    fraction in an integer field), and a missing or null non-nullable field.

    Forms accepted beyond the obvious: integers for floating fields; timestamps as
    ISO-8601 strings or integers in the type's unit; dates and times as ISO-8601
    strings; durations as integers; decimals as numbers or strings; bytes as base64.
    """
    if isinstance(payloads, pa.ChunkedArray):
        payloads = payloads.combine_chunks()
    if len(payloads) == 0:
        return _empty(value_type)
    try:
        return _decode_native(_as_binary(payloads), value_type)
    except (_NotNative, SchemaViolation, pa.ArrowException, ValueError):
        return decode_per_record(payloads, value_type)


def _empty(value_type: pa.StructType) -> pa.StructArray:
    empty: pa.StructArray = pa.array([], value_type)
    return empty


def _as_binary(payloads: pa.Array) -> pa.Array:
    data_type = payloads.type
    if pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type):
        return payloads
    if pa.types.is_large_string(data_type):
        return payloads.cast(pa.large_binary())
    return payloads.cast(pa.binary())


def _decode_native(payloads: pa.Array, value_type: pa.StructType) -> pa.StructArray:
    if payloads.null_count:
        raise _NotNative
    # Arrow's reader does not check UTF-8; the cast does.
    payloads.cast(pa.large_string() if pa.types.is_large_binary(payloads.type) else pa.string())
    offsets, data = offsets_and_data(payloads)
    _require_braces(payloads, offsets, data)
    text, longest = _one_per_line(offsets, data)
    table = _read_or_retry(text, longest, len(payloads), value_type)
    read = pa.StructArray.from_arrays(
        [column.combine_chunks() for column in table.columns], fields=list(table.schema)
    )
    values = _convert(read, value_type)
    if _has_non_finite(values):
        raise _NotNative
    check_nulls(values, value_type)
    result: pa.StructArray = values
    return result


def _require_braces(payloads: pa.Array, offsets: np.ndarray, data: np.ndarray) -> None:
    """Every payload must start with ``{`` and end with ``}`` (around JSON whitespace):
    besides saving the reader from non-objects, this keeps a bare ``null`` line away
    from it, which Arrow's JSON reader does not survive as its first line."""
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts
    first = np.zeros(len(starts), np.uint8)
    last = np.zeros(len(starts), np.uint8)
    first[filled] = data[starts[filled]]
    last[filled] = data[ends[filled] - 1]
    braced = (first == ord("{")) & (last == ord("}"))
    if braced.all():
        return
    unbraced = payloads.filter(pa.array(~braced))
    text = unbraced.cast(pa.large_string() if pa.types.is_large_binary(unbraced.type) else pa.string())
    trimmed = pc.utf8_trim(text, characters=" \t\n\r")
    if not pc.all(pc.and_(pc.starts_with(trimmed, "{"), pc.ends_with(trimmed, "}"))).as_py():
        raise _NotNative


def _one_per_line(offsets: np.ndarray, data: np.ndarray) -> tuple[pa.Buffer, int]:
    """The payloads as newline-delimited text (raw line breaks turned into tabs), and
    the length of the longest line."""
    base = int(offsets[0])
    body = data[base : int(offsets[-1])]
    count = len(offsets) - 1
    text = np.empty(len(body) + count, np.uint8)
    breaks = offsets[1:] - base + np.arange(count)
    is_break = np.zeros(len(text), bool)
    is_break[breaks] = True
    text[~is_break] = body
    text[is_break] = ord("\n")
    # Only payload bytes are rewritten: positions that are not the separators.
    payload_bytes = text[~is_break]
    line_breaks = (payload_bytes == ord("\n")) | (payload_bytes == ord("\r"))
    if line_breaks.any():
        payload_bytes[line_breaks] = ord("\t")
        text[~is_break] = payload_bytes
    longest = int(np.diff(offsets).max()) + 1
    return pa.py_buffer(text), longest


def _read_or_retry(text: pa.Buffer, longest: int, count: int, value_type: pa.StructType) -> pa.Table:
    """Timestamps are read as ISO-8601 strings first and, when that fails, as integers;
    a batch that mixes both forms is left to the per-record reading."""
    attempts = [False, True] if _has_timestamp(value_type) else [False]
    for timestamps_as_integers in attempts:
        read_type = _read_type(value_type, timestamps_as_integers)
        try:
            table = pa_json.read_json(
                pa.BufferReader(text),
                read_options=pa_json.ReadOptions(
                    use_threads=True, block_size=max(read_block_bytes_min, longest + 1)
                ),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=pa.schema(list(read_type)), unexpected_field_behavior="error"
                ),
            )
        except pa.ArrowInvalid:
            continue
        if table.num_rows != count:  # a payload holding several objects
            raise _NotNative
        return table
    raise _NotNative


def _has_timestamp(data_type: pa.DataType) -> bool:
    if pa.types.is_timestamp(data_type):
        return True
    return any(_has_timestamp(data_type.field(i).type) for i in range(data_type.num_fields))


def _read_type(data_type: pa.DataType, timestamps_as_integers: bool) -> pa.DataType:
    """The type Arrow's JSON reader produces for ``data_type``'s JSON form."""
    if pa.types.is_struct(data_type):
        return pa.struct(
            [pa.field(field.name, _read_type(field.type, timestamps_as_integers)) for field in data_type]
        )
    if is_list_like(data_type):
        return pa.list_(_read_type(data_type.value_type, timestamps_as_integers))
    if pa.types.is_map(data_type):
        raise _NotNative  # the reader has no maps
    if pa.types.is_timestamp(data_type):
        return pa.int64() if timestamps_as_integers else data_type
    if pa.types.is_dictionary(data_type):
        return _read_type(data_type.value_type, timestamps_as_integers)
    if pa.types.is_float16(data_type):
        return pa.float32()
    if pa.types.is_duration(data_type):
        return pa.int64()
    if (
        pa.types.is_date(data_type)
        or pa.types.is_time(data_type)
        or is_binary_like(data_type)
        or pa.types.is_string_view(data_type)
    ):
        return pa.string()
    if (
        pa.types.is_null(data_type)
        or pa.types.is_boolean(data_type)
        or pa.types.is_integer(data_type)
        or pa.types.is_floating(data_type)
        or pa.types.is_decimal(data_type)
        or pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
    ):
        return data_type
    raise InvalidSchema(f"values of type {data_type} have no JSON form")


def _null_mask(array: pa.Array) -> pa.Array | None:
    return array.is_null() if array.null_count else None


def _convert(array: pa.Array, target: pa.DataType) -> pa.Array:
    """Values read in their JSON form (:func:`_read_type`) as ``target``."""
    if array.type == target:
        return array
    if pa.types.is_struct(target):
        children = [_convert(array.field(i), field.type) for i, field in enumerate(target)]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=_null_mask(array))
    if is_list_like(target):
        offsets, items = list_parts(array)
        converted = _convert(items, target.value_type)
        if pa.types.is_large_list(target):
            return pa.LargeListArray.from_arrays(
                pa.array(offsets, pa.int64()), converted, type=target, mask=_null_mask(array)
            )
        rebuilt = pa.ListArray.from_arrays(
            pa.array(offsets, pa.int32()),
            converted,
            type=pa.list_(target.value_field),
            mask=_null_mask(array),
        )
        return rebuilt if pa.types.is_list(target) else rebuilt.cast(target)
    if pa.types.is_timestamp(target) or pa.types.is_duration(target):
        return array.cast(target)
    if pa.types.is_date(target):
        return array.cast(pa.date32()).cast(target)
    if pa.types.is_time(target):
        return times_from_text(array, target)
    if is_binary_like(target):
        return _bytes_from_base64(array).cast(target)
    return array.cast(target)


def _bytes_from_base64(text: pa.Array) -> pa.Array:
    """Strict base64 (RFC 4648, padded) strings as binary, decoded with NumPy over the
    whole data buffer: every 4 characters of a string make 3 bytes, so the strings'
    characters are decoded together and each string's padding bytes dropped after."""
    offsets, data = offsets_and_data(text)
    lengths = np.diff(offsets)
    if (lengths % 4).any():
        raise _NotNative
    body = data[int(offsets[0]) : int(offsets[-1])]
    values = BASE64_VALUES[body]
    if (values < 0).any():
        raise _NotNative
    padding = values == 64
    count = len(lengths)
    owner = np.repeat(np.arange(count), lengths)
    from_end = (offsets[1:] - offsets[0])[owner] - np.arange(len(body))  # 1 for a last character
    pads = np.bincount(owner[padding], minlength=count)
    if (padding & (from_end > 2)).any() or (padding & (from_end == 2) & (pads[owner] != 2)).any():
        raise _NotNative
    sextets = np.where(padding, 0, values).astype(np.uint32).reshape(-1, 4)
    words = (sextets[:, 0] << 18) | (sextets[:, 1] << 12) | (sextets[:, 2] << 6) | sextets[:, 3]
    decoded = np.stack([(words >> 16) & 0xFF, (words >> 8) & 0xFF, words & 0xFF], axis=1)
    decoded = decoded.astype(np.uint8).reshape(-1)
    ends = (offsets[1:] - offsets[0]) // 4 * 3
    keep = np.ones(len(decoded), bool)
    keep[ends[pads >= 1] - 1] = False
    keep[ends[pads == 2] - 2] = False
    new_lengths = lengths // 4 * 3 - pads
    new_offsets = np.concatenate([[0], np.cumsum(new_lengths)]).astype(np.int64)
    return _binary_from_parts(new_offsets, decoded[keep], text)


def _binary_from_parts(offsets: np.ndarray, data: np.ndarray, like: pa.Array) -> pa.Array:
    """A binary array (large when the data needs it) with ``like``'s nulls."""
    large = int(offsets[-1]) >= 2**31
    data_type = pa.large_binary() if large else pa.binary()
    offset_type = np.int64 if large else np.int32
    array = pa.Array.from_buffers(
        data_type, len(offsets) - 1, [None, pa.py_buffer(offsets.astype(offset_type)), pa.py_buffer(data)]
    )
    if like.null_count:
        array = pc.if_else(like.is_null(), pa.scalar(None, data_type), array)
    return array


def _has_non_finite(array: pa.Array) -> bool:
    """Whether a floating value anywhere is NaN or infinite: JSON has no such numbers,
    but Arrow's reader takes the ``NaN`` and ``Infinity`` literals (and float32 turns
    a too-large number into infinity)."""
    data_type = array.type
    if pa.types.is_floating(data_type):
        return bool(pc.any(pc.invert(pc.is_finite(array))).as_py())
    if pa.types.is_struct(data_type):
        return any(_has_non_finite(array.field(i)) for i in range(data_type.num_fields))
    if is_list_like(data_type):
        return _has_non_finite(list_parts(array.cast(pa.large_list(data_type.value_field)))[1])
    return False
