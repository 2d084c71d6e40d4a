"""Fetch sessions (KIP-227) as the Kafka door answers them.

Goal: the door keeps no fetch sessions. A full request (epoch 0: "open a session", or
-1: "no session"), whatever session id it names, is answered in full with session id
0, which tells the client it got no session and must go on with full requests; an
incremental request (epoch > 0) names a session the door does not have and gets
FETCH_SESSION_ID_NOT_FOUND, as a Kafka broker answers after a restart, so the client
starts again with a full request instead of reading partial answers as complete.
kafka-python (which asks for sessions) and librdkafka (which sends sessionless
requests) consume normally.

Method: raw Fetch requests (wire.py) against an in-process listener (conftest);
kafka-python and confluent-kafka consumers read a topic to its end.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from wire import Wire

from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode

kafka = pytest.importorskip("kafka")
confluent_kafka = pytest.importorskip("confluent_kafka")


def fetch(door: Any, topic: str, session_id: int, epoch: int) -> m.FetchResponse:
    request = m.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        session_id=session_id,
        session_epoch=epoch,
        topics=(
            m.FetchTopic(
                topic=topic,
                partitions=(m.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20),),
            ),
        ),
    )
    wire = Wire(door.listener.port)
    try:
        response: m.FetchResponse = wire.call(ApiKey.FETCH, 12, request)
    finally:
        wire.close()
    return response


def test_full_requests_are_answered_without_a_session(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"a"}, {"value": b"b"}])
    for session_id, epoch in ((0, 0), (0, -1), (7, 0), (7, -1)):
        response = fetch(kafka_door, topic_name, session_id, epoch)
        assert (response.error_code, response.session_id) == (ErrorCode.NONE, 0)
        assert response.responses[0].partitions[0].high_watermark == 2
        assert response.responses[0].partitions[0].records


def test_an_incremental_request_names_an_unknown_session(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"a"}])
    response = fetch(kafka_door, topic_name, 7, 1)
    assert response.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert response.responses == ()


def test_clients_consume_without_sessions(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": f"v{i}".encode()} for i in range(20)])
    consumer = kafka.KafkaConsumer(
        topic_name,
        bootstrap_servers=kafka_door.bootstrap,
        group_id="kp-" + topic_name,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    values: list[bytes] = []
    deadline = time.monotonic() + 30
    while len(values) < 20 and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=100).values():
            values.extend(record.value for record in batch)
    consumer.close()
    assert values == [f"v{i}".encode() for i in range(20)]
    rd = confluent_kafka.Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": "rd-" + topic_name,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
        }
    )
    rd.subscribe([topic_name])
    values = []
    deadline = time.monotonic() + 30
    while len(values) < 20 and time.monotonic() < deadline:
        message = rd.poll(0.1)
        if message is not None and message.error() is None:
            values.append(message.value())
    rd.close()
    assert values == [f"v{i}".encode() for i in range(20)]
