"""Messages of share groups (KIP-932, Kafka 4.1+): ShareGroupHeartbeat,
ShareGroupDescribe, ShareFetch and ShareAcknowledge.

Field layouts follow the Kafka protocol's message definitions; each field names the
versions it exists in. Version 0 of each was Kafka 4.0's early access and was removed
in Kafka 4.1; version 1 is the stable one (what this door serves). Kafka 4.2's version
2 of ShareFetch and ShareAcknowledge (the acquire mode of KIP-1206 and the Renew
acknowledgement of KIP-1222) is declared here for the codec but not served
(codec/api.py). All four APIs are flexible in every version.
"""

# ruff: noqa: RUF009 - f() builds an immutable dataclasses.field with Kafka metadata

from __future__ import annotations

import dataclasses
import uuid

from odradek.protocols.kafka.codec.messages_consumer import NullableStruct
from odradek.protocols.kafka.codec.schema import (
    BOOL,
    INT8,
    INT16,
    INT32,
    INT64,
    RECORDS,
    STRING,
    UUID,
    Array,
    Struct,
    f,
)

# Acknowledge types of ShareFetch's and ShareAcknowledge's acknowledgement batches.
ACKNOWLEDGE_GAP = 0  # the offset holds no record (a gap in a compacted log)
ACKNOWLEDGE_ACCEPT = 1  # processed: the record is archived
ACKNOWLEDGE_RELEASE = 2  # given back: the record is delivered again
ACKNOWLEDGE_REJECT = 3  # unprocessable: the record is archived, never delivered again
ACKNOWLEDGE_RENEW = 4  # (version 2, KIP-1222) extend the lock

# -- ShareGroupHeartbeat (76) ---------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareGroupHeartbeatRequest:
    group_id: str = f(STRING)
    member_id: str = f(STRING)
    member_epoch: int = f(INT32)
    rack_id: str | None = f(STRING, nullable="0+", default=None)
    subscribed_topic_names: tuple[str, ...] | None = f(Array(STRING), nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareTopicPartitions:
    topic_id: uuid.UUID = f(UUID)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareAssignment:
    topic_partitions: tuple[ShareTopicPartitions, ...] = f(Array(ShareTopicPartitions))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareGroupHeartbeatResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    member_id: str | None = f(STRING, nullable="0+", default=None)
    member_epoch: int = f(INT32)
    heartbeat_interval_ms: int = f(INT32)
    assignment: ShareAssignment | None = f(NullableStruct(ShareAssignment), nullable="0+", default=None)


# -- ShareGroupDescribe (77) ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareGroupDescribeRequest:
    group_ids: tuple[str, ...] = f(Array(STRING))
    include_authorized_operations: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedShareTopicPartitions:
    topic_id: uuid.UUID = f(UUID)
    topic_name: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedShareAssignment:
    topic_partitions: tuple[DescribedShareTopicPartitions, ...] = f(Array(DescribedShareTopicPartitions))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedShareMember:
    member_id: str = f(STRING)
    rack_id: str | None = f(STRING, nullable="0+", default=None)
    member_epoch: int = f(INT32)
    client_id: str = f(STRING)
    client_host: str = f(STRING)
    subscribed_topic_names: tuple[str, ...] = f(Array(STRING))
    assignment: DescribedShareAssignment = f(Struct(DescribedShareAssignment))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedShareGroup:
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    group_id: str = f(STRING)
    group_state: str = f(STRING)
    group_epoch: int = f(INT32)
    assignment_epoch: int = f(INT32)
    assignor_name: str = f(STRING)
    members: tuple[DescribedShareMember, ...] = f(Array(DescribedShareMember))
    authorized_operations: int = f(INT32, default=-(2**31))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareGroupDescribeResponse:
    throttle_time_ms: int = f(INT32)
    groups: tuple[DescribedShareGroup, ...] = f(Array(DescribedShareGroup))


# -- acknowledgements, shared by ShareFetch and ShareAcknowledge ----------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AcknowledgementBatch:
    first_offset: int = f(INT64)
    last_offset: int = f(INT64)
    acknowledge_types: tuple[int, ...] = f(Array(INT8))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LeaderIdAndEpoch:
    leader_id: int = f(INT32, default=-1)
    leader_epoch: int = f(INT32, default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareNodeEndpoint:
    node_id: int = f(INT32)
    host: str = f(STRING)
    port: int = f(INT32)
    rack: str | None = f(STRING, nullable="0+", default=None)


# -- ShareFetch (78) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareFetchPartition:
    partition_index: int = f(INT32)
    partition_max_bytes: int = f(INT32, "0-0", default=0)
    acknowledgement_batches: tuple[AcknowledgementBatch, ...] = f(Array(AcknowledgementBatch), default=())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareFetchTopic:
    topic_id: uuid.UUID = f(UUID)
    partitions: tuple[ShareFetchPartition, ...] = f(Array(ShareFetchPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareForgottenTopic:
    topic_id: uuid.UUID = f(UUID)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareFetchRequest:
    group_id: str | None = f(STRING, nullable="0+", default=None)
    member_id: str | None = f(STRING, nullable="0+")
    share_session_epoch: int = f(INT32)
    max_wait_ms: int = f(INT32)
    min_bytes: int = f(INT32)
    max_bytes: int = f(INT32, default=0x7FFFFFFF)
    max_records: int = f(INT32, "1+", default=500)
    batch_size: int = f(INT32, "1+", default=500)
    share_acquire_mode: int = f(INT8, "2+", default=0)
    topics: tuple[ShareFetchTopic, ...] = f(Array(ShareFetchTopic), default=())
    forgotten_topics_data: tuple[ShareForgottenTopic, ...] = f(Array(ShareForgottenTopic), default=())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AcquiredRecords:
    first_offset: int = f(INT64)
    last_offset: int = f(INT64)
    delivery_count: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareFetchPartitionData:
    partition_index: int = f(INT32)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    acknowledge_error_code: int = f(INT16, default=0)
    acknowledge_error_message: str | None = f(STRING, nullable="0+", default=None)
    current_leader: LeaderIdAndEpoch = f(Struct(LeaderIdAndEpoch), default=LeaderIdAndEpoch())
    # Nullable in Kafka's definition, but the door always sends a record set (b"" for
    # none): librdkafka drops a whole flexible fetch response holding a null one.
    records: bytes = f(RECORDS, default=b"")
    acquired_records: tuple[AcquiredRecords, ...] = f(Array(AcquiredRecords), default=())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareFetchTopicResponse:
    topic_id: uuid.UUID = f(UUID)
    partitions: tuple[ShareFetchPartitionData, ...] = f(Array(ShareFetchPartitionData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareFetchResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    acquisition_lock_timeout_ms: int = f(INT32, default=0)
    responses: tuple[ShareFetchTopicResponse, ...] = f(Array(ShareFetchTopicResponse), default=())
    node_endpoints: tuple[ShareNodeEndpoint, ...] = f(Array(ShareNodeEndpoint), default=())


# -- ShareAcknowledge (79) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareAcknowledgePartition:
    partition_index: int = f(INT32)
    acknowledgement_batches: tuple[AcknowledgementBatch, ...] = f(Array(AcknowledgementBatch))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareAcknowledgeTopic:
    topic_id: uuid.UUID = f(UUID)
    partitions: tuple[ShareAcknowledgePartition, ...] = f(Array(ShareAcknowledgePartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareAcknowledgeRequest:
    group_id: str | None = f(STRING, nullable="0+", default=None)
    member_id: str | None = f(STRING, nullable="0+")
    share_session_epoch: int = f(INT32)
    is_renew_ack: bool = f(BOOL, "2+", default=False)
    topics: tuple[ShareAcknowledgeTopic, ...] = f(Array(ShareAcknowledgeTopic))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareAcknowledgePartitionData:
    partition_index: int = f(INT32)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    current_leader: LeaderIdAndEpoch = f(Struct(LeaderIdAndEpoch), default=LeaderIdAndEpoch())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareAcknowledgeTopicResponse:
    topic_id: uuid.UUID = f(UUID)
    partitions: tuple[ShareAcknowledgePartitionData, ...] = f(Array(ShareAcknowledgePartitionData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShareAcknowledgeResponse:
    throttle_time_ms: int = f(INT32, default=0)
    error_code: int = f(INT16, default=0)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    acquisition_lock_timeout_ms: int = f(INT32, "2+", default=0)
    responses: tuple[ShareAcknowledgeTopicResponse, ...] = f(Array(ShareAcknowledgeTopicResponse), default=())
    node_endpoints: tuple[ShareNodeEndpoint, ...] = f(Array(ShareNodeEndpoint), default=())
