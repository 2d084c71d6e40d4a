"""Kafka idempotent producers across a restart of the server.

Goal: the door's idempotent-producer state is durable. A batch acknowledged before a
restart and sent again after it (as a producer retries a request whose answer it lost)
is answered with its original base offset and written once, in whatever order the
retries come; a sequence gap after the restart gets OUT_OF_ORDER_SEQUENCE_NUMBER and
writes nothing; the correct next sequence is accepted. Sequences that wrap past INT32
max are followed the same way, and a bumped epoch starts a fresh sequence while the
older epoch is fenced.

Method: raw sockets against the in-process listener, requests built and responses read
with the door's own codec; the restart closes listener and engine and opens both again
on the same data directory; what was written is read back through the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pytest
from wire import Wire as RawWire
from wire import connections, door_values

from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import encode_batch
from odradek.records import STORED_SCHEMA

PRODUCE_VERSION = 9
INIT_PRODUCER_ID_VERSION = 4
WRAP = 2**31  # Kafka's sequences are int32: after 2**31 - 1 comes 0


class Wire(RawWire):
    """One connection speaking the Kafka protocol with the door's codec."""

    def init_producer(self, producer_id: int = -1, epoch: int = -1) -> tuple[int, int]:
        request = m.InitProducerIdRequest(
            transaction_timeout_ms=1000, producer_id=producer_id, producer_epoch=epoch
        )
        response = self.call(ApiKey.INIT_PRODUCER_ID, INIT_PRODUCER_ID_VERSION, request)
        assert response.error_code == ErrorCode.NONE
        return response.producer_id, response.producer_epoch

    def produce(
        self, topic: str, values: list[bytes], producer_id: int = -1, epoch: int = -1, sequence: int = -1
    ) -> tuple[int, int]:
        """(error code, base offset) of one partition-0 produce of ``values``."""
        rows = [
            {"offset": i, "timestamp": 1_000_000, "key": None, "value": v, "headers": None, "version": None}
            for i, v in enumerate(values)
        ]
        records = encode_batch(
            pa.RecordBatch.from_pylist(rows, schema=STORED_SCHEMA),
            base_offset=0,
            producer_id=producer_id,
            producer_epoch=epoch,
            base_sequence=sequence,
        )
        request = m.ProduceRequest(
            acks=-1,
            timeout_ms=5000,
            topic_data=(
                m.TopicProduceData(
                    name=topic, partition_data=(m.PartitionProduceData(index=0, records=records),)
                ),
            ),
        )
        response = self.call(ApiKey.PRODUCE, PRODUCE_VERSION, request)
        result = response.responses[0].partition_responses[0]
        return result.error_code, result.base_offset


values_of = door_values


@pytest.fixture
def connect(kafka_door: Any) -> Iterator[Callable[[], Wire]]:
    """``connect()``: a new connection to the door as it is now; all closed at the end."""
    with connections(lambda: Wire(kafka_door.listener.port)) as do_connect:
        yield do_connect


@pytest.fixture
def restart(kafka_door: Any, connect: Callable[[], Wire]) -> Callable[[], Wire]:
    """``restart()``: close the listener and engine, open both on the same data
    directory, and return a connection to the new listener."""

    def do_restart() -> Wire:
        kafka_door.reopen()
        return connect()

    return do_restart


def test_a_retry_after_a_restart_is_answered_with_its_original_offset(
    kafka_door: Any, topic_name: str, connect: Callable[[], Wire], restart: Callable[[], Wire]
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    pid, epoch = wire.init_producer()
    assert wire.produce(topic_name, [b"a", b"b"], pid, epoch, 0) == (ErrorCode.NONE, 0)
    assert wire.produce(topic_name, [b"plain"]) == (ErrorCode.NONE, 2)
    assert wire.produce(topic_name, [b"c"], pid, epoch, 2) == (ErrorCode.NONE, 3)
    written = values_of(kafka_door, topic_name)
    assert written == [b"a", b"b", b"plain", b"c"]

    wire = restart()
    # The newest batch first, then an older one: both are the engine's to recognize.
    assert wire.produce(topic_name, [b"c"], pid, epoch, 2) == (ErrorCode.NONE, 3)
    assert wire.produce(topic_name, [b"a", b"b"], pid, epoch, 0) == (ErrorCode.NONE, 0)
    assert values_of(kafka_door, topic_name) == written

    assert wire.produce(topic_name, [b"d"], pid, epoch, 9) == (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
    assert values_of(kafka_door, topic_name) == written

    assert wire.produce(topic_name, [b"d", b"e"], pid, epoch, 3) == (ErrorCode.NONE, 4)
    assert wire.produce(topic_name, [b"d", b"e"], pid, epoch, 3) == (ErrorCode.NONE, 4)
    assert values_of(kafka_door, topic_name) == [*written, b"d", b"e"]


def test_a_gap_right_after_a_restart_is_refused(
    kafka_door: Any, topic_name: str, connect: Callable[[], Wire], restart: Callable[[], Wire]
) -> None:
    """The first batch after a restart is checked against the durable state, not taken
    as the start of a new sequence."""
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    pid, epoch = wire.init_producer()
    assert wire.produce(topic_name, [b"a"], pid, epoch, 0) == (ErrorCode.NONE, 0)
    wire = restart()
    assert wire.produce(topic_name, [b"x"], pid, epoch, 5) == (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
    assert values_of(kafka_door, topic_name) == [b"a"]
    assert wire.produce(topic_name, [b"b"], pid, epoch, 1) == (ErrorCode.NONE, 1)


def test_sequences_that_wrap_past_int32_max_survive_a_restart(
    kafka_door: Any, topic_name: str, connect: Callable[[], Wire], restart: Callable[[], Wire]
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    pid, epoch = wire.init_producer()
    assert wire.produce(topic_name, [b"a", b"b", b"c"], pid, epoch, WRAP - 2) == (ErrorCode.NONE, 0)
    wire = restart()
    assert wire.produce(topic_name, [b"a", b"b", b"c"], pid, epoch, WRAP - 2) == (ErrorCode.NONE, 0)
    assert wire.produce(topic_name, [b"d"], pid, epoch, 0) == (ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER, -1)
    assert wire.produce(topic_name, [b"d"], pid, epoch, 1) == (ErrorCode.NONE, 3)
    assert values_of(kafka_door, topic_name) == [b"a", b"b", b"c", b"d"]


def test_a_bumped_epoch_starts_afresh_and_fences_the_older_one(
    kafka_door: Any, topic_name: str, connect: Callable[[], Wire], restart: Callable[[], Wire]
) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = connect()
    pid, epoch = wire.init_producer()
    assert wire.produce(topic_name, [b"a"], pid, epoch, 0) == (ErrorCode.NONE, 0)
    wire = restart()
    same_pid, bumped = wire.init_producer(pid, epoch)
    assert (same_pid, bumped) == (pid, epoch + 1)
    assert wire.produce(topic_name, [b"b"], pid, bumped, 0) == (ErrorCode.NONE, 1)
    assert wire.produce(topic_name, [b"x"], pid, epoch, 1) == (ErrorCode.INVALID_PRODUCER_EPOCH, -1)
    assert wire.produce(topic_name, [b"b"], pid, bumped, 0) == (ErrorCode.NONE, 1)
    assert values_of(kafka_door, topic_name) == [b"a", b"b"]
