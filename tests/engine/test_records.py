"""Conversion of what callers append into the record model (DESIGN §3).

Goal: ``to_input_batch`` turns a list of dicts, a RecordBatch or a (multi-chunk) Table
into one batch with exactly INPUT_SCHEMA, keeping keys, values, headers and timestamps
unchanged (str becomes UTF-8 bytes, naive timestamps are UTC), dropping the columns
the engine assigns, and refusing anything malformed with InvalidRequest or
RequestTooLarge. ``timestamp_micros`` converts the documented timestamp spellings.

Method: direct calls on hand-built inputs; each refusal is checked for its class and
for a message that tells the caller what to send instead.
"""

from __future__ import annotations

import datetime
from typing import Any

import pyarrow as pa
import pytest

from odradek import limits
from odradek.errors import InvalidRequest, RequestTooLarge
from odradek.records import INPUT_SCHEMA, TIMESTAMP_TYPE, timestamp_micros, to_input_batch

LIMIT = limits.append_bytes_max_default
UTC = datetime.UTC


def micros(value: datetime.datetime) -> int:
    return (value - datetime.datetime(1970, 1, 1, tzinfo=UTC)) // datetime.timedelta(microseconds=1)


def test_dicts_become_one_input_batch() -> None:
    when = datetime.datetime(2021, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    batch = to_input_batch(
        [
            {"key": b"k1", "value": b"v1", "headers": {"h": b"x"}, "timestamp": when},
            {"key": "k2", "value": "v2", "headers": {"a": "b", "c": b"\x00"}},
            {"value": b""},
        ],
        LIMIT,
    )
    assert batch.schema == INPUT_SCHEMA
    assert batch.column("key").to_pylist() == [b"k1", b"k2", None]
    assert batch.column("value").to_pylist() == [b"v1", b"v2", b""]
    assert batch.column("headers").to_pylist() == [[("h", b"x")], [("a", b"b"), ("c", b"\x00")], None]
    stamps = batch.column("timestamp").cast(pa.int64()).to_pylist()
    assert stamps == [micros(when), None, None]


def test_naive_and_integer_timestamps_in_dicts() -> None:
    naive = datetime.datetime(2020, 1, 2, 3, 4, 5, 6)
    batch = to_input_batch([{"value": b"a", "timestamp": naive}, {"value": b"b", "timestamp": 42}], LIMIT)
    stamps = batch.column("timestamp").cast(pa.int64()).to_pylist()
    assert stamps == [micros(naive.replace(tzinfo=UTC)), 42]


def test_a_float_timestamp_in_a_dict_is_seconds_or_refused() -> None:
    try:
        batch = to_input_batch([{"value": b"a", "timestamp": 1.5}], LIMIT)
    except InvalidRequest:
        return
    assert batch.column("timestamp").cast(pa.int64()).to_pylist() == [1_500_000]


def test_record_batch_with_string_and_large_types_is_cast() -> None:
    batch = pa.record_batch(
        {
            "key": pa.array(["k", None], pa.large_string()),
            "value": pa.array([b"a", b"b"], pa.large_binary()),
            "headers": pa.array([[("h", "v")], []], pa.map_(pa.utf8(), pa.utf8())),
        }
    )
    result = to_input_batch(batch, LIMIT)
    assert result.schema == INPUT_SCHEMA
    assert result.column("key").to_pylist() == [b"k", None]
    assert result.column("value").to_pylist() == [b"a", b"b"]
    assert result.column("headers").to_pylist() == [[("h", b"v")], []]
    assert result.column("timestamp").null_count == 2


def test_fixed_size_binary_keys() -> None:
    batch = pa.record_batch({"key": pa.array([b"ab", b"cd"], pa.binary(2)), "value": pa.array([b"1", b"2"])})
    assert to_input_batch(batch, LIMIT).column("key").to_pylist() == [b"ab", b"cd"]


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        (pa.array([1_000_000, 2], pa.int64()), [1_000_000, 2]),
        (pa.array([7], pa.int32()).take([0, 0]), [7, 7]),
        (pa.array([1, 2], pa.timestamp("s")), [1_000_000, 2_000_000]),
        (pa.array([1_000, 2_000], pa.timestamp("ns", tz="UTC")), [1, 2]),
        (pa.array([3, 4], pa.timestamp("ms", tz="Europe/Berlin")), [3_000, 4_000]),
        (pa.array([5, None], TIMESTAMP_TYPE), [5, None]),
    ],
)
def test_timestamp_columns_of_other_units_and_zones(column: pa.Array, expected: list[Any]) -> None:
    batch = pa.record_batch({"value": pa.array([b"a", b"b"]), "timestamp": column})
    result = to_input_batch(batch, LIMIT)
    assert result.column("timestamp").type == TIMESTAMP_TYPE
    assert result.column("timestamp").cast(pa.int64()).to_pylist() == expected


def test_multi_chunk_table_becomes_one_batch_in_order() -> None:
    table = pa.Table.from_batches(
        [pa.record_batch({"value": pa.array([f"{c}-{i}".encode() for i in range(3)])}) for c in "abc"]
    )
    assert table.column("value").num_chunks == 3
    result = to_input_batch(table, LIMIT)
    assert isinstance(result, pa.RecordBatch)
    assert result.column("value").to_pylist() == [f"{c}-{i}".encode() for c in "abc" for i in range(3)]


def test_assigned_columns_passed_back_in_are_dropped() -> None:
    batch = pa.record_batch(
        {
            "offset": pa.array([10, 11]),
            "version": pa.array([3, None], pa.int64()),
            "topic": pa.array(["x", "y"]),
            "value": pa.array([b"a", b"b"]),
        }
    )
    result = to_input_batch(batch, LIMIT)
    assert result.schema == INPUT_SCHEMA
    assert result.column("value").to_pylist() == [b"a", b"b"]


@pytest.mark.parametrize(
    ("records", "match"),
    [
        ([], "at least one record"),
        ((), "at least one record"),
        (pa.table({"value": pa.array([], pa.binary())}), "at least one record"),
        (pa.record_batch({"value": pa.array([], pa.binary())}), "at least one record"),
        ({"value": b"a"}, "list of dicts"),
        (b"value", "list of dicts"),
        (None, "list of dicts"),
        (iter([{"value": b"a"}]), "list of dicts"),
        ([b"a"], "must be a dict"),
        ([{"value": b"a"}, 5], "must be a dict"),
        ([{"value": b"a"}, 5, {"value": b"b"}], "must be a dict"),
        ([{"value": 5}], "could not convert"),
        ([{"value": b"a", "key": 5}], "could not convert"),
        ([{"value": b"a", "headers": {"h": 5}}], "could not convert"),
        ([{"value": b"a", "headers": "h=1"}], "could not convert"),
        ([{"value": b"a", "timestamp": "yesterday"}], "timestamp"),
        (pa.record_batch({"key": pa.array([b"k"])}), "'value' column"),
        (pa.record_batch({"value": pa.array([b"a"]), "vaule": pa.array([b"a"])}), "unknown column"),
        (pa.record_batch({"value": pa.array([1])}), "column 'value' has type int64"),
        (pa.record_batch({"value": pa.array([b"a"]), "key": pa.array([1.5])}), "column 'key'"),
        (pa.record_batch({"value": pa.array([b"a"]), "headers": pa.array([b"h"])}), "column 'headers'"),
        (pa.record_batch({"value": pa.array([b"a"]), "timestamp": pa.array(["now"])}), "column 'timestamp'"),
        (
            pa.record_batch({"value": pa.array([b"a"]), "timestamp": pa.array([datetime.date(2020, 1, 1)])}),
            "column 'timestamp'",
        ),
        (pa.record_batch({"value": pa.array([b"x"]).dictionary_encode()}), "column 'value'"),
        (
            pa.RecordBatch.from_arrays([pa.array([b"a"]), pa.array([b"b"])], names=["value", "value"]),
            "duplicate column",
        ),
    ],
)
def test_malformed_input_is_refused(records: Any, match: str) -> None:
    with pytest.raises(InvalidRequest, match=match) as caught:
        to_input_batch(records, LIMIT)
    assert type(caught.value) is InvalidRequest


def test_unknown_fields_of_dict_records_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="vaule"):
        to_input_batch([{"key": b"k", "vaule": b"payload"}], LIMIT)


def test_an_out_of_range_timestamp_in_a_dict_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="timestamp"):
        to_input_batch([{"value": b"v", "timestamp": 2**70}], LIMIT)


def test_an_append_over_the_byte_limit_is_too_large() -> None:
    records = [{"value": b"x" * 1000} for _ in range(10)]
    assert to_input_batch(records, 100_000).num_rows == 10
    with pytest.raises(RequestTooLarge, match="split it"):
        to_input_batch(records, 5_000)


def test_a_key_over_the_key_limit_is_too_large() -> None:
    to_input_batch([{"key": b"k" * limits.key_bytes_max, "value": b""}], LIMIT)
    with pytest.raises(RequestTooLarge, match="key"):
        to_input_batch([{"key": b"k" * (limits.key_bytes_max + 1), "value": b""}], LIMIT)


def test_too_many_records_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "append_records_max", 3)
    to_input_batch([{"value": b""}] * 3, LIMIT)
    with pytest.raises(RequestTooLarge, match="records"):
        to_input_batch([{"value": b""}] * 4, LIMIT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime.datetime(2020, 1, 1, tzinfo=UTC), 1_577_836_800_000_000),
        (datetime.datetime(2020, 1, 1), 1_577_836_800_000_000),
        (
            datetime.datetime(2020, 1, 1, 2, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            1_577_836_800_000_000,
        ),
        (datetime.datetime(2020, 1, 1, 0, 0, 0, 999_999, tzinfo=UTC), 1_577_836_800_999_999),
        (1_577_836_800_000_000, 1_577_836_800_000_000),
    ],
)
def test_timestamp_micros(value: object, expected: int) -> None:
    assert timestamp_micros(value) == expected


@pytest.mark.parametrize("value", [True, "2020-01-01", None, datetime.date(2020, 1, 1), 1_577_836_800.5])
def test_timestamp_micros_refuses_other_types(value: object) -> None:
    with pytest.raises(InvalidRequest, match="timestamp"):
        timestamp_micros(value)
