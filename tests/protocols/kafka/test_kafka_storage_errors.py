"""A full disk (StorageError) is answered with a Kafka error code, never a closed connection.

Goal: issue 11's finding, reproduced: InitProducerId on a full disk (the producer-id
block could not be reserved) closed the connection with a traceback. Now it is
answered with COORDINATOR_LOAD_IN_PROGRESS, Kafka's own answer when it has no block,
which librdkafka, kafka-python and aiokafka all retry; a real idempotent producer gets
its id once the disk has room and delivers. The other handlers that write or read are
checked the same way, each with the code a Kafka broker gives for that API: a failed
OffsetCommit or DeleteGroups gives NOT_COORDINATOR and changes nothing; CreatePartitions
and CreateTopics give KAFKA_STORAGE_ERROR (and a topic whose partition count could not
be saved is not left behind); Fetch gives KAFKA_STORAGE_ERROR (NOT_LEADER_OR_FOLLOWER
for v4-5); a topic that cannot be opened is UNKNOWN_TOPIC_OR_PARTITION in Metadata.
After each refusal the same connection answers the next request.

Method: raw requests through the in-process door with its own codec; the storage
failure is injected where the door meets storage (the door store's writes, the
engine's reads), raising StorageError as they do on ENOSPC. One confluent-kafka
idempotent producer against a store that fails its first reservations.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import wire

from odradek.errors import StorageError
from odradek.protocols.kafka.codec import messages_admin as admin
from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec import messages_groups as g
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode

FULL = "could not write the file: no space left on device"


class Wire(wire.Wire):
    """One connection speaking the Kafka protocol with the door's codec."""

    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=30)

    def alive(self) -> None:
        """The connection still answers (after a refusal)."""
        assert self.call(ApiKey.API_VERSIONS, 3, m.ApiVersionsRequest()).error_code == ErrorCode.NONE


@pytest.fixture
def wire(kafka_door: Any) -> Any:
    connection = Wire(kafka_door.listener.port)
    yield connection
    connection.close()


def _broker(kafka_door: Any) -> Any:
    return kafka_door.listener.listener.broker


def _full(*args: object, **kwargs: object) -> Any:
    raise StorageError(FULL)


def _init_producer_id(wire: Wire) -> Any:
    return wire.call(ApiKey.INIT_PRODUCER_ID, 4, m.InitProducerIdRequest(transaction_timeout_ms=1000))


def test_init_producer_id_on_a_full_disk_is_a_retriable_error(
    kafka_door: Any, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        patch.setattr(_broker(kafka_door).store, "next_producer_id", _full)
        refused = _init_producer_id(wire)
        assert (refused.error_code, refused.producer_id) == (ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, -1)
        wire.alive()
    granted = _init_producer_id(wire)  # space was freed
    assert granted.error_code == ErrorCode.NONE and granted.producer_id >= 1


def test_an_idempotent_confluent_producer_waits_out_a_full_disk(
    kafka_door: Any, topic_name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    store = _broker(kafka_door).store
    real = store.next_producer_id
    refused: list[int] = []
    lock = threading.Lock()

    def fails_three_times() -> int:
        with lock:
            if len(refused) < 3:
                refused.append(1)
                raise StorageError(FULL)
        return real()

    monkeypatch.setattr(store, "next_producer_id", fails_three_times)
    kafka_door.engine.create_topic(topic_name)
    caplog.set_level(logging.WARNING, logger="odradek.protocols.kafka")
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "enable.idempotence": True,
            "retry.backoff.ms": 50,
            "reconnect.backoff.max.ms": 200,
        }
    )
    outcomes: list[Any] = []
    producer.produce(topic_name, value=b"after the disk filled", on_delivery=lambda e, _m: outcomes.append(e))
    assert producer.flush(60) == 0
    assert outcomes == [None], outcomes
    assert len(refused) == 3, "the producer did not ask again after the refusals"
    closed = [r for r in caplog.records if "closing it" in r.getMessage()]
    assert not closed, "the door closed a connection instead of answering"
    assert kafka_door.engine.describe_topic(topic_name).next_offset == 1


def _commit(wire: Wire, group: str, topic: str, offset: int) -> Any:
    request = g.OffsetCommitRequest(
        group_id=group,
        member_id="",
        topics=(
            g.OffsetCommitRequestTopic(
                name=topic,
                partitions=(g.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset),),
            ),
        ),
    )
    return wire.call(ApiKey.OFFSET_COMMIT, 8, request)


def _committed(wire: Wire, group: str, topic: str) -> int:
    request = g.OffsetFetchRequest(
        group_id=group, topics=(g.OffsetFetchRequestTopic(name=topic, partition_indexes=(0,)),)
    )
    response = wire.call(ApiKey.OFFSET_FETCH, 6, request)
    return int(response.topics[0].partitions[0].committed_offset)


def test_an_offset_commit_that_cannot_be_written_changes_nothing(
    kafka_door: Any, wire: Wire, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    assert _commit(wire, "g", topic_name, 5).topics[0].partitions[0].error_code == ErrorCode.NONE
    with monkeypatch.context() as patch:
        patch.setattr(_broker(kafka_door).store, "save_group", _full)
        refused = _commit(wire, "g", topic_name, 9)
        assert refused.topics[0].partitions[0].error_code == ErrorCode.NOT_COORDINATOR
        assert _committed(wire, "g", topic_name) == 5, "a commit that was not written is visible"
    assert _commit(wire, "g", topic_name, 9).topics[0].partitions[0].error_code == ErrorCode.NONE
    assert _committed(wire, "g", topic_name) == 9


def test_a_group_deletion_that_cannot_be_written_keeps_the_group(
    kafka_door: Any, wire: Wire, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    _commit(wire, "g", topic_name, 3)
    with monkeypatch.context() as patch:
        patch.setattr(_broker(kafka_door).store, "delete_group", _full)
        refused = wire.call(ApiKey.DELETE_GROUPS, 2, g.DeleteGroupsRequest(groups_names=("g",)))
        assert refused.results[0].error_code == ErrorCode.NOT_COORDINATOR
        assert _committed(wire, "g", topic_name) == 3
    deleted = wire.call(ApiKey.DELETE_GROUPS, 2, g.DeleteGroupsRequest(groups_names=("g",)))
    assert deleted.results[0].error_code == ErrorCode.NONE


def _partitions(wire: Wire, topic: str) -> int:
    request = m.MetadataRequest(topics=(m.MetadataRequestTopic(name=topic),), allow_auto_topic_creation=False)
    return len(wire.call(ApiKey.METADATA, 12, request).topics[0].partitions)


def test_partitions_that_cannot_be_saved_are_refused_and_nothing_is_left(
    kafka_door: Any, wire: Wire, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    with monkeypatch.context() as patch:
        patch.setattr(_broker(kafka_door).store, "set_partitions", _full)
        grown = wire.call(
            ApiKey.CREATE_PARTITIONS,
            3,
            admin.CreatePartitionsRequest(
                topics=(admin.CreatePartitionsTopic(name=topic_name, count=4),), timeout_ms=1000
            ),
        )
        assert grown.results[0].error_code == ErrorCode.KAFKA_STORAGE_ERROR
        assert "no space left on device" in (grown.results[0].error_message or "")
        created = wire.call(
            ApiKey.CREATE_TOPICS,
            7,
            admin.CreateTopicsRequest(
                topics=(
                    admin.CreatableTopic(name=topic_name + "-new", num_partitions=3, replication_factor=1),
                )
            ),
        )
        assert created.topics[0].error_code == ErrorCode.KAFKA_STORAGE_ERROR
    assert _partitions(wire, topic_name) == 1
    assert topic_name + "-new" not in kafka_door.engine.list_topics(), "a half-made topic was left"


@pytest.mark.parametrize(
    ("version", "code"), [(12, ErrorCode.KAFKA_STORAGE_ERROR), (4, ErrorCode.NOT_LEADER_OR_FOLLOWER)]
)
def test_a_fetch_that_cannot_read_is_a_partition_error(
    kafka_door: Any, wire: Wire, topic_name: str, monkeypatch: pytest.MonkeyPatch, version: int, code: int
) -> None:
    kafka_door.engine.create_topic(topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"v"}])
    monkeypatch.setattr(kafka_door.engine, "fetch", _full)
    monkeypatch.setattr(kafka_door.engine, "frames", _full)  # how the door reads partitions
    request = m.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        max_bytes=1 << 20,
        topics=(
            m.FetchTopic(
                topic=topic_name,
                partitions=(m.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20),),
            ),
        ),
    )
    response = wire.call(ApiKey.FETCH, version, request)
    assert response.responses[0].partitions[0].error_code == code
    wire.alive()


def test_a_topic_that_cannot_be_opened_is_unknown_in_metadata(
    kafka_door: Any, wire: Wire, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kafka_door.engine.create_topic(topic_name)
    real = kafka_door.engine.describe_topic

    def damaged(name: str) -> Any:
        if name == topic_name:
            raise StorageError(f"topic {name} is unavailable: a segment is damaged")
        return real(name)

    monkeypatch.setattr(kafka_door.engine, "describe_topic", damaged)
    request = m.MetadataRequest(
        topics=(m.MetadataRequestTopic(name=topic_name),), allow_auto_topic_creation=False
    )
    answer = wire.call(ApiKey.METADATA, 12, request)
    assert answer.topics[0].error_code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    wire.alive()
