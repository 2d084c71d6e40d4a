"""Authorization on the Kafka door, and Kafka's ACL APIs over Odradek's bindings.

Rules (as Kafka's broker answers them, decision 0020)
-----------------------------------------------------
* Every request of a connection whose principal is not an admin passes :func:`gate`
  before its handler: the request loses what the principal may not do, the handler runs
  on the rest, and the refused parts come back in the answer with the API's own error
  (TOPIC_AUTHORIZATION_FAILED per topic, GROUP_AUTHORIZATION_FAILED,
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED). A refused part
  is never handled, so a denied write leaves nothing behind.
* Produce: ``write`` on each topic (and on the transactional id); Fetch: ``read`` per
  topic; ListOffsets: ``describe``; Metadata: ``describe`` (a listing of every topic
  holds only those; a topic is auto-created only with ``create``); CreateTopics:
  ``create`` on the topic or the cluster; DeleteTopics: ``delete``; the group APIs:
  ``read`` on the group (OffsetCommit also ``read`` per topic), DescribeGroups,
  ListGroups and FindCoordinator ``describe``, DeleteGroups ``delete``; InitProducerId
  and the transaction APIs: ``write`` on the transactional id; the ACL APIs:
  ``describe`` (DescribeAcls) or ``alter`` on the cluster; any other API: ``alter`` on
  the cluster (``describe`` for the read-only ones).
* DescribeAcls, CreateAcls and DeleteAcls map Kafka's resource types (TOPIC, GROUP,
  TRANSACTIONAL_ID, CLUSTER), pattern types (LITERAL, PREFIXED; MATCH and ANY in
  filters), operations and permissions onto security/acl.py. A LITERAL name that is an
  Odradek pattern (``orders.>``, ``orders.*.created``) is a ``match`` binding; bindings
  on subjects have no Kafka resource type and are not shown. Hosts other than ``*``
  are refused (Odradek binds principals, not addresses).
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from odradek.errors import InvalidRequest
from odradek.names import is_pattern
from odradek.protocols.kafka.broker import Broker
from odradek.protocols.kafka.codec import messages_acls as a
from odradek.protocols.kafka.codec import messages_admin as admin
from odradek.protocols.kafka.codec import messages_consumer as c
from odradek.protocols.kafka.codec import messages_data as d
from odradek.protocols.kafka.codec import messages_groups as g
from odradek.protocols.kafka.codec import messages_logs as logs
from odradek.protocols.kafka.codec import messages_share as s
from odradek.protocols.kafka.codec.api import APIS, ApiKey, Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.security.acl import CLUSTER, WILDCARD, Binding, binding, name_matches
from odradek.security.authorizer import Authorizer
from odradek.security.principal import Principal

log = logging.getLogger(__name__)

Finish = Callable[[Any], Any]
_SAME: Finish = lambda body: body  # noqa: E731 - the common case: nothing refused

TOPIC_FAILED = ErrorCode.TOPIC_AUTHORIZATION_FAILED
GROUP_FAILED = ErrorCode.GROUP_AUTHORIZATION_FAILED
CLUSTER_FAILED = ErrorCode.CLUSTER_AUTHORIZATION_FAILED
TRANSACTION_FAILED = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

# -- Kafka's codes ------------------------------------------------------------------------

RESOURCE_TYPES = {2: "topic", 3: "group", 4: "cluster", 5: "transactional_id"}
RESOURCE_CODES = {name: code for code, name in RESOURCE_TYPES.items()}
PATTERN_ANY, PATTERN_MATCH, PATTERN_LITERAL, PATTERN_PREFIXED = 1, 2, 3, 4
OPERATIONS = {2: "all", 3: "read", 4: "write", 5: "create", 6: "delete", 7: "alter", 8: "describe"}
OPERATION_CODES = {name: code for code, name in OPERATIONS.items()}
PERMISSIONS = {2: "deny", 3: "allow"}
PERMISSION_CODES = {name: code for code, name in PERMISSIONS.items()}
ANY = 1

# APIs checked on the cluster resource, with their operation (the rest: alter).
_CLUSTER_DESCRIBE = frozenset(
    {
        ApiKey.DESCRIBE_CONFIGS,
        ApiKey.DESCRIBE_CLUSTER,
        ApiKey.DESCRIBE_LOG_DIRS,
        ApiKey.DESCRIBE_PRODUCERS,
        ApiKey.DESCRIBE_ACLS,
        ApiKey.LIST_TRANSACTIONS,
        ApiKey.DESCRIBE_TRANSACTIONS,
    }
)
# AlterConfigs and IncrementalAlterConfigs: their answers have no top-level error, so a
# refusal is per resource (`alter` on the cluster here; a tenant's broker resources in
# tenancy.confine).
ALTER_CONFIGS = frozenset({ApiKey.ALTER_CONFIGS, ApiKey.INCREMENTAL_ALTER_CONFIGS})
_GROUP_READ = frozenset(
    {
        ApiKey.JOIN_GROUP,
        ApiKey.SYNC_GROUP,
        ApiKey.HEARTBEAT,
        ApiKey.LEAVE_GROUP,
        ApiKey.CONSUMER_GROUP_HEARTBEAT,
    }
)
_TRANSACTIONAL = frozenset(
    {ApiKey.ADD_PARTITIONS_TO_TXN, ApiKey.ADD_OFFSETS_TO_TXN, ApiKey.END_TXN, ApiKey.TXN_OFFSET_COMMIT}
)
# Share groups (KIP-932): read on the group, and describe (heartbeat) or read (fetch,
# acknowledge) on the topics, as Kafka checks them.
_SHARE = frozenset({ApiKey.SHARE_GROUP_HEARTBEAT, ApiKey.SHARE_FETCH, ApiKey.SHARE_ACKNOWLEDGE})
_OPEN = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})
API_KEYS = frozenset({ApiKey.DESCRIBE_ACLS, ApiKey.CREATE_ACLS, ApiKey.DELETE_ACLS})


def finishing(complete: Callable[[], Awaitable[Any]], finish: Finish) -> Callable[[], Awaitable[Any]]:
    """A produce's completion whose answer gets the refused topics (:func:`gate`)."""

    async def completed() -> Any:
        return finish(await complete())

    return completed


def _refused_whole(request: Request, code: ErrorCode, message: str) -> Any:
    """The API's answer with its top-level error set (every other field empty)."""
    cls = APIS[request.api_key].response
    names = {field.name for field in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    if "error_code" in names:
        values["error_code"] = int(code)
    if "error_message" in names:
        values["error_message"] = message
    return cls(**values)


def _replace(request: Request, **body: Any) -> Request:
    return dataclasses.replace(request, body=dataclasses.replace(request.body, **body))


async def _topic_name(broker: Broker, name: str, topic_id: uuid.UUID) -> str:
    if name or topic_id == uuid.UUID(int=0):
        return name
    view = await broker.topic_by_id(topic_id)
    return view.name if view is not None else ""


# -- the gate -----------------------------------------------------------------------------


async def gate(
    broker: Broker, authorizer: Authorizer, principal: Principal, request: Request
) -> tuple[Request | None, Finish]:
    """The request without what ``principal`` may not do (None: nothing is left to do)
    and how to complete the handler's answer (or, with None, make it)."""
    if principal.admin or request.api_key in _OPEN:
        return request, _SAME
    key = request.api_key
    body = request.body

    def allowed(operation: str, kind: str, name: str = CLUSTER) -> bool:
        if authorizer.allowed(principal, operation, kind, name):
            return True
        authorizer.refusal(principal, operation, kind, name)
        return False

    if key == ApiKey.PRODUCE:
        return await _produce(broker, request, allowed)
    if key == ApiKey.FETCH:
        return await _fetch(broker, request, allowed)
    if key == ApiKey.METADATA:
        return _metadata(request, allowed, authorizer, principal)
    if key == ApiKey.LIST_OFFSETS:
        refused = [topic for topic in body.topics if not allowed("describe", "topic", topic.name)]
        if not refused:
            return request, _SAME
        left = [topic for topic in body.topics if topic not in refused]
        denied = [
            d.ListOffsetsTopicResponse(
                name=topic.name,
                partitions=tuple(
                    d.ListOffsetsPartitionResponse(partition_index=p.partition_index, error_code=TOPIC_FAILED)
                    for p in topic.partitions
                ),
            )
            for topic in refused
        ]
        return split_parts(request, "topics", left, "topics", denied, d.ListOffsetsResponse)
    if key == ApiKey.CREATE_TOPICS:
        may_create_all = authorizer.allowed(principal, "create", "cluster", CLUSTER)
        refused = [
            topic for topic in body.topics if not (may_create_all or allowed("create", "topic", topic.name))
        ]
        if not refused:
            return request, _SAME
        created: list[Any] = [
            admin.CreatableTopicResult(
                name=topic.name,
                error_code=TOPIC_FAILED,
                error_message=f"{principal} may not create {topic.name!r}",
            )
            for topic in refused
        ]
        left = [topic for topic in body.topics if topic not in refused]
        return split_parts(request, "topics", left, "topics", created, admin.CreateTopicsResponse)
    if key == ApiKey.DELETE_TOPICS:
        return await _delete_topics(broker, request, allowed)
    if key in _SHARE:
        return await _share(broker, request, allowed)
    if key in _GROUP_READ:
        if allowed("read", "group", body.group_id):
            return request, _SAME
        return None, lambda _: _refused_whole(request, GROUP_FAILED, f"{principal} may not read group")
    if key == ApiKey.OFFSET_COMMIT:
        return _offset_commit(request, allowed)
    if key == ApiKey.OFFSET_FETCH:
        return _offset_fetch(request, allowed)
    if key == ApiKey.FIND_COORDINATOR:
        return _find_coordinator(request, allowed)
    if key in (
        ApiKey.DESCRIBE_GROUPS,
        ApiKey.DELETE_GROUPS,
        ApiKey.CONSUMER_GROUP_DESCRIBE,
        ApiKey.SHARE_GROUP_DESCRIBE,
    ):
        return _per_group(request, allowed)
    if key == ApiKey.LIST_GROUPS:

        def listed(answer: Any) -> Any:
            kept = authorizer.filter(
                principal, "describe", "group", [group.group_id for group in answer.groups]
            )
            return dataclasses.replace(
                answer, groups=tuple(gr for gr in answer.groups if gr.group_id in kept)
            )

        return request, listed
    if key == ApiKey.INIT_PRODUCER_ID:
        if body.transactional_id is None or allowed("write", "transactional_id", body.transactional_id):
            return request, _SAME
        return None, lambda _: _refused_whole(request, TRANSACTION_FAILED, "")
    if key in _TRANSACTIONAL:
        transactional_ids = (
            [transaction.transactional_id for transaction in body.transactions]
            if key == ApiKey.ADD_PARTITIONS_TO_TXN and request.api_version >= 4
            else [
                str(
                    getattr(body, "transactional_id", None)
                    or getattr(body, "v3_and_below_transactional_id", "")
                )
            ]
        )
        if all(allowed("write", "transactional_id", name) for name in transactional_ids):
            return request, _SAME
        return None, lambda _: _refused_whole(request, TRANSACTION_FAILED, "")
    if key == ApiKey.DESCRIBE_CONFIGS:
        return _describe_configs(request, authorizer, principal, allowed)
    if key == ApiKey.CREATE_PARTITIONS and not authorizer.allowed(principal, "alter", "cluster", CLUSTER):
        refused = [topic for topic in body.topics if not allowed("alter", "topic", topic.name)]
        grown = [
            admin.CreatePartitionsTopicResult(
                name=topic.name,
                error_code=TOPIC_FAILED,
                error_message=f"{principal} may not alter {topic.name!r}",
            )
            for topic in refused
        ]
        left = [topic for topic in body.topics if topic not in refused]
        return split_parts(request, "topics", left, "results", grown, admin.CreatePartitionsResponse)
    if key == ApiKey.DELETE_RECORDS and not authorizer.allowed(principal, "alter", "cluster", CLUSTER):
        refused = [topic for topic in body.topics if not allowed("delete", "topic", topic.name)]
        cut = [
            logs.DeleteRecordsTopicResult(
                name=topic.name,
                partitions=tuple(
                    logs.DeleteRecordsPartitionResult(
                        partition_index=p.partition_index, low_watermark=-1, error_code=TOPIC_FAILED
                    )
                    for p in topic.partitions
                ),
            )
            for topic in refused
        ]
        left = [topic for topic in body.topics if topic not in refused]
        return split_parts(request, "topics", left, "topics", cut, logs.DeleteRecordsResponse)
    operation = "describe" if key in _CLUSTER_DESCRIBE else "alter"
    if allowed(operation, "cluster"):
        return request, _SAME
    message = f"{principal} may not {operation} the cluster"
    if key in ALTER_CONFIGS:  # its answer has no top-level error: each resource is refused
        refusals: list[Any] = [
            admin.AlterConfigsResourceResponse(
                error_code=CLUSTER_FAILED,
                error_message=message,
                resource_type=resource.resource_type,
                resource_name=resource.resource_name,
            )
            for resource in body.resources
        ]
        return split_parts(request, "resources", [], "responses", refusals, APIS[key].response)
    return None, lambda _: _refused_whole(request, CLUSTER_FAILED, message)


def _describe_configs(
    request: Request, authorizer: Authorizer, principal: Principal, allowed: Callable[..., bool]
) -> tuple[Request | None, Finish]:
    """DescribeConfigs: a topic's configs to a principal that may describe the topic (as
    Kafka checks them) or the cluster; every other resource's to one that may describe
    the cluster."""
    if authorizer.allowed(principal, "describe", "cluster", CLUSTER):
        return request, _SAME
    resources = request.body.resources
    refused = [
        resource
        for resource in resources
        if resource.resource_type != RESOURCE_CODES["topic"]
        or not allowed("describe", "topic", resource.resource_name)
    ]
    denied = [
        admin.DescribeConfigsResult(
            error_code=TOPIC_FAILED if resource.resource_type == RESOURCE_CODES["topic"] else CLUSTER_FAILED,
            error_message=f"{principal} may not describe {resource.resource_name!r}",
            resource_type=resource.resource_type,
            resource_name=resource.resource_name,
            configs=(),
        )
        for resource in refused
    ]
    left = [resource for resource in resources if resource not in refused]
    return split_parts(request, "resources", left, "results", denied, admin.DescribeConfigsResponse)


async def _share(
    broker: Broker, request: Request, allowed: Callable[..., bool]
) -> tuple[Request | None, Finish]:
    """A share group's heartbeat, fetch or acknowledgement: refused whole with the
    group's error when the group may not be read, else with the topics' error when one
    of its topics may not be (described by a heartbeat, read by the others)."""
    body = request.body
    group = body.group_id or ""
    if not allowed("read", "group", group):
        return None, lambda _: _refused_whole(request, GROUP_FAILED, f"may not read group {group!r}")
    if request.api_key == ApiKey.SHARE_GROUP_HEARTBEAT:
        operation, names = "describe", list(body.subscribed_topic_names or ())
    else:
        operation = "read"
        names = [await _topic_name(broker, "", topic.topic_id) for topic in body.topics]
    refused = [name for name in names if name and not allowed(operation, "topic", name)]
    if not refused:
        return request, _SAME
    message = f"may not {operation} topic {refused[0]!r}"
    return None, lambda _: _refused_whole(request, TOPIC_FAILED, message)


def split_parts(
    request: Request, field: str, left: list[Any], answer_field: str, denied: list[Any], response: type
) -> tuple[Request | None, Finish]:
    """Run the request on ``left``; the answer gets ``denied`` appended."""
    if not left:
        return None, lambda _: response(**{answer_field: tuple(denied)})

    def finish(answer: Any) -> Any:
        if answer is None:
            return None
        return dataclasses.replace(answer, **{answer_field: (*getattr(answer, answer_field), *denied)})

    return _replace(request, **{field: tuple(left)}), finish


async def _produce(
    broker: Broker, request: Request, allowed: Callable[..., bool]
) -> tuple[Request | None, Finish]:
    body = request.body
    transactional = body.transactional_id is not None and not allowed(
        "write", "transactional_id", body.transactional_id
    )
    refused: list[Any] = []
    left: list[Any] = []
    for topic in body.topic_data:
        name = await _topic_name(broker, topic.name, topic.topic_id)
        (refused if transactional or not allowed("write", "topic", name) else left).append(topic)
    if not refused:
        return request, _SAME
    code = TRANSACTION_FAILED if transactional else TOPIC_FAILED
    denied = [
        d.TopicProduceResponse(
            name=topic.name,
            topic_id=topic.topic_id,
            partition_responses=tuple(
                d.PartitionProduceResponse(index=p.index, error_code=code, base_offset=-1)
                for p in topic.partition_data
            ),
        )
        for topic in refused
    ]
    if not left and body.acks == 0:
        return None, lambda _: None  # acks=0: Kafka answers nothing
    return split_parts(request, "topic_data", left, "responses", denied, d.ProduceResponse)


async def _fetch(
    broker: Broker, request: Request, allowed: Callable[..., bool]
) -> tuple[Request | None, Finish]:
    refused: list[Any] = []
    left: list[Any] = []
    for topic in request.body.topics:
        name = await _topic_name(broker, topic.topic, topic.topic_id)
        (left if allowed("read", "topic", name) else refused).append(topic)
    if not refused:
        return request, _SAME
    denied = [
        d.FetchableTopicResponse(
            topic=topic.topic,
            topic_id=topic.topic_id,
            partitions=tuple(
                d.FetchPartitionData(partition_index=p.partition, error_code=TOPIC_FAILED, high_watermark=-1)
                for p in topic.partitions
            ),
        )
        for topic in refused
    ]
    return split_parts(request, "topics", left, "responses", denied, d.FetchResponse)


def _metadata(
    request: Request, allowed: Callable[..., bool], authorizer: Authorizer, principal: Principal
) -> tuple[Request | None, Finish]:
    body = request.body
    if body.topics is None:  # every topic: those the principal may describe

        def listed(answer: Any) -> Any:
            names = [topic.name for topic in answer.topics]
            kept = set(authorizer.filter(principal, "describe", "topic", names))
            return dataclasses.replace(answer, topics=tuple(t for t in answer.topics if t.name in kept))

        return request, listed
    refused = [t for t in body.topics if t.name and not allowed("describe", "topic", t.name)]
    left = [t for t in body.topics if t not in refused]
    creates = body.allow_auto_topic_creation and any(
        t.name and not authorizer.allowed(principal, "create", "topic", t.name) for t in left
    )
    by_id = any(not t.name for t in body.topics)
    if not refused and not creates and not by_id:
        return request, _SAME
    denied = tuple(
        d.MetadataResponseTopic(error_code=TOPIC_FAILED, name=t.name, topic_id=t.topic_id, partitions=())
        for t in refused
    )
    changed = _replace(
        request, topics=tuple(left), allow_auto_topic_creation=body.allow_auto_topic_creation and not creates
    )

    def finish(answer: Any) -> Any:
        """The answer without what the principal may not describe (a topic asked for by
        its id, or all of them when nothing is left of a v0 request), then the refusals."""
        names = [topic.name for topic in answer.topics if topic.name]
        hidden = None if request.api_version >= 12 else ""  # a name is nullable from v12
        kept = set(authorizer.filter(principal, "describe", "topic", names))
        shown = tuple(
            topic
            if not topic.name or topic.name in kept
            else d.MetadataResponseTopic(
                error_code=TOPIC_FAILED, name=hidden, topic_id=topic.topic_id, partitions=()
            )
            for topic in answer.topics
        )
        return dataclasses.replace(answer, topics=(*shown, *denied))

    return changed, finish


async def _delete_topics(
    broker: Broker, request: Request, allowed: Callable[..., bool]
) -> tuple[Request | None, Finish]:
    body = request.body
    if request.api_version < 6:
        refused_names = [name for name in body.topic_names if not allowed("delete", "topic", name)]
        if not refused_names:
            return request, _SAME
        denied = [admin.DeletableTopicResult(name=name, error_code=TOPIC_FAILED) for name in refused_names]
        left = [name for name in body.topic_names if name not in refused_names]
        return split_parts(request, "topic_names", left, "responses", denied, admin.DeleteTopicsResponse)
    refused: list[Any] = []
    kept: list[Any] = []
    for state in body.topics:
        name = await _topic_name(broker, state.name or "", state.topic_id)
        (kept if allowed("delete", "topic", name) else refused).append(state)
    if not refused:
        return request, _SAME
    denied = [
        admin.DeletableTopicResult(name=state.name, topic_id=state.topic_id, error_code=TOPIC_FAILED)
        for state in refused
    ]
    return split_parts(request, "topics", kept, "responses", denied, admin.DeleteTopicsResponse)


def _offset_commit(request: Request, allowed: Callable[..., bool]) -> tuple[Request | None, Finish]:
    body = request.body

    def failed(topic: Any, code: ErrorCode) -> Any:
        return g.OffsetCommitResponseTopic(
            name=topic.name,
            topic_id=topic.topic_id,
            partitions=tuple(
                g.OffsetCommitResponsePartition(partition_index=p.partition_index, error_code=code)
                for p in topic.partitions
            ),
        )

    if not allowed("read", "group", body.group_id):
        return None, lambda _: g.OffsetCommitResponse(
            topics=tuple(failed(t, GROUP_FAILED) for t in body.topics)
        )
    refused = [t for t in body.topics if not allowed("read", "topic", t.name)]
    if not refused:
        return request, _SAME
    left = [t for t in body.topics if t not in refused]
    denied = [failed(t, TOPIC_FAILED) for t in refused]
    return split_parts(request, "topics", left, "topics", denied, g.OffsetCommitResponse)


def _offset_fetch(request: Request, allowed: Callable[..., bool]) -> tuple[Request | None, Finish]:
    body = request.body
    if request.api_version < 8:
        if allowed("describe", "group", body.group_id):
            return request, _SAME
        return None, lambda _: g.OffsetFetchResponse(error_code=GROUP_FAILED)
    refused = [group for group in body.groups if not allowed("describe", "group", group.group_id)]
    if not refused:
        return request, _SAME
    left = [group for group in body.groups if group not in refused]
    denied = [
        g.OffsetFetchResponseGroup(group_id=group.group_id, error_code=GROUP_FAILED) for group in refused
    ]
    return split_parts(request, "groups", left, "groups", denied, g.OffsetFetchResponse)


def _find_coordinator(request: Request, allowed: Callable[..., bool]) -> tuple[Request | None, Finish]:
    body = request.body
    kind, code = ("transactional_id", TRANSACTION_FAILED) if body.key_type == 1 else ("group", GROUP_FAILED)
    if request.api_version < 4:
        if allowed("describe", kind, body.key):
            return request, _SAME
        return None, lambda _: g.FindCoordinatorResponse(error_code=code, node_id=-1, port=-1)
    refused = [key for key in body.coordinator_keys if not allowed("describe", kind, key)]
    if not refused:
        return request, _SAME
    left = [key for key in body.coordinator_keys if key not in refused]
    denied = [g.Coordinator(key=key, node_id=-1, port=-1, error_code=code) for key in refused]
    return split_parts(request, "coordinator_keys", left, "coordinators", denied, g.FindCoordinatorResponse)


def _per_group(request: Request, allowed: Callable[..., bool]) -> tuple[Request | None, Finish]:
    key = request.api_key
    if key == ApiKey.DELETE_GROUPS:
        names = list(request.body.groups_names)
        refused = [name for name in names if not allowed("delete", "group", name)]
        denied: list[Any] = [
            g.DeletableGroupResult(group_id=name, error_code=GROUP_FAILED) for name in refused
        ]
        field, answer_field = "groups_names", "results"
    elif key == ApiKey.DESCRIBE_GROUPS:
        names = list(request.body.groups)
        refused = [name for name in names if not allowed("describe", "group", name)]
        denied = [g.DescribedGroup(group_id=name, error_code=GROUP_FAILED) for name in refused]
        field, answer_field = "groups", "groups"
    else:  # ConsumerGroupDescribe, ShareGroupDescribe: each refused group answered with its error
        names = list(request.body.group_ids)
        refused = [name for name in names if not allowed("describe", "group", name)]
        described = (
            c.DescribedConsumerGroup if key == ApiKey.CONSUMER_GROUP_DESCRIBE else s.DescribedShareGroup
        )
        denied = [
            described(
                error_code=GROUP_FAILED,
                error_message=f"may not describe group {name!r}",
                group_id=name,
                group_state="",
                group_epoch=-1,
                assignment_epoch=-1,
                assignor_name="",
                members=(),
            )
            for name in refused
        ]
        field, answer_field = "group_ids", "groups"
    if not refused:
        return request, _SAME
    left = [name for name in names if name not in refused]
    return split_parts(request, field, left, answer_field, denied, APIS[key].response)


# -- the ACL APIs -------------------------------------------------------------------------


def _kafka_pattern(entry: Binding) -> tuple[int, str]:
    if entry.pattern_type == "prefixed":
        return PATTERN_PREFIXED, entry.pattern
    return PATTERN_LITERAL, entry.pattern  # a match pattern reads as a literal name with * or >


@dataclasses.dataclass(frozen=True)
class _Filter:
    resource_type: int
    name: str | None
    pattern_type: int
    principal: str | None
    host: str | None
    operation: int
    permission: int

    def check(self) -> None:
        if self.resource_type != ANY and self.resource_type not in RESOURCE_TYPES:
            raise InvalidRequest(f"resource type {self.resource_type} is not one Odradek binds")
        if self.pattern_type not in (PATTERN_ANY, PATTERN_MATCH, PATTERN_LITERAL, PATTERN_PREFIXED):
            raise InvalidRequest(f"unknown pattern type {self.pattern_type}")
        if self.operation != ANY and self.operation not in OPERATIONS:
            raise InvalidRequest(f"operation {self.operation} is not one Odradek binds")
        if self.permission != ANY and self.permission not in PERMISSIONS:
            raise InvalidRequest(f"unknown permission type {self.permission}")

    def selects(self, entry: Binding) -> bool:
        if entry.resource_type not in RESOURCE_CODES:
            return False
        if self.resource_type != ANY and RESOURCE_TYPES[self.resource_type] != entry.resource_type:
            return False
        if self.principal is not None and self.principal != entry.principal:
            return False
        if self.host is not None and self.host != WILDCARD:
            return False
        if self.operation != ANY and OPERATIONS[self.operation] != entry.operation:
            return False
        if self.permission != ANY and PERMISSIONS[self.permission] != entry.permission:
            return False
        kafka_type, pattern = _kafka_pattern(entry)
        if self.pattern_type == PATTERN_MATCH:
            return self.name is None or name_matches(entry.pattern_type, entry.pattern, self.name)
        if self.pattern_type != PATTERN_ANY and self.pattern_type != kafka_type:
            return False
        return self.name is None or self.name == pattern


def _creation(creation: a.AclCreation) -> Binding:
    kind = RESOURCE_TYPES.get(creation.resource_type)
    if kind is None:
        raise InvalidRequest(f"resource type {creation.resource_type} is not one Odradek binds")
    if creation.host != WILDCARD:
        raise InvalidRequest(f"host {creation.host!r}: Odradek binds principals on every host ('*') only")
    if creation.resource_pattern_type == PATTERN_PREFIXED:
        pattern_type = "prefixed"
    elif creation.resource_pattern_type == PATTERN_LITERAL:
        name = creation.resource_name
        pattern_type = "match" if name != WILDCARD and is_pattern(name) else "literal"
    else:
        raise InvalidRequest("a binding's pattern type is LITERAL or PREFIXED")
    operation = OPERATIONS.get(creation.operation)
    permission = PERMISSIONS.get(creation.permission_type)
    if operation is None or permission is None:
        raise InvalidRequest(
            f"operation {creation.operation} or permission {creation.permission_type} "
            "is not one Odradek binds"
        )
    return binding(creation.principal, kind, pattern_type, creation.resource_name, operation, permission)


def _describe(entry: Binding) -> tuple[tuple[int, str, int], a.AclDescription]:
    kafka_type, pattern = _kafka_pattern(entry)
    return (RESOURCE_CODES[entry.resource_type], pattern, kafka_type), a.AclDescription(
        principal=entry.principal,
        host=WILDCARD,
        operation=OPERATION_CODES[entry.operation],
        permission_type=PERMISSION_CODES[entry.permission],
    )


def serve(authorizer: Authorizer | None, request: Request) -> Any:
    """DescribeAcls, CreateAcls or DeleteAcls (the gate checked the cluster permission)."""
    body = request.body
    if request.api_key == ApiKey.DESCRIBE_ACLS:
        if authorizer is None:
            return a.DescribeAclsResponse(error_code=ErrorCode.SECURITY_DISABLED, error_message=_DISABLED)
        chosen = _filter_of(body)
        if isinstance(chosen, str):
            return a.DescribeAclsResponse(error_code=ErrorCode.INVALID_REQUEST, error_message=chosen)
        resources: dict[tuple[int, str, int], list[a.AclDescription]] = {}
        for entry in authorizer.store.bindings():
            if chosen.selects(entry):
                resource, description = _describe(entry)
                resources.setdefault(resource, []).append(description)
        return a.DescribeAclsResponse(
            resources=tuple(
                a.DescribeAclsResource(
                    resource_type=kind, resource_name=name, pattern_type=pattern, acls=tuple(acls)
                )
                for (kind, name, pattern), acls in resources.items()
            )
        )
    if request.api_key == ApiKey.CREATE_ACLS:
        if authorizer is None:
            failed = a.AclCreationResult(error_code=ErrorCode.SECURITY_DISABLED, error_message=_DISABLED)
            return a.CreateAclsResponse(results=tuple(failed for _ in body.creations))
        results = []
        for creation in body.creations:
            try:
                authorizer.store.add([_creation(creation)])
                results.append(a.AclCreationResult())
            except InvalidRequest as exc:
                results.append(
                    a.AclCreationResult(error_code=ErrorCode.INVALID_REQUEST, error_message=exc.message)
                )
        return a.CreateAclsResponse(results=tuple(results))
    if authorizer is None:
        failed_filter = a.DeleteAclsFilterResult(
            error_code=ErrorCode.SECURITY_DISABLED, error_message=_DISABLED
        )
        return a.DeleteAclsResponse(filter_results=tuple(failed_filter for _ in body.filters))
    filter_results = []
    for wanted in body.filters:
        chosen = _filter_of(wanted)
        if isinstance(chosen, str):
            filter_results.append(
                a.DeleteAclsFilterResult(error_code=ErrorCode.INVALID_REQUEST, error_message=chosen)
            )
            continue
        removed = authorizer.store.remove(chosen.selects)
        matching = []
        for entry in removed:
            (kind, name, pattern), description = _describe(entry)
            matching.append(
                a.DeleteAclsMatchingAcl(
                    resource_type=kind,
                    resource_name=name,
                    pattern_type=pattern,
                    principal=description.principal,
                    host=description.host,
                    operation=description.operation,
                    permission_type=description.permission_type,
                )
            )
        filter_results.append(a.DeleteAclsFilterResult(matching_acls=tuple(matching)))
    return a.DeleteAclsResponse(filter_results=tuple(filter_results))


_DISABLED = "this server does not authorize (start it with --auth --authorize)"


def _filter_of(body: Any) -> _Filter | str:
    chosen = _Filter(
        body.resource_type_filter,
        body.resource_name_filter,
        body.pattern_type_filter,
        body.principal_filter,
        body.host_filter,
        body.operation,
        body.permission_type,
    )
    try:
        chosen.check()
    except InvalidRequest as exc:
        return exc.message
    return chosen
