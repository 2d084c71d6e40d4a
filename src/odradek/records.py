"""The record model (DESIGN §3) and the conversion of what callers append into it.

Callers append a list of dicts, a ``pa.RecordBatch`` or a ``pa.Table``. Whatever they
give becomes one ``pa.RecordBatch`` with :data:`INPUT_SCHEMA`; the engine then adds the
assigned columns to get :data:`STORED_SCHEMA`. Conversion is done by Arrow (casts,
``from_pylist``), never by a Python loop over the records of a batch.

Every append is also checked for what a reader could not decode (a *poison* record,
which would stop every consumer that meets it): header names must be UTF-8 text (not
null), a record has at most ``limits.header_count_max`` headers, and a timestamp must
lie within the years Python's datetime holds. The checks are Arrow's: the names are
validated as one UTF-8 array, and only a batch that fails is searched (by halving) for
the first bad name, so the error can name the record and the header.
"""

from __future__ import annotations

import codecs
import datetime
import json
import struct
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from odradek import limits
from odradek.errors import InvalidRequest, RequestTooLarge
from odradek.lazy_import import lazy_module

if TYPE_CHECKING:
    import pyarrow.compute as pc
else:  # ~50 ms to import; the command line's listing commands never use it (docs/cli.md)
    pc = lazy_module("pyarrow.compute")

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
    if len(rows) == 1:
        single = _plain_record(rows[0])
        if single is not None:
            return single
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
_PLAIN_TYPES = (bytes, str)
# A record without headers and timestamp (the usual single event): its two null
# columns, built once (Arrow arrays are immutable, so every such record shares them).
_NO_HEADERS = pa.nulls(1, HEADERS_TYPE)
_NO_TIMESTAMP = pa.nulls(1, TIMESTAMP_TYPE)


def _plain_record(row: Mapping[str, Any]) -> pa.RecordBatch | None:
    """One record of a bytes or str ``value`` and an optional bytes, str or None ``key``
    and nothing else, as a batch built directly (~3x cheaper than ``from_pylist``, which
    a single-record append, the event-sourcing case, pays on every call); None for any
    other record, which takes the general path with its checks and messages."""
    if type(row) is not dict or not row.keys() <= _PLAIN_FIELDS:
        return None
    value = row.get("value")
    key = row.get("key")
    if type(value) not in _PLAIN_TYPES or (key is not None and type(key) not in _PLAIN_TYPES):
        return None
    try:
        key_array = _NO_KEY if key is None else _one_binary(key)
        value_array = _one_binary(value)
    except UnicodeEncodeError:
        return None  # the general path says what is wrong with it
    return pa.RecordBatch.from_arrays(
        [key_array, value_array, _NO_HEADERS, _NO_TIMESTAMP], schema=INPUT_SCHEMA
    )


def _one_binary(item: Any) -> pa.Array:
    """A binary array of one bytes or str item, built from its buffers: ``pa.array([item])`` would
    first ask whether the list is a pandas object, and that question imports pandas
    when it is installed (0.2-0.5 s, once per process: it made a program's first
    append that slow; tests/client/test_first_append.py)."""
    data = item.encode() if type(item) is str else item
    offsets = pa.py_buffer(struct.pack("<ii", 0, len(data)))
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(data)])


_PLAIN_FIELDS = frozenset({"key", "value"})
_NO_KEY = pa.nulls(1, pa.binary())


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
        _check_decodable(batch)
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
    if "headers" in names:  # before the cast, which would refuse bad names without naming them
        _check_header_names(batch.column("headers"))
    columns = []
    for field in _INPUT_FIELDS:
        if field.name not in names:
            columns.append(_nulls(batch.num_rows, field))
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
    _check_decodable(result, names_checked=True)
    return result


def _nulls(count: int, field: pa.Field) -> pa.Array:
    if count == 1 and field.name in _ONE_NULL:
        return _ONE_NULL[field.name]
    return pa.nulls(count, field.type)


def _check_key_lengths(keys: pa.Array) -> None:
    if keys.get_total_buffer_size() <= limits.key_bytes_max or keys.null_count == len(keys):
        return  # all the keys' bytes together are within the limit of one
    if len(keys) <= _FEW_KEYS:  # a slice of a larger batch: its buffers are the whole batch's
        longest = max((len(key) for key in keys.to_pylist() if key is not None), default=0)
    else:
        longest = pc.max(pc.binary_length(keys)).as_py()
    if longest is not None and longest > limits.key_bytes_max:
        raise RequestTooLarge(f"a key of {longest} bytes is over the limit of {limits.key_bytes_max} bytes")


_INPUT_FIELDS = tuple(INPUT_SCHEMA)
_ONE_NULL = {"headers": _NO_HEADERS, "timestamp": _NO_TIMESTAMP}
# Up to this many keys, their lengths are read in Python: one Arrow kernel call costs
# ~8 us, a few keys as Python bytes well under a microsecond.
_FEW_KEYS = 8
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


# -- what every reader can decode -------------------------------------------------------

I64 = npt.NDArray[np.int64]


def undecodable_rows(records: pa.RecordBatch) -> I64:
    """Rows (ascending) a reader cannot turn into Python values: a header name that is
    null or not UTF-8, or a timestamp outside the years 1 to 9999. Appends refuse such
    records; this finds them among records stored before appends were checked."""
    rows = [_timestamps_outside(records.column("timestamp"))]
    headers = records.column("headers")
    names = _header_names(headers)
    if names is not None and len(names):
        bad = _bad_names(names, limit=len(names))
        if len(bad):
            rows.append(_rows_of(headers, np.asarray(bad, dtype=np.int64)))
    return np.unique(np.concatenate(rows)).astype(np.int64)


def _check_decodable(batch: pa.RecordBatch, *, names_checked: bool = False) -> None:
    """Refuse a conformed batch holding a record a reader could not decode."""
    headers = batch.column("headers")
    timestamps = batch.column("timestamp")
    if headers.null_count == len(headers) and timestamps.null_count == len(timestamps):
        return  # no headers, timestamps set by the server: nothing to check (the usual case)
    if not names_checked:
        _check_header_names(headers)
    if pa.types.is_map(headers.type) and len(headers) and headers.null_count < len(headers):
        counts = np.diff(headers.offsets.to_numpy())
        if int(counts.max()) > limits.header_count_max:
            index = int(np.argmax(counts > limits.header_count_max))
            raise RequestTooLarge(
                f"record {index} has {int(counts[index])} headers; a record has at most "
                f"{limits.header_count_max}"
            )
    outside = _timestamps_outside(batch.column("timestamp"))
    if len(outside):
        index = int(outside[0])
        micros = batch.column("timestamp").view(pa.int64())[index].as_py()
        raise InvalidRequest(
            f"record {index} has a timestamp of {micros} microseconds since the epoch, outside "
            "the years 1 to 9999 (UTC) that readers can decode"
        )


def _check_header_names(headers: pa.Array) -> None:
    """Refuse header names that are null or not UTF-8, naming the first one."""
    names = _header_names(headers)
    if names is None or len(names) == 0:
        return
    bad = _bad_names(names, limit=1)
    if not bad:
        return
    index = bad[0]
    record = int(_rows_of(headers, np.array([index], dtype=np.int64))[0])
    if names.is_null()[index].as_py():
        raise InvalidRequest(f"record {record} has a header without a name; header names are UTF-8 text")
    raw = names.view(pa.large_binary() if _is_large(names.type) else pa.binary())[index].as_py()
    raise InvalidRequest(
        f"record {record} has a header named {raw!r}, which is not valid UTF-8: header names "
        "are UTF-8 text (header values may be any bytes)"
    )


def _header_names(headers: pa.Array) -> pa.Array | None:
    """The names of a headers column's entries, in order, as a UTF-8 view of their bytes
    (None for a column without names to check: null, or a map whose names are not text
    or bytes, which the cast to the record model turns into valid text)."""
    if not pa.types.is_map(headers.type):
        return None
    kind = headers.type.key_type
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        view_type = pa.utf8()
    elif pa.types.is_large_string(kind) or pa.types.is_large_binary(kind):
        view_type = pa.large_utf8()
    else:
        return None
    if len(headers) == 0:
        return pa.array([], view_type)
    offsets = headers.offsets
    first, last = offsets[0].as_py(), offsets[-1].as_py()
    names = headers.keys.slice(first, last - first)  # keys ignores the column's slicing
    return names if names.type == view_type else names.view(view_type)


def _bad_names(names: pa.Array, limit: int) -> list[int]:
    """Positions (ascending, at most ``limit``) of names that are null or not UTF-8.

    The whole array is validated at once; only if it fails is it halved, and the
    halves that fail halved again, so finding k bad names costs k log n validations."""
    if names.null_count:
        nulls = np.flatnonzero(names.is_null().to_numpy(zero_copy_only=False))
        if limit == 1:
            invalid = _invalid_utf8(names.slice(0, int(nulls[0])), 1)
            return invalid or [int(nulls[0])]
        filled = pc.fill_null(names, "")
        return sorted(set(nulls.tolist()) | set(_invalid_utf8(filled, limit)))[:limit]
    return _invalid_utf8(names, limit)


def _invalid_utf8(names: pa.Array, limit: int) -> list[int]:
    found: list[int] = []
    pending = [(0, len(names))]
    while pending and len(found) < limit:
        low, high = pending.pop()
        if high <= low or _is_utf8(names.slice(low, high - low)):
            continue
        if high - low == 1:
            found.append(low)
            continue
        middle = (low + high) // 2
        pending.append((middle, high))
        pending.append((low, middle))  # examined first: positions come out ascending
    return found


def _is_utf8(names: pa.Array) -> bool:
    """Whether every string of ``names`` (no nulls) is UTF-8 as Python decodes it.

    ASCII bytes (the usual names) are valid at once. Otherwise the strings' bytes are
    decoded as one run by Python's decoder (what a reader's ``to_pylist`` uses; several
    times faster than Arrow's per-string validation), and no string may start with a
    continuation byte, so no character straddles two strings. Offsets that are not
    ascending within the data buffer are refused outright."""
    if len(names) == 0:
        return True
    large = _is_large(names.type)
    width = 8 if large else 4
    _, offsets_buffer, data_buffer = names.buffers()
    offsets: npt.NDArray[Any] = np.frombuffer(
        offsets_buffer,
        dtype=np.int64 if large else np.int32,
        count=len(names) + 1,
        offset=names.offset * width,
    )
    start, end = int(offsets[0]), int(offsets[-1])
    size = 0 if data_buffer is None else data_buffer.size
    if start < 0 or end > size or bool(np.any(offsets[1:] < offsets[:-1])):
        return False
    if end == start:
        return True
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    if int(data[start:end].max()) < 0x80:
        return True
    try:
        codecs.utf_8_decode(memoryview(data_buffer)[start:end], "strict", True)
    except UnicodeDecodeError:
        return False
    starts = offsets[:-1][offsets[:-1] < end]
    return not bool(np.any((data[starts] & 0xC0) == 0x80))


def _is_large(kind: pa.DataType) -> bool:
    return bool(pa.types.is_large_string(kind) or pa.types.is_large_binary(kind))


def _rows_of(headers: pa.Array, positions: I64) -> I64:
    """The records (rows of ``headers``) holding the entries at ``positions``."""
    offsets = headers.offsets.to_numpy().astype(np.int64)
    rows = np.searchsorted(offsets - offsets[0], positions, side="right") - 1
    return rows.astype(np.int64)


def _timestamps_outside(timestamps: pa.Array) -> I64:
    """Rows whose timestamp lies outside the years Python's datetime holds."""
    if len(timestamps) == 0 or timestamps.null_count == len(timestamps):
        return np.zeros(0, dtype=np.int64)
    micros = timestamps.view(pa.int64()) if pa.types.is_timestamp(timestamps.type) else timestamps
    bounds = pc.min_max(micros)
    if (
        bounds["min"].as_py() >= limits.timestamp_micros_min
        and bounds["max"].as_py() <= limits.timestamp_micros_max
    ):
        return np.zeros(0, dtype=np.int64)
    outside = pc.or_(
        pc.less(micros, limits.timestamp_micros_min), pc.greater(micros, limits.timestamp_micros_max)
    )
    return np.flatnonzero(pc.fill_null(outside, False).to_numpy(zero_copy_only=False)).astype(np.int64)
