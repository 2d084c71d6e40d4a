"""Share groups (KIP-932) on the wire: members, acquisition locks, acknowledgements.

Goal: a Kafka share consumer gets records of a topic under an acquisition lock, one
member at a time per record; RELEASE and an expired lock bring a record back with a
higher delivery count, REJECT and ACCEPT archive it, the delivery limit archives it
too; epochs and share sessions are checked as KIP-932 says; a share group is one of
Odradek's own groups, so a native consumer of the same group shares its records.

Method: a real in-process listener (conftest) spoken to by hand with the door's own
codec (wire.py): ShareGroupHeartbeat to join, ShareFetch (with piggy-backed
acknowledgements) and ShareAcknowledge. Records are appended natively. Short locks
and small delivery limits are the native group's options, set by creating the group
natively first, as a user would with ``odradek group``. Waits are conditions with
generous deadlines, never sleeps.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
from wire import Wire

from odradek import limits
from odradek.protocols.kafka.codec import messages_admin as admin
from odradek.protocols.kafka.codec import messages_data as data
from odradek.protocols.kafka.codec import messages_groups as groups_api
from odradek.protocols.kafka.codec import messages_share as s
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import decode_batches
from odradek.protocols.kafka.partitions import murmur2
from odradek.protocols.kafka.server import HANDLERS
from odradek.protocols.kafka.share_groups import (
    INVALID_RECORD_STATE,
    INVALID_SHARE_SESSION_EPOCH,
    SHARE_SESSION_NOT_FOUND,
)

V = 1  # the version of the four APIs the door serves
DEADLINE_SECONDS = 30.0


class ShareConsumer:
    """One share member on its own connection."""

    def __init__(
        self, port: int, group: str, topic: str | tuple[str, ...], member_id: str | None = None
    ) -> None:
        self.wire = Wire(port)
        self.group = group
        self.member_id = member_id or uuid.uuid4().hex
        self.epoch = 0
        self.session_epoch = 0
        answer = self.heartbeat(subscribed=(topic,) if isinstance(topic, str) else topic)
        assert answer.error_code == 0, answer.error_message
        self.epoch = answer.member_epoch
        self.assignment = answer.assignment

    def heartbeat(self, *, epoch: int | None = None, subscribed: tuple[str, ...] | None = None) -> Any:
        return self.wire.call(
            ApiKey.SHARE_GROUP_HEARTBEAT,
            V,
            s.ShareGroupHeartbeatRequest(
                group_id=self.group,
                member_id=self.member_id,
                member_epoch=self.epoch if epoch is None else epoch,
                subscribed_topic_names=subscribed,
            ),
        )

    def fetch(
        self,
        topic_id: uuid.UUID,
        *,
        acks: tuple[s.AcknowledgementBatch, ...] = (),
        wait_ms: int = 0,
        max_records: int = 500,
        max_bytes: int = 0x7FFFFFFF,
        session_epoch: int | None = None,
        partitions: tuple[int, ...] = (0,),
    ) -> Any:
        return self.fetch_topics(
            {topic_id: partitions},
            acks={(topic_id, 0): acks} if acks else None,
            wait_ms=wait_ms,
            max_records=max_records,
            max_bytes=max_bytes,
            session_epoch=session_epoch,
        )

    def fetch_topics(
        self,
        wanted: dict[uuid.UUID, tuple[int, ...]],
        *,
        acks: dict[tuple[uuid.UUID, int], tuple[s.AcknowledgementBatch, ...]] | None = None,
        wait_ms: int = 0,
        max_records: int = 500,
        max_bytes: int = 0x7FFFFFFF,
        session_epoch: int | None = None,
    ) -> Any:
        """ShareFetch of the partitions of several topics, acknowledging ``acks``."""
        acks = acks or {}
        epoch = self.session_epoch if session_epoch is None else session_epoch
        answer = self.wire.call(
            ApiKey.SHARE_FETCH,
            V,
            s.ShareFetchRequest(
                group_id=self.group,
                member_id=self.member_id,
                share_session_epoch=epoch,
                max_wait_ms=wait_ms,
                min_bytes=1,
                max_bytes=max_bytes,
                max_records=max_records,
                batch_size=max_records,
                topics=tuple(
                    s.ShareFetchTopic(
                        topic_id=tid,
                        partitions=tuple(
                            s.ShareFetchPartition(
                                partition_index=p, acknowledgement_batches=acks.get((tid, p), ())
                            )
                            for p in partitions
                        ),
                    )
                    for tid, partitions in wanted.items()
                ),
            ),
        )
        if answer.error_code == 0 and session_epoch is None:
            self.session_epoch += 1
        return answer

    def acknowledge(
        self,
        topic_id: uuid.UUID,
        acks: tuple[s.AcknowledgementBatch, ...],
        *,
        session_epoch: int | None = None,
    ) -> Any:
        answer = self.wire.call(
            ApiKey.SHARE_ACKNOWLEDGE,
            V,
            s.ShareAcknowledgeRequest(
                group_id=self.group,
                member_id=self.member_id,
                share_session_epoch=self.session_epoch if session_epoch is None else session_epoch,
                topics=(
                    s.ShareAcknowledgeTopic(
                        topic_id=topic_id,
                        partitions=(
                            s.ShareAcknowledgePartition(partition_index=0, acknowledgement_batches=acks),
                        ),
                    ),
                ),
            ),
        )
        if answer.error_code == 0:
            self.session_epoch += 1
        return answer

    def close(self) -> None:
        self.wire.close()


def acquired(answer: Any) -> list[tuple[int, int]]:
    """(offset, delivery count) of every record a ShareFetch acquired, checked against
    the records it carries."""
    assert answer.error_code == 0, answer.error_message
    found: list[tuple[int, int]] = []
    for topic in answer.responses:
        for partition in topic.partitions:
            assert partition.error_code == 0, partition.error_message
            ranges = [
                (offset, r.delivery_count)
                for r in partition.acquired_records
                for offset in range(r.first_offset, r.last_offset + 1)
            ]
            carried: list[int] = []
            for batch in decode_batches(partition.records or b""):
                carried.extend(int(batch.header.base_offset + d) for d in np.asarray(batch.offset_deltas))
            assert sorted(carried) == sorted(o for o, _ in ranges)
            found.extend(ranges)
    return sorted(found)


def acquired_by_topic(answer: Any) -> dict[uuid.UUID, list[tuple[int, int]]]:
    """What :func:`acquired` gives, per topic id."""
    found: dict[uuid.UUID, list[tuple[int, int]]] = {}
    for topic in answer.responses:
        one = s.ShareFetchResponse(responses=(topic,))
        found.setdefault(topic.topic_id, []).extend(acquired(one))
    return {tid: sorted(ranges) for tid, ranges in found.items() if ranges}


def records_bytes(answer: Any) -> int:
    """Bytes of the record batches a ShareFetch answer carries."""
    return sum(len(p.records or b"") for t in answer.responses for p in t.partitions)


def ack(offsets: list[int], kind: int) -> tuple[s.AcknowledgementBatch, ...]:
    return tuple(
        s.AcknowledgementBatch(first_offset=o, last_offset=o, acknowledge_types=(kind,)) for o in offsets
    )


def partition_errors(answer: Any) -> list[int]:
    """Each partition's acknowledgement error (ShareFetch's or ShareAcknowledge's field)."""
    name = "acknowledge_error_code" if isinstance(answer, s.ShareFetchResponse) else "error_code"
    return [getattr(p, name) for t in answer.responses for p in t.partitions]


def topic_id(door: Any, topic: str) -> uuid.UUID:
    return uuid.UUID(hex=door.engine.describe_topic(topic).incarnation)


def fetch_until(consumer: ShareConsumer, tid: uuid.UUID, wanted: int) -> list[tuple[int, int]]:
    """Fetch (waiting up to 200 ms each) until ``wanted`` records were acquired."""
    got: list[tuple[int, int]] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(got) < wanted and time.monotonic() < deadline:
        got.extend(acquired(consumer.fetch(tid, wait_ms=200, max_records=wanted - len(got))))
    return sorted(got)


def native_group(door: Any, group: str, topic: str, **options: Any) -> None:
    """Create ``group`` natively with ``options`` (its members' policy), then leave it
    empty: the share members that join adopt the options."""
    member = door.node.groups.join(group, topic, ordering="none", start="earliest", **options)
    door.node.groups.leave(group, member)


def test_two_members_share_records_never_one_record_to_both(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    port = kafka_door.listener.port
    first = ShareConsumer(port, "workers", topic_name)
    second = ShareConsumer(port, "workers", topic_name)
    assert first.assignment is not None
    assert [(t.topic_id, t.partitions) for t in first.assignment.topic_partitions] == [(tid, (0,))]
    kafka_door.engine.append(topic_name, [{"key": b"k%d" % (i % 3), "value": b"v%d" % i} for i in range(40)])
    a = fetch_until(first, tid, 15)
    b = fetch_until(second, tid, 25)
    assert len(a) == 15 and len(b) == 25
    assert not {o for o, _ in a} & {o for o, _ in b}, "a record was acquired by both members at once"
    assert {o for o, _ in a} | {o for o, _ in b} == set(range(40))
    assert {count for _, count in a + b} == {1}
    # Both accept: nothing is left for anyone.
    assert partition_errors(first.acknowledge(tid, ack([o for o, _ in a], s.ACKNOWLEDGE_ACCEPT))) == [0]
    answer = second.fetch(tid, acks=ack([o for o, _ in b], s.ACKNOWLEDGE_ACCEPT))
    assert partition_errors(answer) == [0] and acquired(answer) == []
    assert acquired(first.fetch(tid)) == []
    # The share group is an Odradek group: its records are settled there.
    info = kafka_door.node.groups.describe_group("workers")
    assert len(info.members) == 2
    assert kafka_door.node.groups.committed("workers", topic_name)[1] == 40
    first.close()
    second.close()


def test_describe_shows_share_members_and_their_assignment(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    consumer = ShareConsumer(kafka_door.listener.port, "described", topic_name)
    answer = consumer.wire.call(
        ApiKey.SHARE_GROUP_DESCRIBE,
        V,
        s.ShareGroupDescribeRequest(group_ids=("described", "nobody"), include_authorized_operations=False),
    )
    found, missing = answer.groups
    assert (found.error_code, found.group_state, found.assignor_name) == (0, "Stable", "simple")
    [member] = found.members
    assert (member.member_id, member.member_epoch, member.subscribed_topic_names) == (
        consumer.member_id,
        consumer.epoch,
        (topic_name,),
    )
    assert [(t.topic_id, t.topic_name, t.partitions) for t in member.assignment.topic_partitions] == [
        (tid, topic_name, (0,))
    ]
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND
    consumer.close()


def test_a_released_record_is_redelivered_with_a_higher_delivery_count(
    kafka_door: Any, topic_name: str
) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    first = ShareConsumer(kafka_door.listener.port, "releasing", topic_name)
    second = ShareConsumer(kafka_door.listener.port, "releasing", topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"v%d" % i} for i in range(3)])
    assert fetch_until(first, tid, 3) == [(0, 1), (1, 1), (2, 1)]
    assert acquired(second.fetch(tid)) == []  # all three are locked by the first member
    answer = first.acknowledge(tid, ack([1], s.ACKNOWLEDGE_RELEASE) + ack([0, 2], s.ACKNOWLEDGE_ACCEPT))
    assert partition_errors(answer) == [0]
    assert fetch_until(second, tid, 1) == [(1, 2)]
    # The released record is the second member's now: the first cannot settle it again.
    assert partition_errors(first.acknowledge(tid, ack([1], s.ACKNOWLEDGE_ACCEPT))) == [INVALID_RECORD_STATE]
    assert partition_errors(second.acknowledge(tid, ack([1], s.ACKNOWLEDGE_ACCEPT))) == [0]
    assert kafka_door.node.groups.committed("releasing", topic_name)[1] == 3
    first.close()
    second.close()


def test_an_unacknowledged_record_comes_back_once_its_lock_expires(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    native_group(kafka_door, "locks", topic_name, ack_timeout=0.5)
    first = ShareConsumer(kafka_door.listener.port, "locks", topic_name)
    second = ShareConsumer(kafka_door.listener.port, "locks", topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"slow"}])
    answer = first.fetch(tid, wait_ms=5_000)
    assert answer.acquisition_lock_timeout_ms == 500
    assert acquired(answer) == [(0, 1)]
    # The first member never acknowledges: once the lock runs out the record is the
    # second member's, delivered a second time.
    assert fetch_until(second, tid, 1) == [(0, 2)]
    late = first.acknowledge(tid, ack([0], s.ACKNOWLEDGE_ACCEPT))
    assert partition_errors(late) == [INVALID_RECORD_STATE]
    assert partition_errors(second.acknowledge(tid, ack([0], s.ACKNOWLEDGE_ACCEPT))) == [0]
    first.close()
    second.close()


def test_reject_archives_a_record_and_the_delivery_limit_archives_it_too(
    kafka_door: Any, topic_name: str
) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    native_group(kafka_door, "limited", topic_name, max_deliveries=2)
    consumer = ShareConsumer(kafka_door.listener.port, "limited", topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"poison"}, {"value": b"bad"}])
    assert fetch_until(consumer, tid, 2) == [(0, 1), (1, 1)]
    answer = consumer.fetch(
        tid, acks=ack([0], s.ACKNOWLEDGE_RELEASE) + ack([1], s.ACKNOWLEDGE_REJECT), wait_ms=5_000
    )
    assert partition_errors(answer) == [0]
    assert acquired(answer) == [(0, 2)]  # the rejected record never comes back
    # The second release reaches the limit of two deliveries: the record is archived
    # (and, being an Odradek group, copied to its dead-letter topic).
    answer = consumer.fetch(tid, acks=ack([0], s.ACKNOWLEDGE_RELEASE), wait_ms=300)
    assert partition_errors(answer) == [0] and acquired(answer) == []
    assert acquired(consumer.fetch(tid, wait_ms=300)) == []
    assert kafka_door.node.groups.committed("limited", topic_name)[1] == 2
    consumer.close()


def test_a_native_member_and_a_share_member_share_one_group(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    groups = kafka_door.node.groups
    native = groups.join("mixed", topic_name, ordering="none", start="earliest")
    share = ShareConsumer(kafka_door.listener.port, "mixed", topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"v%d" % i} for i in range(10)])
    natively = groups.poll("mixed", native, max_records=4, timeout=5.0)
    assert len(natively) == 4
    shared = fetch_until(share, tid, 6)
    assert sorted([d.offset for d in natively] + [o for o, _ in shared]) == list(range(10))
    # The native member gives one back; the share member gets it, second delivery.
    groups.nack("mixed", native, natively[:1], 0.0)
    assert fetch_until(share, tid, 1) == [(natively[0].offset, 2)]
    assert len(groups.describe_group("mixed").members) == 2
    groups.leave("mixed", native)
    share.close()


def test_epochs_and_sessions_are_checked(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    consumer = ShareConsumer(kafka_door.listener.port, "checked", topic_name)
    assert consumer.heartbeat().error_code == 0
    assert consumer.heartbeat(epoch=consumer.epoch + 5).error_code == ErrorCode.FENCED_MEMBER_EPOCH
    stranger = consumer.wire.call(
        ApiKey.SHARE_GROUP_HEARTBEAT,
        V,
        s.ShareGroupHeartbeatRequest(group_id="checked", member_id="nobody", member_epoch=3),
    )
    assert stranger.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    # No session yet: a non-zero epoch finds none.
    assert consumer.fetch(tid, session_epoch=1).error_code == SHARE_SESSION_NOT_FOUND
    assert consumer.fetch(tid).error_code == 0  # opens it (epoch 0)
    assert consumer.fetch(tid, session_epoch=7).error_code == INVALID_SHARE_SESSION_EPOCH
    assert consumer.fetch(tid).error_code == 0  # epoch 1, as expected
    # An acknowledgement of a record never acquired is refused, and nothing else is.
    assert partition_errors(consumer.acknowledge(tid, ack([0], s.ACKNOWLEDGE_ACCEPT))) == [
        INVALID_RECORD_STATE
    ]
    # Leaving: the member is gone, its next heartbeat and fetch are refused; only the
    # request closing its share session (which clients send beside the leave, on
    # another connection) is still served, and then its Odradek member is gone too.
    assert consumer.heartbeat(epoch=-1).member_epoch == -1
    assert consumer.heartbeat().error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert consumer.fetch(tid).error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert len(kafka_door.node.groups.describe_group("checked").members) == 1
    assert consumer.fetch(tid, session_epoch=-1).error_code == 0
    assert kafka_door.node.groups.describe_group("checked").members == []
    consumer.close()


def test_the_closing_acknowledgement_after_a_leave_still_settles(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    consumer = ShareConsumer(kafka_door.listener.port, "closing", topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"v%d" % i} for i in range(4)])
    assert len(fetch_until(consumer, tid, 4)) == 4
    # librdkafka's close sends the leave heartbeat and the closing ShareAcknowledge at
    # once on two connections: the leave may come first.
    assert consumer.heartbeat(epoch=-1).error_code == 0
    answer = consumer.acknowledge(tid, ack([0, 1, 2, 3], s.ACKNOWLEDGE_ACCEPT), session_epoch=-1)
    assert answer.error_code == 0 and partition_errors(answer) == [0]
    assert kafka_door.node.groups.committed("closing", topic_name)[1] == 4
    assert kafka_door.node.groups.describe_group("closing").members == []
    consumer.close()


def test_records_come_in_the_partitions_they_belong_to(kafka_door: Any, topic_name: str) -> None:
    wire = Wire(kafka_door.listener.port)
    created = wire.call(
        ApiKey.CREATE_TOPICS,
        7,
        admin.CreateTopicsRequest(
            topics=(admin.CreatableTopic(name=topic_name, num_partitions=3, replication_factor=1),),
            timeout_ms=5000,
        ),
    )
    assert created.topics[0].error_code == 0
    tid = topic_id(kafka_door, topic_name)
    consumer = ShareConsumer(kafka_door.listener.port, "spread", topic_name)
    assert consumer.assignment is not None
    assert [(t.topic_id, t.partitions) for t in consumer.assignment.topic_partitions] == [(tid, (0, 1, 2))]
    keys = [b"key-%d" % i for i in range(30)]
    kafka_door.engine.append(topic_name, [{"key": k, "value": b"v"} for k in keys])
    expected = (murmur2(pa.array(keys, pa.binary())) & 0x7FFFFFFF) % 3
    seen: dict[int, int] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while len(seen) < 30 and time.monotonic() < deadline:
        answer = consumer.fetch(tid, wait_ms=200, partitions=(0, 1, 2))
        acquired(answer)  # checks the records carried against the acquired ranges
        for topic in answer.responses:
            for partition in topic.partitions:
                for batch in decode_batches(partition.records):
                    for delta in np.asarray(batch.offset_deltas):
                        seen[int(batch.header.base_offset + delta)] = partition.partition_index
    assert seen == {offset: int(expected[offset]) for offset in range(30)}
    assert len(set(seen.values())) == 3
    consumer.close()
    wire.close()


def test_bad_requests_get_clear_errors_and_change_nothing(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    consumer = ShareConsumer(kafka_door.listener.port, "strict", topic_name)
    two = consumer.wire.call(
        ApiKey.SHARE_GROUP_HEARTBEAT,
        V,
        s.ShareGroupHeartbeatRequest(
            group_id="strict",
            member_id="two-topics",
            member_epoch=0,
            subscribed_topic_names=(topic_name, "other"),
        ),
    )
    # The share members of one group subscribe to the same topics (the native group's).
    assert two.error_code == ErrorCode.INVALID_REQUEST
    assert "cannot join it with" in two.error_message and "other" in two.error_message
    none = consumer.wire.call(
        ApiKey.SHARE_GROUP_HEARTBEAT,
        V,
        s.ShareGroupHeartbeatRequest(group_id="strict", member_id="no-topics", member_epoch=0),
    )
    assert none.error_code == ErrorCode.INVALID_REQUEST and "SubscribedTopicNames" in none.error_message
    # Acknowledging in the request that opens a session is refused; so is a batch whose
    # types do not match its offsets.
    opening = consumer.fetch(tid, acks=ack([0], s.ACKNOWLEDGE_ACCEPT))
    assert opening.error_code == ErrorCode.INVALID_REQUEST
    kafka_door.engine.append(topic_name, [{"value": b"a"}, {"value": b"b"}])
    assert fetch_until(consumer, tid, 2) == [(0, 1), (1, 1)]
    wrong = (s.AcknowledgementBatch(first_offset=0, last_offset=1, acknowledge_types=(1, 1, 1)),)
    answer = consumer.acknowledge(tid, wrong)
    assert partition_errors(answer) == [ErrorCode.INVALID_REQUEST]
    assert "it needs 1 or 2" in answer.responses[0].partitions[0].error_message
    assert kafka_door.node.groups.committed("strict", topic_name)[1] == 0  # nothing settled
    assert len(kafka_door.node.groups.describe_group("strict").members) == 1  # no second member
    consumer.close()


def test_share_sessions_are_bounded_least_recently_used_out(
    kafka_door: Any, topic_name: str, monkeypatch: Any
) -> None:
    monkeypatch.setattr(limits, "kafka_share_sessions_max", 2)
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    consumers = [ShareConsumer(kafka_door.listener.port, "bounded", topic_name) for _ in range(3)]
    for consumer in consumers:
        assert consumer.fetch(tid).error_code == 0  # each opens a session
    # The third session evicted the first: its next request finds none.
    assert consumers[0].fetch(tid).error_code == SHARE_SESSION_NOT_FOUND
    assert consumers[1].fetch(tid).error_code == 0
    assert consumers[2].fetch(tid).error_code == 0
    for consumer in consumers:
        consumer.close()


def test_a_silent_member_is_removed_and_its_records_go_back(
    kafka_door: Any, topic_name: str, monkeypatch: Any
) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    silent = ShareConsumer(kafka_door.listener.port, "silence", topic_name)
    kafka_door.engine.append(topic_name, [{"value": b"held"}])
    assert fetch_until(silent, tid, 1) == [(0, 1)]
    monkeypatch.setattr(limits, "kafka_share_session_timeout_ms", 1)
    # Any heartbeat of the group removes members silent longer than the timeout.
    deadline = time.monotonic() + DEADLINE_SECONDS
    while silent.heartbeat().error_code != ErrorCode.UNKNOWN_MEMBER_ID and time.monotonic() < deadline:
        pass
    assert silent.heartbeat().error_code == ErrorCode.UNKNOWN_MEMBER_ID
    assert kafka_door.node.groups.describe_group("silence").members == []
    monkeypatch.setattr(limits, "kafka_share_session_timeout_ms", 45_000)
    other = ShareConsumer(kafka_door.listener.port, "silence", topic_name)
    # Given back, its delivery counted (the member may have failed on it), as when a
    # native member expires.
    assert fetch_until(other, tid, 1) == [(0, 2)]
    silent.close()
    other.close()


def test_api_versions_advertises_the_four_apis_at_version_1(kafka_door: Any) -> None:
    wire = Wire(kafka_door.listener.port)
    answer = wire.call(ApiKey.API_VERSIONS, 3, data.ApiVersionsRequest())
    served = {k.api_key: (k.min_version, k.max_version) for k in answer.api_keys}
    share_keys = (
        ApiKey.SHARE_GROUP_HEARTBEAT,
        ApiKey.SHARE_GROUP_DESCRIBE,
        ApiKey.SHARE_FETCH,
        ApiKey.SHARE_ACKNOWLEDGE,
    )
    assert {key: served.get(key) for key in share_keys} == dict.fromkeys(share_keys, (1, 1))
    assert all(key in HANDLERS for key in share_keys)  # advertised because served
    wire.close()


def test_max_bytes_bounds_a_fetch_and_what_it_leaves_is_not_counted(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    tid = topic_id(kafka_door, topic_name)
    consumer = ShareConsumer(kafka_door.listener.port, "bytes", topic_name)
    kafka_door.engine.append(topic_name, [{"value": bytes([i]) * 1000} for i in range(10)])
    got: list[tuple[int, int]] = []
    # Room for two of the records: the answer carries at most MaxBytes of records.
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not got and time.monotonic() < deadline:
        answer = consumer.fetch(tid, wait_ms=200, max_bytes=2500)
        got = acquired(answer)
    assert 0 < len(got) < 10
    assert records_bytes(answer) <= 2500
    # Less room than one record: the first record is carried all the same, alone.
    for _ in range(2):
        answer = consumer.fetch(tid, max_bytes=1)
        one = acquired(answer)
        assert len(one) == 1 and records_bytes(answer) > 1
        got.extend(one)
    # The rest come to the next fetches: what a fetch left went back to the group
    # without counting as a delivery (every delivery count is still 1).
    got = sorted(got + fetch_until(consumer, tid, 10 - len(got)))
    assert got == [(offset, 1) for offset in range(10)]
    assert kafka_door.node.groups.describe_group("bytes").counters["timed_out"] == 0
    consumer.close()


def test_a_member_subscribed_to_two_topics_gets_and_acknowledges_both(
    kafka_door: Any, topic_name: str
) -> None:
    other_name = topic_name + "-b"
    for name in (topic_name, other_name):
        kafka_door.engine.create_topic(name)
    first, second = topic_id(kafka_door, topic_name), topic_id(kafka_door, other_name)
    port = kafka_door.listener.port
    consumer = ShareConsumer(port, "multi", (topic_name, other_name))
    assert {t.topic_id for t in consumer.assignment.topic_partitions} == {first, second}
    kafka_door.engine.append(topic_name, [{"value": b"a%d" % i} for i in range(3)])
    kafka_door.engine.append(other_name, [{"value": b"b%d" % i} for i in range(4)])
    got: dict[uuid.UUID, list[tuple[int, int]]] = {}
    deadline = time.monotonic() + DEADLINE_SECONDS
    while sum(map(len, got.values())) < 7 and time.monotonic() < deadline:
        answer = consumer.fetch_topics({first: (0,), second: (0,)}, wait_ms=200)
        for tid, ranges in acquired_by_topic(answer).items():
            got.setdefault(tid, []).extend(ranges)
    assert got == {first: [(o, 1) for o in range(3)], second: [(o, 1) for o in range(4)]}
    # One ShareAcknowledge settles records of both topics.
    answer = consumer.wire.call(
        ApiKey.SHARE_ACKNOWLEDGE,
        V,
        s.ShareAcknowledgeRequest(
            group_id="multi",
            member_id=consumer.member_id,
            share_session_epoch=consumer.session_epoch,
            topics=tuple(
                s.ShareAcknowledgeTopic(
                    topic_id=tid,
                    partitions=(
                        s.ShareAcknowledgePartition(
                            partition_index=0, acknowledgement_batches=ack(list(range(count)), 1)
                        ),
                    ),
                )
                for tid, count in ((first, 3), (second, 4))
            ),
        ),
    )
    assert answer.error_code == 0 and partition_errors(answer) == [0, 0]
    groups = kafka_door.node.groups
    assert groups.committed("multi", topic_name)[1] == 3
    assert groups.committed("multi", other_name)[1] == 4
    # A second member subscribing the same topics, in another order, shares them.
    again = ShareConsumer(port, "multi", (other_name, topic_name))
    described = consumer.wire.call(
        ApiKey.SHARE_GROUP_DESCRIBE, V, s.ShareGroupDescribeRequest(group_ids=("multi",))
    )
    (group,) = described.groups
    assert len(group.members) == 2
    for member in group.members:
        assert member.subscribed_topic_names == tuple(sorted((topic_name, other_name)))
        assigned = {t.topic_name: t.partitions for t in member.assignment.topic_partitions}
        assert assigned == {topic_name: (0,), other_name: (0,)}
    again.close()
    consumer.close()


def test_list_and_describe_groups_show_a_share_group_as_one(kafka_door: Any, topic_name: str) -> None:
    kafka_door.engine.create_topic(topic_name)
    consumer = ShareConsumer(kafka_door.listener.port, "listed", topic_name)
    wire = consumer.wire

    def listed(*types: str) -> list[tuple[str, str, str, str]]:
        answer = wire.call(ApiKey.LIST_GROUPS, 5, groups_api.ListGroupsRequest(types_filter=types))
        return [(g.group_id, g.group_type, g.protocol_type, g.group_state) for g in answer.groups]

    assert listed("share") == [("listed", "share", "share", "Stable")]
    assert listed("classic", "consumer") == []
    described = wire.call(ApiKey.DESCRIBE_GROUPS, 5, groups_api.DescribeGroupsRequest(groups=("listed",)))
    (group,) = described.groups
    assert (group.error_code, group.protocol_type, group.protocol_data) == (0, "share", "simple")
    assert [(m.member_id, m.client_id) for m in group.members] == [(consumer.member_id, wire.client_id)]
    shared = wire.call(ApiKey.SHARE_GROUP_DESCRIBE, V, s.ShareGroupDescribeRequest(group_ids=("listed",)))
    assert [m.member_id for m in shared.groups[0].members] == [consumer.member_id]
    assert kafka_door.node.groups.describe_group("listed").kind == "share"
    # Once its share member left, it is an Odradek group like any other.
    assert consumer.heartbeat(epoch=-1).error_code == 0
    assert listed("share") == []
    assert listed() == [("listed", "classic", "", "Empty")]
    assert kafka_door.node.groups.describe_group("listed").kind == "odradek"
    consumer.close()
