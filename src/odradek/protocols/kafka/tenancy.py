"""Tenants on the Kafka door (decision 0028): a connection's requests in its namespace.

The door's handlers speak the engine's names. For a principal that is not a cluster
admin, :func:`into_engine` rewrites a decoded request's names (topics, groups and
transactional ids alike) with its namespace (security/tenants.py) before the handler
runs, and :func:`out_of_engine` rewrites the answer back, dropping whatever the
namespace does not own (a Metadata answer listing every topic, a ListGroups answer).

* A tenant's principal: every name gets its tenant's prefix (``orders`` is the engine's
  ``_t.acme.orders``). A name it may not say (one starting with ``_``) becomes a name
  the engine can neither hold nor make (``_t.acme._t.globex.orders``), so the API
  answers its usual per-topic error (UNKNOWN_TOPIC_OR_PARTITION, INVALID_TOPIC_EXCEPTION)
  with the name the client said, and nothing of another namespace is reached.
* An untenanted principal (the default namespace): names stay, but a name in the
  tenant space (``_t.``) becomes ``__t....`` (reserved: never found, never made).
* Only the APIs of :data:`TENANT_APIS` are served to a tenant's principal; any other
  closes its connection (logged), rather than act outside its namespace. Of those, what
  binds every namespace (a broker's config) is refused per part (:func:`confine`), and a
  DescribeLogDirs answer tells a tenant neither the disk's total nor its free bytes.

Which fields are names is a table per message class (:data:`_REQUEST_NAMES`,
:data:`_RESPONSE_NAMES`), walked once per request: per topic and partition entry, never
per record. A config resource's name is one only for a topic or a group (a broker's
stays). A KIP-848 subscription's regex is anchored in the namespace by
``Namespace.regex`` (a tenant's prefix a literal outside it), and given back by
``Namespace.local_regex``. Topic ids (Fetch v13+, the KIP-848 and share APIs) of a
topic the namespace does not own become the zero id (:func:`fence_topic_ids`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from odradek.names import TENANT_ROOT
from odradek.protocols.kafka.acl_api import ALTER_CONFIGS, split_parts
from odradek.protocols.kafka.codec.api import APIS, ApiKey, Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.messages_admin import AlterConfigsResourceResponse
from odradek.protocols.kafka.codec.messages_logs import DescribeLogDirsResponse
from odradek.protocols.kafka.codec.primitives import ZERO_UUID
from odradek.security.tenants import Namespace

_SPACE = TENANT_ROOT + "."

# Message class -> its fields that hold names (a topic, group or transactional id, or a
# tuple of them), in requests and in answers.
_REQUEST_NAMES: dict[str, frozenset[str]] = {
    name: frozenset(fields)
    for name, fields in {
        "MetadataRequestTopic": ("name",),
        "TopicProduceData": ("name",),
        "ProduceRequest": ("transactional_id",),
        "FetchTopic": ("topic",),
        "ForgottenTopic": ("topic",),
        "ListOffsetsTopic": ("name",),
        "InitProducerIdRequest": ("transactional_id",),
        "FindCoordinatorRequest": ("key", "coordinator_keys"),
        "JoinGroupRequest": ("group_id",),
        "SyncGroupRequest": ("group_id",),
        "HeartbeatRequest": ("group_id",),
        "LeaveGroupRequest": ("group_id",),
        "OffsetCommitRequest": ("group_id",),
        "OffsetCommitRequestTopic": ("name",),
        "OffsetFetchRequest": ("group_id",),
        "OffsetFetchRequestTopic": ("name",),
        "OffsetFetchRequestGroup": ("group_id",),
        "OffsetFetchRequestTopics": ("name",),
        "DescribeGroupsRequest": ("groups",),
        "DeleteGroupsRequest": ("groups_names",),
        "CreatableTopic": ("name",),
        "DeleteTopicsRequest": ("topic_names",),
        "DeleteTopicState": ("name",),
        "AddPartitionsToTxnRequest": ("v3_and_below_transactional_id",),
        "AddPartitionsToTxnTransaction": ("transactional_id",),
        "AddPartitionsToTxnTopic": ("name",),
        "AddOffsetsToTxnRequest": ("transactional_id", "group_id"),
        "EndTxnRequest": ("transactional_id",),
        "TxnOffsetCommitRequest": ("transactional_id", "group_id"),
        "TxnOffsetCommitRequestTopic": ("name",),
        "DeleteRecordsTopic": ("name",),
        "DescribableLogDirTopic": ("topic",),
        "OffsetDeleteRequest": ("group_id",),
        "OffsetDeleteRequestTopic": ("name",),
        "DescribeProducersTopicRequest": ("name",),
        "CreatePartitionsTopic": ("name",),
        "DescribeConfigsResource": ("resource_name",),
        "AlterConfigsResource": ("resource_name",),
        "IncrementalAlterConfigsResource": ("resource_name",),
        "ConsumerGroupHeartbeatRequest": ("group_id", "subscribed_topic_names"),
        "ConsumerGroupDescribeRequest": ("group_ids",),
        "ShareGroupHeartbeatRequest": ("group_id", "subscribed_topic_names"),
        "ShareGroupDescribeRequest": ("group_ids",),
        "ShareFetchRequest": ("group_id",),
        "ShareAcknowledgeRequest": ("group_id",),
        "DescribeTransactionsRequest": ("transactional_ids",),
    }.items()
}
_RESPONSE_NAMES: dict[str, frozenset[str]] = {
    name: frozenset(fields)
    for name, fields in {
        "MetadataResponseTopic": ("name",),
        "TopicProduceResponse": ("name",),
        "FetchableTopicResponse": ("topic",),
        "ListOffsetsTopicResponse": ("name",),
        "Coordinator": ("key",),
        "OffsetCommitResponseTopic": ("name",),
        "OffsetFetchResponseTopic": ("name",),
        "OffsetFetchResponseTopics": ("name",),
        "OffsetFetchResponseGroup": ("group_id",),
        "DescribedGroup": ("group_id",),
        "ListedGroup": ("group_id",),
        "DeletableGroupResult": ("group_id",),
        "CreatableTopicResult": ("name",),
        "DeletableTopicResult": ("name",),
        "AddPartitionsToTxnResult": ("transactional_id",),
        "AddPartitionsToTxnTopicResult": ("name",),
        "TxnOffsetCommitResponseTopic": ("name",),
        "DeleteRecordsTopicResult": ("name",),
        "DescribeLogDirsTopic": ("name",),
        "OffsetDeleteResponseTopic": ("name",),
        "DescribeProducersTopicResponse": ("name",),
        "CreatePartitionsTopicResult": ("name",),
        "DescribeConfigsResult": ("resource_name",),
        "DescribeConfigsResourceResult": (),
        "AlterConfigsResourceResponse": ("resource_name",),
        "DescribedTopicPartitions": ("topic_name",),
        "DescribedConsumerGroup": ("group_id",),
        "DescribedConsumerMember": ("subscribed_topic_names",),
        "DescribedShareGroup": ("group_id",),
        "DescribedShareMember": ("subscribed_topic_names",),
        "DescribedShareTopicPartitions": ("topic_name",),
        "DescribedTransaction": ("transactional_id",),
        "TopicData": ("topic",),
        "ListedTransaction": ("transactional_id",),
    }.items()
}

# Message class -> its field holding a subscription's regular expression (Namespace.regex).
_REQUEST_REGEXES = {
    "ConsumerGroupHeartbeatRequest": "subscribed_topic_regex",
    "ListTransactionsRequest": "transactional_id_pattern",
}
_RESPONSE_REGEXES = {"DescribedConsumerMember": "subscribed_topic_regex"}

# Config resources name a topic or a group only when of these types (Kafka's
# ConfigResource: TOPIC 2, GROUP 32); a broker's (4, 8) or client metrics' (16) name is no
# name of a namespace and stays as it is.
_RESOURCE_CLASSES = frozenset(
    {
        "DescribeConfigsResource",
        "DescribeConfigsResult",
        "AlterConfigsResource",
        "AlterConfigsResourceResponse",
        "IncrementalAlterConfigsResource",
    }
)
_NAMED_RESOURCE_TYPES = frozenset({2, 32})
# Config resources whose change binds every namespace (BROKER 4, BROKER_LOGGER 8,
# CLIENT_METRICS 16): a tenant's principal altering one is refused per resource
# (:func:`confine`), the rest of its request served.
_CLUSTER_RESOURCE_TYPES = {4: "broker", 8: "broker logger", 16: "client metrics"}

# What a tenant's principal is served; every other API closes its connection. The ACL
# and quota APIs stay closed: their bindings and entities are the cluster's (users are
# global, a binding's pattern is matched against every namespace's names, a quota entity
# of tenant=T bounds a tenant's principals), so a tenant describing or altering them
# would read or change what other tenants are bound by; an admin manages them.
TENANT_APIS = frozenset(
    {
        ApiKey.API_VERSIONS,
        ApiKey.SASL_HANDSHAKE,
        ApiKey.SASL_AUTHENTICATE,
        ApiKey.METADATA,
        ApiKey.PRODUCE,
        ApiKey.FETCH,
        ApiKey.LIST_OFFSETS,
        ApiKey.INIT_PRODUCER_ID,
        ApiKey.FIND_COORDINATOR,
        ApiKey.JOIN_GROUP,
        ApiKey.SYNC_GROUP,
        ApiKey.HEARTBEAT,
        ApiKey.LEAVE_GROUP,
        ApiKey.OFFSET_COMMIT,
        ApiKey.OFFSET_FETCH,
        ApiKey.DESCRIBE_GROUPS,
        ApiKey.LIST_GROUPS,
        ApiKey.DELETE_GROUPS,
        ApiKey.CREATE_TOPICS,
        ApiKey.DELETE_TOPICS,
        ApiKey.ADD_PARTITIONS_TO_TXN,
        ApiKey.ADD_OFFSETS_TO_TXN,
        ApiKey.END_TXN,
        ApiKey.TXN_OFFSET_COMMIT,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
        ApiKey.CONSUMER_GROUP_DESCRIBE,
        ApiKey.SHARE_GROUP_HEARTBEAT,
        ApiKey.SHARE_GROUP_DESCRIBE,
        ApiKey.SHARE_FETCH,
        ApiKey.SHARE_ACKNOWLEDGE,
        ApiKey.DESCRIBE_CONFIGS,
        ApiKey.DESCRIBE_CLUSTER,
        ApiKey.OFFSET_DELETE,
        ApiKey.DELETE_RECORDS,
        ApiKey.DESCRIBE_PRODUCERS,
        ApiKey.CREATE_PARTITIONS,
        ApiKey.ALTER_CONFIGS,
        ApiKey.INCREMENTAL_ALTER_CONFIGS,
        ApiKey.DESCRIBE_LOG_DIRS,
        ApiKey.DESCRIBE_TRANSACTIONS,
        ApiKey.LIST_TRANSACTIONS,
    }
)


def refusal(namespace: Namespace, request: Request) -> str | None:
    """Why ``request`` closes a connection of ``namespace`` (None: it is served)."""
    if namespace.translates and request.api_key not in TENANT_APIS:
        return f"{ApiKey(request.api_key).name} is not served to the principals of {namespace} yet"
    return None


def confine(namespace: Namespace, request: Request) -> tuple[Request | None, Callable[[Any], Any]]:
    """``request`` without the parts a tenant's principal may not do though its API is
    served (None: no part is left), and how to complete the answer with their refusals
    (named as the client named them). AlterConfigs and IncrementalAlterConfigs: a
    broker's, broker logger's or client metrics' resource binds every namespace, so it
    is refused with CLUSTER_AUTHORIZATION_FAILED, as Kafka refuses a principal without
    the cluster's permission."""
    if not namespace.translates or request.api_key not in ALTER_CONFIGS:
        return request, _same
    resources = request.body.resources
    refused = [r for r in resources if r.resource_type in _CLUSTER_RESOURCE_TYPES]
    if not refused:
        return request, _same
    denied = [
        AlterConfigsResourceResponse(
            error_code=int(ErrorCode.CLUSTER_AUTHORIZATION_FAILED),
            error_message=(
                f"the principals of {namespace} may not alter a {_CLUSTER_RESOURCE_TYPES[r.resource_type]}'s"
                " configs: they bind every namespace (a cluster admin may)"
            ),
            resource_type=r.resource_type,
            resource_name=r.resource_name,
        )
        for r in refused
    ]
    left = [r for r in resources if r.resource_type not in _CLUSTER_RESOURCE_TYPES]
    return split_parts(request, "resources", left, "responses", denied, APIS[request.api_key].response)


def _same(answer: Any) -> Any:
    return answer


def engine_name(namespace: Namespace, name: str) -> str:
    """The engine's name of a Kafka name said in ``namespace`` (see the module docstring)."""
    if namespace.raw:
        return name
    if namespace.translates:
        return namespace.prefix + name  # one starting with '_' can be neither found nor made
    return "_" + name if name.startswith(_SPACE) else name


def kafka_name(namespace: Namespace, name: str) -> str:
    """The name an answer gives for engine name ``name`` (the inverse of engine_name)."""
    if namespace.translates:
        return name[len(namespace.prefix) :] if name.startswith(namespace.prefix) else name
    return name[1:] if name.startswith("_" + _SPACE) else name


def _owned(namespace: Namespace, name: str) -> bool:
    """Whether an answer may show engine name ``name`` to ``namespace`` (the names the
    client said and the engine could not take come back too: they name nothing)."""
    if namespace.translates:
        return name.startswith(namespace.prefix)
    return not name.startswith(_SPACE)


def into_engine(namespace: Namespace, request: Request) -> Request:
    """``request`` with the names it says as the engine's."""
    if namespace.raw:
        return request
    body = _walk(
        request.body,
        _REQUEST_NAMES,
        lambda name: engine_name(namespace, name),
        None,
        _REQUEST_REGEXES,
        namespace.regex,
    )
    return request if body is request.body else dataclasses.replace(request, body=body)


def out_of_engine(namespace: Namespace, body: Any) -> Any:
    """An answer with the engine's names as ``namespace`` says them, without entries that
    name what it does not own."""
    if namespace.raw or body is None:
        return body
    body = _walk(
        body,
        _RESPONSE_NAMES,
        lambda name: kafka_name(namespace, name),
        lambda name: _owned(namespace, name),
        _RESPONSE_REGEXES,
        namespace.local_regex,
    )
    if namespace.translates and isinstance(body, DescribeLogDirsResponse):
        # the data directory's disk is shared by every namespace: its total and free
        # bytes would show what the others store, so a tenant is told neither (-1, as
        # Kafka answers when it does not know them)
        results = tuple(
            dataclasses.replace(result, total_bytes=-1, usable_bytes=-1) for result in body.results
        )
        body = dataclasses.replace(body, results=results)
    return body


def _walk(
    value: Any,
    table: dict[str, frozenset[str]],
    convert: Callable[[str], str],
    keep: Callable[[str], bool] | None,
    regexes: dict[str, str],
    convert_regex: Callable[[str], str],
) -> Any:
    """``value`` (a message dataclass) with the names of ``table`` and the regexes of
    ``regexes`` converted; with ``keep``, None for an entry naming what is not kept."""
    kind = type(value).__name__
    names = table.get(kind, frozenset())
    if kind in _RESOURCE_CLASSES and value.resource_type not in _NAMED_RESOURCE_TYPES:
        names = frozenset()
    regex = regexes.get(kind)
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if field.name == regex:
            if isinstance(item, str) and item:
                changes[field.name] = convert_regex(item)
        elif field.name in names:
            if isinstance(item, str) and item:
                if keep is not None and not keep(item):
                    return None
                changes[field.name] = convert(item)
            elif isinstance(item, tuple):
                kept = [name for name in item if keep is None or keep(name)]
                changes[field.name] = tuple(convert(name) for name in kept)
        elif isinstance(item, tuple) and item and dataclasses.is_dataclass(item[0]):
            walked = [_walk(entry, table, convert, keep, regexes, convert_regex) for entry in item]
            entries = tuple(entry for entry in walked if entry is not None)
            if len(entries) != len(item) or any(a is not b for a, b in zip(entries, item, strict=False)):
                changes[field.name] = entries
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            walked_item = _walk(item, table, convert, keep, regexes, convert_regex)
            if walked_item is not item and walked_item is not None:
                changes[field.name] = walked_item
    return dataclasses.replace(value, **changes) if changes else value


async def fence_topic_ids(
    namespace: Namespace, request: Request, name_of: Callable[[Any], Awaitable[str | None]]
) -> Request:
    """``request`` with every topic id of a topic ``namespace`` does not own replaced by
    the zero id (UNKNOWN_TOPIC_ID): Fetch v13+, DeleteTopics v6+, Metadata v10+ and the
    share APIs name topics by id. ``name_of`` gives an id's engine name (None: none)."""
    if namespace.raw:
        return request
    ids: set[Any] = set()
    _topic_ids(request.body, ids)
    ids.discard(ZERO_UUID)
    foreign = set()
    for topic_id in ids:
        name = await name_of(topic_id)
        if name is not None and not _owned(namespace, name):
            foreign.add(topic_id)
    if not foreign:
        return request
    return dataclasses.replace(request, body=_zero_ids(request.body, foreign))


def _topic_ids(value: Any, found: set[Any]) -> None:
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if field.name == "topic_id":
            found.add(item)
        elif isinstance(item, tuple) and item and dataclasses.is_dataclass(item[0]):
            for entry in item:
                _topic_ids(entry, found)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            _topic_ids(item, found)


def _zero_ids(value: Any, foreign: set[Any]) -> Any:
    changes: dict[str, Any] = {}
    for field in dataclasses.fields(value):
        item = getattr(value, field.name)
        if field.name == "topic_id" and item in foreign:
            changes[field.name] = ZERO_UUID
        elif isinstance(item, tuple) and item and dataclasses.is_dataclass(item[0]):
            changes[field.name] = tuple(_zero_ids(entry, foreign) for entry in item)
        elif dataclasses.is_dataclass(item) and not isinstance(item, type):
            changes[field.name] = _zero_ids(item, foreign)
    return dataclasses.replace(value, **changes) if changes else value
