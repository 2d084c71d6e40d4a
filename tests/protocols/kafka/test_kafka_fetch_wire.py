"""Fetch answers as Kafka clients parse them: error partitions and the response budget.

Goal: (1) a partition answered with an error (OFFSET_OUT_OF_RANGE, an unknown
partition) carries an empty record set, never ``records = null``: librdkafka drops a
whole flexible Fetch response holding a null record set, so ``auto.offset.reset`` never
applied and a consumer assigned beyond the end read nothing, ever. (2) Fetch honours
``max_bytes`` across partitions: only the first non-empty partition may exceed the
budget; every further one returns no more than what is left of it (before, each still
returned a whole record, and librdkafka dropped the connection).

Method: a real in-process listener (conftest). librdkafka (confluent-kafka) for the
reset that must apply; raw requests with the door's own codec for the exact layout of
the answers (records ``b""`` versus ``None``; the byte sizes of every partition).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from wire import Wire

from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import decode_batches

FLEXIBLE_FETCH = 12  # the first flexible Fetch version (what kafka-python sends)
LATEST_FETCH = 16  # what librdkafka 2.x sends


def fetch_request(
    wanted: list[tuple[str, int, int]], max_bytes: int = 1 << 20, partition_max_bytes: int = 1 << 20
) -> m.FetchRequest:
    """A Fetch of (topic, partition, offset) in this order, answering at once."""
    topics: dict[str, list[m.FetchPartition]] = {}
    for topic, partition, offset in wanted:
        topics.setdefault(topic, []).append(
            m.FetchPartition(
                partition=partition, fetch_offset=offset, partition_max_bytes=partition_max_bytes
            )
        )
    return m.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=max_bytes,
        topics=tuple(m.FetchTopic(topic=t, partitions=tuple(p)) for t, p in topics.items()),
    )


@pytest.mark.parametrize("version", [FLEXIBLE_FETCH, LATEST_FETCH])
def test_error_partitions_carry_an_empty_record_set(kafka_door: Any, topic_name: str, version: int) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"x"}] * 3)
    wire = Wire(kafka_door.listener.port)
    request = fetch_request([(topic_name, 0, 99), (topic_name, 7, 0)])
    if version >= 13:  # by topic id
        metadata = wire.call(
            ApiKey.METADATA, 12, m.MetadataRequest(topics=(m.MetadataRequestTopic(name=topic_name),))
        )
        topic_id = metadata.topics[0].topic_id
        request = m.FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            max_bytes=1 << 20,
            topics=(m.FetchTopic(topic_id=topic_id, partitions=request.topics[0].partitions),),
        )
    answer = wire.call(ApiKey.FETCH, version, request)
    wire.close()
    beyond, unknown = answer.responses[0].partitions
    assert beyond.error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    assert unknown.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    assert beyond.records == b"" and unknown.records == b""  # not None (null)


def test_librdkafka_resets_an_out_of_range_position(kafka_door: Any, topic_name: str) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": str(i).encode()} for i in range(10)])
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": "reset-" + topic_name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 50,
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic_name, 0, 99)])
    values: list[bytes] = []
    deadline = time.monotonic() + 20
    while len(values) < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.1)
        if message is not None and not message.error():
            values.append(message.value())
    consumer.close()
    assert values == [str(i).encode() for i in range(10)]


def test_fetch_honours_max_bytes_across_partitions(kafka_door: Any, topic_name: str) -> None:
    names = [f"{topic_name}.{i}" for i in range(4)]
    for name in names:
        kafka_door.engine.create_topic(name)
        kafka_door.engine.append(name, [{"value": bytes(1000)} for _ in range(20)])
    wire = Wire(kafka_door.listener.port)
    budget = 2500
    answer = wire.call(
        ApiKey.FETCH, FLEXIBLE_FETCH, fetch_request([(n, 0, 0) for n in names], max_bytes=budget)
    )
    wire.close()
    sizes = [len(t.partitions[0].records or b"") for t in answer.responses]
    assert sizes[0] > 0
    assert sum(sizes) <= budget, sizes  # the first fits: nothing may exceed the budget
    for response in answer.responses:
        records = response.partitions[0].records or b""
        for batch in decode_batches(records):  # whole batches only: clients parse every byte
            assert batch.header.record_count == batch.records.num_rows


def test_only_the_first_non_empty_partition_may_exceed_max_bytes(kafka_door: Any, topic_name: str) -> None:
    names = [f"{topic_name}.{i}" for i in range(3)]
    for name in names:
        kafka_door.engine.create_topic(name)
    kafka_door.engine.append(names[1], [{"value": bytes(5000)}])  # names[0] stays empty
    kafka_door.engine.append(names[2], [{"value": bytes(5000)}])
    wire = Wire(kafka_door.listener.port)
    answer = wire.call(ApiKey.FETCH, FLEXIBLE_FETCH, fetch_request([(n, 0, 0) for n in names], max_bytes=100))
    wire.close()
    sizes = [len(t.partitions[0].records or b"") for t in answer.responses]
    assert sizes[0] == 0  # nothing there
    assert sizes[1] > 100  # the first non-empty partition: one record, whatever its size
    assert sizes[2] == 0  # the budget is spent


def test_partition_max_bytes_bounds_each_partition(kafka_door: Any, topic_name: str) -> None:
    names = [f"{topic_name}.{i}" for i in range(3)]
    for name in names:
        kafka_door.engine.create_topic(name)
        kafka_door.engine.append(name, [{"value": bytes(100)} for _ in range(100)])
    wire = Wire(kafka_door.listener.port)
    answer = wire.call(
        ApiKey.FETCH,
        FLEXIBLE_FETCH,
        fetch_request([(n, 0, 0) for n in names], max_bytes=1 << 20, partition_max_bytes=1000),
    )
    wire.close()
    for response in answer.responses:
        records = response.partitions[0].records or b""
        assert 0 < len(records) <= 1000
        (decoded,) = decode_batches(records)
        assert decoded.header.base_offset == 0 and decoded.records.num_rows >= 1
