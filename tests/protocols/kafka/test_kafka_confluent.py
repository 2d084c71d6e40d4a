"""librdkafka (confluent-kafka) against the Kafka door, unchanged.

Goal: the most used Kafka client works against Odradek as against a Kafka broker:
admin (create with configs, describe/alter configs, add partitions, delete), produce
and consume with keys, headers and timestamps, the idempotent producer, a consumer
group of three whose members leave, committed offsets with metadata, offset lookups.

Method: a real in-process listener over an Engine in a temp dir (conftest); the
client talks to it over loopback with its timers shortened. Assertions check what the
client sees and, where it matters, what the engine stored.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}
CONSUMER_FAST = {
    **FAST,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 100,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
}


def admin(door: Any) -> AdminClient:
    return AdminClient({"bootstrap.servers": door.bootstrap, **FAST})


def create(door: Any, name: str, partitions: int = 1, config: dict[str, str] | None = None) -> None:
    client = admin(door)  # kept referenced until the future completes
    futures = client.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})]
    )
    futures[name].result(timeout=10)


def poll_until(
    consumers: list[Consumer], done: Callable[[list[Any]], bool], timeout: float = 20.0
) -> list[Any]:
    """Poll all consumers until ``done(messages so far)`` or the timeout."""
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    while not done(messages) and time.monotonic() < deadline:
        for consumer in consumers:
            message = consumer.poll(0.05)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            messages.append(message)
    return messages


@pytest.mark.compat("confluent-kafka", "produce")
@pytest.mark.compat("confluent-kafka", "consume")
def test_produce_and_consume_keys_values_headers_timestamps(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, "linger.ms": 5, **FAST})
    base = 1_700_000_000_000
    for i in range(500):
        producer.produce(
            topic_name,
            key=None if i % 10 == 0 else f"k{i % 7}".encode(),
            value=b"v" * (i % 50),
            headers=[("n", str(i).encode()), ("empty", None)] if i % 2 else None,
            timestamp=base + i,
        )
    assert producer.flush(10) == 0
    consumer = Consumer(
        {"bootstrap.servers": kafka_door.bootstrap, "group.id": "g-" + topic_name, **CONSUMER_FAST}
    )
    consumer.subscribe([topic_name])
    got = poll_until([consumer], lambda got: len(got) >= 500)
    consumer.close()
    assert [m.offset() for m in got] == list(range(500))
    for i, message in enumerate(got):
        assert message.key() == (None if i % 10 == 0 else f"k{i % 7}".encode())
        assert message.value() == b"v" * (i % 50)
        assert message.timestamp()[1] == base + i
        assert (message.headers() or None) == ([("n", str(i).encode()), ("empty", None)] if i % 2 else None)
    stored = kafka_door.engine.read_key(topic_name, b"k3")
    assert stored.column("version").to_pylist() == list(range(1, stored.num_rows + 1))


def test_idempotent_producer_writes_each_record_once(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    producer = Producer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "enable.idempotence": True,
            "linger.ms": 2,
            "batch.num.messages": 100,
            **FAST,
        }
    )
    for i in range(3000):
        producer.produce(topic_name, key=str(i % 13).encode(), value=str(i).encode())
        if i % 700 == 0:
            producer.poll(0)
    assert producer.flush(15) == 0
    info = kafka_door.engine.describe_topic(topic_name)
    assert info.next_offset == 3000
    values = [int(v) for b in kafka_door.engine.fetch(topic_name, 0) for v in b.column("value").to_pylist()]
    assert values == list(range(3000))


@pytest.mark.compat("confluent-kafka", "groups")
def test_group_of_three_rebalances_when_a_member_leaves(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, partitions=3)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, "partitioner": "murmur2", **FAST})
    for i in range(300):
        producer.produce(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
    assert producer.flush(10) == 0
    group = "g3-" + topic_name
    assignments: dict[int, list[int]] = {}

    def member(index: int) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_door.bootstrap,
                "group.id": group,
                **CONSUMER_FAST,
                "partition.assignment.strategy": "range",
            }
        )

        def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
            assignments[index] = sorted(p.partition for p in partitions)

        consumer.subscribe([topic_name], on_assign=on_assign)
        return consumer

    consumers = [member(i) for i in range(3)]

    def everyone_has_one(messages: list[Any]) -> bool:
        one_each = len(assignments) == 3 and all(len(p) == 1 for p in assignments.values())
        return one_each and len({m.value() for m in messages}) == 300

    seen = {int(message.value()) for message in poll_until(consumers, everyone_has_one)}
    assert sorted(p for parts in assignments.values() for p in parts) == [0, 1, 2]
    assert len(seen) == 300
    for consumer in consumers:
        consumer.commit(asynchronous=False)
    consumers[2].close()  # LeaveGroup: the other two take over its partition
    for i in range(300, 330):
        producer.produce(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
    producer.flush(10)

    def two_cover_all(messages: list[Any]) -> bool:
        covered = sorted(p for i, parts in assignments.items() if i < 2 for p in parts)
        return covered == [0, 1, 2] and len({m.value() for m in messages}) >= 30

    later = {int(message.value()) for message in poll_until(consumers[:2], two_cover_all)}
    assert later == set(range(300, 330))
    for consumer in consumers[:2]:
        consumer.close()
    client = admin(kafka_door)
    described = client.describe_consumer_groups([group])[group].result(timeout=10)
    assert described.group_id == group and not described.members


def test_committed_offsets_with_metadata_survive_a_restart(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    for i in range(20):
        producer.produce(topic_name, value=str(i).encode())
    producer.flush(10)
    group = "gc-" + topic_name
    consumer = Consumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": group, **CONSUMER_FAST})
    consumer.assign([TopicPartition(topic_name, 0, 0)])
    poll_until([consumer], lambda got: len(got) >= 12)
    consumer.commit(offsets=[TopicPartition(topic_name, 0, 12, metadata="checkpoint-12")], asynchronous=False)
    committed = consumer.committed([TopicPartition(topic_name, 0)], timeout=10)
    assert committed[0].offset == 12 and committed[0].metadata == "checkpoint-12"
    consumer.close()
    kafka_door.reopen()
    resumed = Consumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": group, **CONSUMER_FAST})
    committed = resumed.committed([TopicPartition(topic_name, 0)], timeout=10)
    assert committed[0].offset == 12 and committed[0].metadata == "checkpoint-12"
    resumed.subscribe([topic_name])
    rest = poll_until([resumed], lambda got: len(got) >= 8)
    resumed.close()
    assert [m.offset() for m in rest] == list(range(12, 20))


@pytest.mark.compat("confluent-kafka", "admin")
def test_admin_create_configs_partitions_delete(kafka_door: Any, topic_name: str) -> None:
    client = admin(kafka_door)
    create(kafka_door, topic_name, config={"retention.ms": "3600000"})
    assert topic_name in client.list_topics(timeout=10).topics
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = client.describe_configs([resource])[resource].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["kafka_partitions"].value == "1"
    change = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("retention.bytes", "1073741824", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    client.incremental_alter_configs([change])[change].result(timeout=10)
    assert kafka_door.engine.describe_topic(topic_name).config["retention_bytes"] == 1073741824
    client.create_partitions([NewPartitions(topic_name, 4)])[topic_name].result(timeout=10)
    assert len(client.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 4
    with pytest.raises(KafkaException):
        create(kafka_door, topic_name)  # TOPIC_ALREADY_EXISTS
    client.delete_topics([topic_name])[topic_name].result(timeout=10)
    assert topic_name not in kafka_door.engine.list_topics()
    bad = client.create_topics([NewTopic("bad..name", 1, 1)])["bad..name"]
    with pytest.raises(KafkaException, match=r"(?i)invalid"):
        bad.result(timeout=10)


def test_offset_lookups_by_time_and_watermarks(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    for i in range(10):
        producer.produce(topic_name, value=b"x", timestamp=1_000_000 + 1000 * i)
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": "gt-" + uuid.uuid4().hex})
    assert consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (0, 10)
    found = consumer.offsets_for_times([TopicPartition(topic_name, 0, 1_000_000 + 4500)], timeout=10)
    assert found[0].offset == 5
    consumer.close()
