"""Compacted topics through the Kafka door with kafka-python, aiokafka and kcat.

Goal: as with librdkafka (test_kafka_compaction.py), each Python client creates a topic
with ``cleanup.policy=compact`` through its admin client, produces keyed rounds and a
tombstone, and, after a compaction round, reads the topic from its start to its end
across the gaps compaction left: offsets rising, fewer records than were written, each
key's latest value, the tombstoned key's value null (or the key gone).

Method: the in-process listener of conftest; the round is run with
``Engine.compact(force=True)``; 64 KiB segments so that most of the log is in closed
segments a round may rewrite. Reads stop at the topic's next offset, known from the
engine, never on a timer.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import warnings
from typing import Any

import pytest

ROUNDS, KEYS, PADDING = 60, 20, 200
SEGMENT = {"cleanup.policy": "compact", "segment.bytes": "65536"}
READ_SECONDS_MAX = 30.0


def value(round_number: int) -> bytes:
    return b"%d:" % round_number + b"." * PADDING


def check(door: Any, topic: str, records: list[tuple[int, bytes | None, bytes | None]]) -> None:
    offsets = [offset for offset, _, _ in records]
    assert offsets == sorted(offsets) and len(offsets) < ROUNDS * KEYS + 1  # gaps skipped
    assert offsets[-1] == door.engine.describe_topic(topic).next_offset - 1
    latest = {key: None if data is None else data.split(b":")[0] for _, key, data in records}
    assert latest.pop(b"k0", None) is None  # the tombstone, or nothing once it is gone
    assert latest == {b"k%d" % k: b"%d" % (ROUNDS - 1) for k in range(1, KEYS)}


@pytest.mark.compat("kafka-python", "compaction")
def test_kafka_python(kafka_door: Any, topic_name: str) -> None:
    kafka = pytest.importorskip("kafka")
    with warnings.catch_warnings():  # kafka-python's admin imports a deprecated module
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.admin import KafkaAdminClient, NewTopic
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap)
    try:
        admin.create_topics([NewTopic(topic_name, 1, 1, topic_configs=SEGMENT)])
    finally:
        admin.close()
    producer = kafka.KafkaProducer(bootstrap_servers=kafka_door.bootstrap, linger_ms=5)
    for round_number in range(ROUNDS):
        for key in range(KEYS):
            producer.send(topic_name, key=b"k%d" % key, value=value(round_number))
        producer.flush(10)
    producer.send(topic_name, key=b"k0", value=None)
    producer.flush(10)
    producer.close()
    assert kafka_door.engine.compact(force=True)[topic_name].records_removed > 0
    end = kafka_door.engine.describe_topic(topic_name).next_offset
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=kafka_door.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100
    )
    consumer.assign([kafka.TopicPartition(topic_name, 0)])
    records: list[tuple[int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + READ_SECONDS_MAX
    try:
        while (not records or records[-1][0] < end - 1) and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=100).values():
                records.extend((r.offset, r.key, r.value) for r in batch)
    finally:
        consumer.close()
    check(kafka_door, topic_name, records)


@pytest.mark.compat("aiokafka", "compaction")
def test_aiokafka(kafka_door: Any, topic_name: str) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    async def produce() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_door.bootstrap)
        await admin.start()
        try:
            await admin.create_topics(
                [NewTopic(topic_name, num_partitions=1, replication_factor=1, topic_configs=SEGMENT)]
            )
        finally:
            await admin.close()
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=kafka_door.bootstrap, linger_ms=5)
        await producer.start()
        try:
            for round_number in range(ROUNDS):
                for key in range(KEYS):
                    await producer.send(topic_name, key=b"k%d" % key, value=value(round_number))
                await producer.flush()
            await producer.send_and_wait(topic_name, key=b"k0", value=None)
        finally:
            await producer.stop()

    async def consume(end: int) -> list[tuple[int, bytes | None, bytes | None]]:
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=kafka_door.bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=100
        )
        await consumer.start()
        records: list[tuple[int, bytes | None, bytes | None]] = []
        try:
            consumer.assign([aiokafka.TopicPartition(topic_name, 0)])
            deadline = time.monotonic() + READ_SECONDS_MAX
            while (not records or records[-1][0] < end - 1) and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    records.extend((r.offset, r.key, r.value) for r in batch)
        finally:
            await consumer.stop()
        return records

    asyncio.run(produce())
    assert kafka_door.engine.compact(force=True)[topic_name].records_removed > 0
    end = kafka_door.engine.describe_topic(topic_name).next_offset
    check(kafka_door, topic_name, asyncio.run(consume(end)))


@pytest.mark.compat("kcat", "compaction")
def test_kcat(kafka_door: Any, topic_name: str) -> None:
    """kcat creates no topic (it has no admin commands): the compacted topic is created
    with librdkafka's admin client; kcat produces the rounds from stdin (``-K``) and the
    tombstone (``-Z``: an empty value is sent as null), and reads the compacted topic
    back from its start to its end (``-e``), printing null as ``NULL``."""
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    if kcat is None:
        pytest.skip("kcat is not installed (apt-get install kcat)")
    admin = pytest.importorskip("confluent_kafka.admin")
    client = admin.AdminClient({"bootstrap.servers": kafka_door.bootstrap})
    client.create_topics([admin.NewTopic(topic_name, 1, 1, config=SEGMENT)])[topic_name].result(30)

    def run(*args: str, stdin: bytes | None = None) -> bytes:
        done = subprocess.run(
            [kcat, "-b", kafka_door.bootstrap, *args],
            input=stdin,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout

    lines = b"".join(b"k%d|%s\n" % (key, value(r)) for r in range(ROUNDS) for key in range(KEYS))
    run("-P", "-t", topic_name, "-K", "|", stdin=lines)
    run("-P", "-t", topic_name, "-K", "|", "-Z", stdin=b"k0|\n")
    assert kafka_door.engine.compact(force=True)[topic_name].records_removed > 0
    out = run("-C", "-t", topic_name, "-o", "beginning", "-e", "-Z", "-f", "%o|%k|%s\n")
    records: list[tuple[int, bytes | None, bytes | None]] = []
    for line in out.splitlines():
        offset, key, data = line.split(b"|", 2)
        records.append((int(offset), key, None if data == b"NULL" else data))
    check(kafka_door, topic_name, records)
