"""The Kafka door's administration of logs: DeleteRecords, DescribeLogDirs,
DescribeProducers and OffsetDelete.

Goal: DeleteRecords moves the topic's log start for every door (a native read from
"earliest", ``read_key`` and ListOffsets earliest show nothing below it, also after
the server restarts; a consumer starting from the beginning gets the rest); on a topic
with several partitions the log keeps every record some partition still holds, and
each partition's low watermark says where it starts. DescribeLogDirs names the data
directory with the partitions and their sizes; DescribeProducers lists the idempotent
producers that wrote to a partition; OffsetDelete forgets a group's committed offsets
unless a member subscribes to the topic.

Method: an in-process Kafka listener over a node in a temporary directory (conftest),
driven by confluent-kafka's and kafka-python's admin clients and by raw requests
(wire.py) where a client lacks the API or the test needs the exact answer.
"""

from __future__ import annotations

import time
from typing import Any

import pyarrow as pa
import pytest
from wire import Wire

from odradek.protocols.kafka.codec import messages_data as d
from odradek.protocols.kafka.codec import messages_logs as m
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode

confluent_kafka = pytest.importorskip("confluent_kafka")
kafka = pytest.importorskip("kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from kafka import KafkaAdminClient  # noqa: E402
from kafka import TopicPartition as KafkaTopicPartition  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}


def create(door: Any, name: str, partitions: int = 1) -> None:
    client = AdminClient({"bootstrap.servers": door.bootstrap, **FAST})
    futures = client.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=10)


def produce(door: Any, name: str, count: int, partition: int | None = None, **settings: Any) -> None:
    producer = Producer({"bootstrap.servers": door.bootstrap, "linger.ms": 5, **FAST, **settings})
    for index in range(count):
        if partition is None:
            producer.produce(name, key=f"k{index % 3}".encode(), value=f"v{index}".encode())
        else:
            producer.produce(
                name, key=f"k{index % 3}".encode(), value=f"v{index}".encode(), partition=partition
            )
    assert producer.flush(10) == 0


def native_offsets(door: Any, name: str) -> list[int]:
    batches = list(door.engine.read(name, start="earliest", wait=0))
    return pa.Table.from_batches(batches).column("offset").to_pylist() if batches else []


def earliest(door: Any, name: str, partition: int = 0) -> int:
    wire = Wire(door.listener.port)
    try:
        response = wire.call(
            ApiKey.LIST_OFFSETS,
            7,
            d.ListOffsetsRequest(
                replica_id=-1,
                topics=(
                    d.ListOffsetsTopic(
                        name=name,
                        partitions=(d.ListOffsetsPartition(partition_index=partition, timestamp=-2),),
                    ),
                ),
            ),
        )
    finally:
        wire.close()
    answer = response.topics[0].partitions[0]
    assert answer.error_code == ErrorCode.NONE
    return int(answer.offset)


def test_delete_records_moves_the_log_start_for_every_door(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    produce(kafka_door, topic_name, 10)
    client = AdminClient({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    futures = client.delete_records([TopicPartition(topic_name, 0, 6)])
    deleted = futures[TopicPartition(topic_name, 0, 6)].result(timeout=10)
    assert deleted.low_watermark == 6
    assert native_offsets(kafka_door, topic_name) == [6, 7, 8, 9]
    assert earliest(kafka_door, topic_name) == 6
    # k0 was produced at offsets 0, 3, 6, 9: versions 1 and 2 are gone.
    assert kafka_door.engine.read_key(topic_name, b"k0").column("offset").to_pylist() == [6, 9]
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": "g-" + topic_name,
            "auto.offset.reset": "earliest",
            **FAST,
        }
    )
    consumer.subscribe([topic_name])
    values = []
    deadline = time.monotonic() + 20
    while len(values) < 4 and time.monotonic() < deadline:
        message = consumer.poll(0.1)
        if message is not None and message.error() is None:
            values.append(message.value())
    consumer.close()
    assert values == [b"v6", b"v7", b"v8", b"v9"]
    kafka_door.reopen()
    assert native_offsets(kafka_door, topic_name) == [6, 7, 8, 9]
    assert earliest(kafka_door, topic_name) == 6
    assert kafka_door.engine.read_key(topic_name, b"k0").column("offset").to_pylist() == [6, 9]


def test_delete_records_to_the_high_watermark_and_out_of_range(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    produce(kafka_door, topic_name, 5)
    wire = Wire(kafka_door.listener.port)

    def delete(offset: int, partition: int = 0, version: int = 2) -> m.DeleteRecordsPartitionResult:
        request = m.DeleteRecordsRequest(
            topics=(
                m.DeleteRecordsTopic(
                    name=topic_name,
                    partitions=(m.DeleteRecordsPartition(partition_index=partition, offset=offset),),
                ),
            ),
            timeout_ms=5000,
        )
        result: m.DeleteRecordsPartitionResult = (
            wire.call(ApiKey.DELETE_RECORDS, version, request).topics[0].partitions[0]
        )
        return result

    try:
        assert (delete(6).error_code, native_offsets(kafka_door, topic_name)) == (
            ErrorCode.OFFSET_OUT_OF_RANGE,
            [0, 1, 2, 3, 4],
        )
        assert delete(0, partition=3).error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        assert (delete(2, version=0).error_code, delete(2, version=0).low_watermark) == (ErrorCode.NONE, 2)
        assert delete(1).low_watermark == 2  # the start never moves back
        assert (delete(-1).error_code, delete(-1).low_watermark) == (ErrorCode.NONE, 5)
        assert native_offsets(kafka_door, topic_name) == []
    finally:
        wire.close()
    produce(kafka_door, topic_name, 1)
    assert native_offsets(kafka_door, topic_name) == [5]


def test_delete_records_keeps_what_another_partition_holds(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, partitions=2)
    for index in range(6):  # partition 0 holds the even offsets, partition 1 the odd ones
        produce(kafka_door, topic_name, 1, partition=index % 2)
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, request_timeout_ms=10_000)
    try:
        # Only partition 0 is named: partition 1 keeps offsets 1, 3, 5, so only offset 0
        # goes, and partition 0 starts at 1 (a log start may fall in a gap, as in Kafka).
        result = admin.delete_records({KafkaTopicPartition(topic_name, 0): 4})
        assert result[KafkaTopicPartition(topic_name, 0)]["low_watermark"] == 1
        assert native_offsets(kafka_door, topic_name) == list(range(1, 6))
        # Both named: partition 0 keeps 4, partition 1 keeps 3 and 5.
        result = admin.delete_records(
            {KafkaTopicPartition(topic_name, 0): 4, KafkaTopicPartition(topic_name, 1): 3}
        )
        assert result[KafkaTopicPartition(topic_name, 1)]["low_watermark"] == 3
        assert 3 <= result[KafkaTopicPartition(topic_name, 0)]["low_watermark"] <= 4
        assert native_offsets(kafka_door, topic_name) == [3, 4, 5]
        assert earliest(kafka_door, topic_name, 1) == 3
        # Each partition fetched from its log start gets exactly its own remaining records.
        consumer = Consumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": "g", **FAST})
        consumer.assign([TopicPartition(topic_name, 0, -2), TopicPartition(topic_name, 1, -2)])
        seen: dict[int, list[int]] = {0: [], 1: []}
        deadline = time.monotonic() + 20
        while sum(map(len, seen.values())) < 3 and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                seen[message.partition()].append(message.offset())
        consumer.close()
        assert seen == {0: [4], 1: [3, 5]}
    finally:
        admin.close()


def test_describe_log_dirs_and_producers(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, partitions=2)
    produce(kafka_door, topic_name, 4, partition=1, **{"enable.idempotence": True})
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, request_timeout_ms=10_000)
    try:
        dirs = admin.describe_log_dirs({topic_name: [0, 1]})
        (result,) = dirs[0]["log_dirs"]
        assert result["error_code"] == 0
        assert result["log_dir"] == kafka_door.engine.path
        (topic,) = result["topics"]
        sizes = {p["partition_index"]: p["partition_size"] for p in topic["partitions"]}
        assert sizes[0] == 0 and sizes[1] > 0
        producers = admin.describe_producers([KafkaTopicPartition(topic_name, 1)])
        (state,) = producers[KafkaTopicPartition(topic_name, 1)].active_producers
        assert state.last_sequence == 3
        assert (
            admin.describe_producers([KafkaTopicPartition(topic_name, 0)])[
                KafkaTopicPartition(topic_name, 0)
            ].active_producers
            == []
        )
    finally:
        admin.close()


def test_offset_delete_forgets_a_group_offsets_unless_subscribed(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, partitions=2)
    produce(kafka_door, topic_name, 4, partition=0)
    group = "g-" + topic_name
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, request_timeout_ms=10_000)
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **FAST,
        }
    )
    try:
        admin.alter_group_offsets(
            group,
            {
                KafkaTopicPartition(topic_name, 0): OffsetAndMetadata(3, "", -1),
                KafkaTopicPartition(topic_name, 1): OffsetAndMetadata(0, "", -1),
            },
        )
        consumer.subscribe([topic_name])
        deadline = time.monotonic() + 20
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.1)
        assert consumer.assignment()
        results = admin.delete_group_offsets(group, [KafkaTopicPartition(topic_name, 0)])
        assert results[KafkaTopicPartition(topic_name, 0)].errno == ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
        consumer.close()
        results = admin.delete_group_offsets(group, [KafkaTopicPartition(topic_name, 0)])
        assert results[KafkaTopicPartition(topic_name, 0)].errno == ErrorCode.NONE
        committed = admin.list_group_offsets(group)[group]
        assert KafkaTopicPartition(topic_name, 0) not in committed
        assert KafkaTopicPartition(topic_name, 1) in committed
        admin.close()
        kafka_door.reopen()  # the deletion is durable
        admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, request_timeout_ms=10_000)
        assert set(admin.list_group_offsets(group)[group]) == {KafkaTopicPartition(topic_name, 1)}
        with pytest.raises(kafka.errors.GroupIdNotFoundError):
            admin.delete_group_offsets("no-such-group", [KafkaTopicPartition(topic_name, 0)])
    finally:
        admin.close()
