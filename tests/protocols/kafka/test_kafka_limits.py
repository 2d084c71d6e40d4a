"""Bounds of a record through the Kafka door: long keys, many headers, and what a
client is told past a bound.

Goal: Kafka bounds a record by its bytes, not its key or its header count, so a 10 KiB
key and 200 headers produced by confluent-kafka are kept and read back whole through
both doors (a Kafka consumer and a native read). Where Odradek keeps a bound of its own
(``limits.key_bytes_max``, ``limits.header_count_max``) a record over it is refused
with an error clients do not retry (MESSAGE_TOO_LARGE, INVALID_RECORD, with the
broker's message), so the producer reports it at once instead of retrying until its
delivery timeout; a header count that is negative is still CORRUPT_MESSAGE.

Method: an in-process Kafka listener (conftest). confluent-kafka producers with a
delivery timeout far beyond the test's wait: a refusal a client retried could not be
reported before that wait ends, so reporting it within the wait shows it was not
retried. Raw Produce requests (wire.py) check the exact error code and message.
"""

from __future__ import annotations

import time
from typing import Any

import crc32c
import pyarrow as pa
import pytest
from wire import Wire

from odradek import limits
from odradek.protocols.kafka.codec import messages_data as d
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import encode_batch
from odradek.records import STORED_SCHEMA

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, KafkaError, Producer  # noqa: E402

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}
# A retried refusal could only be reported after this, far beyond WAIT_SECONDS.
PATIENT = {"message.timeout.ms": 300_000, "retry.backoff.ms": 100}
WAIT_SECONDS = 60.0


def deliver(door: Any, topic: str, **message: Any) -> Any:
    """Produce one message and return its delivery report's error (None: delivered)."""
    producer = Producer({"bootstrap.servers": door.bootstrap, **FAST, **PATIENT})
    reports: list[Any] = []
    producer.produce(topic, on_delivery=lambda error, _message: reports.append(error), **message)
    remaining = producer.flush(WAIT_SECONDS)
    assert remaining == 0 and len(reports) == 1, "the producer is still retrying the message"
    return reports[0]


def test_long_keys_and_many_headers_pass_both_doors(kafka_door: Any, topic_name: str) -> None:
    key = bytes(range(256)) * 40  # 10 KiB
    headers = [(f"h{index}", f"value {index}".encode()) for index in range(200)]
    assert deliver(kafka_door, topic_name, key=key, value=b"payload", headers=headers) is None
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": "g-" + topic_name,
            "auto.offset.reset": "earliest",
            **FAST,
        }
    )
    consumer.subscribe([topic_name])
    message = None
    deadline = time.monotonic() + WAIT_SECONDS
    while message is None and time.monotonic() < deadline:
        polled = consumer.poll(0.1)
        if polled is not None and polled.error() is None:
            message = polled
    consumer.close()
    assert message is not None
    assert message.key() == key and message.value() == b"payload"
    assert message.headers() == headers
    (batch,) = list(kafka_door.engine.read(topic_name, start="earliest", wait=0))
    record = batch.to_pylist()[0]
    assert record["key"] == key
    assert record["headers"] == headers
    assert kafka_door.engine.read_key(topic_name, key).column("version").to_pylist() == [1]


def test_a_key_over_the_bound_is_reported_at_once(kafka_door: Any, topic_name: str) -> None:
    error = deliver(kafka_door, topic_name, key=b"k" * (limits.key_bytes_max + 1), value=b"v")
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE
    assert not error.retriable()
    assert deliver(kafka_door, topic_name, key=b"k" * limits.key_bytes_max, value=b"v") is None


def test_headers_over_the_bound_are_reported_at_once(kafka_door: Any, topic_name: str) -> None:
    headers = [("h", b"")] * (limits.header_count_max + 1)
    error = deliver(kafka_door, topic_name, value=b"v", headers=headers)
    assert error is not None and error.code() == KafkaError.INVALID_RECORD
    assert not error.retriable()
    assert deliver(kafka_door, topic_name, value=b"v", headers=headers[1:]) is None


def _produce_raw(door: Any, topic: str, records: bytes) -> d.PartitionProduceResponse:
    request = d.ProduceRequest(
        acks=-1,
        timeout_ms=5000,
        topic_data=(
            d.TopicProduceData(
                name=topic, partition_data=(d.PartitionProduceData(index=0, records=records),)
            ),
        ),
    )
    wire = Wire(door.listener.port)
    try:
        response = wire.call(ApiKey.PRODUCE, 9, request)
    finally:
        wire.close()
    answer: d.PartitionProduceResponse = response.responses[0].partition_responses[0]
    return answer


def _batch_with_headers(count: int) -> bytes:
    headers = pa.array([[("h", b"x")] * count], type=STORED_SCHEMA.field("headers").type)
    table = pa.table(
        {
            "offset": pa.array([0], pa.int64()),
            "timestamp": pa.array([0], STORED_SCHEMA.field("timestamp").type),
            "key": pa.array([None], pa.binary()),
            "value": pa.array([b"v"]),
            "headers": headers,
        }
    )
    return encode_batch(table)


def test_raw_produce_over_the_header_bound_names_the_bound(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    over = _produce_raw(kafka_door, topic_name, _batch_with_headers(limits.header_count_max + 1))
    assert over.error_code == ErrorCode.INVALID_RECORD
    assert over.error_message is not None and str(limits.header_count_max) in over.error_message
    # A negative header count is damage, not a bound: still CORRUPT_MESSAGE.
    batch = bytearray(_batch_with_headers(1))
    # The record ends with its header count 1 (zigzag 0x02), then the header: name "h"
    # (length 0x02) and value "x" (length 0x02). Make the count -1 (zigzag 0x01).
    assert batch[-5:] == b"\x02\x02h\x02x"
    batch[-5] = 0x01
    corrupt = _produce_raw(kafka_door, topic_name, _with_crc(bytes(batch)))
    assert corrupt.error_code == ErrorCode.CORRUPT_MESSAGE
    assert kafka_door.engine.describe_topic(topic_name).next_offset == 0


def _with_crc(batch: bytes) -> bytes:
    """A record batch whose CRC-32C (over everything after the crc field) is right."""
    crc = crc32c.crc32c(batch[21:])
    return batch[:17] + crc.to_bytes(4, "big") + batch[21:]


def test_a_transactional_record_over_the_header_bound_is_reported_at_once(
    kafka_door: Any, topic_name: str
) -> None:
    kafka_door.engine.create_topic(topic_name)
    producer = Producer(
        {"bootstrap.servers": kafka_door.bootstrap, "transactional.id": "tx-" + topic_name, **FAST}
    )
    producer.init_transactions(WAIT_SECONDS)
    producer.begin_transaction()
    reports: list[Any] = []
    headers = [("h", b"")] * (limits.header_count_max + 1)
    producer.produce(
        topic_name, value=b"v", headers=headers, on_delivery=lambda error, _m: reports.append(error)
    )
    producer.flush(WAIT_SECONDS)
    assert len(reports) == 1 and reports[0] is not None
    assert reports[0].code() == KafkaError.INVALID_RECORD
    producer.abort_transaction(WAIT_SECONDS)
    assert kafka_door.engine.describe_topic(topic_name).next_offset == 0
