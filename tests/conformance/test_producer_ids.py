"""Conformance: idempotent producer ids may be str, int or bytes through every door.

Goal: a bytes producer id dedupes through the embedded, remote and asyncio clients
alike (the remote ones carry it over Flight, on the append stream for single appends
and on DoPut for typed batches), stays apart from the str id of the same text, and a
SequenceError for it says what was expected; ids of other types are refused with
InvalidRequest before anything is written.

Method: the conformance ``client`` fixture (conftest.py) runs each test through the
three doors; results and error classes are compared exactly.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pytest

from odradek.errors import InvalidRequest, SequenceError

Client = Any


def test_a_bytes_producer_id_dedupes(client: Client) -> None:
    client.create_topic("t")
    first = client.append("t", [{"key": b"a", "value": b"1"}], producer=(b"\x00\xffp", 0))
    retry = client.append("t", [{"key": b"a", "value": b"1"}], producer=(b"\x00\xffp", 0))
    assert retry.duplicate is True
    assert (retry.base_offset, retry.count, dict(retry.versions)) == (first.base_offset, 1, {b"a": 1})
    # The str of the same text is another producer: its first append is new.
    assert client.append("t", [{"value": b"2"}], producer=("\x01p", 0)).duplicate is False
    assert client.append("t", [{"value": b"3"}], producer=("p", 0)).duplicate is False
    assert client.append("t", [{"value": b"4"}], producer=(b"p", 0)).duplicate is False
    with pytest.raises(SequenceError) as caught:
        client.append("t", [{"value": b"x"}], producer=(b"\x00\xffp", 3))
    assert type(caught.value) is SequenceError
    assert (caught.value.expected, caught.value.actual) == (1, 3)
    assert client.describe_topic("t").next_offset == 4


def test_a_bytes_producer_id_on_a_typed_batch(client: Client) -> None:
    """Typed values travel over DoPut rather than the append stream."""
    schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["id"],
        "properties": {"id": {"type": "integer"}},
    }
    client.create_topic("t", schema=schema)
    value = pa.array([{"id": 1}], pa.struct([pa.field("id", pa.int64(), nullable=False)]))
    batch = pa.RecordBatch.from_pydict({"key": [b"a"], "value": value})
    first = client.append("t", batch, producer=(b"\x10", 7))
    assert client.append("t", batch, producer=(b"\x10", 7)).duplicate is True
    assert client.append("t", batch, producer=(b"\x10", 8)).base_offset == first.base_offset + 1


@pytest.mark.parametrize("producer_id", [1.5, None, True, b"", bytearray(b"p"), ["p"]])
def test_other_producer_ids_are_refused(client: Client, producer_id: Any) -> None:
    client.create_topic("t")
    with pytest.raises(InvalidRequest) as caught:
        client.append("t", [{"value": b"x"}], producer=(producer_id, 0))
    assert type(caught.value) is InvalidRequest
    assert client.describe_topic("t").next_offset == 0
