"""A Kafka group's lag on a compacted topic after a compaction round removed records.

Goal: the Kafka door's partition index (partition_index.py) notices that compaction
rewrote the log, so a partition's high watermark stops counting records compaction
removed: a group that read every record left and committed has lag 0, as in Kafka.
Method: a real in-process listener (conftest) and confluent-kafka. Partition 0 of a
compacted topic gets a key to keep, then values and tombstones of other keys;
partition 1 gets enough records to seal the segments holding them. A ListOffsets
(watermarks) builds the index; ``Engine.compact(force=True)`` then removes the
superseded values and the tombstones (``delete.retention.ms=0``). A group consumes
everything left and commits; the node's group directory must describe lag 0.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}
CONFIG = {"cleanup.policy": "compact", "segment.bytes": "65536", "delete.retention.ms": "0"}


def test_group_lag_is_zero_after_compaction_removed_the_last_records(kafka_door: Any) -> None:
    name = f"changelog-{uuid.uuid4().hex[:6]}"
    admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    admin.create_topics([NewTopic(name, 2, 1, config=CONFIG)])[name].result(timeout=10)
    producer = Producer({"bootstrap.servers": kafka_door.bootstrap, "linger.ms": 5, **FAST})
    producer.produce(name, key=b"keep", value=b"kept", partition=0)
    for key in range(10):
        producer.produce(name, key=b"gone-%d" % key, value=b"x" * 200, partition=0)
    for key in range(10):
        producer.produce(name, key=b"gone-%d" % key, value=None, partition=0)
    producer.flush(10)
    for round_number in range(40):  # partition 1 seals the segments of partition 0's records
        for key in range(20):
            producer.produce(name, key=b"k%d" % key, value=b"%d" % round_number + b"." * 200, partition=1)
        producer.flush(10)
    probe = Consumer({"bootstrap.servers": kafka_door.bootstrap, "group.id": "probe-" + name, **FAST})
    try:
        assert probe.get_watermark_offsets(TopicPartition(name, 0), timeout=10)[1] == 21  # index built
    finally:
        probe.close()

    removed = kafka_door.engine.compact(force=True)[name]
    assert removed.records_removed >= 20 and removed.tombstones_removed == 10

    group = "g-" + name
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **FAST,
        }
    )
    consumer.subscribe([name])
    last: dict[int, int] = {}
    try:
        while last.get(0) != 0 or last.get(1) != 21 + 40 * 20 - 1:  # "keep", and partition 1's last
            message = consumer.poll(10)
            assert message is not None, f"nothing more after {last}"
            if message.error() is None:
                last[message.partition()] = message.offset()
        consumer.commit(asynchronous=False)
        ends = [consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in (0, 1)]
    finally:
        consumer.close()
    assert ends == [1, last[1] + 1]  # partition 0 ends after "keep", its only record left
    (topic,) = kafka_door.node.directory.describe_group(group).topics
    assert [(p.partition, p.committed, p.lag) for p in topic.partitions] == [(0, 1, 0), (1, last[1] + 1, 0)]
    assert topic.lag == 0
