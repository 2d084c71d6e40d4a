"""Messages of classic consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups.

Field layouts follow the Kafka protocol's message definitions; each field names the
versions it exists in.
"""

# ruff: noqa: RUF009 - f() builds an immutable dataclasses.field with Kafka metadata

from __future__ import annotations

import dataclasses
import uuid

from odradek.protocols.kafka.codec.schema import (
    BOOL,
    BYTES,
    INT8,
    INT16,
    INT32,
    INT64,
    STRING,
    UUID,
    Array,
    f,
)

# -- FindCoordinator (10) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FindCoordinatorRequest:
    key: str = f(STRING, "0-3")
    key_type: int = f(INT8, "1+")
    coordinator_keys: tuple[str, ...] = f(Array(STRING), "4+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Coordinator:
    key: str = f(STRING, "4+")
    node_id: int = f(INT32, "4+")
    host: str = f(STRING, "4+")
    port: int = f(INT32, "4+")
    error_code: int = f(INT16, "4+")
    error_message: str | None = f(STRING, "4+", nullable="4+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FindCoordinatorResponse:
    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16, "0-3")
    error_message: str | None = f(STRING, "1-3", nullable="1-3", default=None)
    node_id: int = f(INT32, "0-3")
    host: str = f(STRING, "0-3")
    port: int = f(INT32, "0-3")
    coordinators: tuple[Coordinator, ...] = f(Array(Coordinator), "4+")


# -- JoinGroup (11) -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupRequestProtocol:
    name: str = f(STRING)
    metadata: bytes = f(BYTES)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupRequest:
    group_id: str = f(STRING)
    session_timeout_ms: int = f(INT32)
    rebalance_timeout_ms: int = f(INT32, "1+", default=-1)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, "5+", nullable="5+", default=None)
    protocol_type: str = f(STRING)
    protocols: tuple[JoinGroupRequestProtocol, ...] = f(Array(JoinGroupRequestProtocol))
    reason: str | None = f(STRING, "8+", nullable="8+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupResponseMember:
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, "5+", nullable="5+", default=None)
    metadata: bytes = f(BYTES)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class JoinGroupResponse:
    throttle_time_ms: int = f(INT32, "2+")
    error_code: int = f(INT16)
    generation_id: int = f(INT32, default=-1)
    protocol_type: str | None = f(STRING, "7+", nullable="7+", default=None)
    protocol_name: str | None = f(STRING, nullable="7+")
    leader: str = f(STRING)
    skip_assignment: bool = f(BOOL, "9+")
    member_id: str = f(STRING)
    members: tuple[JoinGroupResponseMember, ...] = f(Array(JoinGroupResponseMember))


# -- SyncGroup (14) -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupRequestAssignment:
    member_id: str = f(STRING)
    assignment: bytes = f(BYTES)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupRequest:
    group_id: str = f(STRING)
    generation_id: int = f(INT32)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)
    protocol_type: str | None = f(STRING, "5+", nullable="5+", default=None)
    protocol_name: str | None = f(STRING, "5+", nullable="5+", default=None)
    assignments: tuple[SyncGroupRequestAssignment, ...] = f(Array(SyncGroupRequestAssignment))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SyncGroupResponse:
    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16)
    protocol_type: str | None = f(STRING, "5+", nullable="5+", default=None)
    protocol_name: str | None = f(STRING, "5+", nullable="5+", default=None)
    assignment: bytes = f(BYTES)


# -- Heartbeat (12) -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatRequest:
    group_id: str = f(STRING)
    generation_id: int = f(INT32)
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatResponse:
    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16)


# -- LeaveGroup (13) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemberIdentity:
    member_id: str = f(STRING, "3+")
    group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)
    reason: str | None = f(STRING, "5+", nullable="5+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LeaveGroupRequest:
    group_id: str = f(STRING)
    member_id: str = f(STRING, "0-2")
    members: tuple[MemberIdentity, ...] = f(Array(MemberIdentity), "3+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MemberResponse:
    member_id: str = f(STRING, "3+")
    group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)
    error_code: int = f(INT16, "3+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LeaveGroupResponse:
    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16)
    members: tuple[MemberResponse, ...] = f(Array(MemberResponse), "3+")


# -- OffsetCommit (8) -----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestPartition:
    partition_index: int = f(INT32)
    committed_offset: int = f(INT64)
    committed_leader_epoch: int = f(INT32, "6+", default=-1)
    commit_timestamp: int = f(INT64, "1", default=-1)
    committed_metadata: str | None = f(STRING, nullable="0+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequestTopic:
    name: str = f(STRING, "0-9")
    topic_id: uuid.UUID = f(UUID, "10+")
    partitions: tuple[OffsetCommitRequestPartition, ...] = f(Array(OffsetCommitRequestPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitRequest:
    group_id: str = f(STRING)
    generation_id_or_member_epoch: int = f(INT32, "1+", default=-1)
    member_id: str = f(STRING, "1+")
    group_instance_id: str | None = f(STRING, "7+", nullable="7+", default=None)
    retention_time_ms: int = f(INT64, "2-4", default=-1)
    topics: tuple[OffsetCommitRequestTopic, ...] = f(Array(OffsetCommitRequestTopic))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponseTopic:
    name: str = f(STRING, "0-9")
    topic_id: uuid.UUID = f(UUID, "10+")
    partitions: tuple[OffsetCommitResponsePartition, ...] = f(Array(OffsetCommitResponsePartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetCommitResponse:
    throttle_time_ms: int = f(INT32, "3+")
    topics: tuple[OffsetCommitResponseTopic, ...] = f(Array(OffsetCommitResponseTopic))


# -- OffsetFetch (9) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequestTopic:
    name: str = f(STRING, "0-7")
    partition_indexes: tuple[int, ...] = f(Array(INT32), "0-7")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequestTopics:
    name: str = f(STRING, "8-9")
    topic_id: uuid.UUID = f(UUID, "10+")
    partition_indexes: tuple[int, ...] = f(Array(INT32), "8+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequestGroup:
    group_id: str = f(STRING, "8+")
    member_id: str | None = f(STRING, "9+", nullable="9+", default=None)
    member_epoch: int = f(INT32, "9+", default=-1)
    topics: tuple[OffsetFetchRequestTopics, ...] | None = f(
        Array(OffsetFetchRequestTopics), "8+", nullable="8+", default=None
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchRequest:
    group_id: str = f(STRING, "0-7")
    topics: tuple[OffsetFetchRequestTopic, ...] | None = f(
        Array(OffsetFetchRequestTopic), "0-7", nullable="2-7", default=None
    )
    groups: tuple[OffsetFetchRequestGroup, ...] = f(Array(OffsetFetchRequestGroup), "8+")
    require_stable: bool = f(BOOL, "7+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponsePartition:
    partition_index: int = f(INT32, "0-7")
    committed_offset: int = f(INT64, "0-7")
    committed_leader_epoch: int = f(INT32, "5-7", default=-1)
    metadata: str | None = f(STRING, "0-7", nullable="0-7")
    error_code: int = f(INT16, "0-7")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponseTopic:
    name: str = f(STRING, "0-7")
    partitions: tuple[OffsetFetchResponsePartition, ...] = f(Array(OffsetFetchResponsePartition), "0-7")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponsePartitions:
    partition_index: int = f(INT32, "8+")
    committed_offset: int = f(INT64, "8+")
    committed_leader_epoch: int = f(INT32, "8+", default=-1)
    metadata: str | None = f(STRING, "8+", nullable="8+")
    error_code: int = f(INT16, "8+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponseTopics:
    name: str = f(STRING, "8-9")
    topic_id: uuid.UUID = f(UUID, "10+")
    partitions: tuple[OffsetFetchResponsePartitions, ...] = f(Array(OffsetFetchResponsePartitions), "8+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponseGroup:
    group_id: str = f(STRING, "8+")
    topics: tuple[OffsetFetchResponseTopics, ...] = f(Array(OffsetFetchResponseTopics), "8+")
    error_code: int = f(INT16, "8+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetFetchResponse:
    throttle_time_ms: int = f(INT32, "3+")
    topics: tuple[OffsetFetchResponseTopic, ...] = f(Array(OffsetFetchResponseTopic), "0-7")
    error_code: int = f(INT16, "2-7")
    groups: tuple[OffsetFetchResponseGroup, ...] = f(Array(OffsetFetchResponseGroup), "8+")


# -- DescribeGroups (15), ListGroups (16), DeleteGroups (42) --------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeGroupsRequest:
    groups: tuple[str, ...] = f(Array(STRING))
    include_authorized_operations: bool = f(BOOL, "3+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedGroupMember:
    member_id: str = f(STRING)
    group_instance_id: str | None = f(STRING, "4+", nullable="4+", default=None)
    client_id: str = f(STRING)
    client_host: str = f(STRING)
    member_metadata: bytes = f(BYTES)
    member_assignment: bytes = f(BYTES)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedGroup:
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, "6+", nullable="6+", default=None)
    group_id: str = f(STRING)
    group_state: str = f(STRING)
    protocol_type: str = f(STRING)
    protocol_data: str = f(STRING)
    members: tuple[DescribedGroupMember, ...] = f(Array(DescribedGroupMember))
    authorized_operations: int = f(INT32, "3+", default=-(2**31))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeGroupsResponse:
    throttle_time_ms: int = f(INT32, "1+")
    groups: tuple[DescribedGroup, ...] = f(Array(DescribedGroup))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListGroupsRequest:
    states_filter: tuple[str, ...] = f(Array(STRING), "4+")
    types_filter: tuple[str, ...] = f(Array(STRING), "5+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListedGroup:
    group_id: str = f(STRING)
    protocol_type: str = f(STRING)
    group_state: str = f(STRING, "4+")
    group_type: str = f(STRING, "5+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListGroupsResponse:
    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16)
    groups: tuple[ListedGroup, ...] = f(Array(ListedGroup))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteGroupsRequest:
    groups_names: tuple[str, ...] = f(Array(STRING))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeletableGroupResult:
    group_id: str = f(STRING)
    error_code: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteGroupsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[DeletableGroupResult, ...] = f(Array(DeletableGroupResult))
