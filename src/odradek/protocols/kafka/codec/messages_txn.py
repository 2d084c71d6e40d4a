"""Messages of transactions: AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
TxnOffsetCommit, DescribeTransactions, ListTransactions (InitProducerId is in
messages_data.py).

Field layouts follow the Kafka protocol's message definitions (the JSON files of
``clients/src/main/resources/common/message``); each field names the versions it exists
in. AddPartitionsToTxn v4 batches several transactions in one request and adds
``verify_only`` (KIP-890: a broker asks whether partitions are in a transaction).
"""

from __future__ import annotations

import dataclasses

from odradek.protocols.kafka.codec.schema import BOOL, INT16, INT32, INT64, STRING, Array, f

# -- AddPartitionsToTxn (24) ----------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnTopic:
    name: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnTransaction:
    transactional_id: str = f(STRING, "4+")
    producer_id: int = f(INT64, "4+")
    producer_epoch: int = f(INT16, "4+")
    verify_only: bool = f(BOOL, "4+", default=False)
    topics: tuple[AddPartitionsToTxnTopic, ...] = f(Array(AddPartitionsToTxnTopic), "4+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnRequest:
    transactions: tuple[AddPartitionsToTxnTransaction, ...] = f(Array(AddPartitionsToTxnTransaction), "4+")
    v3_and_below_transactional_id: str = f(STRING, "0-3")
    v3_and_below_producer_id: int = f(INT64, "0-3")
    v3_and_below_producer_epoch: int = f(INT16, "0-3")
    v3_and_below_topics: tuple[AddPartitionsToTxnTopic, ...] = f(Array(AddPartitionsToTxnTopic), "0-3")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnPartitionResult:
    partition_index: int = f(INT32)
    partition_error_code: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnTopicResult:
    name: str = f(STRING)
    results_by_partition: tuple[AddPartitionsToTxnPartitionResult, ...] = f(
        Array(AddPartitionsToTxnPartitionResult)
    )


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnResult:
    transactional_id: str = f(STRING, "4+")
    topic_results: tuple[AddPartitionsToTxnTopicResult, ...] = f(Array(AddPartitionsToTxnTopicResult), "4+")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddPartitionsToTxnResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16, "4+")
    results_by_transaction: tuple[AddPartitionsToTxnResult, ...] = f(Array(AddPartitionsToTxnResult), "4+")
    results_by_topic_v3_and_below: tuple[AddPartitionsToTxnTopicResult, ...] = f(
        Array(AddPartitionsToTxnTopicResult), "0-3"
    )


# -- AddOffsetsToTxn (25) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddOffsetsToTxnRequest:
    transactional_id: str = f(STRING)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    group_id: str = f(STRING)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class AddOffsetsToTxnResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)


# -- EndTxn (26) ----------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndTxnRequest:
    transactional_id: str = f(STRING)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    committed: bool = f(BOOL)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class EndTxnResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    producer_id: int = f(INT64, "5+", default=-1)
    producer_epoch: int = f(INT16, "5+", default=-1)


# -- TxnOffsetCommit (28) -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitRequestPartition:
    partition_index: int = f(INT32)
    committed_offset: int = f(INT64)
    committed_leader_epoch: int = f(INT32, "2+", default=-1)
    committed_metadata: str | None = f(STRING, nullable="0+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitRequestTopic:
    name: str = f(STRING)
    partitions: tuple[TxnOffsetCommitRequestPartition, ...] = f(Array(TxnOffsetCommitRequestPartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitRequest:
    transactional_id: str = f(STRING)
    group_id: str = f(STRING)
    producer_id: int = f(INT64)
    producer_epoch: int = f(INT16)
    generation_id: int = f(INT32, "3+", default=-1)
    member_id: str = f(STRING, "3+", default="")
    group_instance_id: str | None = f(STRING, "3+", nullable="3+", default=None)
    topics: tuple[TxnOffsetCommitRequestTopic, ...] = f(Array(TxnOffsetCommitRequestTopic))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitResponsePartition:
    partition_index: int = f(INT32)
    error_code: int = f(INT16)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitResponseTopic:
    name: str = f(STRING)
    partitions: tuple[TxnOffsetCommitResponsePartition, ...] = f(Array(TxnOffsetCommitResponsePartition))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TxnOffsetCommitResponse:
    throttle_time_ms: int = f(INT32)
    topics: tuple[TxnOffsetCommitResponseTopic, ...] = f(Array(TxnOffsetCommitResponseTopic))


# -- DescribeTransactions (65) --------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTransactionsRequest:
    transactional_ids: tuple[str, ...] = f(Array(STRING))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class TopicData:
    topic: str = f(STRING)
    partitions: tuple[int, ...] = f(Array(INT32))


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribedTransaction:
    error_code: int = f(INT16)
    transactional_id: str = f(STRING)
    transaction_state: str = f(STRING, default="")
    transaction_timeout_ms: int = f(INT32, default=0)
    transaction_start_time_ms: int = f(INT64, default=-1)
    producer_id: int = f(INT64, default=-1)
    producer_epoch: int = f(INT16, default=-1)
    topics: tuple[TopicData, ...] = f(Array(TopicData), default=())


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class DescribeTransactionsResponse:
    throttle_time_ms: int = f(INT32)
    transaction_states: tuple[DescribedTransaction, ...] = f(Array(DescribedTransaction))


# -- ListTransactions (66) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListTransactionsRequest:
    state_filters: tuple[str, ...] = f(Array(STRING))
    producer_id_filters: tuple[int, ...] = f(Array(INT64))
    duration_filter: int = f(INT64, "1+", default=-1)
    transactional_id_pattern: str | None = f(STRING, "2+", nullable="2+", default=None)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListedTransaction:
    transactional_id: str = f(STRING)
    producer_id: int = f(INT64)
    transaction_state: str = f(STRING)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ListTransactionsResponse:
    throttle_time_ms: int = f(INT32)
    error_code: int = f(INT16)
    unknown_state_filters: tuple[str, ...] = f(Array(STRING))
    transaction_states: tuple[ListedTransaction, ...] = f(Array(ListedTransaction))
