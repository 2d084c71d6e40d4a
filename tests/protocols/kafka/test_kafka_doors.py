"""Across doors: what one door writes, the other reads intact.

Goal: records produced through Kafka are readable natively with key, value, headers
and timestamp intact, versions assigned and ``read_key`` working; records appended
natively are consumed through Kafka the same way. Native appends are split among a
topic's partitions by murmur2(key) (keyless: offset) with Odradek offsets, every record
in exactly one partition, and a consumer of a partition ends at that partition's own
high watermark.
Topics named in Metadata are auto-created with their dotted names.

Method: the in-process listener over an Engine (conftest); librdkafka (confluent-kafka)
on one side, the Engine API on the other.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import pytest

pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from odradek.protocols.kafka.partitions import murmur2

FAST = {"topic.metadata.refresh.interval.ms": 1000}


def consume_partition(
    door: Any, topic: str, partition: int, count: int, timeout: float = 15, settle: float = 0.0
) -> tuple[list[Any], Consumer]:
    """The first ``count`` records of one partition; then polls ``settle`` seconds more."""
    consumer = Consumer(
        {
            "bootstrap.servers": door.bootstrap,
            "group.id": "doors",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            **FAST,
        }
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    messages: list[Any] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(messages) < count:
        message = consumer.poll(0.1)
        if message is not None:
            assert not message.error(), message.error()
            messages.append(message)
    settled = time.monotonic() + settle
    while time.monotonic() < settled:
        assert consumer.poll(0.05) is None
    return messages, consumer


def test_kafka_produced_records_read_natively(kafka_door: Any, topic_name: str) -> None:
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    when = 1_710_000_000_123
    for i in range(6):
        producer.produce(
            topic_name,
            key=b"order-1" if i % 2 == 0 else None,
            value=f"event {i}".encode(),
            headers=[("type", b"created"), ("seq", str(i).encode())],
            timestamp=when + i,
        )
    assert producer.flush(10) == 0  # the topic is auto-created by Metadata, dotted name intact
    table = kafka_door.engine.read_key(topic_name, b"order-1")
    assert table.column("version").to_pylist() == [1, 2, 3]
    assert table.column("value").to_pylist() == [b"event 0", b"event 2", b"event 4"]
    assert table.column("headers").to_pylist()[1] == [("type", b"created"), ("seq", b"2")]
    stamps = table.column("timestamp").to_pylist()
    assert stamps[0] == datetime.datetime.fromtimestamp(when / 1000, tz=datetime.UTC)
    keyless = kafka_door.engine.fetch(topic_name, 1, max_records=1)[0]
    assert keyless.column("key").to_pylist() == [None] and keyless.column("version").to_pylist() == [None]


def test_native_records_consumed_through_kafka(kafka_door: Any, topic_name: str) -> None:
    when = datetime.datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC)
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(
        topic_name,
        [
            {"key": b"a", "value": b"one", "headers": {"h": b"1"}, "timestamp": when},
            {"key": None, "value": b"two"},
            {"key": b"a", "value": None, "headers": {"tomb": b"stone"}, "timestamp": when},
        ],
    )
    messages, consumer = consume_partition(kafka_door, topic_name, 0, 3)
    consumer.close()
    assert [(m.offset(), m.key(), m.value()) for m in messages] == [
        (0, b"a", b"one"),
        (1, None, b"two"),
        (2, b"a", None),
    ]
    assert messages[0].headers() == [("h", b"1")] and messages[1].headers() is None
    assert messages[0].timestamp()[1] == int(when.timestamp() * 1000)


def test_virtual_partitions_split_by_key_hash_with_odradek_offsets(kafka_door: Any, topic_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=4, replication_factor=1)])[topic_name].result(10)
    keys = [f"user-{i}".encode() if i % 5 else None for i in range(200)]
    kafka_door.engine.append(topic_name, [{"key": k, "value": str(i).encode()} for i, k in enumerate(keys)])
    import pyarrow as pa

    hashes = murmur2(pa.array(keys, pa.binary()))
    expected = {
        p: [
            i
            for i, k in enumerate(keys)
            if (k is not None and (int(hashes[i]) & 0x7FFFFFFF) % 4 == p) or (k is None and i % 4 == p)
        ]
        for p in range(4)
    }
    seen: list[int] = []
    for partition in range(4):
        messages, consumer = consume_partition(kafka_door, topic_name, partition, len(expected[partition]))
        consumer.close()
        offsets = [m.offset() for m in messages]
        assert offsets == expected[partition]
        assert [int(m.value()) for m in messages] == offsets  # Kafka offset == Odradek offset
        seen.extend(offsets)
    assert sorted(seen) == list(range(200))


def test_a_partition_consumer_ends_at_its_own_high_watermark(kafka_door: Any, topic_name: str) -> None:
    """A partition's high watermark is its own last record's offset + 1 (not the log's
    end), so a consumer that read a partition is at its end: the position it commits
    leaves no lag, although the other partitions' records follow in the log."""
    kafka = pytest.importorskip("kafka")
    kafka_door.engine.create_topic(topic_name)
    view = kafka_door.engine.describe_topic(topic_name)
    kafka_door.listener.listener.broker.store.set_partitions(topic_name, view.incarnation, 4)
    keys = [f"user-{i}".encode() for i in range(200)]
    kafka_door.engine.append(topic_name, [{"key": key, "value": b"v"} for key in keys])
    import pyarrow as pa

    owners = (murmur2(pa.array(keys, pa.binary())) & 0x7FFFFFFF) % 4
    consumer = kafka.KafkaConsumer(bootstrap_servers=kafka_door.bootstrap, fetch_max_wait_ms=50)
    for partition in range(4):
        where = kafka.TopicPartition(topic_name, partition)
        last_own = max(i for i in range(200) if owners[i] == partition)
        assert consumer.end_offsets([where])[where] == last_own + 1
        consumer.assign([where])
        consumer.seek(where, 0)
        deadline = time.monotonic() + 10
        while consumer.position(where) < last_own + 1 and time.monotonic() < deadline:
            consumer.poll(timeout_ms=50)
        assert consumer.position(where) == last_own + 1
    consumer.close()


def test_kafka_partitioner_murmur2_matches_virtual_partitions(kafka_door: Any, topic_name: str) -> None:
    admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap})
    admin.create_topics([NewTopic(topic_name, num_partitions=3, replication_factor=1)])[topic_name].result(10)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, "partitioner": "murmur2", **FAST})
    delivered: dict[int, int] = {}

    def report(error: Any, message: Any) -> None:
        assert error is None
        delivered[message.offset()] = message.partition()

    for i in range(60):
        producer.produce(topic_name, key=f"k{i}".encode(), value=b"x", on_delivery=report)
    producer.flush(10)
    for partition in range(3):
        messages, consumer = consume_partition(
            kafka_door, topic_name, partition, sum(1 for p in delivered.values() if p == partition)
        )
        consumer.close()
        assert all(delivered[m.offset()] == partition for m in messages)
