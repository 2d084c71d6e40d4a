"""kafka-python (pure Python client) against the Kafka door, unchanged.

Goal: kafka-python's producer, consumer (groups, commits with metadata) and admin
client work against Odradek: produce and consume with headers, a group of three whose
members leave, committed offsets read back, topics created, described and deleted.

Method: a real in-process listener over an Engine in a temp dir (conftest); clients
with shortened timers talk to it over loopback.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

kafka = pytest.importorskip("kafka")
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic  # noqa: E402
from kafka.structs import OffsetAndMetadata  # noqa: E402

FAST = {"request_timeout_ms": 10_000, "metadata_max_age_ms": 1000, "reconnect_backoff_max_ms": 200}
GROUP = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 100,
    "auto_offset_reset": "earliest",
    "enable_auto_commit": False,
    "fetch_max_wait_ms": 100,
}


def poll_until(
    consumers: list[KafkaConsumer], done: Callable[[list[Any]], bool], timeout: float = 20.0
) -> list[Any]:
    records: list[Any] = []
    deadline = time.monotonic() + timeout
    while not done(records) and time.monotonic() < deadline:
        for consumer in consumers:
            for batch in consumer.poll(timeout_ms=50).values():
                records.extend(batch)
    return records


class Member(threading.Thread):
    """A group member polling in its own thread, as applications run kafka-python
    consumers (a consumer is not thread-safe: other threads hand it work via ``call``)."""

    def __init__(self, consumer: KafkaConsumer) -> None:
        super().__init__(daemon=True)
        self.consumer = consumer
        self.values: set[bytes] = set()
        self.partitions: set[int] = set()
        self._work: queue.Queue[tuple[Callable[[KafkaConsumer], Any], queue.Queue[Any]]] = queue.Queue()
        self._stop_polling = threading.Event()
        self.start()

    def run(self) -> None:
        while not self._stop_polling.is_set():
            while not self._work.empty():
                work, answer = self._work.get()
                try:
                    answer.put((True, work(self.consumer)))
                except Exception as exc:  # noqa: BLE001 - handed to the caller
                    answer.put((False, exc))
            for batch in self.consumer.poll(timeout_ms=100).values():
                self.values.update(r.value for r in batch)
            self.partitions = {tp.partition for tp in self.consumer.assignment()}

    def call(self, work: Callable[[KafkaConsumer], Any]) -> Any:
        answer: queue.Queue[Any] = queue.Queue()
        self._work.put((work, answer))
        ok, result = answer.get(timeout=30)
        if not ok:
            raise result
        return result

    def commit(self, offsets: Any = None, timeout: float = 20.0) -> None:
        """Commit; during a rebalance Kafka answers REBALANCE_IN_PROGRESS: poll, retry."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.call(lambda consumer: consumer.commit(offsets))
                return
            except (kafka.errors.RebalanceInProgressError, kafka.errors.CommitFailedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def close(self) -> None:
        self._stop_polling.set()
        self.join(10)
        self.consumer.close()


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def create(door: Any, name: str, partitions: int = 1) -> None:
    admin = KafkaAdminClient(bootstrap_servers=door.bootstrap, **FAST)
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    admin.close()


@pytest.mark.compat("kafka-python", "produce")
@pytest.mark.compat("kafka-python", "consume")
def test_produce_and_consume_with_headers(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name)
    producer = KafkaProducer(bootstrap_servers=kafka_door.bootstrap, linger_ms=5, **FAST)
    for i in range(200):
        producer.send(
            topic_name,
            key=f"k{i % 5}".encode(),
            value=f"v{i}".encode(),
            headers=[("i", str(i).encode())],
            timestamp_ms=1_600_000_000_000 + i,
        )
    producer.flush(10)
    producer.close()
    consumer = KafkaConsumer(
        topic_name, bootstrap_servers=kafka_door.bootstrap, group_id="kp-" + topic_name, **FAST, **GROUP
    )
    records = poll_until([consumer], lambda got: len(got) >= 200)
    consumer.close()
    assert [r.offset for r in records] == list(range(200))
    assert [r.value for r in records] == [f"v{i}".encode() for i in range(200)]
    assert records[7].key == b"k2" and records[7].headers == [("i", b"7")]
    assert records[7].timestamp == 1_600_000_000_007
    assert kafka_door.engine.key_version(topic_name, b"k2") == 40


@pytest.mark.compat("kafka-python", "groups")
def test_group_of_three_with_leave_and_commits(kafka_door: Any, topic_name: str) -> None:
    create(kafka_door, topic_name, partitions=3)
    producer = KafkaProducer(bootstrap_servers=kafka_door.bootstrap, **FAST)
    for i in range(150):
        producer.send(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
    producer.flush(10)
    group = "kg-" + topic_name
    members = [
        Member(
            KafkaConsumer(topic_name, bootstrap_servers=kafka_door.bootstrap, group_id=group, **FAST, **GROUP)
        )
        for _ in range(3)
    ]
    everything = {str(i).encode() for i in range(150)}
    wait_for(
        lambda: (
            [len(m.partitions) for m in members] == [1, 1, 1]
            and set().union(*(m.values for m in members)) == everything
        )
    )
    for member in members:
        member.commit()
    members[0].close()  # leaves the group: the other two take over its partition
    for i in range(150, 170):
        producer.send(topic_name, key=f"key-{i}".encode(), value=str(i).encode())
    producer.flush(10)
    later = {str(i).encode() for i in range(150, 170)}
    wait_for(
        lambda: (
            sorted(p for m in members[1:] for p in m.partitions) == [0, 1, 2]
            and later <= members[1].values | members[2].values
        )
    )
    by_hand = {TopicPartition(topic_name, 0): OffsetAndMetadata(7, "by-hand", -1)}
    members[1].commit(by_hand)
    committed = members[1].call(lambda c: c.committed(TopicPartition(topic_name, 0), metadata=True))
    assert committed.offset == 7 and committed.metadata == "by-hand"
    for member in members[1:]:
        member.close()
    producer.close()
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, **FAST)
    offsets = admin.list_group_offsets({group: None})[group]
    assert offsets[TopicPartition(topic_name, 0)].offset == 7
    assert group in str(admin.list_groups())
    admin.close()


@pytest.mark.compat("kafka-python", "admin")
def test_admin_describe_configs_and_delete(kafka_door: Any, topic_name: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=kafka_door.bootstrap, **FAST)
    admin.create_topics([NewTopic(topic_name, 2, 1, topic_configs={"segment.bytes": "1048576"})])
    assert topic_name in admin.list_topics()
    described = admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic_name)], config_filter="all"
    )
    entries = {
        key: value["value"] for key, value in next(iter(next(iter(described.values())).values())).items()
    }
    assert entries["segment.bytes"] == "1048576" and entries["kafka_partitions"] == "2"
    admin.delete_topics([topic_name])
    assert topic_name not in kafka_door.engine.list_topics()
    admin.close()
