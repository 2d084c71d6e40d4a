"""aiokafka (asyncio client) against the Kafka door, unchanged.

Goal: aiokafka's producer (plain and idempotent), consumer groups with commits, and
admin client work against Odradek: records round-trip with keys, headers and
timestamps, a group of three shrinks to two when a member stops, committed offsets
come back, topics are created and deleted.

Method: a real in-process listener (its own loop on a thread, see conftest); each test
runs the client in ``asyncio.run`` against it over loopback, timers shortened.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

aiokafka = pytest.importorskip("aiokafka")
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition  # noqa: E402
from aiokafka.admin import AIOKafkaAdminClient, NewTopic  # noqa: E402
from aiokafka.structs import OffsetAndMetadata  # noqa: E402

GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 100,
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
    "fetch_max_wait_ms": 100,
    "metadata_max_age_ms": 1000,
}


async def create(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()


async def drain(consumers: list[AIOKafkaConsumer], want: set[bytes], timeout: float = 20.0) -> set[bytes]:
    """Values seen by any of ``consumers`` until all of ``want`` arrived."""
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while not want <= seen and time.monotonic() < deadline:
        for consumer in consumers:
            batches = await consumer.getmany(timeout_ms=50)
            for records in batches.values():
                seen.update(r.value for r in records)
    return seen


@pytest.mark.compat("aiokafka", "produce")
@pytest.mark.compat("aiokafka", "consume")
def test_produce_consume_idempotent_with_headers(kafka_door: Any, topic_name: str) -> None:
    async def scenario() -> list[Any]:
        await create(kafka_door.bootstrap, topic_name)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_door.bootstrap, enable_idempotence=True)
        await producer.start()
        try:
            for i in range(100):
                await producer.send(
                    topic_name,
                    key=f"k{i % 4}".encode(),
                    value=f"v{i}".encode(),
                    headers=[("i", str(i).encode())],
                    timestamp_ms=1_650_000_000_000 + i,
                )
            await producer.flush()
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topic_name, bootstrap_servers=kafka_door.bootstrap, group_id="a-" + topic_name, **GROUP
        )
        await consumer.start()
        records: list[Any] = []
        try:
            deadline = time.monotonic() + 20
            while len(records) < 100 and time.monotonic() < deadline:
                for batch in (await consumer.getmany(timeout_ms=100)).values():
                    records.extend(batch)
        finally:
            await consumer.stop()
        return records

    records = asyncio.run(scenario())
    assert [r.offset for r in records] == list(range(100))
    assert records[9].key == b"k1" and records[9].value == b"v9" and records[9].headers == (("i", b"9"),)
    assert records[9].timestamp == 1_650_000_000_009
    assert kafka_door.engine.key_version(topic_name, b"k1") == 25


@pytest.mark.compat("aiokafka", "groups")
def test_group_of_three_then_two_with_commits(kafka_door: Any, topic_name: str) -> None:
    group = "ag-" + topic_name

    async def scenario() -> None:
        await create(kafka_door.bootstrap, topic_name, partitions=3)
        producer = AIOKafkaProducer(bootstrap_servers=kafka_door.bootstrap)
        await producer.start()
        for i in range(90):
            await producer.send(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
        await producer.flush()
        consumers = [
            AIOKafkaConsumer(topic_name, bootstrap_servers=kafka_door.bootstrap, group_id=group, **GROUP)
            for _ in range(3)
        ]
        for consumer in consumers:
            await consumer.start()
        first = await drain(consumers, {str(i).encode() for i in range(90)})
        assert first == {str(i).encode() for i in range(90)}
        for consumer in consumers:
            await consumer.commit()
        await consumers[0].stop()  # leaves the group
        for i in range(90, 110):
            await producer.send(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
        await producer.flush()
        later = await drain(consumers[1:], {str(i).encode() for i in range(90, 110)})
        assert later == {str(i).encode() for i in range(90, 110)}
        assert sum(len(c.assignment()) for c in consumers[1:]) == 3
        partition = TopicPartition(topic_name, 1)
        if partition in consumers[1].assignment():
            owner = consumers[1]
        else:
            owner = consumers[2]
        await owner.commit({partition: OffsetAndMetadata(42, "meta-42")})
        assert await owner.committed(partition) == 42
        for consumer in consumers[1:]:
            await consumer.stop()
        await producer.stop()

    asyncio.run(scenario())


@pytest.mark.compat("aiokafka", "admin")
def test_admin_create_and_delete(kafka_door: Any, topic_name: str) -> None:
    async def scenario() -> list[str]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_door.bootstrap)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(topic_name, num_partitions=2, replication_factor=1)])
            listed = await admin.list_topics()
            assert topic_name in listed
            await admin.delete_topics([topic_name])
            return list(await admin.list_topics())
        finally:
            await admin.close()

    remaining = asyncio.run(scenario())
    assert topic_name not in remaining
    assert topic_name not in kafka_door.engine.list_topics()
