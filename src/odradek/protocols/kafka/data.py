"""Handlers of the data path: ApiVersions, Metadata, Produce, Fetch, ListOffsets,
InitProducerId. Each takes the broker and a decoded request and returns the response
body (or None when Kafka sends no response, as for Produce with acks=0).

A StorageError (a full disk, an I/O error) is answered with an error code, as a Kafka
broker answers a failing log directory, never by closing the connection: Produce and
Fetch give KAFKA_STORAGE_ERROR for the partition (Fetch v4-5, whose clients may not
know that code, NOT_LEADER_OR_FOLLOWER, as Kafka does), ListOffsets likewise, and
InitProducerId COORDINATOR_LOAD_IN_PROGRESS, Kafka's answer when no producer-id block
can be had, which librdkafka, kafka-python and aiokafka all retry."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.errors import InvalidRequest, OdradekError, StorageError, TopicExists, TopicNotFound
from odradek.names import tenant_of
from odradek.protocols.kafka import txn_api
from odradek.protocols.kafka.broker import (
    NODE_ID,
    Broker,
    TopicView,
    engine_producer,
    error_code_of,
    topic_id_of,
)
from odradek.protocols.kafka.cells import node_of_cell
from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import APIS, ApiKey, Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.protocols.kafka.codec.records import (
    DecodedBatch,
    RecordOverLimit,
    check_batches,
    decode_batches,
    encode_batch,
)
from odradek.protocols.kafka.fetch_sessions import FetchPlan
from odradek.protocols.kafka.partition_index import Gathered, Wanted, gather, max_timestamp, offset_for_time
from odradek.protocols.kafka.transactions import TransactionError
from odradek.records import STORED_SCHEMA

log = logging.getLogger(__name__)

# ListOffsets special timestamps.
_LATEST = -1
_EARLIEST = -2
_MAX_TIMESTAMP = -3
# Fetch's isolation level of a read_committed consumer.
_READ_COMMITTED = 1


def api_versions_response(error: ErrorCode = ErrorCode.NONE) -> m.ApiVersionsResponse:
    keys = tuple(
        m.ApiVersion(api_key=a.key, min_version=a.min_version, max_version=a.max_version)
        for a in APIS.values()
        if a.key != ApiKey.SASL_HANDSHAKE
    )
    return m.ApiVersionsResponse(error_code=error, api_keys=keys)


async def api_versions(broker: Broker, request: Request) -> m.ApiVersionsResponse:
    return api_versions_response()


# -- Metadata -------------------------------------------------------------------------


# Metadata naming more topics than this reads every shape at once (cells.py), not each.
_SHAPES_LISTED_FROM = 8


def _topic_metadata(
    name: str, topic_id: uuid.UUID, partitions: int, leader: int = NODE_ID
) -> m.MetadataResponseTopic:
    return m.MetadataResponseTopic(
        name=name,
        topic_id=topic_id,
        is_internal=name.startswith("_") and tenant_of(name) is None,
        partitions=tuple(
            m.MetadataResponsePartition(
                partition_index=index,
                leader_id=leader,
                leader_epoch=0,
                replica_nodes=(leader,),
                isr_nodes=(leader,),
            )
            for index in range(partitions)
        ),
    )


def _view_metadata(broker: Broker, view: TopicView) -> m.MetadataResponseTopic:
    return _topic_metadata(view.name, view.topic_id, view.partitions, broker.node_id)


async def metadata(broker: Broker, request: Request) -> m.MetadataResponse:
    body: m.MetadataRequest = request.body
    topics: list[m.MetadataResponseTopic] = []
    brokers: tuple[m.MetadataResponseBroker, ...] = (
        m.MetadataResponseBroker(node_id=NODE_ID, host=broker.host, port=broker.port),
    )
    if broker.cells is not None:  # every cell's door with a known owner (cells.py)
        nodes = dict((node, (host, port)) for node, host, port in await broker.call(broker.cells.nodes))
        nodes[broker.node_id] = (broker.host, broker.port)
        brokers = tuple(
            m.MetadataResponseBroker(node_id=node, host=host, port=port)
            for node, (host, port) in sorted(nodes.items())
        )
    if body.topics is None or (request.api_version == 0 and not body.topics):
        names = await broker.call(broker.engine.list_topics)
        for name in names:
            view = await broker.topic(name, refresh=True)
            if view is not None:
                topics.append(_view_metadata(broker, view))
        if broker.cells is not None:
            topics.extend(await _other_cells_topics(broker, set(names)))
    else:
        if broker.cells is not None and len(body.topics) > _SHAPES_LISTED_FROM:
            # Many topics named: one listing of the shapes answers for all of them.
            with contextlib.suppress(OdradekError):
                await broker.call(broker.cells.shapes)
        for wanted in body.topics:
            topics.append(await _one_topic(broker, wanted, body.allow_auto_topic_creation))
    return m.MetadataResponse(
        brokers=brokers,
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,  # this door creates topics in its own cell
        topics=tuple(topics),
    )


async def _other_cells_topics(broker: Broker, here: set[str]) -> list[m.MetadataResponseTopic]:
    """Every topic of the other cells, as their doors published it (cells.py); none
    while etcd does not answer (a listing is allowed to be partial: clients ask again)."""
    assert broker.cells is not None
    try:
        shapes = await broker.call(broker.cells.shapes)
    except OdradekError as exc:
        log.warning("Metadata lists this cell's topics only: %s", exc)
        return []
    return [
        _topic_metadata(
            shape.topic, topic_id_of(shape.incarnation), shape.partitions, node_of_cell(shape.cell)
        )
        for name, shape in sorted(shapes.items())
        if name not in here and node_of_cell(shape.cell) != broker.node_id
    ]


async def _other_cell_topic(broker: Broker, name: str) -> m.MetadataResponseTopic | None:
    """``name`` as the door of the other cell holding it shows it; LEADER_NOT_AVAILABLE
    (retriable) while that door has not published it or etcd does not answer; None when
    no cell holds it."""
    assert broker.cells is not None
    try:
        node = await broker.other_cell_node(name)
        if node is None:
            return None
        shape = await broker.call(broker.cells.shape, name)
    except OdradekError as exc:
        log.info("Metadata of %s: %s", name, exc)
        return m.MetadataResponseTopic(error_code=ErrorCode.LEADER_NOT_AVAILABLE, name=name)
    if shape is None or node_of_cell(shape.cell) != node:
        return m.MetadataResponseTopic(error_code=ErrorCode.LEADER_NOT_AVAILABLE, name=name)
    return _topic_metadata(name, topic_id_of(shape.incarnation), shape.partitions, node)


async def _one_topic(
    broker: Broker, wanted: m.MetadataRequestTopic, auto_create: bool
) -> m.MetadataResponseTopic:
    if wanted.name is None:
        view = await broker.topic_by_id(wanted.topic_id)
        if view is None:
            try:  # another cell's, as its door published it (cells.py)
                shape = await broker.shape_by_id(wanted.topic_id)
            except OdradekError as exc:
                log.info("Metadata of topic id %s: %s", wanted.topic_id, exc)
                shape = None
            if shape is not None and await broker.elsewhere(shape.topic):
                leader = node_of_cell(shape.cell)
                return _topic_metadata(shape.topic, wanted.topic_id, shape.partitions, leader)
            return m.MetadataResponseTopic(
                error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=wanted.topic_id
            )
        return _view_metadata(broker, view)
    name = wanted.name
    view = await broker.topic(name, refresh=True)
    if view is None and broker.cells is not None:
        other = await _other_cell_topic(broker, name)
        if other is not None:
            return other
    if view is None and auto_create and broker.auto_create_topics:
        created = await _auto_create(broker, name)
        if isinstance(created, ErrorCode):
            return m.MetadataResponseTopic(error_code=created, name=name)
        if created is None and broker.cells is not None:  # another cell's meanwhile
            other = await _other_cell_topic(broker, name)
            if other is not None:
                return other
        view = created
    if view is None:
        return m.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name)
    return _view_metadata(broker, view)


async def _auto_create(broker: Broker, name: str) -> TopicView | ErrorCode | None:
    """Create a topic a Metadata request names, with the broker's default partition
    count (Kafka's ``num.partitions``); None if it cannot be had."""
    created = True
    try:
        await broker.create_topic(name)
    except TopicExists:
        created = False  # created meanwhile, through some door: keep its count
    except InvalidRequest:
        return ErrorCode.INVALID_TOPIC_EXCEPTION
    except OdradekError as exc:
        log.warning("auto-creating topic %s failed: %s", name, exc)
    view = await broker.topic(name, refresh=True)
    if view is not None and created and broker.default_partitions != view.partitions:
        try:
            view = await broker.set_partitions(view, broker.default_partitions)
        except OdradekError as exc:
            # Nothing half-done: the topic goes again rather than stay with 1 partition.
            log.warning("auto-creating topic %s failed: %s", name, exc)
            with contextlib.suppress(OdradekError):
                await broker.delete_topic(name)
            broker.forget(name)
            return None
    return view


# -- Produce --------------------------------------------------------------------------
#
# A Produce is handled in two steps so that a connection can pipeline them: ``submit``
# runs in request order and writes every partition's records (decode, sequence checks,
# ``Engine.submit_append``); the completion it returns waits for the appends to be
# durable and builds the response. The listener reads the next request while earlier
# completions wait for their fsync, and writes responses in request order.

Completion = Callable[[], Awaitable[Any]]


async def produce(broker: Broker, request: Request) -> m.ProduceResponse | None:
    """Submit and complete at once (the dispatch table's plain form)."""
    complete = await produce_submit(broker, request)
    response: m.ProduceResponse | None = await complete()
    return response


async def produce_submit(broker: Broker, request: Request) -> Completion:
    body: m.ProduceRequest = request.body
    topics: list[tuple[m.TopicProduceData, list[Completion]]] = []
    for topic_data in body.topic_data:
        view = await (
            broker.topic_by_id(topic_data.topic_id)
            if request.api_version >= 13
            else broker.topic(topic_data.name)
        )
        partitions = []
        for data in topic_data.partition_data:
            if body.acks not in (0, 1, -1):
                partitions.append(_done(_produce_error(data.index, ErrorCode.INVALID_REQUIRED_ACKS)))
            elif view is None:
                code = await (
                    broker.missing_code(None, topic_data.topic_id)
                    if request.api_version >= 13
                    else broker.missing_code(topic_data.name)
                )
                partitions.append(_done(_produce_error(data.index, code)))
            elif not 0 <= data.index < view.partitions:
                partitions.append(_done(_produce_error(data.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)))
            elif body.transactional_id is not None:
                partitions.append(_done(await _stage_partition(broker, body.transactional_id, view, data)))
            else:
                partitions.append(await _submit_partition(broker, view, data))
        topics.append((topic_data, partitions))

    async def complete() -> m.ProduceResponse | None:
        responses = []
        for topic_data, partitions in topics:
            results = tuple([await partition() for partition in partitions])
            responses.append(
                m.TopicProduceResponse(
                    name=topic_data.name, topic_id=topic_data.topic_id, partition_responses=results
                )
            )
        if body.acks == 0:
            return None
        return m.ProduceResponse(responses=tuple(responses))

    return complete


def _done(response: m.PartitionProduceResponse) -> Completion:
    async def complete() -> m.PartitionProduceResponse:
        return response

    return complete


def _produce_error(index: int, code: ErrorCode, message: str | None = None) -> m.PartitionProduceResponse:
    return m.PartitionProduceResponse(index=index, error_code=code, base_offset=-1, error_message=message)


async def _submit_partition(broker: Broker, view: TopicView, data: m.PartitionProduceData) -> Completion:
    try:
        batches = [b for b in decode_batches(data.records or b"") if not b.header.control]
    except RecordOverLimit as exc:  # well formed but over a bound: not to be retried
        log.info("Produce to %s refused: %s (INVALID_RECORD)", view.name, exc)
        return _done(_produce_error(data.index, ErrorCode.INVALID_RECORD, str(exc)))
    except DecodeError as exc:
        return _done(_produce_error(data.index, ErrorCode.CORRUPT_MESSAGE, str(exc)))
    if not batches:
        return _done(_produce_error(data.index, ErrorCode.CORRUPT_MESSAGE, "the request holds no records"))
    first = batches[0].header
    producer_id, epoch, sequence = first.producer_id, first.producer_epoch, first.base_sequence
    idempotent = producer_id >= 0
    count = sum(b.header.record_count for b in batches)
    producer = None
    if idempotent:
        code, original = broker.producers.check(producer_id, epoch, view.name, data.index, sequence, count)
        if code != ErrorCode.NONE:
            return _done(_produce_error(data.index, code))
        if original is not None:
            return _retried(data.index, original)
        # The engine's durable state decides the rest: a new batch is written, a retry
        # of a remembered one (also from before a restart) comes back as a duplicate
        # with its original offset, anything else is a SequenceError.
        producer = engine_producer(producer_id, epoch, data.index, sequence, count)
    try:
        pending = await broker.call(
            broker.engine.submit_append,
            view.name,
            _records_of(batches),
            producer=producer,
            partition=data.index,
        )
    except TopicNotFound:
        broker.forget(view.name)
        return _done(_produce_error(data.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
    except OdradekError as exc:
        return _done(_produce_error(data.index, error_code_of(exc), exc.message))
    offset: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    if idempotent:
        broker.producers.record(producer_id, epoch, view.name, data.index, sequence, count, offset)

    async def complete() -> m.PartitionProduceResponse:
        try:
            result = await broker.call(pending.wait)
        except OdradekError as exc:
            broker.producers.forget(producer_id, view.name, data.index)
            offset.cancel()
            return _produce_error(data.index, error_code_of(exc), exc.message)
        offset.set_result(result.base_offset)
        return m.PartitionProduceResponse(index=data.index, base_offset=result.base_offset)

    return complete


async def _stage_partition(
    broker: Broker, transactional_id: str, view: TopicView, data: m.PartitionProduceData
) -> m.PartitionProduceResponse:
    """A transactional Produce: its records are staged (transactions.py) and answered
    with a lower bound of their offsets (TransactionCoordinator.stage); they reach their
    topic once the transaction commits. The batches are checked here without being
    decoded (check_batches: framing, CRC, bounds, each record's length); the coordinator
    decodes them after the answer, and the commit waits for that (decision 0016)."""
    try:
        headers = [h for h in check_batches(data.records or b"") if not h.control]
    except RecordOverLimit as exc:  # well formed but over a bound: not to be retried
        log.info("Produce to %s refused: %s (INVALID_RECORD)", view.name, exc)
        return _produce_error(data.index, ErrorCode.INVALID_RECORD, str(exc))
    except DecodeError as exc:
        return _produce_error(data.index, ErrorCode.CORRUPT_MESSAGE, str(exc))
    if not headers:
        return _produce_error(data.index, ErrorCode.CORRUPT_MESSAGE, "the request holds no records")
    first = headers[0]
    count = sum(h.record_count for h in headers)
    try:
        txn = await broker.transactions.admit_produce(
            transactional_id, first.producer_id, first.producer_epoch, (view.name, data.index)
        )
        broker.engine.tenant_storage.check(view.name)  # a tenant at its storage_bytes quota
        base = await broker.transactions.stage(
            txn, view.name, data.index, data.records or b"", first.base_sequence, count
        )
    except TransactionError as exc:
        log.info(
            "transactional Produce of %r refused with %s: %s", transactional_id, exc.code.name, exc.message
        )
        return _produce_error(data.index, exc.code, exc.message)
    except OdradekError as exc:
        return _produce_error(data.index, error_code_of(exc), exc.message)
    return m.PartitionProduceResponse(index=data.index, base_offset=base)


def _retried(index: int, original: asyncio.Future[int]) -> Completion:
    """A retry of a remembered batch: answered with the original's offset, once known."""

    async def complete() -> m.PartitionProduceResponse:
        await asyncio.wait({original})
        if original.cancelled():
            return _produce_error(index, ErrorCode.KAFKA_STORAGE_ERROR, "the original append failed; retry")
        return m.PartitionProduceResponse(index=index, base_offset=original.result())

    return complete


def _records_of(batches: list[DecodedBatch]) -> pa.RecordBatch | pa.Table:
    if len(batches) == 1:
        return batches[0].records
    return pa.Table.from_batches([b.records for b in batches])


# -- Fetch ----------------------------------------------------------------------------
#
# A partition serves exactly the records that belong to it (partitions.py), in offset
# order, in one record batch from its first to its last record returned; its high
# watermark is its last record's offset + 1 (partition_index.py), so a consumer that
# read everything is at the high watermark: lag 0. A fetch offset anywhere in the log
# (gaps included, up to the log's end) is valid; outside it, OFFSET_OUT_OF_RANGE. The
# partitions of one topic are read together, each frame of the log at most once.
#
# Budget: partitions take ``max_bytes`` in request order, each at most its
# ``partition_max_bytes``; only the first partition with records may exceed either
# (by one record, so that a consumer always progresses), as in Kafka. A partition
# answered with an error carries an empty record set, never null, as Kafka sends it
# (librdkafka drops a flexible response holding a null one).

# Kafka's record batch header (61 bytes) and, per record, the most its varints can take
# beside key, value and headers: length 5, attributes 1, timestamp delta 10, offset delta
# 5, key length 5, value length 5, header count 5; per header two lengths of 5.
_BATCH_HEADER_BYTES = 61
_RECORD_OVERHEAD_BYTES = 36
_HEADER_OVERHEAD_BYTES = 10


async def fetch(broker: Broker, request: Request) -> m.FetchResponse:
    body: m.FetchRequest = request.body
    by_id = request.api_version >= 13
    # KIP-227 (fetch_sessions.py): the session a request opens, updates or closes, and
    # the partitions to read (an incremental request names only those that changed).
    if request.api_version >= 7:
        plan = broker.fetch_sessions.plan(body, by_id)
    else:
        plan = FetchPlan(ErrorCode.NONE, 0, body.topics)
    if plan.error != ErrorCode.NONE:
        log.info(
            "Fetch in session %d (epoch %d) refused: %s",
            body.session_id,
            body.session_epoch,
            ErrorCode(plan.error).name,
        )
        return m.FetchResponse(error_code=plan.error)
    wait = min(max(body.max_wait_ms, 0), limits.kafka_fetch_wait_ms_max) / 1000
    deadline = time.monotonic() + wait
    targets: list[tuple[m.FetchTopic, TopicView | ErrorCode]] = []
    for topic in plan.topics:
        view = await (broker.topic_by_id(topic.topic_id) if by_id else broker.topic(topic.topic))
        if view is None:  # the error to answer for it
            targets.append((topic, await broker.missing_code(None if by_id else topic.topic, topic.topic_id)))
        else:
            targets.append((topic, view))
    # A commit answered before this Fetch came is seen by it (transactions.py applies
    # commits in the background).
    fetched = {view.name for _, view in targets if isinstance(view, TopicView)}
    await broker.transactions.settled(fetched, limits.kafka_transaction_apply_wait_seconds_max)
    # Kafka answers Fetch v5 and older with NOT_LEADER_OR_FOLLOWER instead, which those
    # clients know to retry after a metadata refresh.
    storage_code = (
        ErrorCode.KAFKA_STORAGE_ERROR if request.api_version >= 6 else ErrorCode.NOT_LEADER_OR_FOLLOWER
    )
    while True:
        seen = broker.arrivals.generation  # before looking: an arrival from now on wakes us
        if _has_data(broker, targets) or time.monotonic() >= deadline:
            responses, size = await broker.call(
                _read_all, broker, targets, body.max_bytes, storage_code, body.isolation_level
            )
            if size >= body.min_bytes or time.monotonic() >= deadline:
                return m.FetchResponse(
                    session_id=plan.session_id, responses=broker.fetch_sessions.answer(plan, responses)
                )
        await broker.arrivals.wait(seen, max(deadline - time.monotonic(), 0))


def _has_data(broker: Broker, targets: list[tuple[m.FetchTopic, TopicView | ErrorCode]]) -> bool:
    """Whether a read may find something (on the event loop: from what the partition
    index knew last, without reading the log)."""
    for topic, view in targets:
        if not isinstance(view, TopicView):
            return True  # an error to report at once
        try:
            end = broker.engine.resolve_start(view.name, "latest")
            first = broker.engine.resolve_start(view.name, "earliest")
        except OdradekError:
            return True
        known = broker.index(view).current
        if known.covered != end or known.first_offset != first:
            return True  # the index is behind the log: read to know
        for wanted in topic.partitions:
            offset = wanted.fetch_offset
            if not 0 <= wanted.partition < view.partitions or offset < first or offset > end:
                return True  # an error to report at once
            if known.has_data(wanted.partition, offset):
                return True
    return False


class _Budget:
    """What is left of a Fetch's ``max_bytes`` and whether a partition returned records."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max(max_bytes, 0)
        self.any_records = False
        self.total = 0

    def spend(self, size: int, records: int) -> None:
        self.left = max(self.left - size, 0)
        self.total += size
        self.any_records = self.any_records or records > 0


def _read_all(
    broker: Broker,
    targets: list[tuple[m.FetchTopic, TopicView | ErrorCode]],
    max_bytes: int,
    storage_code: ErrorCode,
    isolation_level: int = 0,
) -> tuple[tuple[m.FetchableTopicResponse, ...], int]:
    responses = []
    budget = _Budget(max_bytes)
    for topic, view in targets:
        partitions = _read_topic(broker, view, topic.partitions, budget, storage_code, isolation_level)
        responses.append(
            m.FetchableTopicResponse(topic=topic.topic, topic_id=topic.topic_id, partitions=tuple(partitions))
        )
    return tuple(responses), budget.total


def _failed(index: int, code: ErrorCode, end: int = -1, first: int = -1) -> m.FetchPartitionData:
    """A partition answered with an error: an empty record set, never null."""
    return m.FetchPartitionData(
        partition_index=index,
        error_code=code,
        high_watermark=end,
        last_stable_offset=end,
        log_start_offset=first,
        records=b"",
    )


def _read_topic(
    broker: Broker,
    view: TopicView | ErrorCode,
    wanted: tuple[m.FetchPartition, ...],
    budget: _Budget,
    storage_code: ErrorCode,
    isolation_level: int = 0,
) -> list[m.FetchPartitionData]:
    """The topic's partitions' answers, in request order; their records read together.

    Topics hold committed records only (transactions are applied at their commit,
    transactions.py), so the last stable offset is the high watermark and a
    read_committed fetch (isolation level 1) gets an empty list of aborted
    transactions."""
    answers: dict[int, m.FetchPartitionData] = {}
    if not isinstance(view, TopicView):  # the error to answer: the topic is not here
        return [_failed(p.partition, view) for p in wanted]
    engine = broker.engine
    try:
        index = broker.index(view)
        snapshot = index.snapshot(engine)
        first, end = snapshot.first_offset, snapshot.covered
        reads: list[Wanted] = []
        for p in wanted:
            if not 0 <= p.partition < view.partitions:
                answers[p.partition] = _failed(p.partition, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)
            elif p.fetch_offset < first or p.fetch_offset > end:
                answers[p.partition] = _failed(
                    p.partition,
                    ErrorCode.OFFSET_OUT_OF_RANGE,
                    snapshot.high_watermark(p.partition),
                    snapshot.log_start(p.partition),
                )
            elif p.partition not in answers:
                reads.append(Wanted(p.partition, p.fetch_offset, max(p.partition_max_bytes, 0)))
        # A schema'd topic's typed values go to Kafka clients in the Schema Registry
        # wire format (magic byte, schema id, payload), as its deserializers expect.
        gathered = gather(engine, index, snapshot, reads, max(budget.left, 1), "wire") if reads else []
    except TopicNotFound:
        broker.forget(view.name)
        return [_failed(p.partition, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION) for p in wanted]
    except StorageError as exc:
        log.warning("Fetch of %s: %s", view.name, exc.message)
        return [_failed(p.partition, storage_code) for p in wanted]
    for read in gathered:
        partition = read.wanted.partition
        records = _encode_partition(read, budget)
        end_of_partition = snapshot.high_watermark(partition)
        answers[partition] = m.FetchPartitionData(
            partition_index=partition,
            high_watermark=end_of_partition,
            last_stable_offset=end_of_partition,
            log_start_offset=snapshot.log_start(partition),
            aborted_transactions=() if isolation_level == _READ_COMMITTED else None,
            records=records,
        )
    return [answers[p.partition] for p in wanted]


def _encode_partition(read: Gathered, budget: _Budget) -> bytes:
    """One record batch of the partition's records read, as many as the budget allows
    (at least one for the first partition with records)."""
    rows = read.rows
    if rows == 0:
        if read.stop > read.start:  # its records there are unreadable (damaged): move past them
            return encode_batch(_EMPTY_TABLE, base_offset=read.start, last_offset=read.stop - 1)
        return b""
    table = pa.Table.from_batches(read.batches)
    allowance = min(read.wanted.max_bytes, budget.left)
    sizes = _BATCH_HEADER_BYTES + np.cumsum(_record_bytes_max(table))
    count = int(np.searchsorted(sizes, allowance, side="right"))
    if count == 0 and not budget.any_records:
        count = 1  # the first partition with records always gets one
    if count == 0:
        return b""
    records = encode_batch(table.slice(0, count))
    budget.spend(len(records), count)
    return records


_EMPTY_TABLE = pa.Table.from_batches([], schema=STORED_SCHEMA)


def _record_bytes_max(table: pa.Table) -> np.ndarray:
    """An upper bound of each record's encoded size in a Kafka record batch."""
    sizes = np.full(table.num_rows, _RECORD_OVERHEAD_BYTES, dtype=np.int64)
    for name in ("key", "value"):
        lengths = pc.fill_null(pc.binary_length(table.column(name)), 0)
        sizes += np.asarray(lengths.to_numpy(), dtype=np.int64)
    headers = table.column("headers").combine_chunks()
    if headers.null_count < len(headers):
        offsets = headers.offsets.to_numpy().astype(np.int64)
        sizes += _HEADER_OVERHEAD_BYTES * np.diff(offsets)  # a null entry covers no headers
        entry_bytes = np.asarray(
            pc.fill_null(pc.binary_length(headers.keys.cast(pa.binary())), 0).to_numpy(), dtype=np.int64
        ) + np.asarray(pc.fill_null(pc.binary_length(headers.items), 0).to_numpy(), dtype=np.int64)
        running = np.concatenate([[0], np.cumsum(entry_bytes)])
        sizes += running[offsets[1:]] - running[offsets[:-1]]
    return sizes


# -- ListOffsets ----------------------------------------------------------------------


async def list_offsets(broker: Broker, request: Request) -> m.ListOffsetsResponse:
    body: m.ListOffsetsRequest = request.body
    topics = []
    for topic in body.topics:
        view = await broker.topic(topic.name)
        missing = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        if view is not None:  # the end includes the commits answered before (transactions.py)
            await broker.transactions.settled({view.name}, limits.kafka_transaction_apply_wait_seconds_max)
        else:
            missing = await broker.missing_code(topic.name)
        partitions = []
        for wanted in topic.partitions:
            if view is None or not 0 <= wanted.partition_index < view.partitions:
                partitions.append(
                    m.ListOffsetsPartitionResponse(
                        partition_index=wanted.partition_index,
                        error_code=missing if view is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    )
                )
                continue
            try:
                offset, timestamp = await broker.call(
                    _offset_for, broker, view, wanted.partition_index, wanted.timestamp
                )
            except OdradekError as exc:
                if isinstance(exc, TopicNotFound):
                    broker.forget(view.name)
                partitions.append(
                    m.ListOffsetsPartitionResponse(
                        partition_index=wanted.partition_index, error_code=error_code_of(exc)
                    )
                )
                continue
            partitions.append(
                m.ListOffsetsPartitionResponse(
                    partition_index=wanted.partition_index, timestamp=timestamp, offset=offset, leader_epoch=0
                )
            )
        topics.append(m.ListOffsetsTopicResponse(name=topic.name, partitions=tuple(partitions)))
    return m.ListOffsetsResponse(topics=tuple(topics))


def _offset_for(broker: Broker, view: TopicView, partition: int, timestamp: int) -> tuple[int, int]:
    """(offset, timestamp in ms) a ListOffsets asks for, within the partition."""
    index = broker.index(view)
    snapshot = index.snapshot(broker.engine)
    if timestamp == _LATEST:
        return snapshot.high_watermark(partition), -1
    if timestamp == _MAX_TIMESTAMP:
        found = max_timestamp(broker.engine, index, snapshot, partition)
    elif timestamp < 0:  # earliest, earliest-local, earliest-pending-upload
        return snapshot.log_start(partition), -1
    else:
        found = offset_for_time(broker.engine, index, snapshot, partition, timestamp * 1000)
    if found is None:
        return -1, -1
    return found[0], found[1] // 1000


# -- InitProducerId -------------------------------------------------------------------


async def init_producer_id(broker: Broker, request: Request) -> m.InitProducerIdResponse:
    body: m.InitProducerIdRequest = request.body
    if body.transactional_id is not None:
        return await txn_api.init_producer_id(broker, request)
    if body.producer_id >= 0 and body.producer_epoch >= 0:
        # KIP-360: a producer bumps its epoch after an error; it keeps its id.
        return m.InitProducerIdResponse(
            producer_id=body.producer_id, producer_epoch=(body.producer_epoch + 1) & 0x7FFF
        )
    try:
        producer_id = broker.producer_id_base + await broker.call(broker.store.next_producer_id)
    except StorageError as exc:
        # The next block of producer ids could not be reserved (a full disk): Kafka's
        # answer when it has no block, a code every client retries; nothing was handed out.
        log.warning("InitProducerId: %s", exc.message)
        return m.InitProducerIdResponse(
            error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, producer_id=-1, producer_epoch=-1
        )
    return m.InitProducerIdResponse(producer_id=producer_id, producer_epoch=0)
