"""The record model (DESIGN §3) and the conversion of what callers append into it.

Callers append a list of dicts, a ``pa.RecordBatch`` or a ``pa.Table``. Whatever they
give becomes one ``pa.RecordBatch`` with :data:`INPUT_SCHEMA`; the engine then adds the
assigned columns to get :data:`STORED_SCHEMA`. Conversion is done by Arrow (casts,
``from_pylist``), never by a Python loop over the records of a batch.
"""

from __future__ import annotations

import datetime
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.errors import InvalidRequest, RequestTooLarge

HEADERS_TYPE = pa.map_(pa.utf8(), pa.binary())
TIMESTAMP_TYPE = pa.timestamp("us", tz="UTC")

INPUT_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADERS_TYPE),
        pa.field("timestamp", TIMESTAMP_TYPE),
    ]
)

# What a topic stores and what reads return (reads across topics add `topic`).
STORED_SCHEMA = pa.schema(
    [
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("timestamp", TIMESTAMP_TYPE, nullable=False),
        pa.field("key", pa.binary()),
        pa.field("value", pa.binary()),
        pa.field("headers", HEADERS_TYPE),
        pa.field("version", pa.int64()),
    ]
)

# Columns a caller may pass back in (e.g. re-appending what it read); they are dropped.
_ASSIGNED_COLUMNS = frozenset({"offset", "version", "topic"})

Records: TypeAlias = Sequence[Mapping[str, Any]] | pa.RecordBatch | pa.Table


def now_micros() -> int:
    return time.time_ns() // 1000


def to_input_batch(
    records: Records, append_bytes_max: int, value_type: pa.StructType | str | None = None
) -> pa.RecordBatch:
    """Normalize what a caller appends into one RecordBatch with INPUT_SCHEMA.

    ``value_type`` is the typed value of a schema'd topic: dict values become a struct
    column of that type, and a struct ``value`` column is kept for the topic to check.
    ``"json"`` (a client that does not know the topic's schema) turns dict values into
    JSON text for the server to check. None (a schemaless topic): values are bytes, and
    dict values are stored as their JSON text.

    Raises InvalidRequest (malformed, wrong types) or RequestTooLarge.
    """
    if isinstance(records, pa.Table):
        batch = _combine(records)
    elif isinstance(records, pa.RecordBatch):
        batch = records
    elif isinstance(records, (list, tuple)):
        batch = _from_dicts(records, value_type)
    else:
        raise InvalidRequest(
            "records must be a list of dicts, a pyarrow.RecordBatch or a pyarrow.Table, "
            f"got {type(records).__name__}"
        )
    if batch.num_rows == 0:
        raise InvalidRequest("an append needs at least one record")
    if batch.num_rows > limits.append_records_max:
        raise RequestTooLarge(
            f"append of {batch.num_rows} records is over the limit of "
            f"{limits.append_records_max}; split it into several appends"
        )
    batch = _conform(batch, typed=value_type is not None)
    # The total size of the buffers is free to get and bounds the batch's own size
    # from above (a slice of a larger batch counts the whole buffers): only a batch
    # over the limit by that measure pays for nbytes, which walks the buffers.
    size = batch.get_total_buffer_size()
    if size > append_bytes_max:
        size = batch.nbytes
    if size > append_bytes_max:
        raise RequestTooLarge(
            f"append of {size} bytes is over the limit of {append_bytes_max} bytes; "
            "split it into several appends"
        )
    return batch


def _combine(table: pa.Table) -> pa.RecordBatch:
    if table.num_rows == 0:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    batches = table.combine_chunks().to_batches()
    if len(batches) != 1:  # combine_chunks leaves one chunk per column
        raise InvalidRequest("could not combine the table's chunks into one batch")
    return batches[0]


def _from_dicts(rows: Sequence[Mapping[str, Any]], value_type: pa.StructType | str | None) -> pa.RecordBatch:
    if not rows:
        raise InvalidRequest("an append needs at least one record")
    for index in (0, len(rows) - 1):
        if not isinstance(rows[index], Mapping):
            raise InvalidRequest(
                f"record {index} is a {type(rows[index]).__name__}; each record must be a dict "
                "with 'value' and optionally 'key', 'headers', 'timestamp'"
            )
    rows = list(rows)
    try:
        fields = set().union(*rows)
    except TypeError as exc:
        raise InvalidRequest(f"each record must be a dict: {exc}") from exc
    unknown = fields - set(INPUT_SCHEMA.names) - _ASSIGNED_COLUMNS
    if unknown:
        raise InvalidRequest(
            f"unknown field(s) {sorted(map(str, unknown))} in records: a record has "
            "'key', 'value', 'headers' and 'timestamp'"
        )
    if "timestamp" in fields:
        _check_timestamps([row.get("timestamp") for row in rows])
    values = [row.get("value") for row in rows]
    if any(isinstance(value, Mapping) for value in values):
        return _with_dict_values(rows, values, value_type)
    try:
        return pa.RecordBatch.from_pylist(rows, schema=INPUT_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise InvalidRequest(
            "could not convert the records: each is a dict with 'value' (bytes or str), "
            "optional 'key' (bytes, str or None), 'headers' (dict of str to bytes/str) and "
            f"'timestamp' (datetime or microseconds since the epoch): {exc}"
        ) from exc


_WITHOUT_VALUE = INPUT_SCHEMA.remove(INPUT_SCHEMA.get_field_index("value"))


def _with_dict_values(
    rows: Sequence[Mapping[str, Any]], values: list[Any], value_type: pa.StructType | str | None
) -> pa.RecordBatch:
    """Records whose values are dicts: typed for a schema'd topic, else JSON text."""
    if value_type is None or value_type == "json" or not all(isinstance(value, Mapping) for value in values):
        # For a server to check, or dicts mixed with JSON text: all become JSON text.
        try:
            column = pa.array([_json_bytes(v) for v in values], pa.binary())
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"a dict value cannot be sent as JSON: {exc}") from exc
    else:
        from odradek.schemas.conform import values_from_python

        column = values_from_python(values, value_type)
    try:
        rest = pa.RecordBatch.from_pylist(rows, schema=_WITHOUT_VALUE)  # ignores "value"
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
        raise InvalidRequest(f"could not convert the records: {exc}") from exc
    columns = [*rest.columns]
    columns.insert(INPUT_SCHEMA.get_field_index("value"), column)
    return pa.RecordBatch.from_arrays(columns, schema=_input_schema(column.type))


def _json_bytes(value: Any) -> Any:
    if isinstance(value, Mapping):
        return json.dumps(value, allow_nan=False).encode()
    return value.encode() if isinstance(value, str) else value


def _input_schema(value_type: pa.DataType) -> pa.Schema:
    if value_type == pa.binary():
        return INPUT_SCHEMA
    return INPUT_SCHEMA.set(INPUT_SCHEMA.get_field_index("value"), pa.field("value", value_type))


def _check_timestamps(stamps: list[Any]) -> None:
    """Dict timestamps are datetimes or int microseconds; floats are ambiguous, refused."""
    try:
        inferred = pa.array(stamps)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
        raise InvalidRequest(f"{_TIMESTAMP_RULES}: {exc}") from exc
    if not (
        pa.types.is_null(inferred.type)
        or pa.types.is_integer(inferred.type)
        or pa.types.is_timestamp(inferred.type)
    ):
        raise InvalidRequest(f"{_TIMESTAMP_RULES}, got values of type {inferred.type}")


_TIMESTAMP_RULES = (
    "a record's 'timestamp' is a datetime or an int of microseconds since the epoch "
    "(for time.time() seconds, pass int(t * 1_000_000))"
)


def _conform(batch: pa.RecordBatch, typed: bool = False) -> pa.RecordBatch:
    if batch.schema.equals(INPUT_SCHEMA):  # already conformed (what a client sends a server)
        _check_key_lengths(batch.column("key"))
        return batch
    names = batch.schema.names
    unknown = [n for n in names if n not in INPUT_SCHEMA.names and n not in _ASSIGNED_COLUMNS]
    if unknown:
        raise InvalidRequest(
            f"unknown column(s) {unknown}: a record has 'key', 'value', 'headers', 'timestamp'"
        )
    if len(set(names)) != len(names):
        raise InvalidRequest(f"duplicate column names in {names}")
    if "value" not in names:
        raise InvalidRequest("a batch needs a 'value' column")
    columns = []
    for field in _INPUT_FIELDS:
        if field.name not in names:
            columns.append(pa.nulls(batch.num_rows, field.type))
        elif field.name == "value" and pa.types.is_struct(batch.column("value").type):
            if not typed:
                raise InvalidRequest(
                    "the value column is a struct, but the topic has no schema: values are "
                    "bytes or str (give the topic a schema to append typed values)"
                )
            columns.append(batch.column("value"))  # the topic's schema checks it
        else:
            columns.append(_cast(batch.column(field.name), field))
    result = pa.RecordBatch.from_arrays(columns, schema=_input_schema(columns[1].type))
    _check_key_lengths(result.column("key"))
    return result


def _check_key_lengths(keys: pa.Array) -> None:
    if keys.get_total_buffer_size() <= limits.key_bytes_max or keys.null_count == len(keys):
        return  # all the keys' bytes together are within the limit of one
    longest = pc.max(pc.binary_length(keys)).as_py()
    if longest is not None and longest > limits.key_bytes_max:
        raise RequestTooLarge(f"a key of {longest} bytes is over the limit of {limits.key_bytes_max} bytes")


_INPUT_FIELDS = tuple(INPUT_SCHEMA)
_BYTES_TYPES = (
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_string,
    pa.types.is_large_string,
    pa.types.is_fixed_size_binary,
    pa.types.is_null,
)
_ALLOWED_TYPES = {
    "key": _BYTES_TYPES,
    "value": _BYTES_TYPES,
    "headers": (pa.types.is_map, pa.types.is_null),
    "timestamp": (pa.types.is_timestamp, pa.types.is_null),
}


def _cast(column: pa.Array, field: pa.Field) -> pa.Array:
    source = column.type
    if source == field.type:
        return column
    if field.name == "timestamp" and pa.types.is_integer(source):
        column = column.cast(pa.int64()).view(pa.timestamp("us", tz="UTC"))
        return column
    allowed = _ALLOWED_TYPES[field.name]
    if not any(check(source) for check in allowed):
        raise InvalidRequest(
            f"column {field.name!r} has type {source}; expected {field.type} "
            "(binary or string for key/value, map<string, binary> for headers, "
            "a timestamp or int64 microseconds for timestamp)"
        )
    try:
        if pa.types.is_timestamp(source) and source.tz is None:
            # A naive timestamp is taken as UTC.
            column = column.cast(pa.timestamp(source.unit)).cast(pa.timestamp("us"))
            return column.view(field.type) if hasattr(column, "view") else column.cast(field.type)
        return column.cast(field.type)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidRequest(f"column {field.name!r} cannot be read as {field.type}: {exc}") from exc


def timestamp_micros(value: object) -> int:
    """Microseconds since the epoch.

    A datetime (naive means UTC) or an int taken as microseconds (the stored unit).
    Floats are refused: seconds or microseconds would be a guess.
    """
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.UTC)
        return int(value.timestamp() * 1_000_000)
    if isinstance(value, bool):
        raise InvalidRequest("a timestamp must be a datetime or microseconds since the epoch")
    if isinstance(value, int):
        return value
    raise InvalidRequest(f"{_TIMESTAMP_RULES}, got {value!r}")
