"""Kafka transactions with aiokafka and kafka-python.

Goal: the two Python clients besides librdkafka run transactions against the door:
a committed transaction's records reach both its topics, an aborted one's neither, and
offsets sent with the transaction are the group's committed offsets once it commits
(not before, and not at all when it aborts).

Method: the in-process door; each client produces a committed and an aborted
transaction to two topics, with offsets of a group sent in each; the topics are read
back through the engine and the group's offsets through confluent-kafka's
``committed``.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from wire import door_settled

confluent_kafka = pytest.importorskip("confluent_kafka")

TIMEOUT = 30.0


def native(door: Any, topic: str) -> list[bytes]:
    door_settled(door)  # commits are applied after EndTxn is answered
    batches = door.engine.fetch(topic, 0)
    return [value for batch in batches for value in batch.column("value").to_pylist()]


def committed(door: Any, group: str, topic: str) -> int:
    consumer = confluent_kafka.Consumer({"bootstrap.servers": door.bootstrap, "group.id": group})
    try:
        (position,) = consumer.committed([confluent_kafka.TopicPartition(topic, 0)], timeout=TIMEOUT)
        offset: int = position.offset
        return offset
    finally:
        consumer.close()


def topics(door: Any, topic_name: str) -> tuple[str, str, str]:
    names = (topic_name + ".in", topic_name + ".a", topic_name + ".b")
    for name in names:
        door.engine.create_topic(name)
    door.engine.append(names[0], [{"value": b"x"} for _ in range(10)])
    return names


@pytest.mark.compat("aiokafka", "transactions")
def test_aiokafka_transactions(kafka_door: Any, topic_name: str) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    source, first, second = topics(kafka_door, topic_name)
    group = f"aio-{uuid.uuid4().hex[:6]}"
    partition = aiokafka.TopicPartition(source, 0)

    async def run() -> None:
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=kafka_door.bootstrap, transactional_id="aio-writer", request_timeout_ms=10_000
        )
        await producer.start()
        try:
            async with producer.transaction():
                await producer.send_and_wait(first, b"kept-a")
                await producer.send_and_wait(second, b"kept-b")
                await producer.send_offsets_to_transaction({partition: 4}, group)
            await producer.begin_transaction()
            await producer.send_and_wait(first, b"dropped")
            await producer.send_offsets_to_transaction({partition: 9}, group)
            await producer.abort_transaction()
        finally:
            await producer.stop()

    asyncio.run(asyncio.wait_for(run(), TIMEOUT))
    assert native(kafka_door, first) == [b"kept-a"]
    assert native(kafka_door, second) == [b"kept-b"]
    assert committed(kafka_door, group, source) == 4


@pytest.mark.compat("kafka-python", "transactions")
def test_kafka_python_transactions(kafka_door: Any, topic_name: str) -> None:
    kafka = pytest.importorskip("kafka")
    from kafka.structs import OffsetAndMetadata, TopicPartition

    source, first, second = topics(kafka_door, topic_name)
    group = f"kp-{uuid.uuid4().hex[:6]}"
    producer = kafka.KafkaProducer(bootstrap_servers=kafka_door.bootstrap, transactional_id="kp-writer")
    try:
        producer.init_transactions()
        producer.begin_transaction()
        producer.send(first, b"kept-a")
        producer.send(second, b"kept-b")
        producer.send_offsets_to_transaction({TopicPartition(source, 0): OffsetAndMetadata(6, "", -1)}, group)
        producer.commit_transaction()
        producer.begin_transaction()
        producer.send(first, b"dropped")
        producer.flush()
        producer.abort_transaction()
    finally:
        producer.close(timeout=TIMEOUT)
    assert native(kafka_door, first) == [b"kept-a"]
    assert native(kafka_door, second) == [b"kept-b"]
    assert committed(kafka_door, group, source) == 6
