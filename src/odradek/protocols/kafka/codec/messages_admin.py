"""Messages of administration: CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster, and
SaslHandshake (answered only to refuse).

Field layouts follow the Kafka protocol's message definitions; each field names the
versions it exists in.
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
    STRING,
    UUID,
    Array,
    f,
)

# -- CreateTopics (19) ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatableReplicaAssignment:
    partition_index: int = f(INT32)
    broker_ids: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicConfig:
    name: str = f(STRING)
    value: str | None = f(STRING, nullable="0+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopic:
    name: str = f(STRING)
    num_partitions: int = f(INT32)
    replication_factor: int = f(INT16)
    assignments: tuple[CreatableReplicaAssignment, ...] = f(Array(CreatableReplicaAssignment))
    configs: tuple[CreatableTopicConfig, ...] = f(Array(CreatableTopicConfig))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopicsRequest:
    topics: tuple[CreatableTopic, ...] = f(Array(CreatableTopic))
    timeout_ms: int = f(INT32, default=60000)
    validate_only: bool = f(BOOL, "1+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicConfigs:
    name: str = f(STRING, "5+")
    value: str | None = f(STRING, "5+", nullable="5+")
    read_only: bool = f(BOOL, "5+")
    config_source: int = f(INT8, "5+", default=-1)
    is_sensitive: bool = f(BOOL, "5+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatableTopicResult:
    name: str = f(STRING)
    topic_id: uuid.UUID = f(UUID, "7+")
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, "1+", nullable="0+", default=None)
    topic_config_error_code: int = f(INT16, "5+", tag=0)
    num_partitions: int = f(INT32, "5+", default=-1)
    replication_factor: int = f(INT16, "5+", default=-1)
    configs: tuple[CreatableTopicConfigs, ...] | None = f(
        Array(CreatableTopicConfigs), "5+", nullable="5+", default=None
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreateTopicsResponse:
    throttle_time_ms: int = f(INT32, "2+")
    topics: tuple[CreatableTopicResult, ...] = f(Array(CreatableTopicResult))


# -- DeleteTopics (20) ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicState:
    name: str | None = f(STRING, "6+", nullable="6+", default=None)
    topic_id: uuid.UUID = f(UUID, "6+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicsRequest:
    topics: tuple[DeleteTopicState, ...] = f(Array(DeleteTopicState), "6+")
    topic_names: tuple[str, ...] = f(Array(STRING), "0-5")
    timeout_ms: int = f(INT32)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeletableTopicResult:
    name: str | None = f(STRING, nullable="6+")
    topic_id: uuid.UUID = f(UUID, "6+")
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, "5+", nullable="5+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteTopicsResponse:
    throttle_time_ms: int = f(INT32, "1+")
    responses: tuple[DeletableTopicResult, ...] = f(Array(DeletableTopicResult))


# -- CreatePartitions (37) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsAssignment:
    broker_ids: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsTopic:
    name: str = f(STRING)
    count: int = f(INT32)
    assignments: tuple[CreatePartitionsAssignment, ...] | None = f(
        Array(CreatePartitionsAssignment), nullable="0+", default=None
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsRequest:
    topics: tuple[CreatePartitionsTopic, ...] = f(Array(CreatePartitionsTopic))
    timeout_ms: int = f(INT32)
    validate_only: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsTopicResult:
    name: str = f(STRING)
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class CreatePartitionsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[CreatePartitionsTopicResult, ...] = f(Array(CreatePartitionsTopicResult))


# -- DescribeConfigs (32) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configuration_keys: tuple[str, ...] | None = f(Array(STRING), nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsRequest:
    resources: tuple[DescribeConfigsResource, ...] = f(Array(DescribeConfigsResource))
    include_synonyms: bool = f(BOOL, "1+")
    include_documentation: bool = f(BOOL, "3+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsSynonym:
    name: str = f(STRING, "1+")
    value: str | None = f(STRING, "1+", nullable="0+")
    source: int = f(INT8, "1+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResourceResult:
    name: str = f(STRING)
    value: str | None = f(STRING, nullable="0+")
    read_only: bool = f(BOOL)
    config_source: int = f(INT8, "1+", default=-1)
    is_default: bool = f(BOOL, "0")
    is_sensitive: bool = f(BOOL)
    synonyms: tuple[DescribeConfigsSynonym, ...] = f(Array(DescribeConfigsSynonym), "1+")
    config_type: int = f(INT8, "3+")
    documentation: str | None = f(STRING, "3+", nullable="0+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResult:
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+")
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: tuple[DescribeConfigsResourceResult, ...] = f(Array(DescribeConfigsResourceResult))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeConfigsResponse:
    throttle_time_ms: int = f(INT32)
    results: tuple[DescribeConfigsResult, ...] = f(Array(DescribeConfigsResult))


# -- AlterConfigs (33) and IncrementalAlterConfigs (44) -------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterableConfig:
    name: str = f(STRING)
    value: str | None = f(STRING, nullable="0+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: tuple[AlterableConfig, ...] = f(Array(AlterableConfig))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsRequest:
    resources: tuple[AlterConfigsResource, ...] = f(Array(AlterConfigsResource))
    validate_only: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResourceResponse:
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+")
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AlterConfigsResponse:
    throttle_time_ms: int = f(INT32)
    responses: tuple[AlterConfigsResourceResponse, ...] = f(Array(AlterConfigsResourceResponse))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IncrementalAlterableConfig:
    name: str = f(STRING)
    config_operation: int = f(INT8)  # 0 set, 1 delete, 2 append, 3 subtract
    value: str | None = f(STRING, nullable="0+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IncrementalAlterConfigsResource:
    resource_type: int = f(INT8)
    resource_name: str = f(STRING)
    configs: tuple[IncrementalAlterableConfig, ...] = f(Array(IncrementalAlterableConfig))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IncrementalAlterConfigsRequest:
    resources: tuple[IncrementalAlterConfigsResource, ...] = f(Array(IncrementalAlterConfigsResource))
    validate_only: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IncrementalAlterConfigsResponse:
    throttle_time_ms: int = f(INT32)
    responses: tuple[AlterConfigsResourceResponse, ...] = f(Array(AlterConfigsResourceResponse))


# -- DescribeCluster (60) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClusterRequest:
    include_cluster_authorized_operations: bool = f(BOOL)
    endpoint_type: int = f(INT8, "1+", default=1)
    include_fenced_brokers: bool = f(BOOL, "2+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClusterBroker:
    broker_id: int = f(INT32)
    host: str = f(STRING)
    port: int = f(INT32)
    rack: str | None = f(STRING, nullable="0+", default=None)
    is_fenced: bool = f(BOOL, "2+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeClusterResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    endpoint_type: int = f(INT8, "1+", default=1)
    cluster_id: str = f(STRING)
    controller_id: int = f(INT32, default=-1)
    brokers: tuple[DescribeClusterBroker, ...] = f(Array(DescribeClusterBroker))
    cluster_authorized_operations: int = f(INT32, default=-(2**31))


# -- SaslHandshake (17) ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SaslHandshakeRequest:
    mechanism: str = f(STRING)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SaslHandshakeResponse:
    error_code: int = f(INT16)
    mechanisms: tuple[str, ...] = f(Array(STRING))
