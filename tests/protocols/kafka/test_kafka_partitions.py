"""Partitions that behave like Kafka's, in the clients Kafka users run.

Goal: a record is served from the partition its producer chose, whatever the
partitioner: librdkafka's sticky partitioner (400 keyless messages to one partition
come back from that one, not spread 134/133/133), a custom partitioner (kafka-python),
explicit partitions (aiokafka) with per-partition order kept; each partition has its own
high watermark, so a consumer that read everything and committed "last own record + 1"
shows lag 0 in librdkafka, kafka-python, aiokafka and ``describe_group``; timestamp
lookups (by time, max timestamp) stay inside the partition; a 3-partition group reads
everything exactly once from the partitions it was produced to. Records written before
partitions were kept (no stored partition) keep the key-hash mapping they were read with;
adding partitions moves no record; topics created on the fly get the configured count,
and auto-creation can be turned off.

Method: a real in-process listener over a node in a temp dir (conftest); each client
produces and consumes over loopback; what a client reports (delivery partition and
offset) is compared with what each partition serves. Waits poll with generous deadlines.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pyarrow as pa
import pytest

from odradek.node import Node
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.kafka.partitions import murmur2

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic, OffsetSpec  # noqa: E402

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}
DEADLINE_SECONDS = 30.0


def create(door: Any, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": door.bootstrap, **FAST})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(10)


def delivered_by_librdkafka(
    door: Any, topic: str, messages: list[tuple[bytes | None, bytes]], **config: Any
) -> dict[int, list[tuple[int, bytes]]]:
    """Produce with librdkafka; per partition, the (offset, value) it reported, in order."""
    producer = Producer({"bootstrap.servers": door.bootstrap, **FAST, **config})
    reports: dict[int, list[tuple[int, bytes]]] = {}

    def report(error: Any, message: Any) -> None:
        assert error is None, error
        reports.setdefault(message.partition(), []).append((message.offset(), message.value()))

    for key, value in messages:
        producer.produce(topic, key=key, value=value, on_delivery=report)
    assert producer.flush(DEADLINE_SECONDS) == 0
    return {p: sorted(rows) for p, rows in reports.items()}


def read_partition(door: Any, topic: str, partition: int, count: int) -> list[tuple[int, bytes]]:
    """(offset, value) of the first ``count`` records librdkafka reads from a partition."""
    consumer = Consumer(
        {
            "bootstrap.servers": door.bootstrap,
            "group.id": "reader",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
            **FAST,
        }
    )
    consumer.assign([TopicPartition(topic, partition, 0)])
    rows: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(rows) < count and time.monotonic() < deadline:
        message = consumer.poll(0.1)
        if message is not None:
            assert not message.error(), message.error()
            rows.append((message.offset(), message.value()))
    consumer.close()
    return rows


def test_sticky_partitioner_keyless_messages_come_back_from_their_partition(
    kafka_door: Any, topic_name: str
) -> None:
    create(kafka_door, topic_name, 3)
    messages = [(None, b"m%d" % i) for i in range(400)]
    # librdkafka's default for keyless messages: sticky, one partition per linger window.
    delivered = delivered_by_librdkafka(
        kafka_door, topic_name, messages, **{"linger.ms": 1000, "sticky.partitioning.linger.ms": 1000}
    )
    assert sum(len(rows) for rows in delivered.values()) == 400
    assert max(len(rows) for rows in delivered.values()) >= 100  # sticky: runs to one partition
    consumer = Consumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": "hw", **FAST})
    for partition in range(3):
        expected = delivered.get(partition, [])
        assert read_partition(kafka_door, topic_name, partition, len(expected)) == expected
        high = consumer.get_watermark_offsets(TopicPartition(topic_name, partition), timeout=10)[1]
        assert high == (expected[-1][0] + 1 if expected else 0)  # nothing else is served there
    consumer.close()


def test_custom_partitioner_of_kafka_python(kafka_door: Any, topic_name: str) -> None:
    kafka = pytest.importorskip("kafka")
    create(kafka_door, topic_name, 4)

    class LastByte(kafka.partitioner.Partitioner):  # type: ignore[misc]
        """Nothing like murmur2: the key's last byte modulo the count."""

        def partition(self, topic: str, key: Any, serialized_key: bytes, *rest: Any) -> int:
            return serialized_key[-1] % 4

    producer = kafka.KafkaProducer(bootstrap_servers=kafka_door.bootstrap, partitioner=LastByte())
    futures = [producer.send(topic_name, key=b"key-%d" % i, value=b"%d" % i) for i in range(80)]
    producer.flush(timeout=DEADLINE_SECONDS)
    delivered: dict[int, list[tuple[int, bytes]]] = {}
    for i, future in enumerate(futures):
        metadata = future.get(timeout=DEADLINE_SECONDS)
        assert metadata.partition == (b"key-%d" % i)[-1] % 4
        delivered.setdefault(metadata.partition, []).append((metadata.offset, b"%d" % i))
    producer.close()
    for partition, expected in delivered.items():
        assert read_partition(kafka_door, topic_name, partition, len(expected)) == sorted(expected)


def test_explicit_partitions_keep_their_order_with_aiokafka(kafka_door: Any, topic_name: str) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    create(kafka_door, topic_name, 3)

    async def scenario() -> dict[int, list[bytes]]:
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_door.bootstrap)
        await producer.start()
        try:
            for i in range(90):
                # Interleaved: partition 2 gets 0, 3, 6, ...; each with a key hashing elsewhere.
                await producer.send_and_wait(topic_name, b"%d" % i, key=b"k%d" % i, partition=i % 3)
        finally:
            await producer.stop()
        consumer = aiokafka.AIOKafkaConsumer(bootstrap_servers=kafka_door.bootstrap, fetch_max_wait_ms=50)
        await consumer.start()
        got: dict[int, list[bytes]] = {}
        try:
            consumer.assign([aiokafka.TopicPartition(topic_name, p) for p in range(3)])
            for p in range(3):
                consumer.seek(aiokafka.TopicPartition(topic_name, p), 0)
            deadline = time.monotonic() + DEADLINE_SECONDS
            while sum(len(v) for v in got.values()) < 90 and time.monotonic() < deadline:
                batches = await consumer.getmany(timeout_ms=200)
                for where, records in batches.items():
                    got.setdefault(where.partition, []).extend(r.value for r in records)
        finally:
            await consumer.stop()
        return got

    got = asyncio.run(scenario())
    for partition in range(3):
        assert got[partition] == [b"%d" % i for i in range(90) if i % 3 == partition]


def _thirty_on_three(door: Any, topic: str) -> dict[int, list[tuple[int, bytes]]]:
    """The issue's case: 30 records on 3 partitions, unevenly."""
    create(door, topic, 3)
    producer = Producer({"bootstrap.servers": door.bootstrap, **FAST})
    reports: dict[int, list[tuple[int, bytes]]] = {}

    def report(error: Any, message: Any) -> None:
        assert error is None
        reports.setdefault(message.partition(), []).append((message.offset(), message.value()))

    for i in range(30):
        producer.produce(topic, value=b"%d" % i, partition=(0, 0, 1, 2, 0)[i % 5], on_delivery=report)
    assert producer.flush(DEADLINE_SECONDS) == 0
    return reports


def test_lag_reaches_zero_in_librdkafka_and_describe_group(kafka_door: Any, topic_name: str) -> None:
    reports = _thirty_on_three(kafka_door, topic_name)
    group = "lag-" + topic_name
    consumer = Consumer(
        {"bootstrap.servers": kafka_door.bootstrap, "group.id": group, "enable.auto.commit": False, **FAST}
    )
    consumer.assign([TopicPartition(topic_name, p, 0) for p in range(3)])
    seen: list[Any] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(seen) < 30 and time.monotonic() < deadline:
        message = consumer.poll(0.1)
        if message is not None and not message.error():
            seen.append(message)
    assert len(seen) == 30
    last = {p: max(offset for offset, _ in rows) for p, rows in reports.items()}
    consumer.commit(
        offsets=[TopicPartition(topic_name, p, last[p] + 1) for p in range(3)], asynchronous=False
    )
    for partition in range(3):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, partition), timeout=10)
        (committed,) = consumer.committed([TopicPartition(topic_name, partition)], timeout=10)
        assert high == committed.offset == last[partition] + 1  # lag 0
        assert low == min(offset for offset, _ in reports[partition])
    consumer.close()
    info = kafka_door.node.directory.describe_group(group)
    assert info is not None and info.lag == 0
    assert [(p.partition, p.lag) for p in info.topics[0].partitions] == [(0, 0), (1, 0), (2, 0)]


def test_lag_reaches_zero_in_kafka_python_and_aiokafka(kafka_door: Any, topic_name: str) -> None:
    kafka = pytest.importorskip("kafka")
    aiokafka = pytest.importorskip("aiokafka")
    reports = _thirty_on_three(kafka_door, topic_name)
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=kafka_door.bootstrap, group_id="kp-" + topic_name, enable_auto_commit=False
    )
    wanted = [kafka.TopicPartition(topic_name, p) for p in range(3)]
    consumer.assign(wanted)
    consumer.seek_to_beginning()
    read = 0
    deadline = time.monotonic() + DEADLINE_SECONDS
    while read < 30 and time.monotonic() < deadline:
        read += sum(len(records) for records in consumer.poll(timeout_ms=100).values())
    assert read == 30
    consumer.commit()  # the positions: each partition's last record + 1
    ends = consumer.end_offsets(wanted)
    assert all(consumer.committed(where) == ends[where] for where in wanted)
    assert {w.partition: ends[w] for w in wanted} == {p: max(o for o, _ in r) + 1 for p, r in reports.items()}
    consumer.close()

    async def aiokafka_lag() -> list[int]:
        reader = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=kafka_door.bootstrap, group_id="kp-" + topic_name, enable_auto_commit=False
        )
        await reader.start()
        try:
            where = [aiokafka.TopicPartition(topic_name, p) for p in range(3)]
            ends = await reader.end_offsets(where)
            return [ends[w] - (await reader.committed(w)) for w in where]
        finally:
            await reader.stop()

    assert asyncio.run(aiokafka_lag()) == [0, 0, 0]


def test_timestamps_are_looked_up_per_partition(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, 2)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    base = 1_700_000_000_000
    # Partition 0 gets the odd offsets' stamps later than partition 1's; 1 holds the largest.
    plan = [(0, base + 10), (1, base + 20), (0, base + 30), (1, base + 900), (0, base + 40), (1, base + 50)]
    for i, (partition, stamp) in enumerate(plan):
        producer.produce(topic_name, value=b"%d" % i, partition=partition, timestamp=stamp)
        producer.flush(10)  # one at a time: offsets i
    consumer = Consumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": "ts-" + topic_name})
    found = consumer.offsets_for_times(
        [TopicPartition(topic_name, 0, base + 15), TopicPartition(topic_name, 1, base + 15)], timeout=10
    )
    assert [(f.partition, f.offset) for f in found] == [(0, 2), (1, 1)]
    beyond = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 100)], timeout=10)
    assert beyond[0].offset == -1  # partition 1's later records do not count
    consumer.close()
    admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    requests = {TopicPartition(topic_name, p): OffsetSpec.max_timestamp() for p in range(2)}
    answers = {tp.partition: future.result(10) for tp, future in admin.list_offsets(requests).items()}
    assert (answers[0].offset, answers[0].timestamp) == (4, base + 40)
    assert (answers[1].offset, answers[1].timestamp) == (3, base + 900)


def test_a_three_partition_group_reads_everything_once(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, 3)
    # librdkafka's default partitioner (consistent_random: CRC32, not murmur2).
    delivered = delivered_by_librdkafka(kafka_door, topic_name, [(b"k%d" % i, b"%d" % i) for i in range(300)])
    where = {value: partition for partition, rows in delivered.items() for _, value in rows}
    group = "three-" + topic_name
    consumers = [
        Consumer(
            {
                "bootstrap.servers": kafka_door.bootstrap,
                "group.id": group,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 100,
                **FAST,
            }
        )
        for _ in range(3)
    ]
    for consumer in consumers:
        consumer.subscribe([topic_name])
    seen: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(seen) < 300 and time.monotonic() < deadline:
        for consumer in consumers:
            message = consumer.poll(0.05)
            if message is not None and not message.error():
                seen.append((message.partition(), message.value()))
    for consumer in consumers:
        consumer.close()
    assert sorted(value for _, value in seen) == sorted(where)  # each exactly once
    assert all(where[value] == partition for partition, value in seen)


def test_records_without_a_stored_partition_keep_the_key_hash(
    tmp_path: os.PathLike[str], topic_name: str
) -> None:
    """A data directory from before partitions were kept: its records have none stored,
    and its topics.json entry has a count and no history. They are served exactly as
    they were: by murmur2(key) (keyless: offset) modulo that count."""
    data_dir = os.path.join(os.fspath(tmp_path), "data")
    node = Node.open(data_dir, fsync=False)
    node.engine.create_topic(topic_name)
    keys = [b"user-%d" % i if i % 4 else None for i in range(120)]
    node.engine.append(topic_name, [{"key": k, "value": b"%d" % i} for i, k in enumerate(keys)])
    incarnation = node.engine.describe_topic(topic_name).incarnation
    listener = start_kafka_listener(node, "127.0.0.1", 0)
    store = listener.listener.broker.store
    store._topics_document.save({topic_name: {"incarnation": incarnation, "kafka_partitions": 3}})
    listener.close()
    node.close()
    node = Node.open(data_dir, fsync=False)
    listener = start_kafka_listener(node, "127.0.0.1", 0)
    try:

        class Door:
            bootstrap = listener.bootstrap

        hashes = murmur2(pa.array(keys, pa.binary()))
        for partition in range(3):
            expected = [
                (i, b"%d" % i)
                for i, k in enumerate(keys)
                if (k is not None and (int(hashes[i]) & 0x7FFFFFFF) % 3 == partition)
                or (k is None and i % 3 == partition)
            ]
            assert read_partition(Door, topic_name, partition, len(expected)) == expected
    finally:
        listener.close()
        node.close()


def test_adding_partitions_moves_no_record(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, 2)
    keys = [b"key-%d" % i for i in range(100)]
    kafka_door.engine.append(topic_name, [{"key": k, "value": b"old"} for k in keys])
    admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    admin.create_partitions([NewPartitions(topic_name, 4)])[topic_name].result(10)
    kafka_door.engine.append(topic_name, [{"key": k, "value": b"new"} for k in keys])
    hashes = (murmur2(pa.array(keys, pa.binary())) & 0x7FFFFFFF).astype(int)
    for partition in range(4):
        expected = [(i, b"old") for i in range(100) if hashes[i] % 2 == partition]
        expected += [(100 + i, b"new") for i in range(100) if hashes[i] % 4 == partition]
        assert read_partition(kafka_door, topic_name, partition, len(expected)) == expected


def test_auto_created_topics_take_the_default_count_or_are_refused(tmp_path: os.PathLike[str]) -> None:
    node = Node.open(os.path.join(os.fspath(tmp_path), "data"), fsync=False)
    four = start_kafka_listener(node, "127.0.0.1", 0, default_partitions=4)
    try:
        producer = Producer({"bootstrap.servers": four.bootstrap, **FAST})
        producer.produce("auto.made", value=b"x")
        assert producer.flush(DEADLINE_SECONDS) == 0
        metadata = AdminClient({"bootstrap.servers": four.bootstrap}).list_topics("auto.made", timeout=10)
        assert len(metadata.topics["auto.made"].partitions) == 4
    finally:
        four.close()
    off = start_kafka_listener(node, "127.0.0.1", 0, auto_create_topics=False)
    try:
        admin = AdminClient({"bootstrap.servers": off.bootstrap})
        listed = admin.list_topics("never.made", timeout=10)
        assert listed.topics["never.made"].error is not None
        assert "never.made" not in node.engine.list_topics()
    finally:
        off.close()
        node.close()
