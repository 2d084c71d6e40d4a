"""Conformance: batches with typed values append through every door.

Goal: a schema'd topic takes a ``pyarrow.RecordBatch`` whose ``value`` is a typed
struct column through the embedded, remote and asyncio clients, again and again, mixed
with appends of dicts: the remote client sends such batches over DoPut (the append
stream carries untyped batches only), on a stream opened for their own schema, and
keeps a stream per schema between appends (it once sent them on a stream opened for
the untyped schema, and every such append failed).

Method: the conformance ``client`` fixture runs the test through the three doors;
what was written is read back as a table.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

Client = Any

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id"],
    "properties": {"id": {"type": "integer"}},
}
VALUE_TYPE = pa.struct([pa.field("id", pa.int64(), nullable=False)])


def typed(ids: list[int]) -> pa.RecordBatch:
    values = pa.array([{"id": i} for i in ids], VALUE_TYPE)
    return pa.RecordBatch.from_pydict({"key": [b"k"] * len(ids), "value": values})


def test_typed_batches_append_through_every_door(client: Client) -> None:
    client.create_topic("t", schema=SCHEMA)
    assert client.append("t", typed([1, 2])).base_offset == 0
    assert client.append("t", [{"key": b"k", "value": {"id": 3}}]).base_offset == 2
    assert client.append("t", typed([4])).base_offset == 3
    assert client.append("t", typed([5]), expect={b"k": 4}).versions == {b"k": 5}
    table = pa.Table.from_batches(client.read("t", wait=0))
    assert [value["id"] for value in table.column("value").to_pylist()] == [1, 2, 3, 4, 5]
