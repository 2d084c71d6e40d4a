"""Conformance: broker-side schemas behave the same through every door.

Goal: creating schema'd topics, appending values in every accepted form, reading typed
values, evolving schemas under compatibility modes, and the errors for violations and
breaking changes are identical through the embedded, remote and async clients. Method:
the ``client`` fixture runs each test through the three doors; errors are checked by
class and attributes (index, path, problems), never by message text.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

from odradek.errors import IncompatibleSchema, InvalidRequest, InvalidSchema, SchemaViolation

Client = Any

PAYMENT = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "amount": {"type": "number", "minimum": 0},
        "currency": {"type": "string", "enum": ["EUR", "USD"]},
        "note": {"type": "string"},
    },
    "required": ["id", "amount", "currency"],
    "additionalProperties": False,
}

ORDER_AVRO = {
    "type": "record",
    "name": "Order",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "sku", "type": "string"},
        {"name": "quantity", "type": "int"},
    ],
}


def _table(client: Client, topic: str) -> pa.Table:
    return pa.Table.from_batches(list(client.read(topic, wait=0)))


def _raises(error_class: type[Exception], call: Any, *args: Any, **kwargs: Any) -> Any:
    with pytest.raises(error_class) as caught:
        call(*args, **kwargs)
    assert type(caught.value) is error_class
    return caught.value


def test_json_schema_topic_takes_dicts_and_json_and_reads_typed(client: Client) -> None:
    client.create_topic("payments", schema=PAYMENT)
    client.append(
        "payments",
        [
            {"key": b"p1", "value": {"id": 1, "amount": 9.5, "currency": "EUR"}},
            {"key": b"p2", "value": json.dumps({"id": 2, "amount": 3.0, "currency": "USD", "note": "x"})},
        ],
    )
    table = _table(client, "payments")
    assert pa.types.is_struct(table.schema.field("value").type)
    assert table.column("value").to_pylist() == [
        {"id": 1, "amount": 9.5, "currency": "EUR", "note": None},
        {"id": 2, "amount": 3.0, "currency": "USD", "note": "x"},
    ]
    assert table.column("version").to_pylist() == [1, 1]
    keyed = client.read_key("payments", b"p2")
    assert keyed.column("value").to_pylist()[0]["note"] == "x"
    info = client.get_schema("payments")
    assert (info.version, info.kind, info.compatibility) == (1, "JSON", "backward")
    assert info.schema["properties"]["currency"]["enum"] == ["EUR", "USD"]
    assert client.describe_topic("payments").schema["version"] == 1


def test_violation_names_record_and_path_and_writes_nothing(client: Client) -> None:
    client.create_topic("payments", schema=PAYMENT)
    good = {"id": 1, "amount": 1.0, "currency": "EUR"}
    bad = {"id": 2, "amount": 1.0, "currency": "GBP"}
    error = _raises(
        SchemaViolation, client.append, "payments", [{"value": good}, {"value": good}, {"value": bad}]
    )
    assert (error.index, error.path) == (2, "currency")
    error = _raises(
        SchemaViolation,
        client.append,
        "payments",
        [{"value": json.dumps(good)}, {"value": json.dumps({"id": 3, "currency": "EUR"})}],
    )
    assert (error.index, error.path) == (1, "amount")
    assert client.describe_topic("payments").next_offset == 0


def test_avro_schema_and_typed_arrow_batches(client: Client) -> None:
    client.create_topic("orders", schema=ORDER_AVRO)
    values = pa.array(
        [{"id": 1, "sku": "a", "quantity": 2}, {"id": 2, "sku": "b", "quantity": 5}],
        pa.struct([("id", pa.int64()), ("sku", pa.utf8()), ("quantity", pa.int32())]),
    )
    client.append("orders", [{"value": {"id": 0, "sku": "z", "quantity": 1}}])
    assert client.get_schema("orders").kind == "AVRO"
    rows = _table(client, "orders").column("value").to_pylist()
    assert rows == [{"id": 0, "sku": "z", "quantity": 1}]
    if hasattr(client, "engine"):  # typed Arrow columns: embedded (remote clients send JSON)
        client.append("orders", pa.table({"value": values}))
        assert len(_table(client, "orders")) == 3


def test_evolution_backward_and_refusals(client: Client) -> None:
    client.create_topic("payments", schema=PAYMENT)
    client.append("payments", [{"value": {"id": 1, "amount": 1.0, "currency": "EUR"}}])
    newer = json.loads(json.dumps(PAYMENT))
    newer["properties"]["channel"] = {"type": "string"}
    info = client.set_schema("payments", newer)
    assert info.version == 2
    client.append("payments", [{"value": {"id": 2, "amount": 2.0, "currency": "USD", "channel": "web"}}])
    rows = _table(client, "payments").column("value").to_pylist()
    assert [row["channel"] for row in rows] == [None, "web"]
    assert client.set_schema("payments", newer).version == 2  # the same schema adds nothing
    breaking = json.loads(json.dumps(newer))
    breaking["properties"]["region"] = {"type": "string"}
    breaking["required"] = [*breaking["required"], "region"]
    assert client.check_schema("payments", breaking)
    error = _raises(IncompatibleSchema, client.set_schema, "payments", breaking)
    assert error.problems and any("region" in problem for problem in error.problems)
    assert client.get_schema("payments").version == 2  # kept its last good schema
    assert [v.version for v in client.schema_versions("payments")] == [1, 2]
    assert client.get_schema("payments", 1).schema == PAYMENT
    assert client.set_schema("payments", breaking, compatibility="none").version == 3
    assert client.get_schema("payments").compatibility == "none"


def test_bad_schemas_and_schemaless_rules(client: Client) -> None:
    _raises(InvalidSchema, client.create_topic, "t1", schema={"type": "object", "oneOf": []})
    _raises(InvalidSchema, client.create_topic, "t1", schema="{not json")
    _raises(InvalidRequest, client.create_topic, "t1", schema=PAYMENT, compatibility="sideways")
    assert "t1" not in client.list_topics()
    client.create_topic("plain")
    assert client.get_schema("plain") is None
    assert client.schema_versions("plain") == []
    client.append("plain", [{"value": b"opaque"}])
    _raises(InvalidRequest, client.set_schema, "plain", PAYMENT)  # holds schemaless records
    client.append("plain", [{"value": {"id": 1}}])  # a schemaless topic stores a dict as JSON text
    assert [v for b in client.read("plain", wait=0) for v in b.column("value").to_pylist()][
        -1
    ] == b'{"id": 1}'
    client.create_topic("empty")
    assert client.set_schema("empty", PAYMENT).version == 1
    client.append("empty", [{"value": {"id": 1, "amount": 0, "currency": "EUR"}}])


def test_pattern_reads_give_schema_d_values_as_json(client: Client) -> None:
    client.create_topic("shop.payments", schema=PAYMENT)
    client.create_topic("shop.notes")
    client.append("shop.payments", [{"value": {"id": 1, "amount": 1.5, "currency": "EUR"}}])
    client.append("shop.notes", [{"value": b"hello"}])
    table = pa.Table.from_batches(list(client.read("shop.*", wait=0)))
    by_topic = dict(zip(table.column("topic").to_pylist(), table.column("value").to_pylist()))
    assert by_topic["shop.notes"] == b"hello"
    assert json.loads(by_topic["shop.payments"]) == {"id": 1, "amount": 1.5, "currency": "EUR", "note": None}
