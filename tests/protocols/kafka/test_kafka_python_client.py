"""kafka-python (pure Python client) against the Kafka door, unchanged.

Goal: kafka-python's producer, consumer (groups, commits with metadata) and admin
client work against Odradek: produce and consume with headers, a group of three whose
members leave, committed offsets read back, topics created, described and deleted.

Method: a real in-process listener over an Engine in a temp dir (conftest); clients
with shortened timers talk to it over loopback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

FAST = {"request_timeout_ms": 10_000, "metadata_max_age_ms": 1000, "reconnect_backoff_max_ms": 200}
GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 100,
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
    "fetch_max_wait_ms": 100,
}


def poll_until(
    consumers: list[KafkaConsumer], done: Callable[[list[Any]], bool], timeout: float = 20.0
) -> list[Any]:
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while not done(records) and time.monotonic() < deadline:
        for consumer in consumers:
            for batch in consumer.poll(timeout_ms=50).values():
                records.extend(batch)
    return records


def create(door: Any, name: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=door.bootstrap, **FAST)
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    admin.close()


def test_produce_and_consume_with_headers(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    producer = KafkaProducer(bootstrap_servers=kafka_door.bootstrap, linger_ms=5, **FAST)
    for i in range(200):
        producer.send(
            topic_name,
            key=f"k{i % 5}".encode(),
            value=f"v{i}".encode(),
            headers=[("i", str(i).encode())],
            timestamp_ms=1_600_000_000_000 + i,
        )
    producer.flush(10)
    producer.close()
    consumer = KafkaConsumer(
        topic_name, bootstrap_servers=kafka_door.bootstrap, group_id="kp-" + topic_name, **FAST, **GROUP
    )
    records = poll_until([consumer], lambda got: len(got) >= 200)
    consumer.close()
    assert [r.offset for r in records] == list(range(200))
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(200)]
    assert records[7].key == b"k2" and records[7].headers == [("i", b"7")]
    assert records[7].timestamp == 1_600_000_000_007
    assert kafka_door.engine.key_version(topic_name, b"k2") == 40


def test_group_of_three_with_leave_and_commits(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_door.bootstrap, **FAST)
    for i in range(150):
        producer.send(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
    producer.flush(10)
    group = "kg-" + topic_name
    consumers = [
        KafkaConsumer(topic_name, bootstrap_servers=kafka_door.bootstrap, group_id=group, **FAST, **GROUP)
        for _ in range(3)
    ]

    def all_assigned(got: list[Any]) -> bool:
        sizes = [len(c.assignment()) for c in consumers]
        return sizes == [1, 1, 1] and len({r.value for r in got}) == 150

    first = poll_until(consumers, all_assigned)
    assert {int(r.value) for r in first} == set(range(150))
    for consumer in consumers:
        consumer.commit()
    consumers[0].close()  # leaves the group
    for i in range(150, 170):
        producer.send(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
    producer.flush(10)

    def two_take_over(got: list[Any]) -> bool:
        return sum(len(c.assignment()) for c in consumers[1:]) == 3 and len({r.value for r in got}) >= 20

    later = poll_until(consumers[1:], two_take_over)
    assert {int(r.value) for r in later} == set(range(150, 170))
    consumers[1].commit({TopicPartition(topic_name, 0): OffsetAndMetadata(7, "by-hand", -1)})
    committed = consumers[1].committed(TopicPartition(topic_name, 0), metadata=True)
    assert committed.offset == 7 and committed.metadata == "by-hand"
    for consumer in consumers[1:]:
        consumer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, **FAST)
    offsets = admin.list_group_offsets({group: None})[group]
    assert offsets[TopicPartition(topic_name, 0)].offset == 7
    listed = admin.list_groups()
    assert group in str(listed)
    admin.close()
    producer.close()


def test_admin_describe_configs_and_delete(kafka_door: Any, topic_name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, **FAST)
    admin.create_topics([NewTopic(topic_name, 2, 1, topic_configs={"segment.bytes": "1048576"})])
    assert topic_name in admin.list_topics()
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic_name)], config_filter="all"
    )
    entries = {
        key: value["value"] for key, value in next(iter(next(iter(described.values())).values())).items()
    }
    assert entries["segment.bytes"] == "1048576" and entries["kafka_partitions"] == "2"
    admin.delete_topics([topic_name])
    assert topic_name not in kafka_door.engine.list_topics()
    admin.close()
