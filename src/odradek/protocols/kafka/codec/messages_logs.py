"""Messages about logs, their records and who wrote them: DeleteRecords,
DescribeLogDirs, DescribeProducers, and OffsetDelete (a group's committed positions in
them).

Field layouts follow the Kafka protocol's message definitions; each field names the
versions it exists in.
"""

from __future__ import annotations

import dataclasses

from odradek.protocols.kafka.codec.schema import (
    BOOL,
    INT16,
    INT32,
    INT64,
    STRING,
    Array,
    f,
)

# -- DeleteRecords (21) ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsPartition:
    partition_index: int = f(INT32)
    offset: int = f(INT64)  # -1: up to the high watermark


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsTopic:
    name: str = f(STRING)
    partitions: tuple[DeleteRecordsPartition, ...] = f(Array(DeleteRecordsPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsRequest:
    topics: tuple[DeleteRecordsTopic, ...] = f(Array(DeleteRecordsTopic))
    timeout_ms: int = f(INT32)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsPartitionResult:
    partition_index: int = f(INT32)
    low_watermark: int = f(INT64)
    error_code: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsTopicResult:
    name: str = f(STRING)
    partitions: tuple[DeleteRecordsPartitionResult, ...] = f(Array(DeleteRecordsPartitionResult))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DeleteRecordsResponse:
    throttle_time_ms: int = f(INT32)
    topics: tuple[DeleteRecordsTopicResult, ...] = f(Array(DeleteRecordsTopicResult))


# -- DescribeLogDirs (35) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribableLogDirTopic:
    topic: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsRequest:
    topics: tuple[DescribableLogDirTopic, ...] | None = f(
        Array(DescribableLogDirTopic), nullable="0+", default=None
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsPartition:
    partition_index: int = f(INT32)
    partition_size: int = f(INT64)
    offset_lag: int = f(INT64)
    is_future_key: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsTopic:
    name: str = f(STRING)
    partitions: tuple[DescribeLogDirsPartition, ...] = f(Array(DescribeLogDirsPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsResult:
    error_code: int = f(INT16)
    log_dir: str = f(STRING)
    topics: tuple[DescribeLogDirsTopic, ...] = f(Array(DescribeLogDirsTopic))
    total_bytes: int = f(INT64, "4+", default=-1)
    usable_bytes: int = f(INT64, "4+", default=-1)
    is_cordoned: bool = f(BOOL, "5+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeLogDirsResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16, "3+")
    results: tuple[DescribeLogDirsResult, ...] = f(Array(DescribeLogDirsResult))


# -- OffsetDelete (47) ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteRequestPartition:
    partition_index: int = f(INT32)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteRequestTopic:
    name: str = f(STRING)
    partitions: tuple[OffsetDeleteRequestPartition, ...] = f(Array(OffsetDeleteRequestPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteRequest:
    group_id: str = f(STRING)
    topics: tuple[OffsetDeleteRequestTopic, ...] = f(Array(OffsetDeleteRequestTopic))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteResponseTopic:
    name: str = f(STRING)
    partitions: tuple[OffsetDeleteResponsePartition, ...] = f(Array(OffsetDeleteResponsePartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class OffsetDeleteResponse:
    error_code: int = f(INT16)
    throttle_time_ms: int = f(INT32)
    topics: tuple[OffsetDeleteResponseTopic, ...] = f(Array(OffsetDeleteResponseTopic))


# -- DescribeProducers (61) -----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeProducersTopicRequest:
    name: str = f(STRING)
    partition_indexes: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeProducersRequest:
    topics: tuple[DescribeProducersTopicRequest, ...] = f(Array(DescribeProducersTopicRequest))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ProducerState:
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT32)
    last_sequence: int = f(INT32, default=-1)
    last_timestamp: int = f(INT64, default=-1)
    coordinator_epoch: int = f(INT32)
    current_txn_start_offset: int = f(INT64, default=-1)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeProducersPartitionResponse:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    active_producers: tuple[ProducerState, ...] = f(Array(ProducerState))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeProducersTopicResponse:
    name: str = f(STRING)
    partitions: tuple[DescribeProducersPartitionResponse, ...] = f(Array(DescribeProducersPartitionResponse))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeProducersResponse:
    throttle_time_ms: int = f(INT32)
    topics: tuple[DescribeProducersTopicResponse, ...] = f(Array(DescribeProducersTopicResponse))
