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
from wire import Wire

from odradek.protocols.kafka.codec import messages_share as s
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import decode_batches

V = 1  # the version of the four APIs the door serves
DEADLINE_SECONDS = 30.0


class ShareConsumer:
    """One share member on its own connection."""

    def __init__(self, port: int, group: str, topic: str, member_id: str | None = None) -> None:
        self.wire = Wire(port)
        self.group = group
        self.member_id = member_id or uuid.uuid4().hex
        self.epoch = 0
        self.session_epoch = 0
        answer = self.heartbeat(subscribed=(topic,))
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
        session_epoch: int | None = None,
    ) -> Any:
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
                max_records=max_records,
                batch_size=max_records,
                topics=(
                    s.ShareFetchTopic(
                        topic_id=topic_id,
                        partitions=(s.ShareFetchPartition(partition_index=0, acknowledgement_batches=acks),),
                    ),
                ),
            ),
        )
        if answer.error_code == 0 and session_epoch is None:
            self.session_epoch += 1
        return answer

    def acknowledge(self, topic_id: uuid.UUID, acks: tuple[s.AcknowledgementBatch, ...]) -> Any:
        answer = self.wire.call(
            ApiKey.SHARE_ACKNOWLEDGE,
            V,
            s.ShareAcknowledgeRequest(
                group_id=self.group,
                member_id=self.member_id,
                share_session_epoch=self.session_epoch,
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
