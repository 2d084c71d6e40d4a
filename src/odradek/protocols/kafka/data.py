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
import datetime
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pyarrow as pa

from odradek import limits
from odradek.errors import InvalidRequest, OdradekError, OffsetOutOfRange, StorageError, TopicNotFound
from odradek.protocols.kafka.broker import NODE_ID, Broker, TopicView, engine_producer, error_code_of
from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import APIS, ApiKey, Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.protocols.kafka.codec.records import DecodedBatch, decode_batches, encode_batch
from odradek.protocols.kafka.partitions import select_partition

log = logging.getLogger(__name__)

# ListOffsets special timestamps.
_LATEST = -1
_EARLIEST = -2
_MAX_TIMESTAMP = -3


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


def _topic_metadata(view: TopicView) -> m.MetadataResponseTopic:
    partitions = tuple(
        m.MetadataResponsePartition(
            partition_index=index,
            leader_id=NODE_ID,
            leader_epoch=0,
            replica_nodes=(NODE_ID,),
            isr_nodes=(NODE_ID,),
        )
        for index in range(view.partitions)
    )
    return m.MetadataResponseTopic(
        name=view.name, topic_id=view.topic_id, is_internal=view.name.startswith("_"), partitions=partitions
    )


async def metadata(broker: Broker, request: Request) -> m.MetadataResponse:
    body: m.MetadataRequest = request.body
    topics: list[m.MetadataResponseTopic] = []
    if body.topics is None or (request.api_version == 0 and not body.topics):
        for name in await broker.call(broker.engine.list_topics):
            view = await broker.topic(name, refresh=True)
            if view is not None:
                topics.append(_topic_metadata(view))
    else:
        for wanted in body.topics:
            topics.append(await _one_topic(broker, wanted, body.allow_auto_topic_creation))
    return m.MetadataResponse(
        brokers=(m.MetadataResponseBroker(node_id=NODE_ID, host=broker.host, port=broker.port),),
        cluster_id=broker.store.cluster_id,
        controller_id=NODE_ID,
        topics=tuple(topics),
    )


async def _one_topic(
    broker: Broker, wanted: m.MetadataRequestTopic, auto_create: bool
) -> m.MetadataResponseTopic:
    if wanted.name is None:
        view = await broker.topic_by_id(wanted.topic_id)
        if view is None:
            return m.MetadataResponseTopic(
                error_code=ErrorCode.UNKNOWN_TOPIC_ID, name=None, topic_id=wanted.topic_id
            )
        return _topic_metadata(view)
    name = wanted.name
    view = await broker.topic(name, refresh=True)
    if view is None and auto_create and broker.auto_create_topics:
        try:
            await broker.call(broker.engine.create_topic, name, exist_ok=True)
        except InvalidRequest:
            return m.MetadataResponseTopic(error_code=ErrorCode.INVALID_TOPIC_EXCEPTION, name=name)
        except OdradekError as exc:
            log.warning("auto-creating topic %s failed: %s", name, exc)
        view = await broker.topic(name, refresh=True)
    if view is None:
        return m.MetadataResponseTopic(error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, name=name)
    return _topic_metadata(view)


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
            elif body.transactional_id is not None:
                partitions.append(
                    _done(
                        _produce_error(
                            data.index,
                            ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
                            "transactions are not supported by Odradek",
                        )
                    )
                )
            elif view is None:
                code = (
                    ErrorCode.UNKNOWN_TOPIC_ID
                    if request.api_version >= 13
                    else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                )
                partitions.append(_done(_produce_error(data.index, code)))
            elif not 0 <= data.index < view.partitions:
                partitions.append(_done(_produce_error(data.index, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)))
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
            broker.engine.submit_append, view.name, _records_of(batches), producer=producer
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


async def fetch(broker: Broker, request: Request) -> m.FetchResponse:
    body: m.FetchRequest = request.body
    by_id = request.api_version >= 13
    wait = min(max(body.max_wait_ms, 0), limits.kafka_fetch_wait_ms_max) / 1000
    deadline = time.monotonic() + wait
    targets: list[tuple[m.FetchTopic, TopicView | None]] = []
    for topic in body.topics:
        view = await (broker.topic_by_id(topic.topic_id) if by_id else broker.topic(topic.topic))
        targets.append((topic, view))
    # Kafka answers Fetch v5 and older with NOT_LEADER_OR_FOLLOWER instead, which those
    # clients know to retry after a metadata refresh.
    storage_code = (
        ErrorCode.KAFKA_STORAGE_ERROR if request.api_version >= 6 else ErrorCode.NOT_LEADER_OR_FOLLOWER
    )
    while True:
        seen = broker.arrivals.generation  # before looking: an arrival from now on wakes us
        if _has_data(broker, targets) or time.monotonic() >= deadline:
            responses, size = await broker.call(
                _read_all, broker, targets, body.max_bytes, by_id, storage_code
            )
            if size >= body.min_bytes or time.monotonic() >= deadline:
                return m.FetchResponse(responses=responses)
        await broker.arrivals.wait(seen, max(deadline - time.monotonic(), 0))


def _has_data(broker: Broker, targets: list[tuple[m.FetchTopic, TopicView | None]]) -> bool:
    for topic, view in targets:
        if view is None:
            return True  # an error to report at once
        try:
            end = broker.engine.resolve_start(view.name, "latest")
        except OdradekError:
            return True
        if any(p.fetch_offset != end for p in topic.partitions):
            return True
    return False


def _read_all(
    broker: Broker,
    targets: list[tuple[m.FetchTopic, TopicView | None]],
    max_bytes: int,
    by_id: bool,
    storage_code: ErrorCode,
) -> tuple[tuple[m.FetchableTopicResponse, ...], int]:
    responses = []
    budget = max(max_bytes, 1)
    total = 0
    for topic, view in targets:
        partitions = []
        for wanted in topic.partitions:
            data = _read_partition(broker, view, wanted, budget, by_id, storage_code)
            size = len(data.records or b"")
            total += size
            budget = max(budget - size, 1)
            partitions.append(data)
        responses.append(
            m.FetchableTopicResponse(topic=topic.topic, topic_id=topic.topic_id, partitions=tuple(partitions))
        )
    return tuple(responses), total


def _read_partition(
    broker: Broker,
    view: TopicView | None,
    wanted: m.FetchPartition,
    budget: int,
    by_id: bool,
    storage_code: ErrorCode,
) -> m.FetchPartitionData:
    index = wanted.partition
    if view is None:
        code = ErrorCode.UNKNOWN_TOPIC_ID if by_id else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
        return m.FetchPartitionData(partition_index=index, error_code=code, high_watermark=-1)
    if not 0 <= index < view.partitions:
        return m.FetchPartitionData(
            partition_index=index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, high_watermark=-1
        )
    engine = broker.engine
    try:
        first = engine.resolve_start(view.name, "earliest")
        end = engine.resolve_start(view.name, "latest")
        offset = wanted.fetch_offset
        if offset < first or offset > end:
            return m.FetchPartitionData(
                partition_index=index,
                error_code=ErrorCode.OFFSET_OUT_OF_RANGE,
                high_watermark=end,
                last_stable_offset=end,
                log_start_offset=first,
            )
        records = b""
        if offset < end:
            limit = max(min(wanted.partition_max_bytes, budget), 1)
            # A schema'd topic's typed values go to Kafka clients in the Schema Registry
            # wire format (magic byte, schema id, payload), as its deserializers expect.
            stored = engine.fetch(view.name, offset, max_bytes=limit, value_format="wire")
            records = _encode_partition(stored, offset, index, view.partitions)
    except TopicNotFound:
        broker.forget(view.name)
        return m.FetchPartitionData(
            partition_index=index, error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, high_watermark=-1
        )
    except OffsetOutOfRange as exc:
        return m.FetchPartitionData(
            partition_index=index,
            error_code=ErrorCode.OFFSET_OUT_OF_RANGE,
            high_watermark=exc.next_offset,
            log_start_offset=exc.first,
        )
    except StorageError as exc:
        log.warning("Fetch of %s: %s", view.name, exc.message)
        return m.FetchPartitionData(partition_index=index, error_code=storage_code, high_watermark=-1)
    return m.FetchPartitionData(
        partition_index=index,
        high_watermark=end,
        last_stable_offset=end,
        log_start_offset=first,
        aborted_transactions=None,
        records=records,
    )


def _encode_partition(stored: list[pa.RecordBatch], offset: int, partition: int, partitions: int) -> bytes:
    """One record batch of the partition's records among ``stored``; it spans every
    offset that was read, so a consumer moves past records of other partitions."""
    if not stored:
        return b""
    last = int(stored[-1].column("offset")[-1].as_py())
    selected = [select_partition(b, partition, partitions) for b in stored]
    kept = [b for b in selected if b.num_rows]
    if not kept:
        return encode_batch(
            pa.Table.from_batches([], schema=stored[0].schema), base_offset=offset, last_offset=last
        )
    table = pa.Table.from_batches(kept) if len(kept) > 1 else kept[0]
    return encode_batch(table, last_offset=last)


# -- ListOffsets ----------------------------------------------------------------------


async def list_offsets(broker: Broker, request: Request) -> m.ListOffsetsResponse:
    body: m.ListOffsetsRequest = request.body
    topics = []
    for topic in body.topics:
        view = await broker.topic(topic.name)
        partitions = []
        for wanted in topic.partitions:
            if view is None or not 0 <= wanted.partition_index < view.partitions:
                partitions.append(
                    m.ListOffsetsPartitionResponse(
                        partition_index=wanted.partition_index,
                        error_code=ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                    )
                )
                continue
            try:
                offset, timestamp = await broker.call(_offset_for, broker, view.name, wanted.timestamp)
            except OdradekError as exc:
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


def _offset_for(broker: Broker, topic: str, timestamp: int) -> tuple[int, int]:
    engine = broker.engine
    if timestamp == _LATEST:
        return engine.resolve_start(topic, "latest"), -1
    if timestamp == _MAX_TIMESTAMP:
        end = engine.resolve_start(topic, "latest")
        if end == engine.resolve_start(topic, "earliest"):
            return -1, -1
        batch = engine.fetch(topic, end - 1, max_records=1)[0]
        return end - 1, _millis(batch)
    if timestamp < 0:  # earliest, earliest-local, earliest-pending-upload
        return engine.resolve_start(topic, "earliest"), -1
    moment = datetime.datetime.fromtimestamp(timestamp / 1000, tz=datetime.UTC)
    offset = engine.resolve_start(topic, moment)
    if offset >= engine.resolve_start(topic, "latest"):
        return -1, -1
    batch = engine.fetch(topic, offset, max_records=1)[0]
    return offset, _millis(batch)


def _millis(batch: pa.RecordBatch) -> int:
    return int(batch.column("timestamp").cast(pa.int64())[0].as_py()) // 1000


# -- InitProducerId -------------------------------------------------------------------


async def init_producer_id(broker: Broker, request: Request) -> m.InitProducerIdResponse:
    body: m.InitProducerIdRequest = request.body
    if body.transactional_id is not None:
        return m.InitProducerIdResponse(error_code=ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
    if body.producer_id >= 0 and body.producer_epoch >= 0:
        # KIP-360: a producer bumps its epoch after an error; it keeps its id.
        return m.InitProducerIdResponse(
            producer_id=body.producer_id, producer_epoch=(body.producer_epoch + 1) & 0x7FFF
        )
    try:
        producer_id = await broker.call(broker.store.next_producer_id)
    except StorageError as exc:
        # The next block of producer ids could not be reserved (a full disk): Kafka's
        # answer when it has no block, a code every client retries; nothing was handed out.
        log.warning("InitProducerId: %s", exc.message)
        return m.InitProducerIdResponse(
            error_code=ErrorCode.COORDINATOR_LOAD_IN_PROGRESS, producer_id=-1, producer_epoch=-1
        )
    return m.InitProducerIdResponse(producer_id=producer_id, producer_epoch=0)
