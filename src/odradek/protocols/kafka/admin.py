"""Handlers of administration: CreateTopics, DeleteTopics, CreatePartitions,
DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster, and the
refusal of SaslHandshake.

Topic configs seen through Kafka
--------------------------------
``retention.ms``, ``retention.bytes``, ``segment.bytes`` and ``segment.ms`` map to the
topic's Odradek settings (-1 is "no limit"); ``kafka_partitions`` is the number of
virtual partitions (it may only grow); ``cleanup.policy`` (``delete``, ``compact`` or
``compact,delete``), ``delete.retention.ms``, ``min.compaction.lag.ms`` and
``min.cleanable.dirty.ratio`` map to the topic's cleanup settings (compacted topics,
engine/compaction.py). Every other standard Kafka topic config (:data:`ACCEPTED_CONFIGS`:
replication, flushing, compression, message format, tiered storage...) is accepted and
not honoured: DescribeConfigs reports it with the value Odradek behaves as (a config of
a replicated cluster, ``min.insync.replicas``, is 1). A name Kafka does not know is
refused with INVALID_CONFIG. IncrementalAlterConfigs APPEND and SUBTRACT apply to the
list configs (``cleanup.policy`` and the replication throttles).

Refusals are logged at info, and carry the broker's message where the API has an
error message field.

A StorageError (a full disk) is answered per topic with KAFKA_STORAGE_ERROR and its
message; a topic created with several partitions whose partition count could not be
saved is deleted again, so nothing is left half-made.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable

from odradek import limits
from odradek.config import TopicConfig
from odradek.errors import InvalidRequest, OdradekError, StorageError, TopicExists, TopicNotFound
from odradek.protocols.kafka.broker import NODE_ID, Broker, TopicView, error_code_of
from odradek.protocols.kafka.codec import messages_admin as m
from odradek.protocols.kafka.codec.api import Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import ZERO_UUID

log = logging.getLogger(__name__)


def _refused(api: str, resource: str, code: int, message: str | None) -> None:
    """Log a refusal at info, with what the client is told."""
    if code != ErrorCode.NONE:
        log.info("%s of %s refused: %s (%s)", api, resource, message or "no details", ErrorCode(code).name)


RESOURCE_TOPIC = 2
RESOURCE_BROKER = 4
SOURCE_DYNAMIC_TOPIC = 1
SOURCE_STATIC_BROKER = 4
SOURCE_DEFAULT = 5
# DescribeConfigs config types (KIP-569)
TYPE_BOOLEAN = 1
TYPE_STRING = 2
TYPE_INT = 3
TYPE_LONG = 5
TYPE_DOUBLE = 6
TYPE_LIST = 7

# IncrementalAlterConfigs operations (KIP-339).
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = range(4)
_LONG_MAX = str(2**63 - 1)

# Standard Kafka topic configs Odradek accepts without honouring them, each with the
# value Odradek behaves as (reported by DescribeConfigs) and its config type. Names and
# defaults are Kafka 4.x's (TopicConfig); a few removed in 4.0 are kept for older tools.
ACCEPTED_CONFIGS: dict[str, tuple[str, int]] = {
    "compression.type": ("producer", TYPE_STRING),  # batches are kept as the producer sent them
    "compression.gzip.level": ("-1", TYPE_INT),
    "compression.lz4.level": ("9", TYPE_INT),
    "compression.zstd.level": ("3", TYPE_INT),
    "file.delete.delay.ms": ("60000", TYPE_LONG),
    "flush.messages": ("1", TYPE_LONG),  # every append is fsync'd before its answer
    "flush.ms": ("0", TYPE_LONG),
    "follower.replication.throttled.replicas": ("", TYPE_LIST),
    "leader.replication.throttled.replicas": ("", TYPE_LIST),
    "index.interval.bytes": ("4096", TYPE_INT),
    "local.retention.bytes": ("-2", TYPE_LONG),
    "local.retention.ms": ("-2", TYPE_LONG),
    "max.compaction.lag.ms": (_LONG_MAX, TYPE_LONG),
    "max.message.bytes": (str(limits.kafka_decompressed_bytes_max), TYPE_INT),
    "message.downconversion.enable": ("true", TYPE_BOOLEAN),
    "message.format.version": ("3.0-IV1", TYPE_STRING),
    "message.timestamp.after.max.ms": (_LONG_MAX, TYPE_LONG),
    "message.timestamp.before.max.ms": (_LONG_MAX, TYPE_LONG),
    "message.timestamp.difference.max.ms": (_LONG_MAX, TYPE_LONG),
    "message.timestamp.type": ("CreateTime", TYPE_STRING),
    "min.insync.replicas": ("1", TYPE_INT),
    "preallocate": ("false", TYPE_BOOLEAN),
    "remote.storage.enable": ("false", TYPE_BOOLEAN),
    "remote.log.copy.disable": ("false", TYPE_BOOLEAN),
    "remote.log.delete.on.disable": ("false", TYPE_BOOLEAN),
    "segment.index.bytes": ("10485760", TYPE_INT),
    "segment.jitter.ms": ("0", TYPE_LONG),
    "unclean.leader.election.enable": ("false", TYPE_BOOLEAN),
}
_LIST_CONFIGS = frozenset(
    {"cleanup.policy", "follower.replication.throttled.replicas", "leader.replication.throttled.replicas"}
)
_DEFAULTS = TopicConfig.build()


def _millis(seconds: float | None) -> str:
    return "-1" if seconds is None else str(int(seconds * 1000))


def _size(size: int | None) -> str:
    return "-1" if size is None else str(size)


# name -> (read from TopicConfig, Odradek setting name, config type)
_MAPPED: dict[str, tuple[Callable[[TopicConfig], str], str, int]] = {
    "retention.ms": (lambda c: _millis(c.retention_seconds), "retention", TYPE_LONG),
    "retention.bytes": (lambda c: _size(c.retention_bytes), "retention_bytes", TYPE_LONG),
    "segment.bytes": (lambda c: str(c.segment_bytes), "segment_bytes", TYPE_INT),
    "segment.ms": (lambda c: _millis(c.segment_seconds), "segment_age", TYPE_LONG),
    "cleanup.policy": (lambda c: c.cleanup, "cleanup", TYPE_LIST),
    "delete.retention.ms": (lambda c: _millis(c.delete_retention_seconds), "delete_retention", TYPE_LONG),
    "min.compaction.lag.ms": (
        lambda c: _millis(c.min_compaction_lag_seconds),
        "min_compaction_lag",
        TYPE_LONG,
    ),
    "min.cleanable.dirty.ratio": (
        lambda c: repr(c.min_cleanable_dirty_ratio),
        "min_cleanable_dirty_ratio",
        TYPE_DOUBLE,
    ),
}


def _setting(name: str, value: str | None) -> tuple[str, object]:
    """An Odradek create/alter keyword from a Kafka config; raises InvalidRequest."""
    if name not in _MAPPED:
        raise InvalidRequest(f"unknown topic config {name!r}")
    keyword = _MAPPED[name][1]
    if value is None:
        return keyword, dataclasses.MISSING
    if keyword == "cleanup":
        if "snapshot" in value.lower():
            raise InvalidRequest(
                "cleanup.policy 'snapshot' (Odradek's key snapshots) is not built yet for the Kafka "
                "door; create the topic with the native API (cleanup='snapshot')"
            )
        return keyword, value
    if keyword == "min_cleanable_dirty_ratio":
        return keyword, value  # TopicConfig.build checks it
    try:
        number = int(value)
    except ValueError:
        raise InvalidRequest(f"config {name} must be an integer, got {value!r}") from None
    if number < 0:
        return keyword, None
    if keyword in ("delete_retention", "min_compaction_lag") and number == 0:
        return keyword, 0
    if keyword in ("retention", "segment_age", "delete_retention", "min_compaction_lag"):
        return keyword, number / 1000
    return keyword, number


def _parse_configs(configs: list[tuple[str, str | None]]) -> tuple[dict[str, object], int | None]:
    """(Odradek settings, kafka_partitions or None); raises InvalidRequest."""
    settings: dict[str, object] = {}
    partitions = None
    for name, value in configs:
        if name == "kafka_partitions":
            partitions = _partition_count(value)
        elif name in ACCEPTED_CONFIGS:
            log.info("topic config %s=%r accepted; Odradek does not use it", name, value)
        else:
            keyword, setting = _setting(name, value)
            if setting is not dataclasses.MISSING:
                settings[keyword] = setting
    return settings, partitions


def _partition_count(value: str | None) -> int:
    try:
        count = int(value or "")
    except ValueError:
        raise InvalidRequest(f"kafka_partitions must be an integer, got {value!r}") from None
    if not 1 <= count <= limits.kafka_partitions_max:
        raise InvalidRequest(f"kafka_partitions must be between 1 and {limits.kafka_partitions_max}")
    return count


# -- CreateTopics / DeleteTopics / CreatePartitions -----------------------------------


async def create_topics(broker: Broker, request: Request) -> m.CreateTopicsResponse:
    body: m.CreateTopicsRequest = request.body
    results = [await _create_one(broker, topic, body.validate_only) for topic in body.topics]
    for result in results:
        _refused("CreateTopics", result.name, result.error_code, result.error_message)
    return m.CreateTopicsResponse(topics=tuple(results))


async def _create_one(broker: Broker, topic: m.CreatableTopic, validate_only: bool) -> m.CreatableTopicResult:
    def failed(code: ErrorCode, message: str) -> m.CreatableTopicResult:
        return m.CreatableTopicResult(name=topic.name, error_code=code, error_message=message)

    if topic.replication_factor not in (-1, 1):
        return failed(
            ErrorCode.INVALID_REPLICATION_FACTOR,
            "Odradek is a single node: replication_factor must be 1 (or -1 for the default)",
        )
    partitions = broker.default_partitions if topic.num_partitions == -1 else topic.num_partitions
    if topic.assignments:
        refusal = _assignment_refusal(topic, broker.node_id)
        if refusal is not None:
            return failed(ErrorCode.INVALID_REPLICA_ASSIGNMENT, refusal)
        partitions = len(topic.assignments)
    try:
        settings, from_config = _parse_configs([(c.name, c.value) for c in topic.configs])
        partitions = from_config or partitions
        if not 1 <= partitions <= limits.kafka_partitions_max:
            return failed(
                ErrorCode.INVALID_PARTITIONS,
                f"num_partitions must be between 1 and {limits.kafka_partitions_max}",
            )
        if validate_only:
            TopicConfig.build(**settings)
            if await broker.topic(topic.name) is not None:
                return failed(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {topic.name!r} already exists")
            if await broker.other_cell_node(topic.name) is not None:  # as the creation answers
                return failed(
                    ErrorCode.TOPIC_ALREADY_EXISTS,
                    f"topic {topic.name!r} exists in another cell of the cluster",
                )
            return m.CreatableTopicResult(name=topic.name, num_partitions=partitions, replication_factor=1)
        await broker.create_topic(topic.name, **settings)
    except TopicExists as exc:
        return failed(ErrorCode.TOPIC_ALREADY_EXISTS, exc.message)
    except InvalidRequest as exc:
        code = ErrorCode.INVALID_TOPIC_EXCEPTION if "topic name" in exc.message else ErrorCode.INVALID_CONFIG
        return failed(code, exc.message)
    except OdradekError as exc:
        return failed(error_code_of(exc), exc.message)
    view = await broker.topic(topic.name, refresh=True)
    if view is None:
        return failed(ErrorCode.UNKNOWN_SERVER_ERROR, "the topic vanished right after its creation")
    if partitions != 1:
        try:
            view = await broker.set_partitions(view, partitions)
        except StorageError as exc:
            # Nothing half-done: the topic goes again rather than stay with 1 partition.
            with contextlib.suppress(OdradekError):
                await broker.delete_topic(view.name)
            broker.forget(view.name)
            return failed(ErrorCode.KAFKA_STORAGE_ERROR, exc.message)
    configs = tuple(
        m.CreatableTopicConfigs(
            name=entry.name, value=entry.value, read_only=entry.read_only, config_source=entry.config_source
        )
        for entry in await _topic_configs(broker, view, None)
    )
    return m.CreatableTopicResult(
        name=topic.name,
        topic_id=view.topic_id,
        num_partitions=view.partitions,
        replication_factor=1,
        configs=configs,
    )


def _assignment_refusal(topic: m.CreatableTopic, node: int = NODE_ID) -> str | None:
    """Why a manual replica assignment cannot be served (None: it can). As Kafka
    asks, it comes with num_partitions and replication_factor -1; on one broker it can
    only place each partition 0..n-1 on this node."""
    if topic.num_partitions != -1 or topic.replication_factor != -1:
        return "with a replica assignment, num_partitions and replication_factor must be -1"
    indexes = sorted(a.partition_index for a in topic.assignments)
    if indexes != list(range(len(indexes))):
        return "a replica assignment must name partitions 0 to n-1, each once"
    if any(tuple(a.broker_ids) != (node,) for a in topic.assignments):
        return (
            "a partition has a single node for replica, the broker that creates its topic: "
            f"every partition's replicas must be [{node}]"
        )
    return None


async def _no_topic(broker: Broker, name: str) -> tuple[ErrorCode, str]:
    """The answer to a request about topic ``name`` that this door does not have:
    unknown, or with cells (cells.py), when another cell holds it, a refusal naming the
    broker of that cell, which serves its partitions and configs."""
    node = None
    try:
        node = await broker.other_cell_node(name)
    except OdradekError as exc:
        log.info("the cell of topic %s is not known: %s", name, exc)
    if node is None:
        return ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {name!r}"
    return ErrorCode.INVALID_REQUEST, (
        f"topic {name!r} is served by broker {node}, the door of another cell (the cluster's "
        "topics are spread over cells): send this request to that broker"
    )


async def delete_topics(broker: Broker, request: Request) -> m.DeleteTopicsResponse:
    body: m.DeleteTopicsRequest = request.body
    wanted: list[tuple[str | None, uuid.UUID | None]]
    if request.api_version >= 6:
        wanted = [(t.name, t.topic_id) for t in body.topics]
    else:
        wanted = [(name, None) for name in body.topic_names]
    results = []
    for name, topic_id in wanted:
        view = (
            await broker.topic(name, refresh=True)
            if name is not None
            else (await broker.topic_by_id(topic_id) if topic_id is not None else None)
        )
        if view is None:
            code = ErrorCode.UNKNOWN_TOPIC_ID if name is None else ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
            message: str | None = f"no topic {name!r}" if name is not None else f"no topic with id {topic_id}"
            if await broker.missing_code(name, topic_id) == ErrorCode.NOT_LEADER_OR_FOLLOWER:
                code = ErrorCode.INVALID_REQUEST
                message = (
                    f"topic {name or topic_id} is served by the broker of another cell, which the "
                    "cluster's topics are spread over: delete it with `odradek topic delete`"
                )
            _refused("DeleteTopics", str(name or topic_id), code, message)
            results.append(
                m.DeletableTopicResult(
                    name=name, topic_id=topic_id or ZERO_UUID, error_code=code, error_message=message
                )
            )
            continue
        try:
            await broker.delete_topic(view.name)
            await broker.call(broker.store.forget_topic, view.name)
            broker.coordinator.forget_topic(view.name)
            code, message = ErrorCode.NONE, None
        except TopicNotFound:
            code, message = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"no topic {view.name!r}"
        except OdradekError as exc:
            code, message = error_code_of(exc), exc.message
        _refused("DeleteTopics", view.name, code, message)
        broker.forget(view.name)
        results.append(
            m.DeletableTopicResult(
                name=view.name, topic_id=view.topic_id, error_code=code, error_message=message
            )
        )
    return m.DeleteTopicsResponse(responses=tuple(results))


async def create_partitions(broker: Broker, request: Request) -> m.CreatePartitionsResponse:
    body: m.CreatePartitionsRequest = request.body
    results = []
    for topic in body.topics:
        view = await broker.topic(topic.name, refresh=True)
        code, message = ErrorCode.NONE, None
        if view is None:
            code, message = await _no_topic(broker, topic.name)
        elif topic.count <= view.partitions:
            code = ErrorCode.INVALID_PARTITIONS
            message = f"topic {topic.name!r} has {view.partitions} partitions; the count may only grow"
        elif topic.count > limits.kafka_partitions_max:
            code = ErrorCode.INVALID_PARTITIONS
            message = f"at most {limits.kafka_partitions_max} partitions"
        elif not body.validate_only:
            try:
                await broker.set_partitions(view, topic.count)
            except StorageError as exc:
                code, message = ErrorCode.KAFKA_STORAGE_ERROR, exc.message
        _refused("CreatePartitions", topic.name, code, message)
        results.append(m.CreatePartitionsTopicResult(name=topic.name, error_code=code, error_message=message))
    return m.CreatePartitionsResponse(results=tuple(results))


# -- configs --------------------------------------------------------------------------


async def _topic_configs(
    broker: Broker, view: TopicView, keys: tuple[str, ...] | None
) -> list[m.DescribeConfigsResourceResult]:
    info = await broker.call(broker.engine.describe_topic, view.name)
    config = TopicConfig.from_json(info.config)
    entries = []
    for name, (read, _, kind) in _MAPPED.items():
        value = read(config)
        default = read(_DEFAULTS)
        entries.append((name, value, value == default, kind, False))
    entries.append(("kafka_partitions", str(view.partitions), view.partitions == 1, TYPE_INT, False))
    entries += [(name, value, True, kind, False) for name, (value, kind) in ACCEPTED_CONFIGS.items()]
    return [
        m.DescribeConfigsResourceResult(
            name=name,
            value=value,
            read_only=read_only,
            is_default=is_default,
            config_source=SOURCE_DEFAULT if is_default else SOURCE_DYNAMIC_TOPIC,
            config_type=kind,
        )
        for name, value, is_default, kind, read_only in entries
        if keys is None or name in keys
    ]


def _broker_configs(broker: Broker, keys: tuple[str, ...] | None) -> list[m.DescribeConfigsResourceResult]:
    entries = [
        ("auto.create.topics.enable", str(broker.auto_create_topics).lower(), TYPE_STRING),
        ("num.partitions", str(broker.default_partitions), TYPE_INT),
        ("default.replication.factor", "1", TYPE_INT),
        ("log.retention.ms", _millis(_DEFAULTS.retention_seconds), TYPE_LONG),
        ("log.segment.bytes", str(_DEFAULTS.segment_bytes), TYPE_INT),
        ("socket.request.max.bytes", str(limits.kafka_frame_bytes_max), TYPE_INT),
    ]
    return [
        m.DescribeConfigsResourceResult(
            name=name, value=value, read_only=True, config_source=SOURCE_STATIC_BROKER, config_type=kind
        )
        for name, value, kind in entries
        if keys is None or name in keys
    ]


async def describe_configs(broker: Broker, request: Request) -> m.DescribeConfigsResponse:
    body: m.DescribeConfigsRequest = request.body
    results = []
    for resource in body.resources:
        code, message, configs = ErrorCode.NONE, None, []
        if resource.resource_type == RESOURCE_TOPIC:
            view = await broker.topic(resource.resource_name, refresh=True)
            if view is None:
                code, message = await _no_topic(broker, resource.resource_name)
            else:
                configs = await _topic_configs(broker, view, resource.configuration_keys)
        elif resource.resource_type == RESOURCE_BROKER:
            configs = _broker_configs(broker, resource.configuration_keys)
        else:
            code, message = (
                ErrorCode.INVALID_REQUEST,
                f"resource type {resource.resource_type} is not supported",
            )
        _refused("DescribeConfigs", resource.resource_name, code, message)
        results.append(
            m.DescribeConfigsResult(
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
                configs=tuple(configs),
            )
        )
    return m.DescribeConfigsResponse(results=tuple(results))


async def _alter_topic(
    broker: Broker, name: str, configs: list[tuple[str, str | None]], validate_only: bool
) -> tuple[ErrorCode, str | None]:
    view = await broker.topic(name, refresh=True)
    if view is None:
        return await _no_topic(broker, name)
    try:
        settings, partitions = _parse_configs(configs)
        if partitions is not None and partitions < view.partitions:
            return ErrorCode.INVALID_PARTITIONS, "kafka_partitions may only grow"
        if validate_only:
            return ErrorCode.NONE, None
        if settings:
            await broker.call(broker.engine.alter_topic, name, **settings)
        if partitions is not None and partitions != view.partitions:
            await broker.set_partitions(view, partitions)
    except InvalidRequest as exc:
        return ErrorCode.INVALID_CONFIG, exc.message
    except OdradekError as exc:
        return error_code_of(exc), exc.message
    return ErrorCode.NONE, None


async def alter_configs(broker: Broker, request: Request) -> m.AlterConfigsResponse:
    """AlterConfigs replaces a topic's settings: those not named return to defaults."""
    body: m.AlterConfigsRequest = request.body
    responses = []
    for resource in body.resources:
        message: str | None
        if resource.resource_type != RESOURCE_TOPIC:
            code, message = ErrorCode.INVALID_REQUEST, "only topic configs can be altered"
        else:
            named = {c.name for c in resource.configs}
            configs: list[tuple[str, str | None]] = [
                (name, _default_text(name)) for name in _MAPPED if name not in named
            ]
            configs += [(c.name, c.value) for c in resource.configs]
            code, message = await _alter_topic(broker, resource.resource_name, configs, body.validate_only)
        _refused("AlterConfigs", resource.resource_name, code, message)
        responses.append(
            m.AlterConfigsResourceResponse(
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
            )
        )
    return m.AlterConfigsResponse(responses=tuple(responses))


def _default_text(name: str) -> str:
    return _MAPPED[name][0](_DEFAULTS)


async def incremental_alter_configs(broker: Broker, request: Request) -> m.IncrementalAlterConfigsResponse:
    """SET and DELETE (back to the default) apply to every config; APPEND and SUBTRACT
    to list configs: their items are added to the current list (each once) or removed
    from it."""
    body: m.IncrementalAlterConfigsRequest = request.body
    responses = []
    for resource in body.resources:
        message: str | None
        if resource.resource_type != RESOURCE_TOPIC:
            code, message = ErrorCode.INVALID_REQUEST, "only topic configs can be altered"
        else:
            try:
                configs = await _incremental(broker, resource)
            except TopicNotFound:
                code, message = await _no_topic(broker, resource.resource_name)
            except InvalidRequest as exc:
                code, message = ErrorCode.INVALID_CONFIG, exc.message
            else:
                code, message = await _alter_topic(
                    broker, resource.resource_name, configs, body.validate_only
                )
        _refused("IncrementalAlterConfigs", resource.resource_name, code, message)
        responses.append(
            m.AlterConfigsResourceResponse(
                error_code=code,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
            )
        )
    return m.IncrementalAlterConfigsResponse(responses=tuple(responses))


async def _incremental(
    broker: Broker, resource: m.IncrementalAlterConfigsResource
) -> list[tuple[str, str | None]]:
    """The (name, value) settings an IncrementalAlterConfigs resource comes to; raises
    InvalidRequest (an operation that does not apply) or TopicNotFound."""
    current: TopicConfig | None = None
    configs: list[tuple[str, str | None]] = []
    for config in resource.configs:
        operation, name = config.config_operation, config.name
        if operation == OP_SET:
            configs.append((name, config.value))
        elif operation == OP_DELETE:
            configs.append((name, _default_text(name) if name in _MAPPED else None))
        elif operation in (OP_APPEND, OP_SUBTRACT):
            verb = "APPEND" if operation == OP_APPEND else "SUBTRACT"
            if name not in _LIST_CONFIGS:
                raise InvalidRequest(
                    f"{verb} applies to list configs ({', '.join(sorted(_LIST_CONFIGS))}), not to {name!r}"
                )
            if name not in _MAPPED:  # a list config accepted and not used: nothing to change
                configs.append((name, config.value))
                continue
            if current is None:
                info = await broker.call(broker.engine.describe_topic, resource.resource_name)
                current = TopicConfig.from_json(info.config)
            items = [item for item in _MAPPED[name][0](current).split(",") if item]
            changes = [item.strip() for item in (config.value or "").split(",") if item.strip()]
            if operation == OP_APPEND:
                items += [item for item in changes if item not in items]
            else:
                items = [item for item in items if item not in changes]
            if not items:
                raise InvalidRequest(f"SUBTRACT would leave {name} empty; it needs at least one value")
            configs.append((name, ",".join(items)))
        else:
            raise InvalidRequest(f"unknown config operation {operation} for {name!r}")
    return configs


# -- cluster, SASL --------------------------------------------------------------------


async def describe_cluster(broker: Broker, request: Request) -> m.DescribeClusterResponse:
    nodes = {broker.node_id: (broker.host, broker.port)}
    if broker.cells is not None:  # every cell's door with a known owner (cells.py)
        for node, host, port in await broker.call(broker.cells.nodes):
            nodes.setdefault(node, (host, port))
    return m.DescribeClusterResponse(
        cluster_id=broker.cluster_id,
        controller_id=broker.node_id,
        brokers=tuple(
            m.DescribeClusterBroker(broker_id=node, host=host, port=port)
            for node, (host, port) in sorted(nodes.items())
        ),
    )


async def sasl_handshake(broker: Broker, request: Request) -> m.SaslHandshakeResponse:
    return m.SaslHandshakeResponse(error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=())
