"""Broker behaviour at the protocol level, with a minimal client built from the codec.

Goal: the paths real clients rarely show are right: an idempotent producer's retry is
answered with the original offset and written once, a sequence gap is refused, acks=0
gets no answer but is written, pipelined produces are answered in order, a fetch waits
for min_bytes until max_wait and wakes as soon as data arrives, AlterConfigs replaces
a topic's settings, unknown topics and partitions get their error codes.

Method: raw sockets against the in-process listener; requests encoded and responses
decoded with the door's own codec (whose bytes are checked against Kafka's
definitions in test_kafka_codec.py).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pyarrow as pa
from wire import Wire

from odradek.protocols.kafka.codec import messages_admin as admin
from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import decode_batches, encode_batch
from odradek.records import STORED_SCHEMA

PRODUCE_VERSION = 9
FETCH_VERSION = 12


def batch(values: list[bytes], producer_id: int = -1, sequence: int = -1) -> bytes:
    rows = [
        {
            "offset": i,
            "timestamp": 1_000_000 * (i + 1),
            "key": b"k",
            "value": v,
            "headers": None,
            "version": None,
        }
        for i, v in enumerate(values)
    ]
    return encode_batch(
        pa.RecordBatch.from_pylist(rows, schema=STORED_SCHEMA),
        base_offset=0,
        producer_id=producer_id,
        producer_epoch=0,
        base_sequence=sequence,
    )


def produce(topic: str, records: bytes, acks: int = -1, partition: int = 0) -> m.ProduceRequest:
    return m.ProduceRequest(
        acks=acks,
        timeout_ms=5000,
        topic_data=(
            m.TopicProduceData(
                name=topic, partition_data=(m.PartitionProduceData(index=partition, records=records),)
            ),
        ),
    )


def partition_result(response: m.ProduceResponse) -> m.PartitionProduceResponse:
    return response.responses[0].partition_responses[0]


def test_idempotent_retries_are_written_once_and_gaps_refused(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = Wire(kafka_door.listener.port)
    init = wire.call(ApiKey.INIT_PRODUCER_ID, 4, m.InitProducerIdRequest(transaction_timeout_ms=1000))
    assert init.error_code == 0 and init.producer_id >= 1
    pid = init.producer_id
    first = partition_result(
        wire.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, batch([b"a", b"b"], pid, 0)))
    )
    second = partition_result(
        wire.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, batch([b"c"], pid, 2)))
    )
    retry = partition_result(
        wire.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, batch([b"a", b"b"], pid, 0)))
    )
    assert (first.error_code, first.base_offset) == (0, 0)
    assert (second.error_code, second.base_offset) == (0, 2)
    assert (retry.error_code, retry.base_offset) == (0, 0)
    gap = partition_result(
        wire.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, batch([b"d"], pid, 9)))
    )
    assert gap.error_code == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    assert kafka_door.engine.describe_topic(topic_name).next_offset == 3
    again = wire.call(ApiKey.INIT_PRODUCER_ID, 4, m.InitProducerIdRequest(transaction_timeout_ms=1000))
    assert again.producer_id != pid
    bumped = wire.call(
        ApiKey.INIT_PRODUCER_ID,
        4,
        m.InitProducerIdRequest(transaction_timeout_ms=1000, producer_id=pid, producer_epoch=0),
    )
    assert (bumped.producer_id, bumped.producer_epoch) == (pid, 1)
    wire.close()


def test_acks_zero_and_pipelined_produces(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = Wire(kafka_door.listener.port)
    wire.send(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, batch([b"quiet"]), acks=0))
    sent = [
        wire.send(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, batch([b"x"] * 3))) for _ in range(6)
    ]
    answers = [wire.receive(ApiKey.PRODUCE, PRODUCE_VERSION) for _ in sent]
    assert [correlation for correlation, _ in answers] == sent  # in order, none for acks=0
    assert [partition_result(r).base_offset for _, r in answers] == [1, 4, 7, 10, 13, 16]
    assert kafka_door.engine.describe_topic(topic_name).next_offset == 19
    wire.close()


def test_fetch_waits_for_min_bytes_and_wakes_on_arrival(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = Wire(kafka_door.listener.port)
    request = m.FetchRequest(
        max_wait_ms=400,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=(
            m.FetchTopic(
                topic=topic_name,
                partitions=(m.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20),),
            ),
        ),
    )
    started = time.monotonic()
    empty = wire.call(ApiKey.FETCH, FETCH_VERSION, request)
    assert time.monotonic() - started >= 0.35  # waited for max_wait
    assert empty.responses[0].partitions[0].records in (None, b"")
    timer = threading.Timer(0.1, lambda: kafka_door.engine.append(topic_name, [{"value": b"late"}]))
    timer.start()
    started = time.monotonic()
    woken = wire.call(ApiKey.FETCH, FETCH_VERSION, dataclasses.replace(request, max_wait_ms=5000))
    elapsed = time.monotonic() - started
    timer.join()
    assert elapsed < 2.0, "a fetch wakes when data arrives through another door within the poll interval"
    data = woken.responses[0].partitions[0]
    assert data.high_watermark == 1
    (decoded,) = decode_batches(data.records or b"")
    assert decoded.records.column("value").to_pylist() == [b"late"]
    wire.close()


def test_unknown_topics_partitions_and_offsets(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = Wire(kafka_door.listener.port)
    missing = partition_result(
        wire.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce("no.such.topic", batch([b"x"])))
    )
    assert missing.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    beyond = partition_result(
        wire.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, batch([b"x"]), partition=3))
    )
    assert beyond.error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    corrupt = partition_result(wire.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic_name, b"\x00" * 70)))
    assert corrupt.error_code == ErrorCode.CORRUPT_MESSAGE
    fetch = wire.call(
        ApiKey.FETCH,
        FETCH_VERSION,
        m.FetchRequest(
            max_wait_ms=0,
            min_bytes=0,
            topics=(
                m.FetchTopic(
                    topic=topic_name,
                    partitions=(m.FetchPartition(partition=0, fetch_offset=99, partition_max_bytes=100),),
                ),
            ),
        ),
    )
    assert fetch.responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE
    metadata = wire.call(
        ApiKey.METADATA,
        12,
        m.MetadataRequest(topics=(m.MetadataRequestTopic(name="bad..name"),), allow_auto_topic_creation=True),
    )
    assert metadata.topics[0].error_code == ErrorCode.INVALID_TOPIC_EXCEPTION
    wire.close()


def test_alter_configs_replaces_topic_settings(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name, retention="1h", retention_bytes=10_000_000)
    wire = Wire(kafka_door.listener.port)
    response = wire.call(
        ApiKey.ALTER_CONFIGS,
        1,
        admin.AlterConfigsRequest(
            resources=(
                admin.AlterConfigsResource(
                    resource_type=2,
                    resource_name=topic_name,
                    configs=(
                        admin.AlterableConfig(name="segment.bytes", value="1048576"),
                        admin.AlterableConfig(name="kafka_partitions", value="3"),
                    ),
                ),
            )
        ),
    )
    assert response.responses[0].error_code == 0
    config = kafka_door.engine.describe_topic(topic_name).config
    assert config["segment_bytes"] == 1048576
    assert config["retention_seconds"] == 7 * 86400 and config["retention_bytes"] is None  # back to defaults
    described = wire.call(
        ApiKey.DESCRIBE_CONFIGS,
        4,
        admin.DescribeConfigsRequest(
            resources=(
                admin.DescribeConfigsResource(
                    resource_type=2, resource_name=topic_name, configuration_keys=("kafka_partitions",)
                ),
            )
        ),
    )
    assert [(c.name, c.value) for c in described.results[0].configs] == [("kafka_partitions", "3")]
    refused = wire.call(
        ApiKey.ALTER_CONFIGS,
        1,
        admin.AlterConfigsRequest(
            resources=(
                admin.AlterConfigsResource(
                    resource_type=2,
                    resource_name=topic_name,
                    configs=(admin.AlterableConfig(name="cleanup.policy", value="snapshot"),),
                ),
            )
        ),
    )
    assert refused.responses[0].error_code == ErrorCode.INVALID_CONFIG
    wire.close()
