"""Schema'd topics in the engine: storage, restarts, the registry wire format.

Goal: what conformance cannot see from outside — typed frames survive a restart and
are decoded with the version they were written under; values in the Schema Registry
wire format are decoded by the version their id names and evolved to the newest; reads
can hand typed values back as JSON or wire bytes; ids are global and stable; a crash
that cut the log's tail cannot leave a version starting past the log's end. Method: an
engine on a temporary directory, reopened where the test needs a restart; Avro payloads
are made with fastavro, the reference implementation.
"""

from __future__ import annotations

import io
import json

import fastavro
import pyarrow as pa
import pytest

from odradek.engine import Engine
from odradek.engine.topic_schema import SchemaVersion, TopicSchema
from odradek.errors import SchemaViolation
from odradek.schemas import wire

ORDER_V1 = {
    "type": "record",
    "name": "Order",
    "fields": [{"name": "id", "type": "long"}, {"name": "sku", "type": "string"}],
}
ORDER_V2 = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "sku", "type": "string"},
        {"name": "quantity", "type": "int", "default": 1},
    ],
}


def _avro(schema: dict, record: dict, schema_id: int) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), record)
    return bytes([0]) + schema_id.to_bytes(4, "big") + out.getvalue()


def _values(engine: Engine, topic: str, value_format: str = "typed") -> list:
    batches = engine.fetch(topic, 0, value_format=value_format)
    return [v for batch in batches for v in batch.column("value").to_pylist()]


@pytest.fixture
def engine(tmp_path):  # type: ignore[no-untyped-def]
    with Engine(tmp_path / "data", fsync=False) as engine:
        yield engine


def test_wire_format_values_decode_by_their_version_and_evolve(engine: Engine) -> None:
    engine.create_topic("orders", schema=ORDER_V1)
    v1 = engine.get_schema("orders")
    engine.append("orders", [{"value": _avro(ORDER_V1, {"id": 1, "sku": "a"}, v1.id)}])
    v2 = engine.set_schema("orders", ORDER_V2)
    assert v2.id != v1.id
    # One append mixing the forms: old-version wire, new-version wire, JSON text.
    engine.append(
        "orders",
        [
            {"value": _avro(ORDER_V1, {"id": 2, "sku": "b"}, v1.id)},
            {"value": _avro(ORDER_V2, {"id": 3, "sku": "c", "quantity": 7}, v2.id)},
            {"value": b'{"id": 4, "sku": "d", "quantity": 2}'},
        ],
    )
    assert _values(engine, "orders") == [
        {"id": 1, "sku": "a", "quantity": 1},  # written under v1, read with v2's default
        {"id": 2, "sku": "b", "quantity": 1},
        {"id": 3, "sku": "c", "quantity": 7},
        {"id": 4, "sku": "d", "quantity": 2},
    ]
    wire_values = _values(engine, "orders", "wire")
    assert all(wire.schema_ids_of(pa.array([v])).tolist() == [v2.id] for v in wire_values)
    decoded = fastavro.schemaless_reader(io.BytesIO(wire_values[2][5:]), fastavro.parse_schema(ORDER_V2))
    assert decoded == {"id": 3, "sku": "c", "quantity": 7}
    assert next(json.loads(v) for v in _values(engine, "orders", "json")) == {
        "id": 1,
        "sku": "a",
        "quantity": 1,
    }


def test_unknown_id_and_bad_payload_are_violations_naming_the_record(engine: Engine) -> None:
    engine.create_topic("orders", schema=ORDER_V1)
    schema_id = engine.get_schema("orders").id
    good = _avro(ORDER_V1, {"id": 1, "sku": "a"}, schema_id)
    with pytest.raises(SchemaViolation) as caught:
        engine.append("orders", [{"value": good}, {"value": good[:5] + b"\x02"}])
    assert caught.value.index == 1
    with pytest.raises(SchemaViolation) as caught:
        engine.append("orders", [{"value": good}, {"value": b"\x00\x00\x00\x03\xe7" + good[5:]}])
    assert caught.value.index == 1 and "999" in caught.value.message
    with pytest.raises(SchemaViolation) as caught:
        engine.append("orders", [{"value": b'{"id": 1, "sku": "a"}'}, {"value": b"not json"}])
    assert caught.value.index == 1
    assert engine.describe_topic("orders").next_offset == 0


def test_typed_frames_and_versions_survive_a_restart(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with Engine(tmp_path, fsync=False) as engine:
        engine.create_topic("orders", schema=ORDER_V1, compatibility="full")
        engine.append("orders", [{"key": b"k", "value": {"id": 1, "sku": "a"}}])
        engine.set_schema("orders", ORDER_V2)
        engine.append("orders", [{"key": b"k", "value": {"id": 2, "sku": "b", "quantity": 3}}])
        ids = [v.id for v in engine.schema_versions("orders")]
    with Engine(tmp_path, fsync=False) as engine:
        assert [v.id for v in engine.schema_versions("orders")] == ids
        assert engine.get_schema("orders").compatibility == "full"
        assert _values(engine, "orders") == [
            {"id": 1, "sku": "a", "quantity": 1},
            {"id": 2, "sku": "b", "quantity": 3},
        ]
        assert engine.read_key("orders", b"k").column("version").to_pylist() == [1, 2]
        # The same schema on another topic gets the same global id.
        engine.create_topic("orders.copy", schema=ORDER_V2)
        assert engine.get_schema("orders.copy").id == ids[1]
        assert engine.schema_subjects_of(ids[1]) == [("orders", 2), ("orders.copy", 1)]
        assert engine.schema_by_id(ids[0]) == ("AVRO", engine.get_schema("orders", 1).text)


def test_a_version_never_starts_past_the_logs_end() -> None:
    versions = [
        SchemaVersion(1, 1, "AVRO", json.dumps(ORDER_V1), 0),
        SchemaVersion(2, 2, "AVRO", json.dumps(ORDER_V2), 10),
    ]
    schema = TopicSchema(versions, "backward")
    clamped = schema.clamped_to(4)  # a crash cut the log back to offset 4
    assert [v.from_offset for v in clamped.versions] == [0, 4]
    assert clamped.version_at(4) == 2 and clamped.version_at(3) == 1
    assert schema.clamped_to(10) is schema


def test_schemaless_topic_unchanged_by_value_formats(engine: Engine) -> None:
    engine.create_topic("plain")
    engine.append("plain", [{"value": b"\x00\x00\x00\x00\x01raw"}])
    assert _values(engine, "plain", "wire") == [b"\x00\x00\x00\x00\x01raw"]
    with pytest.raises(Exception, match="value_format"):
        engine.fetch("plain", 0, value_format="xml")


def test_a_violation_has_one_wording_whatever_form_the_values_come_in(engine: Engine) -> None:
    """Before: a list of dicts refused with Arrow's words ("Could not convert 'three'
    with type str: tried to convert to int64"), naming neither record nor path, while
    JSON text said "record 0: field `id` must be an integer". Now both name the record,
    the field's path and what it must be."""
    schema = {
        "type": "record",
        "name": "Order",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "tags", "type": {"type": "array", "items": "string"}, "default": []},
        ],
    }
    engine.create_topic("orders", schema=schema)
    good = {"id": 1, "tags": []}
    cases = [
        ([{"value": good}, {"value": {"id": "three", "tags": []}}], 1, "id", "an integer (int64)"),
        ([{"value": {"id": 1, "tags": ["a", 2]}}], 0, "tags[1]", "a string"),
        ([{"value": json.dumps(good).encode()}, {"value": b'{"id": "x"}'}], 1, "id", "an integer (int64)"),
    ]
    for records, index, path, expected in cases:
        with pytest.raises(SchemaViolation) as refused:
            engine.append("orders", records)
        assert (refused.value.index, refused.value.path) == (index, path)
        assert refused.value.message.startswith(f"record {index}: field `{path}` must be {expected}, got ")
    assert engine.describe_topic("orders").next_offset == 0
