"""Compacted topics through the Kafka door, with librdkafka (confluent-kafka).

Goal: what Kafka Streams, Faust and Quix Streams do with their changelogs works: a topic
created with ``cleanup.policy=compact`` (and ``compact,delete``, with
``delete.retention.ms``, ``min.compaction.lag.ms``, ``min.cleanable.dirty.ratio``) is
compacted, its configs are described and altered like Kafka's, a keyless record is
refused with INVALID_RECORD as Kafka refuses it, and a consumer reading from the start
after a compaction round gets the latest value of each key at its original offset.

Method: a real in-process listener over an Engine in a temp dir (conftest); the round is
run with ``Engine.compact(force=True)`` instead of waiting for the background thread.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}


def _admin(door: Any) -> AdminClient:
    return AdminClient({"bootstrap.servers": door.bootstrap, **FAST})


def _configs(client: AdminClient, topic: str) -> dict[str, str]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    described = client.describe_configs([resource])[resource].result(timeout=10)
    return {name: entry.value for name, entry in described.items()}


def test_create_describe_and_alter_compaction_configs(kafka_door: Any) -> None:
    client = _admin(kafka_door)
    name = f"changelog-{uuid.uuid4().hex[:6]}"
    config = {
        "cleanup.policy": "compact,delete",
        "delete.retention.ms": "60000",
        "min.compaction.lag.ms": "1000",
        "min.cleanable.dirty.ratio": "0.2",
    }
    client.create_topics([NewTopic(name, 1, 1, config=config)])[name].result(timeout=10)
    described = _configs(client, name)
    assert described["cleanup.policy"] == "compact,delete"
    assert described["delete.retention.ms"] == "60000"
    assert described["min.compaction.lag.ms"] == "1000"
    assert float(described["min.cleanable.dirty.ratio"]) == 0.2
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        name,
        incremental_configs=[
            ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    client.incremental_alter_configs([resource])[resource].result(timeout=10)
    assert _configs(client, name)["cleanup.policy"] == "delete"
    assert kafka_door.engine.describe_topic(name).config["cleanup"] == "delete"
    bad = client.create_topics([NewTopic(name + "x", 1, 1, config={"cleanup.policy": "snapshot"})])
    with pytest.raises(KafkaException, match="not built yet"):
        bad[name + "x"].result(timeout=10)


@pytest.mark.compat("confluent-kafka", "compaction")
def test_produce_compact_consume(kafka_door: Any) -> None:
    client = _admin(kafka_door)
    name = f"changelog-{uuid.uuid4().hex[:6]}"
    client.create_topics(
        [NewTopic(name, 1, 1, config={"cleanup.policy": "compact", "segment.bytes": "65536"})]
    )[name].result(timeout=10)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, "linger.ms": 5, **FAST})
    for round_number in range(60):
        for key in range(20):
            producer.produce(name, key=b"k%d" % key, value=b"%d" % round_number + b"." * 200)
        producer.flush(10)
    errors: list[Any] = []
    producer.produce(name, value=b"keyless", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None and errors[0].code() == confluent_kafka.KafkaError.INVALID_RECORD
    results = kafka_door.engine.compact(force=True)
    assert results[name].records_removed > 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": "g-" + name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **FAST,
        }
    )
    consumer.subscribe([name])
    seen: dict[bytes, tuple[int, bytes]] = {}
    offsets: list[int] = []
    end = kafka_door.engine.describe_topic(name).next_offset
    try:
        while not offsets or offsets[-1] < end - 1:
            message = consumer.poll(10)
            assert message is not None, f"nothing more after offset {offsets[-1] if offsets else None}"
            if message.error():
                continue
            offsets.append(message.offset())
            seen[message.key()] = (message.offset(), message.value())
    finally:
        consumer.close()
    assert len(offsets) < 60 * 20  # compacted: gaps were skipped
    assert offsets == sorted(offsets)
    assert {key: value[:2] for key, (_, value) in seen.items()} == {b"k%d" % k: b"59" for k in range(20)}
    assert all(offset == (59 * 20 + int(key[1:])) for key, (offset, _) in seen.items())
