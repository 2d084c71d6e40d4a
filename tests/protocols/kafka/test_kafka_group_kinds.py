"""Consumer groups as one system: the Kafka door's groups and Odradek's own, seen alike.

Goal (decision 0008): a classic Kafka group (joined or committed through the Kafka
door) is listed, described with its lag per topic and per virtual partition, measured
on /metrics and deleted through the native door, exactly as an odradek group is; an
odradek group is listed, described, given committed offsets and deleted through
Kafka's own admin clients; deletion is refused while a group of either kind has
members; a group name belongs to one kind, so a group of the other kind is refused
under it; and asked on the Kafka door's own event loop, the directory answers at once
instead of waiting for that loop (a deletion is refused there).

Method: one engine served by the in-process Kafka listener (conftest) and a Flight
server and a metrics registry over the same engine, as ``odradek serve`` has them.
Kafka groups are made with kafka-python (a standalone commit) or with raw JoinGroup
and SyncGroup requests from the door's codec (a member that stays until it leaves);
odradek groups with the remote client. Kafka's view is asked with kafka-python's and
confluent-kafka's admin clients.
"""

from __future__ import annotations

import asyncio
import dataclasses
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import wire
from confluent_kafka.admin import AdminClient
from prometheus_client import generate_latest

with warnings.catch_warnings():  # kafka-python's protocol tables use a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.admin import NewTopic
    from kafka.structs import OffsetAndMetadata

import odradek
from odradek.protocols.flight.server import FlightService
from odradek.protocols.kafka.codec import messages_groups as g
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.metrics import Metrics

FAST = {"request_timeout_ms": 10_000, "metadata_max_age_ms": 1000, "reconnect_backoff_max_ms": 200}


@dataclasses.dataclass
class Doors:
    kafka: Any  # the conftest's KafkaDoor
    client: odradek.RemoteClient
    metrics: Metrics

    def metrics_text(self) -> str:
        return generate_latest(self.metrics.registry).decode()


@pytest.fixture
def doors(kafka_door: Any) -> Iterator[Doors]:
    flight = FlightService(kafka_door.engine, "grpc://127.0.0.1:0")
    client = odradek.connect(f"grpc://127.0.0.1:{flight.port}")
    try:
        yield Doors(kafka_door, client, Metrics(kafka_door.engine))
    finally:
        client.close()
        flight.drain(5.0)


class Wire(wire.Wire):
    """Raw requests on one connection, encoded with the door's codec."""

    def __init__(self, port: int) -> None:
        super().__init__(port, timeout=30, client_id="raw")

    def join(self, group: str) -> g.JoinGroupResponse:
        request = g.JoinGroupRequest(
            group_id=group,
            session_timeout_ms=60_000,
            rebalance_timeout_ms=60_000,
            member_id="",
            protocol_type="consumer",
            protocols=(g.JoinGroupRequestProtocol(name="range", metadata=b""),),
        )
        return self.call(ApiKey.JOIN_GROUP, 5, request)


def _create_topic(doors: Doors, name: str, partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=doors.kafka.bootstrap, **FAST)
    admin.create_topics([NewTopic(name, partitions, 1)])
    admin.close()


def _commit_standalone(doors: Doors, group: str, offsets: dict[TopicPartition, int]) -> None:
    """A Kafka group with committed offsets and no members (assign + commit)."""
    consumer = KafkaConsumer(
        bootstrap_servers=doors.kafka.bootstrap, group_id=group, enable_auto_commit=False, **FAST
    )
    consumer.assign(list(offsets))
    consumer.commit({tp: OffsetAndMetadata(offset, f"at {offset}", -1) for tp, offset in offsets.items()})
    consumer.close()


def test_a_kafka_group_is_listed_described_and_measured_through_the_native_door(doors: Doors) -> None:
    _create_topic(doors, "orders", 2)
    doors.client.append("orders", [{"key": f"k{i}".encode(), "value": b"v"} for i in range(10)])
    _commit_standalone(
        doors, "kafka-billing", {TopicPartition("orders", 0): 4, TopicPartition("orders", 1): 7}
    )
    native = doors.client.subscribe("orders", group="native-billing")
    native.ack(native.poll(3, timeout=10))  # three of one topic's ten records settled

    assert doors.client.list_groups() == ["kafka-billing", "native-billing"]
    info = doors.client.describe_group("kafka-billing")
    assert (info.kind, info.state, info.members) == ("kafka", "Empty", [])
    (topic,) = info.topics
    assert (topic.topic, topic.committed, topic.next_offset, topic.lag) == ("orders", 4, 10, 6)
    assert topic.partitions is not None
    # A partition's lag is its own high watermark minus its committed offset: k0..k9 hash
    # to partition 1 up to offset 6 (high watermark 7), to partition 0 up to 9 (10).
    assert [(p.partition, p.committed, p.lag, p.metadata) for p in topic.partitions] == [
        (0, 4, 6, "at 4"),
        (1, 7, 0, "at 7"),
    ]
    native_info = doors.client.describe_group("native-billing")
    assert (native_info.kind, native_info.state, native_info.lag) == ("odradek", "Stable", 7)

    text = doors.metrics_text()
    assert 'odradek_group_info{group="kafka-billing",kind="kafka",state="Empty"} 1.0' in text
    assert 'odradek_group_info{group="native-billing",kind="odradek",state="Stable"} 1.0' in text
    assert 'odradek_group_lag{group="kafka-billing",topic="orders"} 6.0' in text
    assert 'odradek_group_committed_offset{group="kafka-billing",topic="orders"} 4.0' in text
    assert 'odradek_group_partition_lag{group="kafka-billing",partition="1",topic="orders"} 0.0' in text
    assert 'odradek_group_lag{group="native-billing",topic="orders"} 7.0' in text
    native.close()


def test_members_keep_a_kafka_group_from_being_deleted_through_the_native_door(doors: Doors) -> None:
    doors.kafka.engine.create_topic("orders")
    wire = Wire(doors.kafka.listener.port)
    joined = wire.join("live")
    assert joined.error_code == 0 and joined.leader == joined.member_id
    synced = wire.call(
        ApiKey.SYNC_GROUP,
        3,
        g.SyncGroupRequest(
            group_id="live",
            generation_id=joined.generation_id,
            member_id=joined.member_id,
            assignments=(g.SyncGroupRequestAssignment(member_id=joined.member_id, assignment=b"\x00"),),
        ),
    )
    assert synced.error_code == 0

    info = doors.client.describe_group("live")
    assert (info.kind, info.state) == ("kafka", "Stable")
    assert info.options["protocol"] == "range" and info.options["generation"] == joined.generation_id
    ((member_id, client_id),) = [(m.member, m.client_id) for m in info.members]
    assert member_id == joined.member_id and client_id == "raw"
    with pytest.raises(odradek.InvalidRequest, match="member"):
        doors.client.delete_group("live")
    assert "live" in doors.client.list_groups()

    left = wire.call(
        ApiKey.LEAVE_GROUP,
        3,
        g.LeaveGroupRequest(group_id="live", members=(g.MemberIdentity(member_id=member_id),)),
    )
    assert left.members[0].error_code == 0
    doors.client.delete_group("live")
    assert "live" not in doors.client.list_groups()
    with pytest.raises(odradek.InvalidRequest, match="does not exist"):
        doors.client.describe_group("live")
    listed = wire.call(ApiKey.LIST_GROUPS, 3, g.ListGroupsRequest())
    assert "live" not in [group.group_id for group in listed.groups]
    wire.close()


def test_odradek_groups_through_kafka_admin_clients(doors: Doors) -> None:
    _create_topic(doors, "orders", 2)
    doors.client.append("orders", [{"key": f"k{i}".encode(), "value": b"v"} for i in range(10)])
    consumer = doors.client.subscribe("orders", group="native")
    held = consumer.poll(10, timeout=10)
    consumer.ack(held[:6])  # records 0..5 settled: the group's committed offset is 6
    assert doors.client.describe_group("native").topics[0].committed == 6

    admin = KafkaAdminClient(bootstrap_servers=doors.kafka.bootstrap, **FAST)
    (listed,) = [group for group in admin.list_groups() if group["group_id"] == "native"]
    assert (listed["protocol_type"], listed["group_state"]) == ("", "Stable")
    described = admin.describe_groups(["native"])["native"]
    assert (described["group_state"], described["protocol_data"]) == ("Stable", "odradek")
    assert [m["member_id"] for m in described["members"]] == [consumer.member_id]
    offsets = admin.list_group_offsets({"native": None})["native"]
    assert {tp: meta.offset for tp, meta in offsets.items()} == {
        TopicPartition("orders", 0): 6,
        TopicPartition("orders", 1): 6,
    }
    confluent = AdminClient({"bootstrap.servers": doors.kafka.bootstrap})
    listings = confluent.list_consumer_groups(request_timeout=10).result()
    assert "native" in [listing.group_id for listing in listings.valid]

    assert admin.delete_groups(["native"]) == {"native": "NonEmptyGroupError"}  # it has a member
    consumer.close()
    assert admin.delete_groups(["native"]) == {"native": "OK"}
    assert doors.client.list_groups() == []
    admin.close()


def test_a_group_name_belongs_to_one_kind(doors: Doors) -> None:
    doors.kafka.engine.create_topic("orders")
    native = doors.client.subscribe("orders", group="shared")
    wire = Wire(doors.kafka.listener.port)
    assert wire.join("shared").error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    commit = g.OffsetCommitRequest(
        group_id="shared",
        generation_id_or_member_epoch=-1,
        member_id="",
        topics=(
            g.OffsetCommitRequestTopic(
                name="orders",
                partitions=(
                    g.OffsetCommitRequestPartition(
                        partition_index=0, committed_offset=1, committed_metadata=None
                    ),
                ),
            ),
        ),
    )
    answer = wire.call(ApiKey.OFFSET_COMMIT, 8, commit)
    assert answer.topics[0].partitions[0].error_code == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert doors.client.describe_group("shared").kind == "odradek"

    _commit_standalone(doors, "kafka-only", {TopicPartition("orders", 0): 0})
    with pytest.raises(odradek.InvalidRequest, match="kafka"):
        doors.client.subscribe("orders", group="kafka-only")
    assert doors.client.describe_group("kafka-only").kind == "kafka"
    native.close()
    wire.close()


def test_asked_on_the_kafka_doors_own_loop_the_groups_answer_at_once(doors: Doors) -> None:
    doors.kafka.engine.create_topic("orders")
    _commit_standalone(doors, "on-loop", {TopicPartition("orders", 0): 0})
    node = doors.kafka.node
    loop = doors.kafka.listener._loop  # the door's event loop (an application's own, for KafkaListener)

    async def on_the_loop() -> tuple[str, str]:
        info = node.directory.describe_group("on-loop")  # must not wait for the loop it runs on
        try:
            node.directory.delete_group("on-loop")
        except odradek.OdradekError as error:
            return info.kind, error.message
        return info.kind, ""

    kind, refusal = asyncio.run_coroutine_threadsafe(on_the_loop(), loop).result(timeout=30)
    assert kind == "kafka" and "another thread" in refusal
    doors.client.delete_group("on-loop")  # from any other thread it goes
