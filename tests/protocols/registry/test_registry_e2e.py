"""Confluent's serializers against a real `odradek serve`: registry door plus Kafka door.

Goal: a Kafka application written for Confluent's Schema Registry works unchanged.
Its serializer's auto-registration creates the topic with the schema; the records it
produces are stored typed (a native read returns a struct column ``value``) and come
back through a Kafka consumer to Confluent's deserializer as they were written; an
incompatible evolution is refused with 409 and a readable message; a hand-made
wire-format record that breaks the schema is refused by the Kafka produce itself.
Method: one `odradek serve` subprocess with both doors on free loopback ports;
confluent-kafka 2.16.1 (Producer, Consumer, SchemaRegistryClient, Avro and JSON Schema
serializers) as the application, the native Flight client to read what was stored.
"""

from __future__ import annotations

import gc
import json
import struct
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pytest

pytest.importorskip("confluent_kafka.schema_registry")
pytest.importorskip("fastavro")
pytest.importorskip("jsonschema")

from confluent_kafka import Consumer, KafkaError, Producer
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.schema_registry.json_schema import JSONDeserializer, JSONSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from odradek_process import Server

import odradek
from odradek.ports import free_port

# Generous bounds on waiting for a loaded machine; no assertion is about speed.
delivery_seconds_max = 30.0
consume_seconds_max = 30.0

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}

PAYMENT = {
    "type": "record",
    "name": "Payment",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string"},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}

ORDER = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "title": "Order",
    "type": "object",
    "properties": {
        "order": {"type": "string"},
        "total": {"type": "number", "minimum": 0},
        "items": {"type": "integer"},
    },
    "required": ["order", "total", "items"],
}


@dataclass
class Doors:
    server: Server
    bootstrap: str
    registry_url: str


@pytest.fixture
def doors(start_server: Callable[..., Server]) -> Iterator[Doors]:
    kafka_port, registry_port = free_port(), free_port()
    server = start_server(
        "--kafka-listen",
        f"127.0.0.1:{kafka_port}",
        env={"ODRADEK_REGISTRY_LISTEN": f"127.0.0.1:{registry_port}"},
    )
    yield Doors(server, f"127.0.0.1:{kafka_port}", f"http://127.0.0.1:{registry_port}")
    code, errors = server.stop()
    assert code == 0, errors


@pytest.fixture
def registry_client(doors: Doors) -> Iterator[SchemaRegistryClient]:
    client = SchemaRegistryClient({"url": doors.registry_url})
    yield client
    client.close()


@pytest.fixture
def fresh_client(doors: Doors) -> Iterator[SchemaRegistryClient]:
    """A second client, as a consuming application has: nothing cached from the producer's."""
    client = SchemaRegistryClient({"url": doors.registry_url})
    yield client
    client.close()


def _topic() -> str:
    return f"shop.t{uuid.uuid4().hex[:8]}"


def _produce(doors: Doors, topic: str, values: list[bytes]) -> list[Any]:
    """Produce each value; the delivery errors (None for a delivered record), in order."""
    producer = Producer({"bootstrap.servers": doors.bootstrap, **FAST})
    outcomes: list[Any] = []
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda error, _message: outcomes.append(error))
    assert producer.flush(delivery_seconds_max) == 0
    return outcomes


def _consume(doors: Doors, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": doors.bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **FAST,
        }
    )
    consumer.subscribe([topic])
    values: list[bytes] = []
    deadline = time.monotonic() + consume_seconds_max
    while len(values) < count and time.monotonic() < deadline:
        message = consumer.poll(0.2)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.close()
    return values


def _read_natively(doors: Doors, topic: str) -> pa.Table:
    client = odradek.connect(doors.server.url)
    try:
        return pa.Table.from_batches(list(client.read(topic, start="earliest", wait=0)))
    finally:
        client.close()


def _wire(schema_id: int, payload: bytes) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


def test_avro_serializer_round_trip(
    doors: Doors, registry_client: SchemaRegistryClient, fresh_client: SchemaRegistryClient
) -> None:
    topic = _topic()
    context = SerializationContext(topic, MessageField.VALUE)
    serialize = AvroSerializer(registry_client, json.dumps(PAYMENT))
    payments = [
        {"id": f"p-{i}", "amount": i * 1.25, "currency": "EUR", "note": None if i % 2 else f"n{i}"}
        for i in range(20)
    ]
    assert _produce(doors, topic, [serialize(payment, context) for payment in payments]) == [None] * 20

    registered = registry_client.get_latest_version(f"{topic}-value")
    assert registered.version == 1
    table = _read_natively(doors, topic)
    assert pa.types.is_struct(table.schema.field("value").type)
    assert table.column("value").to_pylist() == payments

    deserialize = AvroDeserializer(fresh_client)  # empty caches: fetches the writer's schema by id
    consumed = _consume(doors, topic, len(payments))
    assert all(value[:5] == _wire(registered.schema_id, b"") for value in consumed)
    assert [deserialize(value, context) for value in consumed] == payments


# An HTTP connection of confluent-kafka's registry client, opened inside JSONDeserializer,
# is dropped unclosed during this test (only here: the same calls in-process, or with
# Avro, leave none); every registry request of the test is answered 200 on a kept-alive
# connection, so the socket warning is ignored here, and only that warning.
@pytest.mark.filterwarnings(
    r"ignore:Exception ignored in. <socket\.socket:pytest.PytestUnraisableExceptionWarning"
)
def test_json_schema_serializer_round_trip(
    doors: Doors, registry_client: SchemaRegistryClient, fresh_client: SchemaRegistryClient
) -> None:
    pytest.importorskip("odradek.schemas.jsonschema")  # the JSON Schema compiler
    topic = _topic()
    context = SerializationContext(topic, MessageField.VALUE)
    serialize = JSONSerializer(json.dumps(ORDER), registry_client)
    orders = [{"order": f"o-{i}", "total": i * 10.5, "items": i} for i in range(15)]
    assert _produce(doors, topic, [serialize(order, context) for order in orders]) == [None] * 15

    registered = registry_client.get_latest_version(f"{topic}-value")
    assert registered.schema.schema_type == "JSON"
    table = _read_natively(doors, topic)
    assert pa.types.is_struct(table.schema.field("value").type)
    assert table.column("value").to_pylist() == orders

    with SchemaRegistryClient({"url": doors.registry_url}) as reader_client:  # closes its HTTP session
        deserialize = JSONDeserializer(None, schema_registry_client=reader_client)
        consumed = _consume(doors, topic, len(orders))
        assert [deserialize(value, context) for value in consumed] == orders
    gc.collect()  # finalize the client's sockets here, under this test's warning filter


def test_an_incompatible_evolution_is_refused_with_409(
    doors: Doors, registry_client: SchemaRegistryClient
) -> None:
    topic = _topic()
    context = SerializationContext(topic, MessageField.VALUE)
    serialize = AvroSerializer(registry_client, json.dumps(PAYMENT))
    assert _produce(doors, topic, [serialize({"id": "p", "amount": 1.0, "currency": "EUR"}, context)]) == [
        None
    ]

    breaking = dict(PAYMENT, fields=[*PAYMENT["fields"], {"name": "customer", "type": "string"}])
    with pytest.raises(SchemaRegistryError) as refused:
        registry_client.register_schema(f"{topic}-value", Schema(json.dumps(breaking), "AVRO"))
    assert refused.value.http_status_code == 409
    assert "customer" in refused.value.error_message
    evolved = dict(
        PAYMENT, fields=[*PAYMENT["fields"], {"name": "customer", "type": "string", "default": ""}]
    )
    assert registry_client.register_schema(f"{topic}-value", Schema(json.dumps(evolved), "AVRO")) > 0
    assert registry_client.get_versions(f"{topic}-value") == [1, 2]


def test_a_wire_format_record_that_breaks_the_schema_is_refused_by_the_produce(
    doors: Doors, registry_client: SchemaRegistryClient
) -> None:
    pytest.importorskip("odradek.schemas.jsonschema")  # the JSON Schema compiler
    topic = _topic()
    context = SerializationContext(topic, MessageField.VALUE)
    serialize = JSONSerializer(json.dumps(ORDER), registry_client)
    good = serialize({"order": "o-1", "total": 3.0, "items": 1}, context)
    schema_id = registry_client.get_latest_version(f"{topic}-value").schema_id
    negative = _wire(schema_id, json.dumps({"order": "o-2", "total": -1, "items": 1}).encode())
    missing = _wire(schema_id, json.dumps({"order": "o-3"}).encode())

    outcomes = _produce(doors, topic, [good])
    outcomes += _produce(doors, topic, [negative])
    outcomes += _produce(doors, topic, [missing])
    assert outcomes[0] is None
    for refusal in outcomes[1:]:
        assert refusal is not None
        assert refusal.code() == KafkaError.INVALID_RECORD
    assert _read_natively(doors, topic).column("value").to_pylist() == [
        {"order": "o-1", "total": 3.0, "items": 1}
    ]


def test_a_wire_format_avro_record_that_breaks_the_schema_is_refused_by_the_produce(
    doors: Doors, registry_client: SchemaRegistryClient
) -> None:
    topic = _topic()
    context = SerializationContext(topic, MessageField.VALUE)
    serialize = AvroSerializer(registry_client, json.dumps(PAYMENT))
    good = serialize({"id": "p-1", "amount": 2.5, "currency": "EUR", "note": None}, context)
    schema_id = registry_client.get_latest_version(f"{topic}-value").schema_id
    amount = struct.pack("<d", 1.0)
    # "note" is a union of two branches; branch 2 (zigzag 4) does not exist.
    no_such_branch = _wire(schema_id, b"\x02p" + amount + b"\x06EUR" + b"\x04")
    truncated = _wire(schema_id, b"\x02p" + amount[:3])

    outcomes = [*_produce(doors, topic, [good]), *_produce(doors, topic, [no_such_branch])]
    outcomes += _produce(doors, topic, [truncated])
    assert outcomes[0] is None
    for refusal in outcomes[1:]:
        assert refusal is not None
        assert refusal.code() == KafkaError.INVALID_RECORD
    assert _read_natively(doors, topic).column("value").to_pylist() == [
        {"id": "p-1", "amount": 2.5, "currency": "EUR", "note": None}
    ]
