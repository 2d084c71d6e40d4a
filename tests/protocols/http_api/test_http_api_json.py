"""Records as JSON: the vectorized writer and the per-record one write the same documents.

Goal: whatever a batch holds (text and binary keys, values and headers, quotes,
backslashes and control characters, nulls, empty maps, slices, far timestamps), the
documents Arrow compute writes (records.json_documents, used by reads and tails) parse
to exactly what output_records writes, or the batch is left to output_records; the
joined forms (records_json, events) are valid JSON and SSE. Method: hypothesis
generates stored batches; both paths are compared after json.loads.
"""

from __future__ import annotations

import json

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.protocols.http_api.records import events, json_documents, output_records, records_json
from odradek.records import STORED_SCHEMA

_BYTES = st.one_of(
    st.text(max_size=12).map(str.encode),
    st.binary(max_size=12),
    st.sampled_from([b'q"uote', b"back\\slash", b"line\nbreak", b"tab\t", b"\x00nul", b"\xff\xfe"]),
)
_ROW = st.fixed_dictionaries(
    {
        "timestamp": st.one_of(
            st.integers(0, 4_102_444_800_000_000), st.integers(-62_135_596_800_000_000, 0)
        ),
        "key": st.one_of(st.none(), _BYTES),
        "value": st.one_of(st.none(), _BYTES),
        "headers": st.one_of(st.none(), st.lists(st.tuples(st.text(max_size=6), _BYTES), max_size=3)),
        "version": st.one_of(st.none(), st.integers(1, 10**12)),
    }
)


def _batch(rows: list[dict[str, object]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist(
        [{"offset": offset, **row} for offset, row in enumerate(rows)], schema=STORED_SCHEMA
    )


@settings(max_examples=200, deadline=None)
@given(st.lists(_ROW, min_size=1, max_size=8), st.integers(0, 7), st.booleans())
def test_both_writers_agree(rows: list[dict[str, object]], start: int, topic: bool) -> None:
    batch = _batch(rows)
    batch = batch.slice(min(start, batch.num_rows - 1))
    if topic:
        batch = batch.append_column("topic", pa.array(["orders.eu"] * batch.num_rows))
    expected = output_records(batch, json_values=False, base64_values=False)
    documents = json_documents(batch, json_values=False, base64_values=False)
    if documents is not None:
        assert [json.loads(text) for text in documents.to_pylist()] == expected
    assert json.loads("[" + records_json(batch, json_values=False, base64_values=False) + "]") == expected
    stream = events(batch, json_values=False, base64_values=False)
    frames = [frame for frame in stream.split("\n\n") if frame]
    assert [json.loads(frame.split("\ndata: ", 1)[1]) for frame in frames] == expected
    assert [frame.split("\n", 1)[0] for frame in frames] == [f"id: {record['offset']}" for record in expected]


def test_json_values_are_written_as_they_are() -> None:
    batch = _batch([{"timestamp": 0, "key": b"k", "value": b'{"amount": 7}', "headers": None, "version": 1}])
    documents = json_documents(batch, json_values=True, base64_values=False)
    assert documents is not None
    assert json.loads(documents[0].as_py())["value"] == {"amount": 7}
    assert json_documents(batch, json_values=False, base64_values=True) is None  # base64: per record
