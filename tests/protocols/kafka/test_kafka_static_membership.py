"""Static membership (KIP-345) of classic groups: group.instance.id.

Goal: a static member that restarts (same instance id, new member id, no LeaveGroup)
gets its previous assignment back at once, without a rebalance: the other members
keep theirs untouched and the generation does not move (before, the group stalled
until the old member's session timed out and then rebalanced everybody); this holds
for the group's leader too; the old member id is fenced (FENCED_INSTANCE_ID on
Heartbeat, SyncGroup, OffsetCommit, JoinGroup and LeaveGroup); a static member that
does not come back is removed once its session times out; LeaveGroup by instance id
removes it; a restart with another subscription rebalances as a join does.

Method: the coordinator's state machine with an injected clock (no sockets), then
confluent-kafka, kafka-python and aiokafka consumers with ``group.instance.id`` against the
in-process listener; conditions are waited for with generous deadlines.
"""

from __future__ import annotations

import asyncio
import os
import struct
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.groups import COMPLETING, PREPARING, STABLE, Coordinator, JoinResult
from odradek.protocols.kafka.store import DoorStore

with warnings.catch_warnings():  # kafka-python's protocol tables use a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer

DEADLINE_SECONDS = 60.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def subscription(*topics: str) -> bytes:
    """A ``consumer`` protocol subscription (version 0) of ``topics``."""
    body = struct.pack(">hi", 0, len(topics))
    for topic in topics:
        body += struct.pack(">h", len(topic)) + topic.encode()
    return body + struct.pack(">i", -1)


async def join(
    coordinator: Coordinator, instance: str, member: str = "", topics: tuple[str, ...] = ("orders",)
) -> JoinResult:
    return await coordinator.join(
        "g", member, instance, "client", "host", 6000, 300, "consumer", [("range", subscription(*topics))]
    )


async def stable_pair(coordinator: Coordinator) -> tuple[JoinResult, JoinResult]:
    first, second = await asyncio.gather(join(coordinator, "i-1"), join(coordinator, "i-2"))
    leader, follower = (first, second) if first.member_id == first.leader else (second, first)
    instance = {first.member_id: "i-1", second.member_id: "i-2"}
    assignments = [(first.member_id, b"A"), (second.member_id, b"B")]
    await asyncio.gather(  # the follower waits for the leader's assignment
        coordinator.sync("g", follower.member_id, 1, [], instance[follower.member_id]),
        coordinator.sync("g", leader.member_id, 1, assignments, instance[leader.member_id]),
    )
    assert coordinator.groups["g"].state == STABLE
    return first, second


def test_a_restarted_static_member_takes_its_place_without_a_rebalance(tmp_path: os.PathLike[str]) -> None:
    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        first, second = await stable_pair(coordinator)
        for old, instance, assignment in ((first, "i-1", b"A"), (second, "i-2", b"B")):  # the leader too
            back = await join(coordinator, instance)
            assert back.error == ErrorCode.NONE and back.member_id != old.member_id
            assert back.generation == 1 and coordinator.groups["g"].state == STABLE
            if back.leader == back.member_id:
                assert back.skip_assignment and len(back.members) == 2  # it learns the group, assigns nothing
            error, mine, _ = await coordinator.sync("g", back.member_id, 1, [], instance)
            assert (error, mine) == (ErrorCode.NONE, assignment)
            assert coordinator.heartbeat("g", old.member_id, 1, instance) == ErrorCode.FENCED_INSTANCE_ID
            assert coordinator.heartbeat("g", old.member_id, 1) == ErrorCode.UNKNOWN_MEMBER_ID
            assert (await coordinator.sync("g", old.member_id, 1, [], instance))[
                0
            ] == ErrorCode.FENCED_INSTANCE_ID
            assert coordinator.check_commit("g", old.member_id, 1, instance) == ErrorCode.FENCED_INSTANCE_ID
            assert (await join(coordinator, instance, old.member_id)).error == ErrorCode.FENCED_INSTANCE_ID
            assert coordinator.leave("g", [old.member_id], [instance]) == [ErrorCode.FENCED_INSTANCE_ID]
            assert coordinator.heartbeat("g", back.member_id, 1, instance) == ErrorCode.NONE
        assert coordinator.groups["g"].generation == 1
        coordinator.close()

    asyncio.run(scenario())


def test_a_static_member_that_does_not_come_back_expires(tmp_path: os.PathLike[str]) -> None:
    clock = Clock()

    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)), clock=clock)
        first, second = await stable_pair(coordinator)
        clock.now += 5.0
        coordinator.heartbeat("g", first.member_id, 1, "i-1")
        clock.now += 2.0  # i-2 silent for 7 s, past its 6 s session
        coordinator.expire()
        group = coordinator.groups["g"]
        assert second.member_id not in group.members and "i-2" not in group.static
        assert group.state == PREPARING
        assert coordinator.heartbeat("g", first.member_id, 1, "i-1") == ErrorCode.REBALANCE_IN_PROGRESS
        coordinator.close()

    asyncio.run(scenario())


def test_leave_by_instance_id_and_a_changed_subscription_rebalance(tmp_path: os.PathLike[str]) -> None:
    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        first, _ = await stable_pair(coordinator)
        rejoining = asyncio.ensure_future(join(coordinator, "i-2", topics=("orders", "payments")))
        await asyncio.sleep(0)
        assert coordinator.groups["g"].state == PREPARING  # another subscription: a rebalance
        assert coordinator.leave("g", [""], ["i-1"]) == [ErrorCode.NONE]  # by instance id alone
        assert first.member_id not in coordinator.groups["g"].members
        rejoined = await rejoining
        assert rejoined.error == ErrorCode.NONE and rejoined.generation == 2
        coordinator.close()

    asyncio.run(scenario())


# -- real clients -----------------------------------------------------------------------


def _create(door: Any, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": door.bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])[name].result(10)


def _wait(step: Callable[[], None], done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not done():
        assert time.monotonic() < deadline, "the condition was not met in time"
        step()


@pytest.mark.compat("confluent-kafka", "static groups")
def test_confluent_static_members_restart_without_a_rebalance(kafka_door: Any, topic_name: str) -> None:
    _create(kafka_door, topic_name, 4)
    group = "static-" + topic_name
    events: list[tuple[int, str, tuple[int, ...]]] = []

    def member(index: int) -> Consumer:
        consumer = Consumer(
            {
                "bootstrap.servers": kafka_door.bootstrap,
                "group.id": group,
                "group.instance.id": f"instance-{index}",
                "session.timeout.ms": 30_000,  # long: a stall until it expires would show
                "heartbeat.interval.ms": 100,
                "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            }
        )

        def on_assign(_: Consumer, parts: list[TopicPartition]) -> None:
            events.append((index, "assign", tuple(sorted(p.partition for p in parts))))

        def on_revoke(_: Consumer, parts: list[TopicPartition]) -> None:
            events.append((index, "revoke", tuple(sorted(p.partition for p in parts))))

        consumer.subscribe([topic_name], on_assign=on_assign, on_revoke=on_revoke)
        return consumer

    consumers = [member(0), member(1)]

    def poll() -> None:
        for consumer in consumers:
            consumer.poll(0.05)

    def assigned(index: int, since: int) -> tuple[int, ...] | None:
        mine = [e for e in events[since:] if e[0] == index and e[1] == "assign"]
        return mine[-1][2] if mine else None

    _wait(poll, lambda: assigned(0, 0) is not None and assigned(1, 0) is not None)
    before = {index: assigned(index, 0) for index in (0, 1)}
    generation = kafka_door.node.directory.describe_group(group).options["generation"]
    for index in (1, 0):  # the follower, then the leader (or the other way round)
        consumers[index].close()  # a static member sends no LeaveGroup
        mark = len(events)
        consumers[index] = member(index)
        _wait(poll, lambda index=index, mark=mark: assigned(index, mark) is not None)  # type: ignore[misc]
        assert assigned(index, mark) == before[index]
        others = [e for e in events[mark:] if e[0] != index]
        assert others == []  # the other member was neither revoked nor reassigned
        info = kafka_door.node.directory.describe_group(group)
        assert info.options["generation"] == generation and info.state == "Stable"
    for consumer in consumers:
        consumer.close()


@pytest.mark.compat("kafka-python", "static groups")
def test_kafka_python_static_member_restarts_without_a_rebalance(kafka_door: Any, topic_name: str) -> None:
    _create(kafka_door, topic_name, 2)
    group = "static-kp-" + topic_name
    settings: dict[str, Any] = {
        "bootstrap_servers": kafka_door.bootstrap,
        "group_id": group,
        "session_timeout_ms": 30_000,
        "heartbeat_interval_ms": 100,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
    }
    consumers = [KafkaConsumer(topic_name, group_instance_id=f"kp-{i}", **settings) for i in range(2)]

    def poll() -> None:
        for consumer in consumers:
            consumer.poll(timeout_ms=50)

    _wait(poll, lambda: all(consumer.assignment() for consumer in consumers))
    before = [consumer.assignment() for consumer in consumers]
    generation = kafka_door.node.directory.describe_group(group).options["generation"]
    consumers[1].close()
    consumers[1] = KafkaConsumer(topic_name, group_instance_id="kp-1", **settings)
    _wait(poll, lambda: bool(consumers[1].assignment()))
    assert [consumer.assignment() for consumer in consumers] == before
    assert kafka_door.node.directory.describe_group(group).options["generation"] == generation
    for consumer in consumers:
        consumer.close()


def test_a_restart_during_a_rebalance_joins_the_next_generation(tmp_path: os.PathLike[str]) -> None:
    """The leader's assignment of a generation names the old member id: a static member
    restarting before that generation is synced must not be handed it (it would get an
    empty assignment); the group rebalances, as Kafka does."""

    async def scenario() -> None:
        coordinator = Coordinator(DoorStore(os.fspath(tmp_path)))
        first, second = await asyncio.gather(join(coordinator, "i-1"), join(coordinator, "i-2"))
        assert coordinator.groups["g"].state == COMPLETING
        restarted = asyncio.ensure_future(join(coordinator, "i-2"))
        await asyncio.sleep(0)
        assert coordinator.groups["g"].state == PREPARING
        again = await join(coordinator, "i-1", first.member_id)
        back = await restarted
        assert again.generation == back.generation == 2 and back.member_id != second.member_id
        everyone = {member for member, _, _ in (again.members or back.members)}
        assert everyone == {first.member_id, back.member_id}
        coordinator.close()

    asyncio.run(scenario())


@pytest.mark.compat("aiokafka", "static groups")
def test_aiokafka_static_member_restarts_without_a_rebalance(kafka_door: Any, topic_name: str) -> None:
    _create(kafka_door, topic_name, 2)
    group = "static-aio-" + topic_name

    def member(index: int) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic_name,
            bootstrap_servers=kafka_door.bootstrap,
            group_id=group,
            group_instance_id=f"aio-{index}",
            session_timeout_ms=30_000,
            heartbeat_interval_ms=100,
            enable_auto_commit=False,
        )

    async def until(done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + DEADLINE_SECONDS
        while not done():
            assert time.monotonic() < deadline, "the condition was not met in time"
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        consumers = [member(0), member(1)]
        for consumer in consumers:
            await consumer.start()
        await until(lambda: all(consumer.assignment() for consumer in consumers))
        before = [consumer.assignment() for consumer in consumers]
        generation = kafka_door.node.directory.describe_group(group).options["generation"]
        await consumers[1].stop()
        consumers[1] = member(1)
        await consumers[1].start()
        await until(lambda: bool(consumers[1].assignment()))
        assert [consumer.assignment() for consumer in consumers] == before
        assert kafka_door.node.directory.describe_group(group).options["generation"] == generation
        for consumer in consumers:
            await consumer.stop()

    asyncio.run(scenario())
