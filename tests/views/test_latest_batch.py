"""The built-in ``latest`` reducer applied a batch at a time (view.py ``_latest_of``)
gives what folding the batch record by record with it gives, byte for byte.

Goal: the batch path (each key's last record found by an Arrow group-by, no state read)
is an optimization only. Method: hypothesis draws batches of records with repeated and
null keys, null values, bytes values and typed (struct) values with the types a
schema'd topic holds; the batch path's changes are compared with the fold's. Then,
end to end, a view with the built-in reducer and a view with the same function under
another name (which folds record by record) over the same appends, on a plain and on
a schema'd topic, hold the same state for every key.
"""

from __future__ import annotations

import datetime
import decimal
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import odradek
from odradek.views import reducers
from odradek.views.view import _latest_of

KEYS = [b"a", b"b", b"c", b"", None]
VALUE_TYPE = pa.struct(
    [
        ("customer", pa.string()),
        ("amount", pa.decimal128(10, 2)),
        ("at", pa.timestamp("us", tz="UTC")),
        ("tags", pa.list_(pa.string())),
        ("raw", pa.binary()),
    ]
)

typed_values = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {
            "customer": st.one_of(st.none(), st.text(max_size=5)),
            "amount": st.decimals(min_value=-1000, max_value=1000, places=2, allow_nan=False),
            "at": st.datetimes(
                min_value=datetime.datetime(1970, 1, 2), max_value=datetime.datetime(2100, 1, 1)
            ).map(lambda t: t.replace(tzinfo=datetime.UTC)),
            "tags": st.lists(st.text(max_size=3), max_size=3),
            "raw": st.binary(max_size=4),
        }
    ),
)


def _fold(batch: pa.RecordBatch) -> dict[bytes, bytes | None]:
    """The specification: ``latest`` record by record, in offset order."""
    changes: dict[bytes, bytes | None] = {}
    for record in batch.to_pylist():
        key = record["key"]
        if key is not None:
            changes[key] = reducers.latest(changes.get(key), record)
    return changes


def _batch(keys: list[bytes | None], values: pa.Array) -> pa.RecordBatch:
    offsets = pa.array(range(100, 100 + len(keys)), pa.int64())
    return pa.RecordBatch.from_arrays(
        [pa.array(keys, pa.binary()), values, offsets], names=["key", "value", "offset"]
    )


@given(
    st.lists(
        st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(max_size=6))), min_size=1, max_size=40
    )
)
def test_bytes_values_give_the_fold(records: list[tuple[bytes | None, bytes | None]]) -> None:
    batch = _batch([key for key, _ in records], pa.array([value for _, value in records], pa.binary()))
    reduced = _latest_of(batch)
    assert reduced is not None
    changes, applied, position, failure = reduced
    assert changes == _fold(batch)
    assert (applied, position, failure) == (len(records), 100 + len(records), None)


@given(st.lists(st.tuples(st.sampled_from(KEYS), typed_values), min_size=1, max_size=30))
def test_typed_values_give_the_fold(records: list[tuple[bytes | None, dict[str, Any] | None]]) -> None:
    batch = _batch([key for key, _ in records], pa.array([value for _, value in records], VALUE_TYPE))
    reduced = _latest_of(batch)
    assert reduced is not None
    assert reduced[0] == _fold(batch)


def test_text_values_are_written_as_the_reducer_writes_them() -> None:
    batch = _batch([b"k", b"k", None], pa.array(["one", 'two "2"', "three"], pa.string()))
    reduced = _latest_of(batch)
    assert reduced is not None and reduced[0] == _fold(batch) == {b"k": b'"two \\"2\\""'}


def test_a_value_without_a_json_form_leaves_the_batch_to_the_fold(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fold stops the view at such a record with its offset; the batch path cannot
    say which record, so it gives the batch back (None) and the view folds it."""

    def no_decimals(value: object) -> Any:
        raise TypeError(f"a value of type {type(value).__name__} has no JSON form")

    batch = _batch(
        [b"k", None], pa.array([decimal.Decimal("1.5"), decimal.Decimal("2.5")], pa.decimal128(4, 1))
    )
    assert _latest_of(batch) is not None
    monkeypatch.setattr(reducers, "_json_default", no_decimals)
    assert _latest_of(batch) is None
    with pytest.raises(TypeError):
        _fold(batch)


def test_records_without_keys_change_nothing() -> None:
    batch = _batch([None, None], pa.array([b"x", None], pa.binary()))
    assert _latest_of(batch) == ({}, 2, 102, None)


appends = st.lists(
    st.lists(
        st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.one_of(st.none(), st.integers(0, 99))),
        min_size=1,
        max_size=8,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(appends=appends)
def test_the_built_in_latest_and_the_fold_hold_the_same_states(
    appends: list[list[tuple[bytes, int | None]]],
) -> None:
    schema = {"type": "record", "name": "order", "fields": [{"name": "amount", "type": "long"}]}
    with tempfile.TemporaryDirectory() as directory, odradek.open(Path(directory) / "data") as client:
        client.create_topic("plain")
        client.create_topic("typed", schema=schema)
        for topic in ("plain", "typed"):
            client.create_view(f"{topic}-batch", topic, "odradek.views.reducers:latest")
            client.create_view(f"{topic}-fold", topic, "view_reducers:latest_by_record")
        for records in appends:
            plain = [{"key": key, "value": None if n is None else b"%d" % n} for key, n in records]
            # (a schema'd topic takes no null value)
            typed = [{"key": key, "value": {"amount": -1 if n is None else n}} for key, n in records]
            client.append("plain", plain, wait_for=["view:plain-batch", "view:plain-fold"])
            client.append("typed", typed, wait_for=["view:typed-batch", "view:typed-fold"])
        for topic in ("plain", "typed"):
            for key in (b"a", b"b", b"c"):
                assert client.view_get(f"{topic}-batch", key) == client.view_get(f"{topic}-fold", key)
