"""JSON text ⇄ typed Arrow values, whole arrays at a time.

Any schema'd topic accepts values as JSON text, and typed values go back out as JSON
text where a client needs bytes (Kafka consumers of JSON Schema topics, the CLI, reads
across topics). Both directions run in native code:

* :func:`decode_json` joins the payloads into newline-delimited JSON and hands them to
  Arrow's JSON reader with the value type as its explicit schema (types the reader
  cannot produce are read as their JSON form, e.g. dates as strings, and converted
  after). Raw line breaks can only be whitespace in JSON, and inside strings they are
  invalid, so they become tabs (also whitespace, also invalid inside strings): every
  payload stays one line and its validity does not change.
* :func:`encode_json` builds the text with Arrow string kernels, field by field:
  numbers cast to strings, strings escaped and quoted, structs and maps assembled with
  ``binary_join_element_wise``, lists with ``binary_join`` over their flattened items,
  bytes as base64 computed with NumPy on the data buffer.

Refusals are exact because one strict per-record reading (Python's ``json`` and a walk
of the type) decides them; it runs only when the native path refuses something, to name
the first offending record and the path inside it. It is also how values whose type has
a map are read (Arrow's JSON reader has no maps), and a batch mixing ISO-8601 and
integer forms of one timestamp field.
"""

from __future__ import annotations

import binascii
import decimal
import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from odradek.errors import InvalidSchema, SchemaViolation
from odradek.schemas.arrays import offsets_and_data
from odradek.schemas.conform import check_nulls

__all__ = ["decode_json", "encode_json"]

# Arrow's JSON reader parses its input in blocks; a block must hold at least one whole
# line. One mebibyte is the reader's own default block size.
read_block_bytes_min = 1 << 20

# Longest text of a refused value quoted in a violation message, so that a megabyte
# string does not become a megabyte error.
quoted_value_chars_max = 80

# What a byte stands for in base64 text: its 6-bit value, 64 for the padding "=", -1
# for a byte base64 does not use (RFC 4648, section 4).
_BASE64_ALPHABET = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8
)
_BASE64_VALUES = np.full(256, -1, np.int16)
_BASE64_VALUES[_BASE64_ALPHABET] = np.arange(64)
_BASE64_VALUES[ord("=")] = 64

# Bytes that must be escaped inside a JSON string (RFC 8259, section 7), with the short
# escapes where JSON has one.
_SHORT_ESCAPES = {0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0C: "\\f", 0x0D: "\\r"}
_ESCAPES = {code: _SHORT_ESCAPES.get(code, f"\\u{code:04x}") for code in range(0x20)}

_UNIX_EPOCH_DATE = "1970-01-01T"


class _NotNative(Exception):
    """The native path cannot decode these payloads; the per-record reading decides."""


class _Refusal(Exception):
    """One record breaks the type at ``path`` (per-record reading only)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# -- JSON text → values -----------------------------------------------------------------


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
        return _decode_per_record(payloads, value_type)


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


def _is_list_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(data_type)
        or pa.types.is_large_list(data_type)
        or pa.types.is_fixed_size_list(data_type)
        or pa.types.is_list_view(data_type)
        or pa.types.is_large_list_view(data_type)
    )


def _is_binary_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_binary(data_type)
        or pa.types.is_large_binary(data_type)
        or pa.types.is_fixed_size_binary(data_type)
        or pa.types.is_binary_view(data_type)
    )


def _is_string_like(data_type: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(data_type)
        or pa.types.is_large_string(data_type)
        or pa.types.is_string_view(data_type)
    )


def _read_type(data_type: pa.DataType, timestamps_as_integers: bool) -> pa.DataType:
    """The type Arrow's JSON reader produces for ``data_type``'s JSON form."""
    if pa.types.is_struct(data_type):
        return pa.struct(
            [pa.field(field.name, _read_type(field.type, timestamps_as_integers)) for field in data_type]
        )
    if _is_list_like(data_type):
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
        or _is_binary_like(data_type)
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


def _list_parts(array: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """A list array's offsets rebased to zero and the items they address."""
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    items = array.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    return offsets - offsets[0], items


def _null_mask(array: pa.Array) -> pa.Array | None:
    return array.is_null() if array.null_count else None


def _convert(array: pa.Array, target: pa.DataType) -> pa.Array:
    """Values read in their JSON form (:func:`_read_type`) as ``target``."""
    if array.type == target:
        return array
    if pa.types.is_struct(target):
        children = [_convert(array.field(i), field.type) for i, field in enumerate(target)]
        return pa.StructArray.from_arrays(children, fields=list(target), mask=_null_mask(array))
    if _is_list_like(target):
        offsets, items = _list_parts(array)
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
        return _times_from_text(array, target)
    if _is_binary_like(target):
        return _bytes_from_base64(array).cast(target)
    return array.cast(target)


def _times_from_text(text: pa.Array, target: pa.DataType) -> pa.Array:
    """``HH:MM:SS[.fraction]`` strings as a time type, read as a time on the epoch day."""
    on_epoch_day = pc.binary_join_element_wise(_UNIX_EPOCH_DATE, text, "")
    instants = on_epoch_day.cast(pa.timestamp(target.unit))
    ticks = instants.cast(pa.int64())
    int_type = pa.int32() if pa.types.is_time32(target) else pa.int64()
    return ticks.cast(int_type).cast(target)


def _bytes_from_base64(text: pa.Array) -> pa.Array:
    """Strict base64 (RFC 4648, padded) strings as binary, decoded with NumPy over the
    whole data buffer: every 4 characters of a string make 3 bytes, so the strings'
    characters are decoded together and each string's padding bytes dropped after."""
    offsets, data = offsets_and_data(text)
    lengths = np.diff(offsets)
    if (lengths % 4).any():
        raise _NotNative
    body = data[int(offsets[0]) : int(offsets[-1])]
    values = _BASE64_VALUES[body]
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
    if _is_list_like(data_type):
        return _has_non_finite(_list_parts(array.cast(pa.large_list(data_type.value_field)))[1])
    return False


# -- the per-record reading (error path, maps, mixed timestamp forms) -------------------


def _decode_per_record(payloads: pa.Array, value_type: pa.StructType) -> pa.StructArray:
    """Read records one by one, strictly; raise for the first offending one, else build
    the values (when the native path cannot express them)."""
    rows: list[dict[str, Any]] = []
    for index, payload in enumerate(payloads.to_pylist()):
        try:
            rows.append(_record_from_payload(payload, value_type))
        except _Refusal as refusal:
            raise SchemaViolation(f"record {index}: {refusal.message}", index, refusal.path) from None
    values: pa.StructArray = pa.array(rows, value_type)
    return values


def _record_from_payload(payload: bytes | str | None, value_type: pa.StructType) -> dict[str, Any]:
    if payload is None:
        raise _Refusal("", "the payload is null, not a JSON object")
    try:
        text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
        document = json.loads(
            text,
            parse_float=decimal.Decimal,
            parse_constant=_refuse_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except UnicodeDecodeError as error:
        raise _Refusal("", f"the payload is not UTF-8 ({error.reason} at byte {error.start})") from None
    except RecursionError:
        raise _Refusal("", "the payload is nested too deeply") from None
    except ValueError as error:
        raise _Refusal("", f"the payload is not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise _Refusal("", f"the payload is JSON {_json_kind(document)}, not one object")
    row: dict[str, Any] = _python_value(document, value_type, False, "")
    return row


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {json.dumps(key)} appears twice in one object")
            seen.add(key)
    return result


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float | decimal.Decimal):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _shown(value: Any) -> str:
    # Lone surrogates (which Python's json reads) stay visible as escapes.
    text = json.dumps(value, default=str, ensure_ascii=False).encode("utf-8", "backslashreplace").decode()
    if len(text) > quoted_value_chars_max:
        text = text[: quoted_value_chars_max - 1] + "…"
    return text


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _wrong(path: str, expected: str, value: Any) -> _Refusal:
    where = f"field `{path}`" if path else "the value"
    return _Refusal(path, f"{where} must be {expected}, got {_json_kind(value)} {_shown(value)}")


def _python_value(value: Any, data_type: pa.DataType, nullable: bool, path: str) -> Any:
    """``value`` (as Python's ``json`` read it) as the Python value Arrow takes for
    ``data_type``, refusing anything the native path would refuse."""
    if value is None:
        if not nullable:
            raise _Refusal(path, f"field `{path}` is required but is null or missing")
        return None
    if pa.types.is_struct(data_type):
        if not isinstance(value, dict):
            raise _wrong(path, "an object", value)
        names = {field.name for field in data_type}
        for key in value:
            if key not in names:
                key_path = _join(path, key)
                raise _Refusal(key_path, f"field `{key_path}` is not in the topic's schema")
        return {
            field.name: _python_value(
                value.get(field.name), field.type, field.nullable, _join(path, field.name)
            )
            for field in data_type
        }
    if _is_list_like(data_type):
        if not isinstance(value, list):
            raise _wrong(path, "an array", value)
        if pa.types.is_fixed_size_list(data_type) and len(value) != data_type.list_size:
            raise _wrong(path, f"an array of {data_type.list_size} items", value)
        item = data_type.value_field
        return [_python_value(v, item.type, item.nullable, f"{path}[{i}]") for i, v in enumerate(value)]
    if pa.types.is_map(data_type):
        if not isinstance(value, dict):
            raise _wrong(path, "an object", value)
        if not _is_string_like(data_type.key_type):
            raise _Refusal(path, f"field `{path}` is a map with {data_type.key_type} keys, which JSON lacks")
        item = data_type.item_field
        return [
            (key, _python_value(v, item.type, item.nullable, f"{path}[{json.dumps(key)}]"))
            for key, v in value.items()
        ]
    if pa.types.is_dictionary(data_type):
        return _python_value(value, data_type.value_type, nullable, path)
    return _python_scalar(value, data_type, path)


def _python_scalar(value: Any, data_type: pa.DataType, path: str) -> Any:
    if pa.types.is_null(data_type):
        raise _wrong(path, "null", value)
    if pa.types.is_boolean(data_type):
        if not isinstance(value, bool):
            raise _wrong(path, "a boolean", value)
        return value
    if pa.types.is_integer(data_type):
        return _integer(value, data_type, path)
    if pa.types.is_floating(data_type):
        return _floating(value, data_type, path)
    if pa.types.is_decimal(data_type):
        return _decimal(value, data_type, path)
    if _is_string_like(data_type):
        if not isinstance(value, str):
            raise _wrong(path, "a string", value)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _wrong(path, "a string of Unicode characters (no lone surrogates)", value) from None
        return value
    if _is_binary_like(data_type):
        return _binary(value, data_type, path)
    if pa.types.is_timestamp(data_type):
        if isinstance(value, int) and not isinstance(value, bool):
            return _integer(value, pa.int64(), path)
        if isinstance(value, str):
            return _parsed(value, data_type, path, lambda text: text.cast(data_type).cast(pa.int64()))
        raise _wrong(path, "an ISO-8601 date-time string or an integer", value)
    if pa.types.is_date(data_type):
        if not isinstance(value, str):
            raise _wrong(path, "an ISO-8601 date string", value)
        return _parsed(value, data_type, path, lambda text: text.cast(pa.date32()))
    if pa.types.is_time(data_type):
        if not isinstance(value, str):
            raise _wrong(path, "an ISO-8601 time string", value)
        return _parsed(value, data_type, path, lambda text: _times_from_text(text, data_type))
    if pa.types.is_duration(data_type):
        return _integer(value, pa.int64(), path)
    raise _Refusal(path, f"field `{path}` has type {data_type}, which has no JSON form")


def _integer(value: Any, data_type: pa.DataType, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _wrong(path, f"an integer ({data_type})", value)
    bounds = np.iinfo(data_type.to_pandas_dtype())
    if not int(bounds.min) <= value <= int(bounds.max):
        raise _wrong(path, f"an integer within {data_type}'s range", value)
    return value


def _floating(value: Any, data_type: pa.DataType, path: str) -> float:
    if not isinstance(value, int | decimal.Decimal) or isinstance(value, bool):
        raise _wrong(path, "a number", value)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    largest = float(np.finfo(data_type.to_pandas_dtype()).max)
    if not -largest <= number <= largest:
        raise _wrong(path, f"a number within {data_type}'s range", value)
    return number


def _decimal(value: Any, data_type: pa.DataType, path: str) -> decimal.Decimal:
    if isinstance(value, bool) or not isinstance(value, int | decimal.Decimal | str):
        raise _wrong(path, "a decimal number", value)
    try:
        number = decimal.Decimal(value)
    except decimal.InvalidOperation:
        raise _wrong(path, "a decimal number", value) from None
    if not number.is_finite():
        raise _wrong(path, "a decimal number", value)
    try:
        scaled = number.scaleb(data_type.scale)
        exact = scaled == scaled.to_integral_value()
    except decimal.InvalidOperation:
        exact = False
    digits = len(str(abs(int(scaled)))) if exact else 0
    if not exact or digits > data_type.precision:
        raise _wrong(path, f"a number that fits {data_type}", value)
    return number


def _binary(value: Any, data_type: pa.DataType, path: str) -> bytes:
    if not isinstance(value, str):
        raise _wrong(path, "a base64 string", value)
    try:
        decoded = binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        raise _wrong(path, "a base64 string", value) from None
    if pa.types.is_fixed_size_binary(data_type) and len(decoded) != data_type.byte_width:
        raise _wrong(path, f"base64 of exactly {data_type.byte_width} bytes", value)
    return decoded


def _parsed(value: str, data_type: pa.DataType, path: str, parse: Callable[[pa.Array], pa.Array]) -> Any:
    """One string parsed the way the native path parses a column of them."""
    try:
        parsed = parse(pa.array([value], pa.string()))
    except pa.ArrowException:
        raise _wrong(path, f"an ISO-8601 text of a {data_type}", value) from None
    return parsed[0].as_py()


# -- values → JSON text -----------------------------------------------------------------


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
    elif _is_string_like(data_type):
        text = _quote(_escape(array.cast(pa.string())))
    elif _is_binary_like(data_type):
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
    elif _is_list_like(data_type):
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
    text = _BASE64_ALPHABET[sextets.reshape(-1)]
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
    offsets, items = _list_parts(array)
    joined = pc.binary_join(_rebuilt_list(offsets, _encode(items)), ",")
    return pc.binary_join_element_wise("[", joined, "]", "")


def _encode_map(array: pa.MapArray) -> pa.Array:
    offsets = array.offsets.to_numpy(zero_copy_only=False).astype(np.int64)
    low, high = int(offsets[0]), int(offsets[-1])
    keys, items = array.keys.slice(low, high - low), array.items.slice(low, high - low)
    if _is_string_like(keys.type):
        key_text = _quote(_escape(keys.cast(pa.string())))
    else:
        encoded_keys = _encode(keys)
        already_quoted = (
            _is_binary_like(keys.type)
            or pa.types.is_timestamp(keys.type)
            or pa.types.is_date(keys.type)
            or pa.types.is_time(keys.type)
        )
        key_text = encoded_keys if already_quoted else _quote(_escape(encoded_keys))
    entries = pc.binary_join_element_wise(key_text, ":", _encode(items), "")
    joined = pc.binary_join(_rebuilt_list(offsets - low, entries), ",")
    return pc.binary_join_element_wise("{", joined, "}", "")
