"""Kafka transactions through the door with confluent-kafka's transactional producer.

Goal: what librdkafka's transactions promise holds against Odradek (decision 0016):
a committed transaction's records appear in every topic it wrote, an aborted one's
nowhere (read_committed, read_uncommitted, the native read); consume-transform-produce
with ``send_offsets_to_transaction`` delivers each input exactly once to the output,
also when the server restarts in the middle of a transaction; a second producer with
the same transactional.id fences the first; a transaction left open past its timeout is
aborted and its producer fenced.

Method: the in-process door (fsync off) and real confluent-kafka producers and
consumers; what topics hold is read back through the engine (the native read) and
through Kafka consumers of both isolation levels, which read until a marker record
committed after the transaction under test, so no wait depends on time.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from wire import Wire, door_settled  # noqa: E402

from odradek.protocols.kafka.codec import messages_txn as t  # noqa: E402
from odradek.protocols.kafka.codec.api import ApiKey  # noqa: E402

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}
CONSUMER_FAST = {
    **FAST,
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 100,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
}
TIMEOUT = 30.0


def transactional(door: Any, transactional_id: str, **settings: Any) -> Producer:
    producer = Producer(
        {
            "bootstrap.servers": door.bootstrap,
            "transactional.id": transactional_id,
            "linger.ms": 5,
            **FAST,
            **settings,
        }
    )
    producer.init_transactions(TIMEOUT)
    return producer


def native(door: Any, topic: str) -> list[bytes]:
    """Every value of the topic, through the engine, once the door's commits are applied."""
    door_settled(door)
    end = door.engine.resolve_start(topic, "latest")
    values: list[bytes] = []
    offset = 0
    while offset < end:
        batches = door.engine.fetch(topic, offset)
        for batch in batches:
            values.extend(batch.column("value").to_pylist())
            offset = batch.column("offset")[-1].as_py() + 1
    return values


def consume_until(door: Any, topic: str, isolation: str, marker: bytes) -> list[bytes]:
    """The topic's values, read by a consumer of ``isolation`` until ``marker`` shows."""
    consumer = Consumer(
        {
            "bootstrap.servers": door.bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex[:8]}",
            "isolation.level": isolation,
            **CONSUMER_FAST,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while marker not in values and time.monotonic() < deadline:
            message = consumer.poll(0.1)
            if message is None:
                continue
            if message.error():
                raise KafkaException(message.error())
            values.append(message.value())
    finally:
        consumer.close()
    assert marker in values, f"the marker never arrived; read {values!r}"
    return values


def commit_marker(door: Any, topics: list[str]) -> bytes:
    """Commit a transaction of one marker record per topic; the marker."""
    marker = f"marker-{uuid.uuid4().hex[:6]}".encode()
    producer = transactional(door, f"marker-{uuid.uuid4().hex[:6]}")
    producer.begin_transaction()
    for topic in topics:
        producer.produce(topic, value=marker)
    producer.commit_transaction(TIMEOUT)
    return marker


@pytest.mark.compat("confluent-kafka", "transactions")
def test_commit_shows_in_both_topics_and_abort_nowhere(kafka_door: Any, topic_name: str) -> None:
    first, second = topic_name + ".a", topic_name + ".b"
    for topic in (first, second):
        kafka_door.engine.create_topic(topic)
    producer = transactional(kafka_door, "orders-writer")
    producer.begin_transaction()
    for i in range(20):
        producer.produce(first, key=f"k{i % 3}".encode(), value=f"a{i}".encode())
        producer.produce(second, value=f"b{i}".encode())
    producer.flush(TIMEOUT)
    assert native(kafka_door, first) == [] and native(kafka_door, second) == []  # staged, not visible
    producer.commit_transaction(TIMEOUT)
    assert native(kafka_door, first) == [f"a{i}".encode() for i in range(20)]
    assert native(kafka_door, second) == [f"b{i}".encode() for i in range(20)]

    producer.begin_transaction()
    for _ in range(10):
        producer.produce(first, value=b"aborted")
        producer.produce(second, value=b"aborted")
    producer.flush(TIMEOUT)
    producer.abort_transaction(TIMEOUT)
    marker = commit_marker(kafka_door, [first, second])
    for topic, prefix in ((first, "a"), (second, "b")):
        committed = [f"{prefix}{i}".encode() for i in range(20)] + [marker]
        assert native(kafka_door, topic) == committed
        assert consume_until(kafka_door, topic, "read_committed", marker) == committed
        assert consume_until(kafka_door, topic, "read_uncommitted", marker) == committed


def test_consume_transform_produce_is_exactly_once_across_a_restart(kafka_door: Any, topic_name: str) -> None:
    source, sink, group = topic_name + ".in", topic_name + ".out", "transformer"
    kafka_door.engine.create_topic(source)
    kafka_door.engine.create_topic(sink)
    kafka_door.engine.append(source, [{"value": f"v{i}".encode()} for i in range(60)])

    def run(batches: int | None, leave_open: bool) -> None:
        """Process ``batches`` transactions of 10 inputs (None: all that is left); with
        ``leave_open`` a further transaction is produced and flushed but not committed."""
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_door.bootstrap,
                "group.id": group,
                "isolation.level": "read_committed",
                **CONSUMER_FAST,
            }
        )
        consumer.subscribe([source])
        producer = transactional(kafka_door, "transformer-1")
        done = 0
        deadline = time.monotonic() + TIMEOUT
        try:
            while time.monotonic() < deadline:
                messages = consumer.consume(10, 0.5)
                if not messages:
                    if batches is None and kafka_door.engine.resolve_start(sink, "latest") >= 60:
                        return
                    continue
                producer.begin_transaction()
                for message in messages:
                    assert not message.error()
                    producer.produce(sink, value=message.value().upper())
                if leave_open and done == batches:
                    producer.flush(TIMEOUT)
                    return  # the restart comes with this transaction open
                positions = consumer.position(consumer.assignment())
                producer.send_offsets_to_transaction(positions, consumer.consumer_group_metadata(), TIMEOUT)
                producer.commit_transaction(TIMEOUT)
                done += 1
                if not leave_open and batches is not None and done == batches:
                    return
        finally:
            consumer.close()
        raise AssertionError("the transformer did not finish in time")

    run(3, leave_open=True)
    kafka_door.reopen()  # the open transaction is aborted by the restart
    run(None, leave_open=False)
    assert sorted(native(kafka_door, sink)) == sorted(f"V{i}".encode() for i in range(60))


def test_a_second_producer_fences_the_first(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    zombie = transactional(kafka_door, "fenced-writer")
    zombie.begin_transaction()
    zombie.produce(topic_name, value=b"zombie")
    zombie.flush(TIMEOUT)
    successor = transactional(kafka_door, "fenced-writer")  # aborts the zombie's transaction
    with pytest.raises(KafkaException) as refused:
        zombie.commit_transaction(TIMEOUT)
    assert refused.value.args[0].fatal(), refused.value
    successor.begin_transaction()
    successor.produce(topic_name, value=b"successor")
    successor.commit_transaction(TIMEOUT)
    assert native(kafka_door, topic_name) == [b"successor"]


def test_a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced(
    kafka_door: Any, topic_name: str
) -> None:
    kafka_door.engine.create_topic(topic_name)
    producer = transactional(
        kafka_door, "slow-writer", **{"transaction.timeout.ms": 1000, "message.timeout.ms": 1000}
    )
    producer.begin_transaction()
    producer.produce(topic_name, value=b"late")
    producer.flush(TIMEOUT)
    wire = Wire(kafka_door.listener.port)
    try:
        deadline = time.monotonic() + TIMEOUT
        state = ""
        while state != "CompleteAbort" and time.monotonic() < deadline:
            described = wire.call(
                ApiKey.DESCRIBE_TRANSACTIONS,
                0,
                t.DescribeTransactionsRequest(transactional_ids=("slow-writer",)),
            )
            state = described.transaction_states[0].transaction_state
            time.sleep(0.05)
        assert state == "CompleteAbort"
    finally:
        wire.close()
    with pytest.raises(KafkaException):
        producer.commit_transaction(TIMEOUT)
    assert native(kafka_door, topic_name) == []
