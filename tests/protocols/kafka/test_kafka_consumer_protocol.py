"""The consumer group protocol (KIP-848) end to end: librdkafka's group.protocol=consumer.

Goal: a librdkafka consumer with ``group.protocol=consumer`` is served (before, the
door did not offer ConsumerGroupHeartbeat and the consumer waited forever without a
word); three members share a topic's partitions, each partition owned by one member,
every record delivered; their commits (OffsetCommit with the member epoch) are the
group's offsets, which a classic consumer of the same group then resumes from; the
group is listed and described by Kafka's admin APIs (ListGroups type "consumer",
ConsumerGroupDescribe, DescribeGroups with protocol type "consumer") and by the node
(``odradek group describe``, /metrics lag); a refused heartbeat carries the
coordinator's message; a static member (group.instance.id) that restarts gets its
partitions back without the group's epoch moving; and librdkafka's describe of
classic and Odradek groups still works now that ConsumerGroupDescribe is offered (it
answers GROUP_ID_NOT_FOUND for them, and the client asks DescribeGroups).

Method: the in-process listener (conftest) and confluent-kafka 2.x consumers in one
thread, each polled in turn; conditions are waited for with generous deadlines.
Raw requests are encoded with the door's own codec.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import wire
from confluent_kafka import Consumer, ConsumerGroupType, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import generate_latest

import odradek
from odradek.protocols.flight.server import FlightService
from odradek.protocols.kafka.codec import messages_consumer as c
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.metrics import Metrics

FAST = {"topic.metadata.refresh.interval.ms": 1000, "reconnect.backoff.max.ms": 200}
DEADLINE_SECONDS = 60.0


def _create(door: Any, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": door.bootstrap, **FAST})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(10)


def _produce(door: Any, topic: str, count: int, start: int = 0) -> None:
    producer = Producer({"bootstrap.servers": door.bootstrap, "partitioner": "murmur2", **FAST})
    for i in range(start, start + count):
        producer.produce(topic, key=f"k{i}".encode(), value=str(i).encode())
    assert producer.flush(10) == 0


def _consumer(door: Any, group: str, index: int, **extra: Any) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": door.bootstrap,
            "group.id": group,
            "group.protocol": "consumer",
            "client.id": f"member-{index}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            **FAST,
            **extra,
        }
    )


def _until(consumers: list[Consumer], done: Callable[[], bool], seen: list[Any]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done():
        assert time.monotonic() < deadline, "the condition was not met in time"
        for consumer in consumers:
            message = consumer.poll(0.05)
            if message is not None and not message.error():
                seen.append(message)


@pytest.mark.compat("confluent-kafka", "KIP-848")
def test_three_members_share_the_partitions_and_commit(kafka_door: Any, topic_name: str) -> None:
    _create(kafka_door, topic_name, 4)
    _produce(kafka_door, topic_name, 200)
    group = "kip848-" + topic_name
    owned: dict[int, set[int]] = {}

    def member(index: int) -> Consumer:
        consumer = _consumer(kafka_door, group, index)

        def on_assign(_: Consumer, partitions: list[TopicPartition]) -> None:
            owned.setdefault(index, set()).update(p.partition for p in partitions)

        def on_revoke(_: Consumer, partitions: list[TopicPartition]) -> None:
            owned.setdefault(index, set()).difference_update(p.partition for p in partitions)

        consumer.subscribe([topic_name], on_assign=on_assign, on_revoke=on_revoke)
        return consumer

    consumers = [member(i) for i in range(3)]
    seen: list[Any] = []

    def shared_and_read() -> bool:
        together = [p for parts in owned.values() for p in parts]
        balanced = len(owned) == 3 and all(parts for parts in owned.values())
        return balanced and sorted(together) == [0, 1, 2, 3] and len({m.value() for m in seen}) == 200

    _until(consumers, shared_and_read, seen)
    assert {int(m.value()) for m in seen} == set(range(200))
    positions = {}
    for index, consumer in enumerate(consumers):
        consumer.commit(asynchronous=False)  # its positions, with its member epoch
        mine = consumer.position([TopicPartition(topic_name, p) for p in sorted(owned[index])])
        positions.update({tp.partition: tp.offset for tp in mine})
    committed = consumers[0].committed([TopicPartition(topic_name, p) for p in range(4)], timeout=10)
    assert {tp.partition: tp.offset for tp in committed} == positions

    admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap, **FAST})
    listings = admin.list_consumer_groups(request_timeout=10).result()
    (listed,) = [listing for listing in listings.valid if listing.group_id == group]
    assert listed.type == ConsumerGroupType.CONSUMER
    described = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert described.type == ConsumerGroupType.CONSUMER and len(described.members) == 3
    assigned = sorted(tp.partition for m in described.members for tp in m.assignment.topic_partitions)
    assert assigned == [0, 1, 2, 3]
    assert {m.client_id for m in described.members} == {"member-0", "member-1", "member-2"}

    info = kafka_door.node.directory.describe_group(group)
    assert (info.kind, info.options["protocol_type"], len(info.members)) == ("kafka", "consumer", 3)
    assert [topic.lag for topic in info.topics] == [0]  # everything read and committed
    _produce(kafka_door, topic_name, 10, start=200)
    lag_lines = [
        line
        for line in generate_latest(Metrics(kafka_door.engine).registry).decode().splitlines()
        if line.startswith(f'odradek_group_lag{{group="{group}"')
    ]
    ends = [
        consumers[0].get_watermark_offsets(TopicPartition(topic_name, p), timeout=10)[1] for p in range(4)
    ]
    kafka_lag = sum(end - positions[p] for p, end in enumerate(ends))  # what Kafka's tools show
    assert kafka_lag > 0
    assert lag_lines == [f'odradek_group_lag{{group="{group}",topic="{topic_name}"}} {kafka_lag:.1f}']

    for consumer in consumers:
        consumer.close()  # each leaves the group (epoch -1)
    assert kafka_door.node.directory.describe_group(group).state == "Empty"
    classic = Consumer(
        {
            "bootstrap.servers": kafka_door.bootstrap,
            "group.id": group,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 100,
            **FAST,
        }
    )
    classic.subscribe([topic_name])
    rest: list[Any] = []
    _until([classic], lambda: len(rest) >= 10, rest)
    classic.close()
    assert sorted(int(m.value()) for m in rest) == list(range(200, 210))  # resumed from the commits


def test_a_member_that_leaves_hands_its_partitions_over(kafka_door: Any, topic_name: str) -> None:
    _create(kafka_door, topic_name, 2)
    group = "kip848-leave-" + topic_name
    owned: dict[int, set[int]] = {0: set(), 1: set()}

    def member(index: int) -> Consumer:
        consumer = _consumer(kafka_door, group, index)
        consumer.subscribe(
            [topic_name],
            on_assign=lambda _, ps: owned[index].update(p.partition for p in ps),
            on_revoke=lambda _, ps: owned[index].difference_update(p.partition for p in ps),
        )
        return consumer

    first, second = member(0), member(1)
    seen: list[Any] = []
    _until([first, second], lambda: owned[0] and owned[1] and owned[0] | owned[1] == {0, 1}, seen)
    assert not owned[0] & owned[1]
    second.close()
    _until([first], lambda: owned[0] == {0, 1}, seen)
    _produce(kafka_door, topic_name, 20)
    _until([first], lambda: len({m.value() for m in seen}) >= 20, seen)
    first.close()


class _Wire(wire.Wire):
    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=30, client_id="raw")


def test_refusals_carry_the_coordinators_message(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = _Wire(kafka_door.listener.port)
    request = c.ConsumerGroupHeartbeatRequest(
        group_id="g-raw",
        member_id=uuid.uuid4().hex,
        member_epoch=0,
        rebalance_timeout_ms=30_000,
        subscribed_topic_names=(topic_name,),
        server_assignor="sticky",
    )
    refused = wire.call(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, request)
    assert refused.error_code == ErrorCode.UNSUPPORTED_ASSIGNOR and "uniform" in refused.error_message
    joined = wire.call(ApiKey.CONSUMER_GROUP_HEARTBEAT, 1, dataclasses.replace(request, server_assignor=None))
    assert joined.error_code == 0 and joined.member_epoch == 1 and joined.heartbeat_interval_ms > 0
    assert joined.assignment is not None and joined.assignment.topic_partitions[0].partitions == (0,)
    stale = wire.call(
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        1,
        c.ConsumerGroupHeartbeatRequest(group_id="g-raw", member_id=request.member_id, member_epoch=9),
    )
    assert stale.error_code == ErrorCode.FENCED_MEMBER_EPOCH and "epoch 9" in stale.error_message
    described = wire.call(
        ApiKey.CONSUMER_GROUP_DESCRIBE, 1, c.ConsumerGroupDescribeRequest(group_ids=("g-raw", "nothing"))
    )
    ours, missing = described.groups
    assert (ours.group_state, ours.assignor_name, len(ours.members)) == ("Stable", "uniform", 1)
    assert ours.members[0].assignment.topic_partitions[0].topic_name == topic_name
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND and "does not exist" in missing.error_message
    wire.close()


def test_librdkafka_still_describes_classic_and_odradek_groups(kafka_door: Any, topic_name: str) -> None:
    """librdkafka asks ConsumerGroupDescribe first once the broker offers it: groups of
    other kinds must send it on to DescribeGroups."""
    kafka_door.engine.create_topic(topic_name)
    flight = FlightService(kafka_door.engine, "grpc://127.0.0.1:0")
    client = odradek.connect(f"grpc://127.0.0.1:{flight.port}")
    try:
        native = client.subscribe(topic_name, group="native-" + topic_name)
        admin = AdminClient({"bootstrap.servers": kafka_door.bootstrap, **FAST})
        name = "native-" + topic_name
        described = admin.describe_consumer_groups([name])[name].result(timeout=10)
        assert described.type == ConsumerGroupType.CLASSIC and len(described.members) == 1
        native.close()
    finally:
        client.close()
        flight.drain(5.0)


@pytest.mark.parametrize("version", [0, 1])
def test_both_heartbeat_versions_are_served(kafka_door: Any, topic_name: str, version: int) -> None:
    kafka_door.engine.create_topic(topic_name)
    wire = _Wire(kafka_door.listener.port)
    joined = wire.call(
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        version,
        c.ConsumerGroupHeartbeatRequest(
            group_id=f"g-v{version}",
            member_id="" if version == 0 else uuid.uuid4().hex,
            member_epoch=0,
            rebalance_timeout_ms=30_000,
            subscribed_topic_names=(topic_name,),
        ),
    )
    assert joined.error_code == 0 and joined.member_id  # v0: the coordinator makes the id
    wire.close()


def test_a_static_member_restarts_with_its_partitions(kafka_door: Any, topic_name: str) -> None:
    """librdkafka leaves with epoch -2 when a static member closes: the same
    group.instance.id coming back gets its partitions again, the group's epoch does not
    move and the other member is not touched."""
    _create(kafka_door, topic_name, 4)
    group = "kip848-static-" + topic_name
    events: list[tuple[int, str, tuple[int, ...]]] = []

    def member(index: int) -> Consumer:
        consumer = _consumer(kafka_door, group, index, **{"group.instance.id": f"instance-{index}"})
        consumer.subscribe(
            [topic_name],
            on_assign=lambda _, ps: events.append((index, "assign", tuple(sorted(p.partition for p in ps)))),
            on_revoke=lambda _, ps: events.append((index, "revoke", tuple(sorted(p.partition for p in ps)))),
        )
        return consumer

    consumers = [member(0), member(1)]

    def owned(index: int, since: int = 0) -> set[int]:
        parts: set[int] = set()
        for who, kind, partitions in events[since:]:
            if who == index:
                parts = parts | set(partitions) if kind == "assign" else parts - set(partitions)
        return parts

    def settled() -> bool:
        try:
            info = kafka_door.node.directory.describe_group(group)
        except odradek.InvalidRequest:  # not made yet
            return False
        return info.state == "Stable" and owned(0) | owned(1) == {0, 1, 2, 3}

    _until(consumers, lambda: settled() and bool(owned(0)) and bool(owned(1)), [])
    before = owned(1)
    epoch = kafka_door.node.directory.describe_group(group).options["generation"]
    consumers[1].close()
    mark = len(events)
    consumers[1] = member(1)
    _until(consumers, lambda: bool(owned(1, mark)), [])
    assert owned(1, mark) == before
    assert [event for event in events[mark:] if event[0] == 0] == []
    assert kafka_door.node.directory.describe_group(group).options["generation"] == epoch
    for consumer in consumers:
        consumer.close()
