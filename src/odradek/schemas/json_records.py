"""The strict per-record reading of JSON values: the error path of decoding.

It runs only when the native path (json_decode.py) refuses something or cannot express
it: Python's ``json`` reads each record and a walk of the type checks it, so a refusal
names the first offending record and the path inside it. It is also how values whose
type has a map are read (Arrow's JSON reader has no maps), and a batch mixing ISO-8601
and integer forms of one timestamp field.
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

from odradek.errors import SchemaViolation
from odradek.schemas.json_forms import is_binary_like, is_list_like, is_string_like, times_from_text

# Longest text of a refused value quoted in a violation message, so that a megabyte
# string does not become a megabyte error.
quoted_value_chars_max = 80


class _Refusal(Exception):
    """One record breaks the type at ``path`` (per-record reading only)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


def decode_per_record(payloads: pa.Array, value_type: pa.StructType) -> pa.StructArray:
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
    if is_list_like(data_type):
        if not isinstance(value, list):
            raise _wrong(path, "an array", value)
        if pa.types.is_fixed_size_list(data_type) and len(value) != data_type.list_size:
            raise _wrong(path, f"an array of {data_type.list_size} items", value)
        item = data_type.value_field
        return [_python_value(v, item.type, item.nullable, f"{path}[{i}]") for i, v in enumerate(value)]
    if pa.types.is_map(data_type):
        if not isinstance(value, dict):
            raise _wrong(path, "an object", value)
        if not is_string_like(data_type.key_type):
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
    if is_string_like(data_type):
        if not isinstance(value, str):
            raise _wrong(path, "a string", value)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _wrong(path, "a string of Unicode characters (no lone surrogates)", value) from None
        return value
    if is_binary_like(data_type):
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
        return _parsed(value, data_type, path, lambda text: times_from_text(text, data_type))
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
