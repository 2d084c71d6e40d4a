"""A classic consumer group member's assignment, decoded without IO.

Goal: the bytes a consumer-protocol leader sends in SyncGroup (Kafka's
ConsumerProtocolAssignment) decode into the member's topics and partitions, whatever
version (0-3; a newer one as the newest known) and user data they carry; bytes that are
not an assignment raise DecodeError, never anything else; and a member's lag is the
sum of its committed partitions' lag, its partitions without a committed offset listed
apart. Method: assignments encoded by another implementation (kafka-python's protocol
classes) and by hand, and hypothesis for arbitrary bytes.
"""

from __future__ import annotations

import struct
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek.groups.info import AssignedPartitions
from odradek.protocols.kafka.catalog import _member_info
from odradek.protocols.kafka.codec.consumer_protocol import assigned_partitions, decode_assignment
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.protocols.kafka.groups import CONSUMER_PROTOCOL_TYPE, MemberView, _classic_partitions

with warnings.catch_warnings():  # kafka-python's protocol tables use a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka.protocol.consumer.metadata import ConsumerProtocolAssignment


@pytest.mark.parametrize("version", [0, 1, 2, 3])
def test_kafka_pythons_assignments_decode(version: int) -> None:
    topics = [("orders.eu", [0, 2, 3]), ("payments", [1])]
    data = ConsumerProtocolAssignment(version, topics, b"sticky-user-data").encode(version=version)
    decoded = decode_assignment(data)
    assert [(t.topic, list(t.partitions)) for t in decoded.assigned_partitions] == topics
    assert decoded.user_data == b"sticky-user-data"
    assert assigned_partitions(data) == {
        ("orders.eu", 0),
        ("orders.eu", 2),
        ("orders.eu", 3),
        ("payments", 1),
    }


def test_a_newer_version_reads_as_the_newest_known_and_nothing_is_nothing() -> None:
    body = ConsumerProtocolAssignment(3, [("t", [5])], None).encode(version=3)[2:]
    assert assigned_partitions(struct.pack(">h", 9) + body + b"fields of version 9") == {("t", 5)}
    assert assigned_partitions(b"") == frozenset()  # a member before its first SyncGroup


@pytest.mark.parametrize(
    "data",
    [
        struct.pack(">h", -1),  # a negative version
        struct.pack(">hi", 0, 1),  # one topic promised, none there
        struct.pack(">hi", 0, 1_000_000) + b"\0" * 16,  # more topics than bytes
        struct.pack(">hih", 0, 1, 40) + b"short",  # a topic name cut short
        b"\0",  # not even a version
    ],
)
def test_bytes_that_are_not_an_assignment_are_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        assigned_partitions(data)


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        assigned_partitions(data)
    except DecodeError:
        pass


def test_only_a_consumer_groups_bytes_are_read() -> None:
    data = ConsumerProtocolAssignment(0, [("t", [0])], b"").encode(version=0)
    assert _classic_partitions(CONSUMER_PROTOCOL_TYPE, data) == {("t", 0)}
    assert _classic_partitions("connect", data) is None  # another protocol's bytes
    assert _classic_partitions(CONSUMER_PROTOCOL_TYPE, struct.pack(">hi", 0, 9)) is None  # a client's bug


def test_a_members_lag_counts_its_committed_partitions() -> None:
    view = MemberView("m-1", "app", "10.0.0.7", 0.0, 0.0, True, frozenset({("a", 0), ("a", 1), ("b", 3)}))
    lags = {("a", 0): 7, ("a", 1): 5, ("a", 2): 100, ("b", 0): 40}
    member = _member_info(view, lags)
    assert member.assignment == (AssignedPartitions("a", (0, 1), 12), AssignedPartitions("b", (3,), 0, (3,)))
    assert member.lag == 12  # partition a-2 is another member's, b-3 has no committed offset
    unreadable = _member_info(MemberView("m-2", "app", "h", 0.0, 0.0, True, None), lags)
    assert (unreadable.assignment, unreadable.lag) == (None, None)
    assert "lag" not in unreadable.to_json() and "assignment" not in unreadable.to_json()
