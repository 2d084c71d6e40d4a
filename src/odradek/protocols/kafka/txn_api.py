"""Handlers of transactions: InitProducerId with a transactional.id, AddPartitionsToTxn
(v0-3, and v4's batches with KIP-890's verify-only form), AddOffsetsToTxn, EndTxn,
TxnOffsetCommit, DescribeTransactions and ListTransactions.

They translate between the wire messages and the coordinator (transactions.py), which
holds the state. Refusals are logged at info with the coordinator's message; the APIs
that carry no error message (all of these) reach clients with the code alone, which
each client turns into its own exception (PRODUCER_FENCED: a fatal "fenced" error,
INVALID_TXN_STATE: abortable, CONCURRENT_TRANSACTIONS and COORDINATOR_*: retried).
"""

from __future__ import annotations

import fnmatch
import logging
import re
import time

from odradek import limits
from odradek.errors import OdradekError, StorageError, TopicNotFound
from odradek.protocols.kafka.broker import Broker
from odradek.protocols.kafka.cells import cell_of_node
from odradek.protocols.kafka.codec import messages_data as d
from odradek.protocols.kafka.codec import messages_txn as m
from odradek.protocols.kafka.codec.api import Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.store import OffsetEntry
from odradek.protocols.kafka.transactions import ONGOING, STATES, TopicsRefused, TransactionError

log = logging.getLogger(__name__)

# KIP-588: PRODUCER_FENCED from these versions on (INVALID_PRODUCER_EPOCH before).
_FENCED_FROM_INIT = 4
_FENCED_FROM_ADD = 2
_FENCED_FROM_END = 2
_FENCED_FROM_OFFSETS = 3


def _refused(api: str, transactional_id: str, error: TransactionError) -> None:
    log.info(
        "%s of transactional.id %r refused with %s: %s", api, transactional_id, error.code.name, error.message
    )


async def init_producer_id(broker: Broker, request: Request) -> d.InitProducerIdResponse:
    body: d.InitProducerIdRequest = request.body
    assert body.transactional_id is not None
    try:
        producer_id, epoch = await broker.transactions.init_producer(
            body.transactional_id,
            body.transaction_timeout_ms,
            body.producer_id,
            body.producer_epoch,
            request.api_version,
        )
    except TransactionError as exc:
        _refused("InitProducerId", body.transactional_id, exc)
        return d.InitProducerIdResponse(error_code=exc.code, producer_id=-1, producer_epoch=-1)
    except StorageError as exc:
        log.warning("InitProducerId of %r: %s", body.transactional_id, exc.message)
        return d.InitProducerIdResponse(
            error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, producer_id=-1, producer_epoch=-1
        )
    return d.InitProducerIdResponse(producer_id=producer_id, producer_epoch=epoch)


# -- AddPartitionsToTxn ---------------------------------------------------------------


async def add_partitions_to_txn(broker: Broker, request: Request) -> m.AddPartitionsToTxnResponse:
    body: m.AddPartitionsToTxnRequest = request.body
    if request.api_version < 4:
        results = await _add_partitions(
            broker,
            body.v3_and_below_transactional_id,
            body.v3_and_below_producer_id,
            body.v3_and_below_producer_epoch,
            body.v3_and_below_topics,
            False,
            request.api_version,
        )
        return m.AddPartitionsToTxnResponse(results_by_topic_v3_and_below=results)
    answers = []
    for transaction in body.transactions:
        results = await _add_partitions(
            broker,
            transaction.transactional_id,
            transaction.producer_id,
            transaction.producer_epoch,
            transaction.topics,
            transaction.verify_only,
            request.api_version,
        )
        answers.append(
            m.AddPartitionsToTxnResult(transactional_id=transaction.transactional_id, topic_results=results)
        )
    return m.AddPartitionsToTxnResponse(results_by_transaction=tuple(answers))


def _answer(
    topics: tuple[m.AddPartitionsToTxnTopic, ...], codes: dict[tuple[str, int], ErrorCode]
) -> tuple[m.AddPartitionsToTxnTopicResult, ...]:
    return tuple(
        m.AddPartitionsToTxnTopicResult(
            name=topic.name,
            results_by_partition=tuple(
                m.AddPartitionsToTxnPartitionResult(
                    partition_index=partition, partition_error_code=codes[(topic.name, partition)]
                )
                for partition in topic.partitions
            ),
        )
        for topic in topics
    )


async def _add_partitions(
    broker: Broker,
    transactional_id: str,
    producer_id: int,
    epoch: int,
    topics: tuple[m.AddPartitionsToTxnTopic, ...],
    verify_only: bool,
    version: int,
) -> tuple[m.AddPartitionsToTxnTopicResult, ...]:
    wanted = [(topic.name, partition) for topic in topics for partition in topic.partitions]
    coordinator = broker.transactions
    try:
        txn = coordinator.identify(transactional_id, producer_id, epoch, version, _FENCED_FROM_ADD)
    except TransactionError as exc:
        _refused("AddPartitionsToTxn", transactional_id, exc)
        return _answer(topics, dict.fromkeys(wanted, exc.code))
    if verify_only:  # KIP-890: a broker asks whether a produce may go ahead
        codes = {
            key: ErrorCode.NONE if coordinator.verify(txn, key) else ErrorCode.INVALID_TXN_STATE
            for key in wanted
        }
        return _answer(topics, codes)
    codes = {}
    local = []
    remote: dict[str, set[tuple[str, int]]] = {}  # another cell's partitions, by cell (txn_cells.py)
    for name, partition in wanted:
        view = await broker.topic(name)
        if view is None and coordinator.ledger is not None:
            try:
                node = await broker.other_cell_node(name)
                shown = await broker.any_topic(name) if node is not None else None
            except OdradekError as exc:
                log.info(
                    "AddPartitionsToTxn of %r: the cell of %s is unknown (%s)", transactional_id, name, exc
                )
                codes[(name, partition)] = ErrorCode.COORDINATOR_NOT_AVAILABLE
                continue
            if node is not None and shown is not None and 0 <= partition < shown.partitions:
                remote.setdefault(cell_of_node(node), set()).add((name, partition))
                continue
        if view is None or not 0 <= partition < view.partitions:
            codes[(name, partition)] = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        else:
            local.append((name, partition))
    # A schema'd topic checks records as they are appended, which for a transaction is
    # at its commit: a refusal then would break its atomicity. Run on the event loop
    # (the engine's open topics, in memory), before the transaction opens.
    admit = coordinator.schema_check(sorted({name for name, partition in local}))

    try:
        if codes:
            admit()  # nothing opens: the answer's other codes are wanted
        else:
            await coordinator.add_partitions(txn, local, admit, remote)
    except TopicsRefused as exc:
        log.info(
            "AddPartitionsToTxn of %r refused: %s has a schema, which transactions do not cover yet",
            transactional_id,
            ", ".join(exc.topics),
        )
        for key in wanted:
            if key not in codes and key[0] in exc.topics:
                codes[key] = ErrorCode.INVALID_RECORD
    except TransactionError as exc:
        _refused("AddPartitionsToTxn", transactional_id, exc)
        return _answer(topics, dict.fromkeys(wanted, exc.code))
    except StorageError as exc:
        log.warning("AddPartitionsToTxn of %r: %s", transactional_id, exc.message)
        return _answer(topics, dict.fromkeys(wanted, ErrorCode.COORDINATOR_NOT_AVAILABLE))
    except TopicNotFound as exc:  # deleted since its view was read: nothing opened
        if exc.topic is not None:
            broker.forget(exc.topic)
        return _answer(topics, dict.fromkeys(wanted, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
    if codes:
        for key in wanted:
            codes.setdefault(key, ErrorCode.OPERATION_NOT_ATTEMPTED)
        return _answer(topics, codes)
    return _answer(topics, dict.fromkeys(wanted, ErrorCode.NONE))


# -- AddOffsetsToTxn, TxnOffsetCommit -------------------------------------------------


async def add_offsets_to_txn(broker: Broker, request: Request) -> m.AddOffsetsToTxnResponse:
    body: m.AddOffsetsToTxnRequest = request.body
    coordinator = broker.transactions
    try:
        if not body.group_id:
            raise TransactionError(ErrorCode.INVALID_GROUP_ID, "the group id is empty")
        txn = coordinator.identify(
            body.transactional_id,
            body.producer_id,
            body.producer_epoch,
            request.api_version,
            _FENCED_FROM_ADD,
        )
        await coordinator.add_offsets(txn, body.group_id)
    except TransactionError as exc:
        _refused("AddOffsetsToTxn", body.transactional_id, exc)
        return m.AddOffsetsToTxnResponse(error_code=exc.code)
    except StorageError as exc:
        log.warning("AddOffsetsToTxn of %r: %s", body.transactional_id, exc.message)
        return m.AddOffsetsToTxnResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
    return m.AddOffsetsToTxnResponse()


async def txn_offset_commit(broker: Broker, request: Request) -> m.TxnOffsetCommitResponse:
    body: m.TxnOffsetCommitRequest = request.body
    code = ErrorCode.NONE
    try:
        txn = broker.transactions.identify(
            body.transactional_id,
            body.producer_id,
            body.producer_epoch,
            request.api_version,
            _FENCED_FROM_OFFSETS,
        )
    except TransactionError as exc:
        _refused("TxnOffsetCommit", body.transactional_id, exc)
        code = exc.code
    if code == ErrorCode.NONE:
        code = broker.coordinator.check_commit(
            body.group_id, body.member_id, body.generation_id, body.group_instance_id, transactional=True
        )
    offsets: dict[tuple[str, int], OffsetEntry] = {}
    topics = []
    for topic in body.topics:
        # The offsets of any cell's topics (a group's offsets live in the home cell).
        view = await broker.any_topic(topic.name) if code == ErrorCode.NONE else None
        partitions = []
        for partition in topic.partitions:
            answer = code
            metadata = partition.committed_metadata
            if answer != ErrorCode.NONE:
                pass
            elif view is None or not 0 <= partition.partition_index < view.partitions:
                answer = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            elif metadata is not None and len(metadata.encode()) > limits.kafka_offset_metadata_bytes_max:
                answer = ErrorCode.OFFSET_METADATA_TOO_LARGE
            else:
                offsets[(view.name, partition.partition_index)] = (
                    partition.committed_offset,
                    partition.committed_leader_epoch,
                    metadata,
                )
            partitions.append(
                m.TxnOffsetCommitResponsePartition(
                    partition_index=partition.partition_index, error_code=answer
                )
            )
        topics.append(m.TxnOffsetCommitResponseTopic(name=topic.name, partitions=tuple(partitions)))
    if offsets and code == ErrorCode.NONE:
        try:
            await broker.transactions.stage_offsets(txn, body.group_id, offsets)
        except StorageError as exc:  # the transaction's staging slot could not be opened
            log.warning("TxnOffsetCommit of %r: %s", body.transactional_id, exc.message)
            topics = _answer_offsets(topics, ErrorCode.COORDINATOR_NOT_AVAILABLE)
        except TransactionError as exc:
            _refused("TxnOffsetCommit", body.transactional_id, exc)
            topics = _answer_offsets(topics, exc.code)
    return m.TxnOffsetCommitResponse(topics=tuple(topics))


def _answer_offsets(
    topics: list[m.TxnOffsetCommitResponseTopic], code: ErrorCode
) -> list[m.TxnOffsetCommitResponseTopic]:
    """``topics``' partitions all answered with ``code``."""
    return [
        m.TxnOffsetCommitResponseTopic(
            name=topic.name,
            partitions=tuple(
                m.TxnOffsetCommitResponsePartition(partition_index=p.partition_index, error_code=code)
                for p in topic.partitions
            ),
        )
        for topic in topics
    ]


# -- EndTxn ---------------------------------------------------------------------------


async def end_txn(broker: Broker, request: Request) -> m.EndTxnResponse:
    body: m.EndTxnRequest = request.body
    coordinator = broker.transactions
    try:
        txn = coordinator.identify(
            body.transactional_id,
            body.producer_id,
            body.producer_epoch,
            request.api_version,
            _FENCED_FROM_END,
        )
        await coordinator.end(txn, body.committed)
    except TransactionError as exc:
        _refused("EndTxn", body.transactional_id, exc)
        return m.EndTxnResponse(error_code=exc.code)
    except StorageError as exc:
        log.warning("EndTxn of %r: %s", body.transactional_id, exc.message)
        return m.EndTxnResponse(error_code=ErrorCode.COORDINATOR_NOT_AVAILABLE)
    return m.EndTxnResponse()


# -- DescribeTransactions, ListTransactions -------------------------------------------


async def describe_transactions(broker: Broker, request: Request) -> m.DescribeTransactionsResponse:
    body: m.DescribeTransactionsRequest = request.body
    states = []
    for transactional_id in body.transactional_ids:
        txn = broker.transactions.transactions.get(transactional_id)
        if txn is None:
            states.append(
                m.DescribedTransaction(
                    error_code=ErrorCode.TRANSACTIONAL_ID_NOT_FOUND, transactional_id=transactional_id
                )
            )
            continue
        states.append(
            m.DescribedTransaction(
                transactional_id=transactional_id,
                transaction_state=txn.state,
                transaction_timeout_ms=txn.timeout_ms,
                transaction_start_time_ms=txn.started_ms if txn.state == ONGOING else -1,
                producer_id=txn.producer_id,
                producer_epoch=txn.epoch,
                topics=tuple(
                    m.TopicData(topic=topic, partitions=tuple(partitions))
                    for topic, partitions in txn.describe_partitions().items()
                ),
            )
        )
    return m.DescribeTransactionsResponse(transaction_states=tuple(states))


async def list_transactions(broker: Broker, request: Request) -> m.ListTransactionsResponse:
    body: m.ListTransactionsRequest = request.body
    unknown = tuple(state for state in body.state_filters if state not in STATES)
    pattern = None
    if body.transactional_id_pattern:
        try:
            pattern = re.compile(body.transactional_id_pattern)
        except re.error:
            pattern = re.compile(fnmatch.translate(body.transactional_id_pattern))
    now_ms = int(time.time() * 1000)
    listed = []
    for txn in broker.transactions.transactions.values():
        if body.state_filters and txn.state not in body.state_filters:
            continue
        if body.producer_id_filters and txn.producer_id not in body.producer_id_filters:
            continue
        if body.duration_filter >= 0 and (
            txn.state != ONGOING or now_ms - txn.started_ms < body.duration_filter
        ):
            continue
        if pattern is not None and pattern.fullmatch(txn.transactional_id) is None:
            continue
        listed.append(
            m.ListedTransaction(
                transactional_id=txn.transactional_id,
                producer_id=txn.producer_id,
                transaction_state=txn.state,
            )
        )
    return m.ListTransactionsResponse(unknown_state_filters=unknown, transaction_states=tuple(listed))
