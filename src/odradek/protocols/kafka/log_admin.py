"""Handlers of the administration of logs: DeleteRecords, DescribeLogDirs,
DescribeProducers and OffsetDelete.

DeleteRecords over virtual partitions
-------------------------------------
A topic's partitions share one log, and a log has one start (``Engine.delete_records``
moves it; every door's reads respect it). DeleteRecords asks for a start per
partition, so the log's new start is the lowest offset any partition must keep:

* a partition named with offset o keeps its records from o on (o = -1: its high
  watermark, so none);
* a partition not named keeps everything it has (from its log start), and one with no
  records keeps nothing.

Every record below that start goes. When every partition of the topic is named (as
``kafka-delete-records`` and purge tools do) the result is exactly Kafka's; when some
are not, a named partition may keep records below the offset it asked for, and its
answer says so: the low watermark is the partition's log start afterwards, never a
promise the log does not keep.

Refusals are logged at info with the reason clients are told.
"""

from __future__ import annotations

import logging
import math
import shutil

from odradek.errors import OdradekError, OffsetOutOfRange, StorageError, TopicNotFound
from odradek.protocols.kafka.broker import Broker, TopicView, error_code_of
from odradek.protocols.kafka.codec import messages_logs as m
from odradek.protocols.kafka.codec.api import Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.groups import CONSUMER_PROTOCOL_TYPE
from odradek.protocols.kafka.partition_index import Snapshot

log = logging.getLogger(__name__)

_TO_HIGH_WATERMARK = -1


# -- DeleteRecords --------------------------------------------------------------------


async def delete_records(broker: Broker, request: Request) -> m.DeleteRecordsResponse:
    body: m.DeleteRecordsRequest = request.body
    topics = []
    for topic in body.topics:
        wanted = {p.partition_index: p.offset for p in topic.partitions}
        view = await broker.topic(topic.name, refresh=True)
        if view is None:  # unknown, or another cell's (NOT_LEADER_OR_FOLLOWER: cells.py)
            missing = await broker.missing_code(topic.name)
            answers: dict[int, tuple[int, int]] = {index: (missing, -1) for index in wanted}
        else:
            answers = await broker.call(_delete_records, broker, view, wanted)
        for index, (code, _) in answers.items():
            if code != ErrorCode.NONE:
                log.info(
                    "DeleteRecords of %s partition %d refused: %s", topic.name, index, ErrorCode(code).name
                )
        partitions = tuple(
            m.DeleteRecordsPartitionResult(partition_index=index, low_watermark=low, error_code=code)
            for index, (code, low) in answers.items()
        )
        topics.append(m.DeleteRecordsTopicResult(name=topic.name, partitions=partitions))
    return m.DeleteRecordsResponse(topics=tuple(topics))


def _delete_records(broker: Broker, view: TopicView, wanted: dict[int, int]) -> dict[int, tuple[int, int]]:
    """(error code, low watermark) per partition asked for (on an engine thread)."""
    engine = broker.engine
    answers: dict[int, tuple[int, int]] = {}
    try:
        index = broker.index(view)
        snapshot = index.snapshot(engine)
        targets: dict[int, int] = {}
        for partition, offset in wanted.items():
            if not 0 <= partition < view.partitions:
                answers[partition] = (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1)
                continue
            high = snapshot.high_watermark(partition)
            target = high if offset == _TO_HIGH_WATERMARK else offset
            if not 0 <= target <= high:
                answers[partition] = (ErrorCode.OFFSET_OUT_OF_RANGE, snapshot.log_start(partition))
                continue
            targets[partition] = target
        if targets:
            start = _new_start(snapshot, view.partitions, targets)
            if start > snapshot.first_offset:
                engine.delete_records(view.name, start)
                snapshot = index.snapshot(engine)
        for partition in targets:
            answers[partition] = (ErrorCode.NONE, snapshot.log_start(partition))
    except TopicNotFound:
        broker.forget(view.name)
        return {partition: (ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, -1) for partition in wanted}
    except OffsetOutOfRange:
        return {partition: (ErrorCode.OFFSET_OUT_OF_RANGE, -1) for partition in wanted}
    except OdradekError as exc:
        if isinstance(exc, StorageError):
            log.warning("DeleteRecords of %s: %s", view.name, exc.message)
        return {partition: (error_code_of(exc), -1) for partition in wanted}
    return {partition: answers[partition] for partition in wanted}


def _new_start(snapshot: Snapshot, partitions: int, targets: dict[int, int]) -> int:
    """The lowest offset a partition must keep (see the module's docstring); the end of
    what the snapshot covers when no partition keeps anything."""
    keep = math.inf
    for partition in range(partitions):
        high = snapshot.high_watermark(partition)
        first = targets.get(partition, snapshot.log_start(partition))
        if first < high:  # the partition keeps records from ``first`` on
            keep = min(keep, first)
    return snapshot.covered if keep == math.inf else int(keep)


# -- DescribeLogDirs ------------------------------------------------------------------


async def describe_log_dirs(broker: Broker, request: Request) -> m.DescribeLogDirsResponse:
    """One log directory, the data directory, holding every partition. A partition's
    size is its share of the topic's bytes by record count (partitions share segments);
    offset lag is 0 (there are no replicas to lag)."""
    body: m.DescribeLogDirsRequest = request.body
    wanted: dict[str, tuple[int, ...] | None]
    if body.topics is None:
        wanted = dict.fromkeys(await broker.call(broker.engine.list_topics))
    else:
        wanted = {topic.topic: topic.partitions for topic in body.topics}
    topics = []
    for name, asked in wanted.items():
        view = await broker.topic(name, refresh=True)
        if view is None:
            continue  # as Kafka: a partition not on this broker is left out
        try:
            sizes = await broker.call(_partition_sizes, broker, view)
        except OdradekError as exc:
            log.info("DescribeLogDirs of %s: %s", name, exc.message)
            continue
        partitions = tuple(
            m.DescribeLogDirsPartition(partition_index=index, partition_size=sizes[index], offset_lag=0)
            for index in (range(view.partitions) if asked is None else asked)
            if 0 <= index < view.partitions
        )
        if partitions:
            topics.append(m.DescribeLogDirsTopic(name=name, partitions=partitions))
    path = broker.engine.path
    try:
        usage = shutil.disk_usage(path)
        total, usable = usage.total, usage.free
    except OSError:
        total = usable = -1
    result = m.DescribeLogDirsResult(
        log_dir=path, topics=tuple(topics), total_bytes=total, usable_bytes=usable
    )
    return m.DescribeLogDirsResponse(results=(result,))


def _partition_sizes(broker: Broker, view: TopicView) -> list[int]:
    info = broker.engine.describe_topic(view.name)
    snapshot = broker.index(view).snapshot(broker.engine)
    counts = [snapshot.records(partition) for partition in range(view.partitions)]
    total = sum(counts)
    if not total:
        return [0] * view.partitions
    return [info.bytes * count // total for count in counts]


# -- DescribeProducers ----------------------------------------------------------------


async def describe_producers(broker: Broker, request: Request) -> m.DescribeProducersResponse:
    """The idempotent producers the door remembers for each partition (those that wrote
    to it since the server started), with their epoch and last sequence."""
    body: m.DescribeProducersRequest = request.body
    topics = []
    for topic in body.topics:
        view = await broker.topic(topic.name, refresh=True)
        # Unknown, or another cell's (NOT_LEADER_OR_FOLLOWER: cells.py).
        missing = (
            ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            if view is not None
            else await broker.missing_code(topic.name)
        )
        partitions = []
        for index in topic.partition_indexes:
            if view is None or not 0 <= index < view.partitions:
                message = (
                    f"topic {topic.name!r} has no partition {index}"
                    if missing == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                    else f"topic {topic.name!r} is served by the broker of another cell"
                )
                log.info("DescribeProducers refused: %s", message)
                partitions.append(
                    m.DescribeProducersPartitionResponse(
                        partition_index=index,
                        error_code=missing,
                        error_message=message,
                    )
                )
                continue
            producers = tuple(
                m.ProducerState(
                    producer_id=producer_id,
                    producer_epoch=epoch,
                    last_sequence=sequence,
                    coordinator_epoch=-1,
                )
                for producer_id, epoch, sequence in broker.producers.active(view.name, index)
            )
            partitions.append(
                m.DescribeProducersPartitionResponse(partition_index=index, active_producers=producers)
            )
        topics.append(m.DescribeProducersTopicResponse(name=topic.name, partitions=tuple(partitions)))
    return m.DescribeProducersResponse(topics=tuple(topics))


# -- OffsetDelete ---------------------------------------------------------------------


async def offset_delete(broker: Broker, request: Request) -> m.OffsetDeleteResponse:
    """Delete a Kafka group's committed offsets of some partitions, as Kafka does: a
    group of the consumer protocol type keeps those of topics a member subscribes to
    (GROUP_SUBSCRIBED_TO_TOPIC per partition); an empty group loses them all; another
    group with members refuses (NON_EMPTY_GROUP)."""
    body: m.OffsetDeleteRequest = request.body
    coordinator = broker.coordinator
    group = coordinator.groups.get(body.group_id)
    if group is None:
        log.info(
            "OffsetDelete for group %r refused: no Kafka group has that name (GROUP_ID_NOT_FOUND)%s",
            body.group_id,
            "; it is an Odradek group, whose position `odradek group reset-offsets` moves"
            if coordinator.names.holder(body.group_id) is not None
            else "",
        )
        return m.OffsetDeleteResponse(error_code=ErrorCode.GROUP_ID_NOT_FOUND)
    consumer = group.protocol_type == CONSUMER_PROTOCOL_TYPE or group.consumer is not None
    if group.size() and not consumer:
        log.info(
            "OffsetDelete for group %r refused: it has members and is not a consumer group (NON_EMPTY_GROUP)",
            body.group_id,
        )
        return m.OffsetDeleteResponse(error_code=ErrorCode.NON_EMPTY_GROUP)
    doomed: set[tuple[str, int]] = set()
    topics = []
    for topic in body.topics:
        subscribed = group.size() > 0 and coordinator.subscribed(body.group_id, topic.name)
        if subscribed:
            log.info(
                "OffsetDelete for group %r refused for topic %s: a member subscribes to it "
                "(GROUP_SUBSCRIBED_TO_TOPIC)",
                body.group_id,
                topic.name,
            )
        else:
            doomed.update((topic.name, p.partition_index) for p in topic.partitions)
        code = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC if subscribed else ErrorCode.NONE
        topics.append(
            m.OffsetDeleteResponseTopic(
                name=topic.name,
                partitions=tuple(
                    m.OffsetDeleteResponsePartition(partition_index=p.partition_index, error_code=code)
                    for p in topic.partitions
                ),
            )
        )
    try:
        await coordinator.delete_offsets(body.group_id, doomed)
    except StorageError as exc:
        log.warning("OffsetDelete for group %r: %s", body.group_id, exc.message)
        return m.OffsetDeleteResponse(error_code=ErrorCode.NOT_COORDINATOR)
    return m.OffsetDeleteResponse(topics=tuple(topics))
