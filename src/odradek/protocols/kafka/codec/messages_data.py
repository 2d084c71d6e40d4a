"""Messages of the data path: ApiVersions, Metadata, Produce, Fetch, ListOffsets,
InitProducerId, and the request/response headers.

Field layouts follow the Kafka protocol's message definitions (the JSON files of
``clients/src/main/resources/common/message``); each field names the versions it exists
in. Record batches are opaque ``bytes`` here and decoded by codec/records.py.
"""

# ruff: noqa: RUF009 - f() builds an immutable dataclasses.field with Kafka metadata

from __future__ import annotations

import dataclasses
import uuid

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

# -- headers --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RequestHeader:
    """Request header v1 (classic) and v2 (flexible: adds a tagged-field buffer)."""

    request_api_key: int = f(INT16)
    request_api_version: int = f(INT16)
    correlation_id: int = f(INT32)
    client_id: str | None = f(STRING, "1+", nullable="1+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ResponseHeader:
    correlation_id: int = f(INT32)


# -- ApiVersions (18) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsRequest:
    client_software_name: str = f(STRING, "3+")
    client_software_version: str = f(STRING, "3+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersion:
    api_key: int = f(INT16)
    min_version: int = f(INT16)
    max_version: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SupportedFeatureKey:
    name: str = f(STRING, "3+")
    min_version: int = f(INT16, "3+")
    max_version: int = f(INT16, "3+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FinalizedFeatureKey:
    name: str = f(STRING, "3+")
    max_version_level: int = f(INT16, "3+")
    min_version_level: int = f(INT16, "3+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ApiVersionsResponse:
    error_code: int = f(INT16)
    api_keys: tuple[ApiVersion, ...] = f(Array(ApiVersion))
    throttle_time_ms: int = f(INT32, "1+")
    supported_features: tuple[SupportedFeatureKey, ...] = f(Array(SupportedFeatureKey), "3+", tag=0)
    finalized_features_epoch: int = f(INT64, "3+", tag=1, default=-1)
    finalized_features: tuple[FinalizedFeatureKey, ...] = f(Array(FinalizedFeatureKey), "3+", tag=2)
    zk_migration_ready: bool = f(BOOL, "3+", tag=3)


# -- Metadata (3) ---------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequestTopic:
    topic_id: uuid.UUID = f(UUID, "10+")
    name: str | None = f(STRING, nullable="10+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MetadataRequest:
    topics: tuple[MetadataRequestTopic, ...] | None = f(
        Array(MetadataRequestTopic), nullable="1+", default=None
    )
    allow_auto_topic_creation: bool = f(BOOL, "4+", default=True)
    include_cluster_authorized_operations: bool = f(BOOL, "8-10")
    include_topic_authorized_operations: bool = f(BOOL, "8+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponseBroker:
    node_id: int = f(INT32)
    host: str = f(STRING)
    port: int = f(INT32)
    rack: str | None = f(STRING, "1+", nullable="1+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponsePartition:
    error_code: int = f(INT16)
    partition_index: int = f(INT32)
    leader_id: int = f(INT32)
    leader_epoch: int = f(INT32, "7+", default=-1)
    replica_nodes: tuple[int, ...] = f(Array(INT32))
    isr_nodes: tuple[int, ...] = f(Array(INT32))
    offline_replicas: tuple[int, ...] = f(Array(INT32), "5+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponseTopic:
    error_code: int = f(INT16)
    name: str | None = f(STRING, nullable="12+")
    topic_id: uuid.UUID = f(UUID, "10+")
    is_internal: bool = f(BOOL, "1+")
    partitions: tuple[MetadataResponsePartition, ...] = f(Array(MetadataResponsePartition))
    topic_authorized_operations: int = f(INT32, "8+", default=-(2**31))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class MetadataResponse:
    throttle_time_ms: int = f(INT32, "3+")
    brokers: tuple[MetadataResponseBroker, ...] = f(Array(MetadataResponseBroker))
    cluster_id: str | None = f(STRING, "2+", nullable="2+", default=None)
    controller_id: int = f(INT32, "1+", default=-1)
    topics: tuple[MetadataResponseTopic, ...] = f(Array(MetadataResponseTopic))
    cluster_authorized_operations: int = f(INT32, "8-10", default=-(2**31))
    error_code: int = f(INT16, "13+")


# -- Produce (0) ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PartitionProduceData:
    index: int = f(INT32)
    records: bytes | None = f(RECORDS, nullable="0+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TopicProduceData:
    name: str = f(STRING, "0-12")
    topic_id: uuid.UUID = f(UUID, "13+")
    partition_data: tuple[PartitionProduceData, ...] = f(Array(PartitionProduceData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProduceRequest:
    transactional_id: str | None = f(STRING, "3+", nullable="3+", default=None)
    acks: int = f(INT16)
    timeout_ms: int = f(INT32)
    topic_data: tuple[TopicProduceData, ...] = f(Array(TopicProduceData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BatchIndexAndErrorMessage:
    batch_index: int = f(INT32, "8+")
    batch_index_error_message: str | None = f(STRING, "8+", nullable="8+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class LeaderIdAndEpoch:
    leader_id: int = f(INT32, default=-1)
    leader_epoch: int = f(INT32, default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class PartitionProduceResponse:
    index: int = f(INT32)
    error_code: int = f(INT16)
    base_offset: int = f(INT64)
    log_append_time_ms: int = f(INT64, "2+", default=-1)
    log_start_offset: int = f(INT64, "5+", default=-1)
    record_errors: tuple[BatchIndexAndErrorMessage, ...] = f(Array(BatchIndexAndErrorMessage), "8+")
    error_message: str | None = f(STRING, "8+", nullable="8+", default=None)
    current_leader: LeaderIdAndEpoch = f(Struct(LeaderIdAndEpoch), "10+", tag=0)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TopicProduceResponse:
    name: str = f(STRING, "0-12")
    topic_id: uuid.UUID = f(UUID, "13+")
    partition_responses: tuple[PartitionProduceResponse, ...] = f(Array(PartitionProduceResponse))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class NodeEndpoint:
    node_id: int = f(INT32)
    host: str = f(STRING)
    port: int = f(INT32)
    rack: str | None = f(STRING, nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProduceResponse:
    responses: tuple[TopicProduceResponse, ...] = f(Array(TopicProduceResponse))
    throttle_time_ms: int = f(INT32, "1+")
    node_endpoints: tuple[NodeEndpoint, ...] = f(Array(NodeEndpoint), "10+", tag=0)


# -- Fetch (1) ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaState:
    replica_id: int = f(INT32, default=-1)
    replica_epoch: int = f(INT64, default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FetchPartition:
    partition: int = f(INT32)
    current_leader_epoch: int = f(INT32, "9+", default=-1)
    fetch_offset: int = f(INT64)
    last_fetched_epoch: int = f(INT32, "12+", default=-1)
    log_start_offset: int = f(INT64, "5+", default=-1)
    partition_max_bytes: int = f(INT32)
    replica_directory_id: uuid.UUID = f(UUID, "17+", tag=0)
    high_watermark: int = f(INT64, "18+", tag=1, default=2**63 - 1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FetchTopic:
    topic: str = f(STRING, "0-12")
    topic_id: uuid.UUID = f(UUID, "13+")
    partitions: tuple[FetchPartition, ...] = f(Array(FetchPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ForgottenTopic:
    topic: str = f(STRING, "7-12")
    topic_id: uuid.UUID = f(UUID, "13+")
    partitions: tuple[int, ...] = f(Array(INT32), "7+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FetchRequest:
    cluster_id: str | None = f(STRING, "12+", nullable="12+", tag=0, default=None)
    replica_id: int = f(INT32, "0-14", default=-1)
    replica_state: ReplicaState = f(Struct(ReplicaState), "15+", tag=1)
    max_wait_ms: int = f(INT32)
    min_bytes: int = f(INT32)
    max_bytes: int = f(INT32, "3+", default=0x7FFFFFFF)
    isolation_level: int = f(INT8, "4+")
    session_id: int = f(INT32, "7+")
    session_epoch: int = f(INT32, "7+", default=-1)
    topics: tuple[FetchTopic, ...] = f(Array(FetchTopic))
    forgotten_topics_data: tuple[ForgottenTopic, ...] = f(Array(ForgottenTopic), "7+")
    rack_id: str = f(STRING, "11+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EpochEndOffset:
    epoch: int = f(INT32, default=-1)
    end_offset: int = f(INT64, default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SnapshotId:
    end_offset: int = f(INT64, default=-1)
    epoch: int = f(INT32, default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AbortedTransaction:
    producer_id: int = f(INT64, "4+")
    first_offset: int = f(INT64, "4+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FetchPartitionData:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    high_watermark: int = f(INT64)
    last_stable_offset: int = f(INT64, "4+", default=-1)
    log_start_offset: int = f(INT64, "5+", default=-1)
    diverging_epoch: EpochEndOffset = f(Struct(EpochEndOffset), "12+", tag=0)
    current_leader: LeaderIdAndEpoch = f(Struct(LeaderIdAndEpoch), "12+", tag=1)
    snapshot_id: SnapshotId = f(Struct(SnapshotId), "12+", tag=2)
    aborted_transactions: tuple[AbortedTransaction, ...] | None = f(
        Array(AbortedTransaction), "4+", nullable="4+", default=None
    )
    preferred_read_replica: int = f(INT32, "11+", default=-1)
    records: bytes | None = f(RECORDS, nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FetchableTopicResponse:
    topic: str = f(STRING, "0-12")
    topic_id: uuid.UUID = f(UUID, "13+")
    partitions: tuple[FetchPartitionData, ...] = f(Array(FetchPartitionData))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class FetchResponse:
    throttle_time_ms: int = f(INT32, "1+")
    error_code: int = f(INT16, "7+")
    session_id: int = f(INT32, "7+")
    responses: tuple[FetchableTopicResponse, ...] = f(Array(FetchableTopicResponse))
    node_endpoints: tuple[NodeEndpoint, ...] = f(Array(NodeEndpoint), "16+", tag=0)


# -- ListOffsets (2) ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsPartition:
    partition_index: int = f(INT32)
    current_leader_epoch: int = f(INT32, "4+", default=-1)
    timestamp: int = f(INT64)
    max_num_offsets: int = f(INT32, "0", default=1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsTopic:
    name: str = f(STRING)
    partitions: tuple[ListOffsetsPartition, ...] = f(Array(ListOffsetsPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsRequest:
    replica_id: int = f(INT32)
    isolation_level: int = f(INT8, "2+")
    topics: tuple[ListOffsetsTopic, ...] = f(Array(ListOffsetsTopic))
    timeout_ms: int = f(INT32, "10+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsPartitionResponse:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    old_style_offsets: tuple[int, ...] = f(Array(INT64), "0")
    timestamp: int = f(INT64, "1+", default=-1)
    offset: int = f(INT64, "1+", default=-1)
    leader_epoch: int = f(INT32, "4+", default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsTopicResponse:
    name: str = f(STRING)
    partitions: tuple[ListOffsetsPartitionResponse, ...] = f(Array(ListOffsetsPartitionResponse))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListOffsetsResponse:
    throttle_time_ms: int = f(INT32, "2+")
    topics: tuple[ListOffsetsTopicResponse, ...] = f(Array(ListOffsetsTopicResponse))


# -- InitProducerId (22) --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InitProducerIdRequest:
    transactional_id: str | None = f(STRING, nullable="0+", default=None)
    transaction_timeout_ms: int = f(INT32)
    producer_id: int = f(INT64, "3+", default=-1)
    producer_epoch: int = f(INT16, "3+", default=-1)
    enable2_pc: bool = f(BOOL, "6+")
    keep_prepared_txn: bool = f(BOOL, "6+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class InitProducerIdResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    producer_id: int = f(INT64, default=-1)
    producer_epoch: int = f(INT16)
    ongoing_txn_producer_id: int = f(INT64, "6+", default=-1)
    ongoing_txn_producer_epoch: int = f(INT16, "6+", default=-1)
