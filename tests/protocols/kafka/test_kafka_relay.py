"""A standby's Kafka relay (protocols/kafka/relay.py) leads Kafka clients to the owner.

Goal: a Kafka client bootstrapped with a cluster standby's Kafka port only works
against the owner: the relay passes ApiVersions, Metadata, FindCoordinator and
DescribeCluster to the owner's door and returns its answers, which name the owner;
anything else, or any request while no owner is known, closes the connection (a client
then refreshes its metadata), and nothing the relay does writes data.
Method: a real Kafka listener over a node (conftest's ``kafka_door``) stands for the
owner; a relay on another loopback port points at it (or at nothing); librdkafka
(confluent-kafka) and raw frames on a socket talk to the relay.
"""

from __future__ import annotations

import socket
import struct
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from odradek.protocols.kafka.relay import KafkaRelay, start_kafka_relay

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer  # noqa: E402

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}


def _address(bootstrap: str) -> tuple[str, int]:
    host, _, port = bootstrap.rpartition(":")
    return host, int(port)


@pytest.fixture
def relay(kafka_door: Any) -> Iterator[KafkaRelay]:
    owner = _address(kafka_door.bootstrap)
    started = start_kafka_relay("127.0.0.1", 0, lambda: owner)
    try:
        yield started
    finally:
        started.close()


def _request(api_key: int, version: int, correlation: int, body: bytes = b"") -> bytes:
    """A request frame with a v1 header (ApiVersions v0 and Produce headers alike)."""
    client = b"relay-test"
    header = struct.pack(">hhih", api_key, version, correlation, len(client)) + client
    return struct.pack(">i", len(header) + len(body)) + header + body


def _answer(connection: socket.socket) -> bytes:
    """One response frame's body, or b"" if the connection was closed."""
    prefix = connection.recv(4, socket.MSG_WAITALL)
    if len(prefix) < 4:
        return b""
    (size,) = struct.unpack(">i", prefix)
    return connection.recv(size, socket.MSG_WAITALL)


def test_a_client_bootstrapped_with_the_relay_produces_and_consumes_on_the_owner(
    kafka_door: Any, relay: KafkaRelay
) -> None:
    topic = f"relay-{uuid.uuid4().hex[:8]}"
    bootstrap = f"127.0.0.1:{relay.port}"
    producer = Producer({"bootstrap.servers": bootstrap, **FAST})
    for number in range(10):
        producer.produce(topic, key=b"k", value=f"v{number}".encode())
    assert producer.flush(30) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{uuid.uuid4().hex[:8]}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 100,
            **FAST,
        }
    )
    try:
        consumer.subscribe([topic])
        seen: list[str] = []
        for _ in range(300):
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                seen.append(message.value().decode())
            if len(seen) == 10:
                break
    finally:
        consumer.close()
    assert seen == [f"v{number}" for number in range(10)]
    assert relay.relayed > 0  # the bootstrap went through the relay...
    rows = sum(batch.num_rows for batch in kafka_door.engine.read(topic, wait=0))
    assert rows == 10  # ...and the records to the owner


def test_metadata_is_relayed_and_a_produce_closes_the_connection(relay: KafkaRelay) -> None:
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as connection:
        connection.sendall(_request(18, 0, 7))  # ApiVersions v0
        answer = _answer(connection)
        assert struct.unpack(">i", answer[:4])[0] == 7 and struct.unpack(">h", answer[4:6])[0] == 0
        connection.sendall(_request(0, 3, 8, b"\x00" * 16))  # a Produce: the owner's alone
        assert _answer(connection) == b""
    assert relay.refused == 1


def test_without_an_owner_every_request_closes_the_connection() -> None:
    relay = start_kafka_relay("127.0.0.1", 0, lambda: None)
    try:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as connection:
            connection.sendall(_request(18, 0, 1))
            assert _answer(connection) == b""
        assert relay.relayed == 0 and relay.refused == 1
    finally:
        relay.close()


def test_a_frame_over_the_limit_closes_the_connection(relay: KafkaRelay) -> None:
    with socket.create_connection(("127.0.0.1", relay.port), timeout=10) as connection:
        connection.sendall(struct.pack(">i", 1 << 30) + b"\x00\x12")
        assert _answer(connection) == b""
    assert relay.relayed == 0


def test_closing_frees_the_port(kafka_door: Any) -> None:
    owner = _address(kafka_door.bootstrap)
    first = start_kafka_relay("127.0.0.1", 0, lambda: owner)
    port = first.port
    first.close()
    second = start_kafka_relay("127.0.0.1", port, lambda: owner)  # the owner's door would bind it
    second.close()
