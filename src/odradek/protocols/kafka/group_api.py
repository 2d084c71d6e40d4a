"""Handlers of consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, and
the consumer protocol's ConsumerGroupHeartbeat and ConsumerGroupDescribe (KIP-848).

They translate between the wire messages and :class:`~.groups.Coordinator`, which
holds the group state machines (consumer_groups.py for the consumer protocol). A
ConsumerGroupHeartbeat's topics are resolved here, names and ids, before the state
machine sees it; its refusals carry the coordinator's message, which clients show.
Refused group requests are logged at info with what the code means.

Groups of the consumer protocol show in ListGroups with type "consumer", and in
DescribeGroups with protocol type "consumer", their assignor as protocol and each
member's assignment in the classic ``consumer`` encoding, so that tools that only
know the classic APIs still show them. ConsumerGroupDescribe answers GROUP_ID_NOT_FOUND
for a group of another kind, which tells admin clients to ask DescribeGroups.

A commit or a group deletion whose file write fails (a full disk) is answered with
NOT_COORDINATOR, as Kafka answers a failed write to its offsets topic: clients look
the coordinator up again and retry. Nothing of it took effect.

Odradek's own consumer groups (the ``odradek`` kind, decision 0008) share the names:
ListGroups lists them (protocol type "", which Kafka's tools show as a group whose
members Kafka does not coordinate, and state Stable or Empty), DescribeGroups
describes them (protocol "odradek", their members without metadata or assignment),
OffsetFetch gives each virtual partition of their topics the group's committed offset
(every record below it is settled), and DeleteGroups deletes them (NON_EMPTY_GROUP
while they have members). While Kafka share consumers (KIP-932) are in one (its kind is
then ``share``, share_groups.py), ListGroups gives it Kafka's group type and protocol
type "share", and DescribeGroups describes it with protocol type "share", the simple
assignor as protocol and the members ShareGroupDescribe shows (their member ids, client
ids and hosts, each assignment in the classic ``consumer`` encoding), beside any native
members. A JoinGroup or OffsetCommit under such a name gets
INCONSISTENT_GROUP_PROTOCOL. A name held by both kinds (from data older than that
rule) is this door's Kafka group here."""

from __future__ import annotations

import dataclasses
import logging
import struct
import uuid

from odradek import limits
from odradek.errors import InvalidRequest, OdradekError, StorageError
from odradek.groups.info import KIND_SHARE, GroupInfo
from odradek.protocols.kafka.broker import NODE_ID, Broker, client_host
from odradek.protocols.kafka.codec import messages_consumer as c
from odradek.protocols.kafka.codec import messages_groups as m
from odradek.protocols.kafka.codec.api import Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import ZERO_UUID
from odradek.protocols.kafka.consumer_groups import ConsumerGroup, Heartbeat, TopicPartition
from odradek.protocols.kafka.groups import CONSUMER_PROTOCOL_TYPE, DEAD, Group
from odradek.protocols.kafka.share_groups import SHARE_ASSIGNOR, share_groups
from odradek.protocols.kafka.store import OffsetEntry

log = logging.getLogger(__name__)

_KEY_TYPE_GROUP = 0
_KEY_TYPE_TRANSACTION = 1  # this node is every transactional id's coordinator too
# Kafka's group types (ListGroups v5): classic groups, groups of the consumer protocol,
# and share groups (KIP-932), whose protocol type is "share" too.
_CLASSIC_TYPE = "classic"
_CONSUMER_TYPE = "consumer"
_SHARE_TYPE = "share"
# ConsumerGroupDescribe's member type (KIP-1099): a member of the consumer protocol.
_CONSUMER_MEMBER_TYPE = 1
# How an odradek group shows in Kafka's group APIs: no protocol type (its members are
# not coordinated by Kafka's group protocol), and "odradek" as its protocol.
_ODRADEK_PROTOCOL_TYPE = ""
_ODRADEK_PROTOCOL = "odradek"


# What a refusal means, for the log (the classic group APIs carry no error message).
_MEANING = {
    ErrorCode.UNKNOWN_MEMBER_ID: "the member is not in the group (it was removed, or never joined)",
    ErrorCode.ILLEGAL_GENERATION: "the member's generation is not the group's (the group rebalanced)",
    ErrorCode.FENCED_INSTANCE_ID: "another member now holds its group.instance.id (a newer instance)",
    ErrorCode.INCONSISTENT_GROUP_PROTOCOL: "the group's protocol or kind does not match",
    ErrorCode.INVALID_SESSION_TIMEOUT: (
        f"session timeout outside {limits.kafka_session_timeout_ms_min}-"
        f"{limits.kafka_session_timeout_ms_max} ms"
    ),
    ErrorCode.GROUP_MAX_SIZE_REACHED: f"the group has {limits.kafka_group_members_max} members already",
    ErrorCode.INVALID_GROUP_ID: "the group id is empty",
}
# Answers that are part of a normal rebalance, not refusals.
_ROUTINE = {ErrorCode.NONE, ErrorCode.REBALANCE_IN_PROGRESS}


def _refused(api: str, group_id: str, member: str, code: int) -> None:
    """Log a refused group request at info, with what the code means."""
    if code in _ROUTINE:
        return
    error = ErrorCode(code)
    log.info(
        "%s of group %r by member %r refused with %s: %s",
        api,
        group_id,
        member,
        error.name,
        _MEANING.get(error, "see Kafka's protocol guide"),
    )


async def find_coordinator(broker: Broker, request: Request) -> m.FindCoordinatorResponse:
    body: m.FindCoordinatorRequest = request.body
    node, host, port = NODE_ID, broker.host, broker.port
    if body.key_type not in (_KEY_TYPE_GROUP, _KEY_TYPE_TRANSACTION):
        code, message = ErrorCode.INVALID_REQUEST, f"coordinator key type {body.key_type} is not served"
    else:
        code, message = ErrorCode.NONE, None
    if code == ErrorCode.NONE and broker.cells is not None and broker.node_id != NODE_ID:
        # Groups and transactions live in the home cell: its door coordinates (cells.py).
        try:
            home = await broker.call(broker.cells.coordinator)
        except OdradekError as exc:
            home, message = None, f"the coordinator is not known: {exc.message}"
        if home is None:
            code, message = (
                ErrorCode.COORDINATOR_NOT_AVAILABLE,
                message or "the home cell has no owner right now",
            )
        else:
            node, host, port = home
    if request.api_version >= 4:
        return m.FindCoordinatorResponse(
            coordinators=tuple(
                m.Coordinator(
                    key=key,
                    node_id=node if code == 0 else -1,
                    host=host if code == 0 else "",
                    port=port if code == 0 else -1,
                    error_code=code,
                    error_message=message,
                )
                for key in body.coordinator_keys
            )
        )
    if code != ErrorCode.NONE:
        return m.FindCoordinatorResponse(error_code=code, error_message=message, node_id=-1, host="", port=-1)
    return m.FindCoordinatorResponse(node_id=node, host=host, port=port)


async def join_group(broker: Broker, request: Request) -> m.JoinGroupResponse:
    body: m.JoinGroupRequest = request.body
    result = await broker.coordinator.join(
        body.group_id,
        body.member_id,
        body.group_instance_id,
        request.client_id or "",
        client_host.get(),
        body.session_timeout_ms,
        body.rebalance_timeout_ms,
        body.protocol_type,
        [(p.name, p.metadata) for p in body.protocols],
    )
    _refused("JoinGroup", body.group_id, body.member_id or body.group_instance_id or "", result.error)
    return m.JoinGroupResponse(
        error_code=result.error,
        generation_id=result.generation,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol,
        leader=result.leader,
        skip_assignment=result.skip_assignment,
        member_id=result.member_id,
        members=tuple(
            m.JoinGroupResponseMember(member_id=member_id, group_instance_id=instance, metadata=metadata)
            for member_id, instance, metadata in result.members
        ),
    )


async def sync_group(broker: Broker, request: Request) -> m.SyncGroupResponse:
    body: m.SyncGroupRequest = request.body
    error, assignment, group = await broker.coordinator.sync(
        body.group_id,
        body.member_id,
        body.generation_id,
        [(a.member_id, a.assignment) for a in body.assignments],
        body.group_instance_id,
    )
    _refused("SyncGroup", body.group_id, body.member_id, error)
    return m.SyncGroupResponse(
        error_code=error,
        assignment=assignment,
        protocol_type=group.protocol_type if group is not None else None,
        protocol_name=group.protocol if group is not None else None,
    )


async def heartbeat(broker: Broker, request: Request) -> m.HeartbeatResponse:
    body: m.HeartbeatRequest = request.body
    code = broker.coordinator.heartbeat(
        body.group_id, body.member_id, body.generation_id, body.group_instance_id
    )
    _refused("Heartbeat", body.group_id, body.member_id, code)
    return m.HeartbeatResponse(error_code=code)


async def leave_group(broker: Broker, request: Request) -> m.LeaveGroupResponse:
    body: m.LeaveGroupRequest = request.body
    if request.api_version < 3:
        (code,) = broker.coordinator.leave(body.group_id, [body.member_id])
        return m.LeaveGroupResponse(error_code=code)
    codes = broker.coordinator.leave(
        body.group_id,
        [member.member_id for member in body.members],
        [member.group_instance_id for member in body.members],
    )
    for member, code in zip(body.members, codes, strict=True):
        _refused("LeaveGroup", body.group_id, member.member_id or member.group_instance_id or "", code)
    return m.LeaveGroupResponse(
        members=tuple(
            m.MemberResponse(
                member_id=member.member_id, group_instance_id=member.group_instance_id, error_code=code
            )
            for member, code in zip(body.members, codes, strict=True)
        )
    )


async def offset_commit(broker: Broker, request: Request) -> m.OffsetCommitResponse:
    body: m.OffsetCommitRequest = request.body
    check = broker.coordinator.check_commit(
        body.group_id, body.member_id, body.generation_id_or_member_epoch, body.group_instance_id
    )
    _refused("OffsetCommit", body.group_id, body.member_id, check)
    accepted: dict[tuple[str, int], OffsetEntry] = {}
    topics = []
    for topic in body.topics:
        view = await (
            broker.any_topic_by_id(topic.topic_id)
            if request.api_version >= 10
            else broker.any_topic(topic.name)
        )
        partitions = []
        for partition in topic.partitions:
            code = check
            if code == ErrorCode.NONE:
                metadata = partition.committed_metadata
                if view is None or not 0 <= partition.partition_index < view.partitions:
                    code = ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                elif metadata is not None and len(metadata.encode()) > limits.kafka_offset_metadata_bytes_max:
                    code = ErrorCode.OFFSET_METADATA_TOO_LARGE
                else:
                    accepted[(view.name, partition.partition_index)] = (
                        partition.committed_offset,
                        partition.committed_leader_epoch,
                        metadata,
                    )
            partitions.append(
                m.OffsetCommitResponsePartition(partition_index=partition.partition_index, error_code=code)
            )
        topics.append(
            m.OffsetCommitResponseTopic(
                name=topic.name, topic_id=topic.topic_id, partitions=tuple(partitions)
            )
        )
    if accepted:
        try:
            await broker.coordinator.commit(body.group_id, accepted)
        except StorageError as exc:
            log.warning("OffsetCommit of group %s: %s", body.group_id, exc.message)
            topics = [_commit_failed(topic, ErrorCode.NOT_COORDINATOR) for topic in topics]
        except InvalidRequest:  # an odradek group took the name since check_commit
            topics = [_commit_failed(topic, ErrorCode.INCONSISTENT_GROUP_PROTOCOL) for topic in topics]
    return m.OffsetCommitResponse(topics=tuple(topics))


def _commit_failed(topic: m.OffsetCommitResponseTopic, code: ErrorCode) -> m.OffsetCommitResponseTopic:
    """The topic's answer once the commit could not be made: ``code`` for each
    partition that had been accepted."""
    partitions = tuple(
        dataclasses.replace(partition, error_code=code)
        if partition.error_code == ErrorCode.NONE
        else partition
        for partition in topic.partitions
    )
    return dataclasses.replace(topic, partitions=partitions)


async def offset_fetch(broker: Broker, request: Request) -> m.OffsetFetchResponse:
    body: m.OffsetFetchRequest = request.body
    if request.api_version >= 8:
        groups = []
        for group in body.groups:
            code = broker.coordinator.check_fetch(group.group_id, group.member_id, group.member_epoch)
            if code != ErrorCode.NONE:
                _refused("OffsetFetch", group.group_id, group.member_id or "", code)
                groups.append(m.OffsetFetchResponseGroup(group_id=group.group_id, error_code=code))
                continue
            topics = await _fetch_group(
                broker, group.group_id, group.topics, request.api_version, body.require_stable
            )
            groups.append(m.OffsetFetchResponseGroup(group_id=group.group_id, topics=tuple(topics)))
        return m.OffsetFetchResponse(groups=tuple(groups))
    wanted = (
        None
        if body.topics is None
        else tuple(
            m.OffsetFetchRequestTopics(name=t.name, partition_indexes=t.partition_indexes)
            for t in body.topics
        )
    )
    found = await _fetch_group(broker, body.group_id, wanted, request.api_version, body.require_stable)
    return m.OffsetFetchResponse(
        topics=tuple(
            m.OffsetFetchResponseTopic(
                name=t.name,
                partitions=tuple(
                    m.OffsetFetchResponsePartition(
                        partition_index=p.partition_index,
                        committed_offset=p.committed_offset,
                        committed_leader_epoch=p.committed_leader_epoch,
                        metadata=p.metadata,
                        error_code=p.error_code,
                    )
                    for p in t.partitions
                ),
            )
            for t in found
        )
    )


async def _fetch_group(
    broker: Broker,
    group_id: str,
    wanted: tuple[m.OffsetFetchRequestTopics, ...] | None,
    version: int,
    require_stable: bool = False,
) -> list[m.OffsetFetchResponseTopics]:
    """The group's committed offsets. With ``require_stable`` (KIP-447: a
    read_committed consumer), a partition whose offset an open transaction is about to
    commit answers UNSTABLE_OFFSET_COMMIT, which clients retry, so that a consumer taking
    over a partition does not start from the offset before that transaction."""
    if group_id in broker.coordinator.groups:
        committed = broker.coordinator.committed(group_id)
    else:
        committed = await _odradek_committed(broker, group_id)
    requests: list[tuple[str, uuid.UUID | None, list[int]]] = []
    if wanted is None:
        by_topic: dict[str, list[int]] = {}
        for committed_topic, partition in sorted(committed):
            by_topic.setdefault(committed_topic, []).append(partition)
        for name, indexes in by_topic.items():
            view = await broker.any_topic(name)
            requests.append((name, view.topic_id if view else None, indexes))
    else:
        for topic in wanted:
            view = await (
                broker.any_topic_by_id(topic.topic_id) if version >= 10 else broker.any_topic(topic.name)
            )
            name = view.name if view is not None else topic.name
            requests.append((name, topic.topic_id if version >= 10 else None, list(topic.partition_indexes)))
    results = []
    for name, topic_id, indexes in requests:
        partitions = []
        for index in indexes:
            offset, epoch, metadata = committed.get((name, index), (-1, -1, ""))
            code = ErrorCode.NONE
            if require_stable and broker.transactions.pending_offset(group_id, name, index):
                offset, epoch, code = -1, -1, ErrorCode.UNSTABLE_OFFSET_COMMIT
            partitions.append(
                m.OffsetFetchResponsePartitions(
                    partition_index=index,
                    committed_offset=offset,
                    committed_leader_epoch=epoch,
                    metadata=metadata,
                    error_code=code,
                )
            )
        results.append(
            m.OffsetFetchResponseTopics(
                name=name, topic_id=topic_id or ZERO_UUID, partitions=tuple(partitions)
            )
        )
    return results


async def _odradek_committed(broker: Broker, group_id: str) -> dict[tuple[str, int], OffsetEntry]:
    """An odradek group's committed offset for every virtual partition of its topics
    ({} if there is no such group)."""
    info = await broker.call(_odradek_group, broker, group_id)
    committed: dict[tuple[str, int], OffsetEntry] = {}
    for topic in info.topics if info is not None else ():
        view = await broker.topic(topic.topic)
        for partition in range(view.partitions if view is not None else 0):
            committed[(topic.topic, partition)] = (topic.committed, -1, "")
    return committed


def _odradek_group(broker: Broker, group_id: str) -> GroupInfo | None:
    """The odradek group ``group_id`` (on the executor), or None if there is none."""
    groups = broker.node.groups
    if not groups.exists(group_id):
        return None
    try:
        return groups.describe_group(group_id)
    except InvalidRequest:  # deleted since
        return None


def _delete_odradek_group(broker: Broker, group_id: str) -> ErrorCode:
    """DeleteGroups of an odradek group (on the executor)."""
    groups = broker.node.groups
    if not groups.exists(group_id):
        return ErrorCode.GROUP_ID_NOT_FOUND
    try:
        groups.delete_group(group_id)
    except InvalidRequest:  # it has members (or went meanwhile)
        return ErrorCode.NON_EMPTY_GROUP if groups.exists(group_id) else ErrorCode.GROUP_ID_NOT_FOUND
    except StorageError as exc:
        log.warning("DeleteGroups of %s: %s", group_id, exc.message)
        return ErrorCode.NOT_COORDINATOR
    return ErrorCode.NONE


def _described_odradek_group(info: GroupInfo) -> m.DescribedGroup:
    members = tuple(
        m.DescribedGroupMember(
            member_id=member.member,
            group_instance_id=None,
            client_id=_ODRADEK_PROTOCOL,
            client_host="",
            member_metadata=b"",
            member_assignment=b"",
        )
        for member in info.members
    )
    return m.DescribedGroup(
        group_id=info.group,
        group_state=info.state,
        protocol_type=_ODRADEK_PROTOCOL_TYPE,
        protocol_data=_ODRADEK_PROTOCOL,
        members=members,
    )


def _described_share_group(broker: Broker, info: GroupInfo) -> m.DescribedGroup:
    """An odradek group with share members: those members as ShareGroupDescribe shows
    them, then its native members (not those that serve the share members)."""
    state = share_groups(broker)
    serving = state.native_ids(info.group)
    shared = tuple(
        m.DescribedGroupMember(
            member_id=member.member_id,
            group_instance_id=None,
            client_id=member.client_id,
            client_host=member.client_host,
            member_metadata=b"",
            member_assignment=classic_assignment(
                frozenset((name, p) for _, name, count in member.assignment for p in range(count))
            ),
        )
        for member in state.of_group(info.group)
    )
    native = _described_odradek_group(info).members
    return m.DescribedGroup(
        group_id=info.group,
        group_state=info.state,
        protocol_type=_SHARE_TYPE,
        protocol_data=SHARE_ASSIGNOR,
        members=shared + tuple(member for member in native if member.member_id not in serving),
    )


async def describe_groups(broker: Broker, request: Request) -> m.DescribeGroupsResponse:
    body: m.DescribeGroupsRequest = request.body
    described = []
    for group_id in body.groups:
        group = broker.coordinator.groups.get(group_id)
        if group is None:
            info = await broker.call(_odradek_group, broker, group_id)
            if info is not None and (info.kind == KIND_SHARE or share_groups(broker).of_group(group_id)):
                described.append(_described_share_group(broker, info))
                continue
            if info is not None:
                described.append(_described_odradek_group(info))
                continue
            code = ErrorCode.GROUP_ID_NOT_FOUND if request.api_version >= 6 else ErrorCode.NONE
            message = f"group {group_id!r} does not exist" if code else None
            described.append(
                m.DescribedGroup(error_code=code, error_message=message, group_id=group_id, group_state=DEAD)
            )
            continue
        if group.consumer is not None:
            described.append(_described_consumer_group(group, group.consumer))
            continue
        members = tuple(
            m.DescribedGroupMember(
                member_id=member.member_id,
                group_instance_id=member.instance_id,
                client_id=member.client_id,
                client_host=member.client_host,
                member_metadata=member.metadata_for(group.protocol),
                member_assignment=member.assignment,
            )
            for member in group.members.values()
        )
        described.append(
            m.DescribedGroup(
                group_id=group_id,
                group_state=group.state,
                protocol_type=group.protocol_type or "",
                protocol_data=group.protocol or "",
                members=members,
            )
        )
    return m.DescribeGroupsResponse(groups=tuple(described))


async def list_groups(broker: Broker, request: Request) -> m.ListGroupsResponse:
    body: m.ListGroupsRequest = request.body
    states = {s.lower() for s in body.states_filter}
    types = {t.lower() for t in body.types_filter}
    found = [
        (
            group.group_id,
            group.protocol_type or "consumer",
            group.state,
            _CONSUMER_TYPE if group.consumer is not None else _CLASSIC_TYPE,
        )
        for group in broker.coordinator.groups.values()
    ]
    # A share member whose native member expired (it only heartbeats) still makes a share group.
    sharing = {group for group, _ in share_groups(broker).members}
    for listing in await broker.call(broker.node.groups.listing):
        if listing.group in broker.coordinator.groups:
            continue
        if listing.kind == KIND_SHARE or listing.group in sharing:
            found.append((listing.group, _SHARE_TYPE, listing.state, _SHARE_TYPE))
        else:
            found.append((listing.group, _ODRADEK_PROTOCOL_TYPE, listing.state, _CLASSIC_TYPE))
    listed = []
    for group_id, protocol_type, state, group_type in found:
        if states and state.lower() not in states:
            continue
        if types and group_type not in types:
            continue
        listed.append(
            m.ListedGroup(
                group_id=group_id, protocol_type=protocol_type, group_state=state, group_type=group_type
            )
        )
    return m.ListGroupsResponse(groups=tuple(listed))


async def delete_groups(broker: Broker, request: Request) -> m.DeleteGroupsResponse:
    body: m.DeleteGroupsRequest = request.body
    results = []
    for group_id in body.groups_names:
        try:
            if group_id in broker.coordinator.groups:
                code = await broker.coordinator.delete(group_id)
            else:
                code = await broker.call(_delete_odradek_group, broker, group_id)
        except StorageError as exc:
            log.warning("DeleteGroups of %s: %s", group_id, exc.message)
            code = ErrorCode.NOT_COORDINATOR
        results.append(m.DeletableGroupResult(group_id=group_id, error_code=code))
    return m.DeleteGroupsResponse(results=tuple(results))


# -- the consumer protocol (KIP-848) ------------------------------------------------


async def consumer_group_heartbeat(broker: Broker, request: Request) -> c.ConsumerGroupHeartbeatResponse:
    body: c.ConsumerGroupHeartbeatRequest = request.body
    owned: frozenset[TopicPartition] | None = None
    if body.topic_partitions is not None:
        found: set[TopicPartition] = set()
        for topic in body.topic_partitions:
            view = await broker.any_topic_by_id(topic.topic_id)
            if view is not None:
                found.update((view.name, partition) for partition in topic.partitions)
        owned = frozenset(found)
    heartbeat = Heartbeat(
        member_id=body.member_id,
        member_epoch=body.member_epoch,
        instance_id=body.instance_id,
        rack_id=body.rack_id,
        rebalance_timeout_ms=body.rebalance_timeout_ms,
        names=body.subscribed_topic_names,
        regex=body.subscribed_topic_regex,
        assignor=body.server_assignor,
        owned=owned,
        client_id=request.client_id or "",
        client_host=client_host.get(),
    )
    topics: dict[str, tuple[uuid.UUID, int]] = {}
    resolved: set[str] = set()
    listed = False
    # Other heartbeats may change the group while topics are looked up: ask again until
    # every name the group needs is resolved (a few rounds at most in practice).
    for _ in range(limits.kafka_consumer_topic_rounds_max):
        names, everything = broker.coordinator.consumer_interest(body.group_id, heartbeat)
        if everything and not listed:
            names |= set(await broker.all_topic_names())
            listed = True
        if names <= resolved and (listed or not everything):
            break
        for name in sorted(names - resolved):
            view = await broker.any_topic(name)
            if view is not None:
                topics[name] = (view.topic_id, view.partitions)
        resolved |= names
    answer = broker.coordinator.consumer_heartbeat(body.group_id, heartbeat, topics)
    if answer.error != ErrorCode.NONE:
        log.info(
            "ConsumerGroupHeartbeat of group %r by member %r refused with %s: %s",
            body.group_id,
            body.member_id,
            answer.error.name,
            answer.message,
        )
        return c.ConsumerGroupHeartbeatResponse(
            error_code=answer.error,
            error_message=answer.message,
            member_id=answer.member_id,
            member_epoch=answer.member_epoch,
            heartbeat_interval_ms=limits.kafka_consumer_heartbeat_interval_ms,
        )
    assignment = None
    if answer.assignment is not None:
        consumer = broker.coordinator.consumer_group(body.group_id)
        ids = {**(consumer.metadata if consumer is not None else {}), **topics}
        assignment = c.HeartbeatAssignment(
            topic_partitions=tuple(
                c.HeartbeatTopicPartitions(topic_id=ids[name][0], partitions=tuple(partitions))
                for name, partitions in _by_topic(answer.assignment).items()
                if name in ids
            )
        )
    return c.ConsumerGroupHeartbeatResponse(
        member_id=answer.member_id,
        member_epoch=answer.member_epoch,
        heartbeat_interval_ms=limits.kafka_consumer_heartbeat_interval_ms,
        assignment=assignment,
    )


async def consumer_group_describe(broker: Broker, request: Request) -> c.ConsumerGroupDescribeResponse:
    body: c.ConsumerGroupDescribeRequest = request.body
    described = []
    for group_id in body.group_ids:
        group = broker.coordinator.groups.get(group_id)
        if group is None or group.consumer is None:
            exists = group is not None or await broker.call(broker.node.groups.exists, group_id)
            message = (
                f"group {group_id!r} is not a consumer group"
                if exists
                else f"group {group_id!r} does not exist"
            )
            described.append(
                c.DescribedConsumerGroup(
                    error_code=ErrorCode.GROUP_ID_NOT_FOUND,
                    error_message=message,
                    group_id=group_id,
                    group_state=DEAD,
                )
            )
            continue
        consumer = group.consumer
        described.append(
            c.DescribedConsumerGroup(
                group_id=group_id,
                group_state=group.state,
                group_epoch=consumer.epoch,
                assignment_epoch=consumer.assignment_epoch,
                assignor_name=consumer.assignor,
                members=tuple(
                    c.DescribedConsumerMember(
                        member_id=member.member_id,
                        instance_id=member.instance_id,
                        rack_id=member.rack_id,
                        member_epoch=member.epoch,
                        client_id=member.client_id,
                        client_host=member.client_host,
                        subscribed_topic_names=member.names,
                        subscribed_topic_regex=member.regex,
                        assignment=_described_assignment(consumer, member.assigned),
                        target_assignment=_described_assignment(
                            consumer, consumer.target.get(member.member_id, frozenset())
                        ),
                        member_type=_CONSUMER_MEMBER_TYPE,
                    )
                    for member in consumer.members.values()
                ),
            )
        )
    return c.ConsumerGroupDescribeResponse(groups=tuple(described))


def _by_topic(partitions: frozenset[TopicPartition]) -> dict[str, list[int]]:
    by_topic: dict[str, list[int]] = {}
    for topic, partition in sorted(partitions):
        by_topic.setdefault(topic, []).append(partition)
    return by_topic


def _described_assignment(
    consumer: ConsumerGroup, partitions: frozenset[TopicPartition]
) -> c.DescribedAssignment:
    return c.DescribedAssignment(
        topic_partitions=tuple(
            c.DescribedTopicPartitions(
                topic_id=consumer.metadata[name][0] if name in consumer.metadata else ZERO_UUID,
                topic_name=name,
                partitions=tuple(indexes),
            )
            for name, indexes in _by_topic(partitions).items()
        )
    )


def classic_assignment(partitions: frozenset[TopicPartition]) -> bytes:
    """An assignment in the classic ``consumer`` protocol's encoding (version 0: topics
    with their partitions, no user data), as DescribeGroups gives members' assignments."""
    by_topic = _by_topic(partitions)
    parts = [struct.pack(">hi", 0, len(by_topic))]
    for name, indexes in by_topic.items():
        encoded = name.encode()
        parts.append(struct.pack(">h", len(encoded)) + encoded)
        parts.append(struct.pack(f">i{len(indexes)}i", len(indexes), *indexes))
    parts.append(struct.pack(">i", -1))
    return b"".join(parts)


def _described_consumer_group(group: Group, consumer: ConsumerGroup) -> m.DescribedGroup:
    """A consumer-protocol group through the classic DescribeGroups."""
    return m.DescribedGroup(
        group_id=group.group_id,
        group_state=group.state,
        protocol_type=CONSUMER_PROTOCOL_TYPE,
        protocol_data=consumer.assignor,
        members=tuple(
            m.DescribedGroupMember(
                member_id=member.member_id,
                group_instance_id=member.instance_id,
                client_id=member.client_id,
                client_host=member.client_host,
                member_metadata=b"",
                member_assignment=classic_assignment(member.assigned),
            )
            for member in consumer.members.values()
        ),
    )
