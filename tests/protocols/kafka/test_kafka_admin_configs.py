"""The Kafka door's topic administration as Kafka admin tools use it.

Goal: CreateTopics takes ``num_partitions=-1`` as the server's default partition count
(``odradek serve --kafka-partitions``), ``replication_factor=-1`` and a replica
assignment that places every partition on the one broker (others are refused with
the reason); every standard Kafka topic config is accepted (those Odradek does not use
are reported by DescribeConfigs with the value it behaves as) while a name Kafka does
not know is refused with a message the client shows; IncrementalAlterConfigs APPEND
and SUBTRACT change list configs (``cleanup.policy``) item by item and are refused on
other configs; refusals are logged at info with the message the client gets. Topics a
Metadata request creates are plain delete-policy topics, also when the name ends like a
Kafka Streams changelog (stream processors create their changelogs explicitly).

Method: a Kafka listener over a node in a temporary directory with a default of 4
partitions; confluent-kafka's AdminClient and raw CreateTopics requests (wire.py).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from wire import Wire

from odradek.node import Node
from odradek.protocols.kafka import KafkaListenerHandle, start_kafka_listener
from odradek.protocols.kafka.codec import messages_admin as m
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode

confluent_kafka = pytest.importorskip("confluent_kafka")
from confluent_kafka import KafkaException, Producer  # noqa: E402
from confluent_kafka.admin import (  # noqa: E402
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}


@pytest.fixture
def door(tmp_path: os.PathLike[str]) -> Iterator[tuple[Node, KafkaListenerHandle]]:
    node = Node.open(os.path.join(os.fspath(tmp_path), "data"), fsync=False)
    listener = start_kafka_listener(node, "127.0.0.1", 0, default_partitions=4)
    try:
        yield node, listener
    finally:
        listener.close()
        node.close()


def admin(listener: KafkaListenerHandle) -> AdminClient:
    return AdminClient({"bootstrap.servers": listener.bootstrap, **FAST})


def create_raw(listener: KafkaListenerHandle, topic: m.CreatableTopic) -> m.CreatableTopicResult:
    wire = Wire(listener.port)
    try:
        response = wire.call(ApiKey.CREATE_TOPICS, 7, m.CreateTopicsRequest(topics=(topic,), timeout_ms=5000))
    finally:
        wire.close()
    result: m.CreatableTopicResult = response.topics[0]
    return result


def topic_config(listener: KafkaListenerHandle, name: str) -> dict[str, str]:
    client = admin(listener)  # kept referenced until its futures complete
    futures = client.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, name)])
    (future,) = futures.values()
    return {entry.name: entry.value for entry in future.result(timeout=10).values()}


def test_default_partitions_and_a_one_broker_assignment(door: Any) -> None:
    node, listener = door
    client = admin(listener)  # kept referenced until its futures complete
    futures = client.create_topics([NewTopic("by-default", num_partitions=-1, replication_factor=-1)])
    futures["by-default"].result(timeout=10)
    assert topic_config(listener, "by-default")["kafka_partitions"] == "4"
    assigned = create_raw(
        listener,
        m.CreatableTopic(
            name="assigned",
            num_partitions=-1,
            replication_factor=-1,
            assignments=tuple(
                m.CreatableReplicaAssignment(partition_index=index, broker_ids=(1,)) for index in (1, 0)
            ),
        ),
    )
    assert (assigned.error_code, assigned.num_partitions) == (ErrorCode.NONE, 2)
    elsewhere = create_raw(
        listener,
        m.CreatableTopic(
            name="elsewhere",
            num_partitions=-1,
            replication_factor=-1,
            assignments=(m.CreatableReplicaAssignment(partition_index=0, broker_ids=(1, 2)),),
        ),
    )
    assert elsewhere.error_code == ErrorCode.INVALID_REPLICA_ASSIGNMENT
    assert elsewhere.error_message is not None and "single node" in elsewhere.error_message
    assert "elsewhere" not in node.engine.list_topics()


def test_every_standard_config_is_accepted_and_reported(door: Any, caplog: pytest.LogCaptureFixture) -> None:
    node, listener = door
    config = {
        "retention.ms": "3600000",
        "min.insync.replicas": "2",
        "max.compaction.lag.ms": "60000",
        "segment.index.bytes": "1048576",
        "flush.ms": "1000",
        "preallocate": "true",
        "remote.storage.enable": "false",
        "message.timestamp.after.max.ms": "3600000",
        "compression.zstd.level": "5",
    }
    client = admin(listener)
    futures = client.create_topics([NewTopic("standard", num_partitions=1, config=config)])
    futures["standard"].result(timeout=10)
    described = topic_config(listener, "standard")
    assert described["retention.ms"] == "3600000"  # honoured
    assert set(config) <= set(described)  # every one reported, with the value Odradek behaves as
    assert described["min.insync.replicas"] == "1"
    assert node.engine.describe_topic("standard").config["retention_seconds"] == 3600.0
    caplog.set_level(logging.INFO)
    futures = client.create_topics([NewTopic("odd", num_partitions=1, config={"no.such.config": "1"})])
    with pytest.raises(KafkaException, match=re.escape("unknown topic config 'no.such.config'")):
        futures["odd"].result(timeout=10)
    assert (
        "CreateTopics of odd refused: unknown topic config 'no.such.config' (INVALID_CONFIG)" in caplog.text
    )


def test_append_and_subtract_on_list_configs(door: Any) -> None:
    node, listener = door
    client = admin(listener)
    client.create_topics([NewTopic("listed", num_partitions=1)])["listed"].result(timeout=10)

    def alter(operation: AlterConfigOpType, name: str, value: str) -> None:
        resource = ConfigResource(
            ConfigResource.Type.TOPIC,
            "listed",
            incremental_configs=[ConfigEntry(name, value, incremental_operation=operation)],
        )
        (future,) = client.incremental_alter_configs([resource]).values()
        future.result(timeout=10)

    alter(AlterConfigOpType.APPEND, "cleanup.policy", "compact")
    assert node.engine.describe_topic("listed").config["cleanup"] == "compact,delete"
    alter(AlterConfigOpType.SUBTRACT, "cleanup.policy", "delete")
    assert topic_config(listener, "listed")["cleanup.policy"] == "compact"
    with pytest.raises(KafkaException, match="empty"):
        alter(AlterConfigOpType.SUBTRACT, "cleanup.policy", "compact")
    with pytest.raises(KafkaException, match="list configs"):
        alter(AlterConfigOpType.APPEND, "retention.ms", "1000")
    alter(AlterConfigOpType.APPEND, "leader.replication.throttled.replicas", "0:1")
    assert node.engine.describe_topic("listed").config["cleanup"] == "compact"


def test_auto_created_changelog_topics_delete(door: Any) -> None:
    node, listener = door
    name = "app-counts-changelog"
    producer = Producer({"bootstrap.servers": listener.bootstrap, **FAST})
    producer.produce(name, key=b"k", value=b"1")
    assert producer.flush(30) == 0
    assert node.engine.describe_topic(name).config["cleanup"] == "delete"
    assert topic_config(listener, name)["kafka_partitions"] == "4"
