"""One-record appends take a direct path in ``to_input_batch`` (a dict of a key and a
value; a one-row slice of a larger batch). Goal: that path builds exactly the batch the
general path builds, and every record it does not cover still meets the general path's
checks and messages. Method: compare against ``RecordBatch.from_pylist`` (what the
general path uses) over the shapes a caller writes, and append refused records."""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from odradek import limits
from odradek.errors import InvalidRequest, RequestTooLarge
from odradek.records import INPUT_SCHEMA, to_input_batch

APPEND_BYTES_MAX = 1 << 20

PLAIN_RECORDS: list[dict[str, Any]] = [
    {"key": b"order-1", "value": b"created"},
    {"key": "order-\u00e9", "value": "cr\u00e9\u00e9"},
    {"key": None, "value": b""},
    {"value": b"keyless"},
    {"value": "text only"},
    {"key": b"", "value": b"\x00\xff"},
]


@pytest.mark.parametrize("record", PLAIN_RECORDS)
def test_a_plain_record_becomes_the_batch_the_general_path_builds(record: dict[str, Any]) -> None:
    expected = pa.RecordBatch.from_pylist([record], schema=INPUT_SCHEMA)
    for value_type in (None, "json"):
        batch = to_input_batch([record], APPEND_BYTES_MAX, value_type)
        assert batch.schema.equals(INPUT_SCHEMA)
        assert batch.equals(expected)


def test_records_with_more_than_a_key_and_a_value_keep_their_headers_and_timestamps() -> None:
    record = {"key": b"k", "value": b"v", "headers": {"h": b"1"}, "timestamp": 1_700_000_000_000_000}
    batch = to_input_batch([record], APPEND_BYTES_MAX)
    assert batch.column("headers").to_pylist() == [[("h", b"1")]]
    assert batch.column("timestamp").cast(pa.int64()).to_pylist() == [1_700_000_000_000_000]


def test_a_single_record_the_direct_path_does_not_cover_is_refused_as_before() -> None:
    with pytest.raises(InvalidRequest, match="unknown field"):
        to_input_batch([{"key": b"k", "value": b"v", "extra": 1}], APPEND_BYTES_MAX)
    with pytest.raises(InvalidRequest, match="could not convert"):
        to_input_batch([{"key": 5, "value": b"v"}], APPEND_BYTES_MAX)
    with pytest.raises(RequestTooLarge, match="key of"):
        to_input_batch([{"key": b"k" * (limits.key_bytes_max + 1), "value": b"v"}], APPEND_BYTES_MAX)
    # A dict value of a schemaless topic is stored as its JSON text, as before.
    batch = to_input_batch([{"key": b"k", "value": {"a": 1}}], APPEND_BYTES_MAX)
    assert batch.column("value").to_pylist() == [b'{"a": 1}']


def test_a_one_row_slice_of_a_large_batch_is_checked_by_its_own_key() -> None:
    """A slice shares its parent's buffers, so their size says nothing about its key:
    the key it holds is measured, and a long key in it is still refused."""
    keys = [b"k%d" % i for i in range(2000)]
    keys[7] = b"x" * (limits.key_bytes_max + 1)
    parent = pa.RecordBatch.from_pydict(
        {"key": pa.array(keys, pa.binary()), "value": pa.array([b"v"] * 2000, pa.binary())}
    )
    assert parent.column("key").get_total_buffer_size() > limits.key_bytes_max
    batch = to_input_batch(parent.slice(3, 1), APPEND_BYTES_MAX)
    assert batch.column("key").to_pylist() == [b"k3"]
    assert batch.column("headers").null_count == 1
    with pytest.raises(RequestTooLarge, match="key of"):
        to_input_batch(parent.slice(7, 1), APPEND_BYTES_MAX)
    with pytest.raises(RequestTooLarge, match="key of"):
        to_input_batch(parent.slice(0, 100), APPEND_BYTES_MAX)  # many keys: Arrow's kernel
