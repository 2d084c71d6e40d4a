"""A Kafka consumer group of two confluent-kafka members on a four-partition topic of a
served node, with a lag per partition the clients can tell by themselves.

``two_members`` creates the topic through the Kafka door's admin API, produces records
keyed so that every partition gets some, lets two members (``member-0``, ``member-1``)
share the partitions, reads every record and commits, then produces more records that
nobody reads. The lag each member should have is what its client says: per partition
of its own assignment, the high watermark (ListOffsets) minus the committed offset
(OffsetFetch), neither of which goes through the code that describes a group.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

PARTITIONS = 4
DEADLINE_SECONDS = 90.0
# Short timers so that joins and rebalances take tenths of seconds, not many seconds.
FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}
CLASSIC = {"session.timeout.ms": 10_000, "heartbeat.interval.ms": 300}


@dataclass
class Member:
    client_id: str
    consumer: Consumer
    partitions: list[int] = field(default_factory=list)
    lag: int = 0  # high watermark minus committed, summed over its partitions


@dataclass
class TwoMembers:
    topic: str
    group: str
    members: list[Member]
    partition_lag: dict[int, int]

    @property
    def lag(self) -> int:
        return sum(self.partition_lag.values())


def _produce(bootstrap: str, topic: str, keys: range) -> set[int]:
    """Records keyed k<i>; the partitions they went to (delivery reports)."""
    producer = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2", **FAST})
    partitions: set[int] = set()

    def delivered(error: KafkaError | None, message: Message) -> None:
        assert error is None, error
        partition = message.partition()
        assert partition is not None
        partitions.add(partition)

    for i in keys:
        producer.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode(), on_delivery=delivered)
    assert producer.flush(30) == 0
    return partitions


def _poll_until(members: list[Member], done: Callable[[], bool], seen: set[bytes]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done():
        assert time.monotonic() < deadline, "the group did not get there in time"
        for member in members:
            message = member.consumer.poll(0.05)
            value = None if message is None or message.error() else message.value()
            if value is not None:
                seen.add(value)


@contextlib.contextmanager
def two_members(bootstrap: str, topic: str, group: str, protocol: str = "classic") -> Iterator[TwoMembers]:
    admin = AdminClient({"bootstrap.servers": bootstrap, **FAST})
    admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS, replication_factor=1)])[topic].result(30)
    first = range(0, 80)
    assert _produce(bootstrap, topic, first) == set(range(PARTITIONS))
    settings = {"group.protocol": "consumer"} if protocol == "consumer" else CLASSIC
    members = [
        Member(
            f"member-{index}",
            Consumer(
                {
                    "bootstrap.servers": bootstrap,
                    "group.id": group,
                    "client.id": f"member-{index}",
                    "auto.offset.reset": "earliest",
                    "enable.auto.commit": False,
                    **FAST,
                    **settings,
                }
            ),
        )
        for index in range(2)
    ]
    try:
        for member in members:
            member.consumer.subscribe([topic])
        seen: set[bytes] = set()

        def shared_and_read() -> bool:
            owned = [sorted(tp.partition for tp in m.consumer.assignment()) for m in members]
            together = sorted(p for parts in owned for p in parts)
            return all(owned) and together == list(range(PARTITIONS)) and len(seen) == len(first)

        _poll_until(members, shared_and_read, seen)
        for member in members:
            member.partitions = sorted(tp.partition for tp in member.consumer.assignment())
            member.consumer.commit(asynchronous=False)  # every record of its partitions read
        _produce(bootstrap, topic, range(80, 140))  # nobody reads these
        partition_lag: dict[int, int] = {}
        for member in members:
            mine = [TopicPartition(topic, p) for p in member.partitions]
            committed = member.consumer.committed(mine, timeout=30)
            for tp in committed:
                _, high = member.consumer.get_watermark_offsets(
                    TopicPartition(topic, tp.partition), timeout=30
                )
                assert tp.offset >= 0, f"partition {tp.partition} has no committed offset"
                partition_lag[tp.partition] = high - tp.offset
            member.lag = sum(partition_lag[p] for p in member.partitions)
        assert all(lag > 0 for lag in partition_lag.values()), partition_lag
        yield TwoMembers(topic, group, members, partition_lag)
    finally:
        for member in members:
            member.consumer.close()
