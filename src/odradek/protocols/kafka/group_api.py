"""Handlers of consumer groups: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups.

They translate between the wire messages and :class:`~.groups.Coordinator`, which
holds the group state machine.

A commit or a group deletion whose file write fails (a full disk) is answered with
NOT_COORDINATOR, as Kafka answers a failed write to its offsets topic: clients look
the coordinator up again and retry. Nothing of it took effect.

Odradek's own consumer groups (the ``odradek`` kind, decision 0008) share the names:
ListGroups lists them (protocol type "", which Kafka's tools show as a group whose
members Kafka does not coordinate, and state Stable or Empty), DescribeGroups
describes them (protocol "odradek", their members without metadata or assignment),
OffsetFetch gives each virtual partition of their topics the group's committed offset
(every record below it is settled), and DeleteGroups deletes them (NON_EMPTY_GROUP
while they have members). A JoinGroup or OffsetCommit under such a name gets
INCONSISTENT_GROUP_PROTOCOL. A name held by both kinds (from data older than that
rule) is this door's Kafka group here."""

from __future__ import annotations

import dataclasses
import logging
import uuid

from odradek import limits
from odradek.errors import InvalidRequest, StorageError
from odradek.groups.info import GroupInfo
from odradek.protocols.kafka.broker import NODE_ID, Broker, client_host
from odradek.protocols.kafka.codec import messages_groups as m
from odradek.protocols.kafka.codec.api import Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import ZERO_UUID
from odradek.protocols.kafka.groups import DEAD
from odradek.protocols.kafka.store import OffsetEntry

log = logging.getLogger(__name__)

_KEY_TYPE_GROUP = 0
_TRANSACTIONS_REFUSED = "transactions are not supported by Odradek"
# How an odradek group shows in Kafka's group APIs: no protocol type (its members are
# not coordinated by Kafka's group protocol), and "odradek" as its protocol.
_ODRADEK_PROTOCOL_TYPE = ""
_ODRADEK_PROTOCOL = "odradek"


async def find_coordinator(broker: Broker, request: Request) -> m.FindCoordinatorResponse:
    body: m.FindCoordinatorRequest = request.body
    if body.key_type != _KEY_TYPE_GROUP:
        code, message = ErrorCode.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, _TRANSACTIONS_REFUSED
    else:
        code, message = ErrorCode.NONE, None
    if request.api_version >= 4:
        return m.FindCoordinatorResponse(
            coordinators=tuple(
                m.Coordinator(
                    key=key,
                    node_id=NODE_ID if code == 0 else -1,
                    host=broker.host if code == 0 else "",
                    port=broker.port if code == 0 else -1,
                    error_code=code,
                    error_message=message,
                )
                for key in body.coordinator_keys
            )
        )
    if code != ErrorCode.NONE:
        return m.FindCoordinatorResponse(error_code=code, error_message=message, node_id=-1, host="", port=-1)
    return m.FindCoordinatorResponse(node_id=NODE_ID, host=broker.host, port=broker.port)


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
    return m.JoinGroupResponse(
        error_code=result.error,
        generation_id=result.generation,
        protocol_type=result.protocol_type,
        protocol_name=result.protocol,
        leader=result.leader,
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
    )
    return m.SyncGroupResponse(
        error_code=error,
        assignment=assignment,
        protocol_type=group.protocol_type if group is not None else None,
        protocol_name=group.protocol if group is not None else None,
    )


async def heartbeat(broker: Broker, request: Request) -> m.HeartbeatResponse:
    body: m.HeartbeatRequest = request.body
    return m.HeartbeatResponse(
        error_code=broker.coordinator.heartbeat(body.group_id, body.member_id, body.generation_id)
    )


async def leave_group(broker: Broker, request: Request) -> m.LeaveGroupResponse:
    body: m.LeaveGroupRequest = request.body
    if request.api_version < 3:
        (code,) = broker.coordinator.leave(body.group_id, [body.member_id])
        return m.LeaveGroupResponse(error_code=code)
    codes = broker.coordinator.leave(body.group_id, [member.member_id for member in body.members])
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
    check = broker.coordinator.check_commit(body.group_id, body.member_id, body.generation_id_or_member_epoch)
    accepted: dict[tuple[str, int], OffsetEntry] = {}
    topics = []
    for topic in body.topics:
        view = await (
            broker.topic_by_id(topic.topic_id) if request.api_version >= 10 else broker.topic(topic.name)
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
            topics = await _fetch_group(broker, group.group_id, group.topics, request.api_version)
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
    found = await _fetch_group(broker, body.group_id, wanted, request.api_version)
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
    broker: Broker, group_id: str, wanted: tuple[m.OffsetFetchRequestTopics, ...] | None, version: int
) -> list[m.OffsetFetchResponseTopics]:
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
            view = await broker.topic(name)
            requests.append((name, view.topic_id if view else None, indexes))
    else:
        for topic in wanted:
            view = await (broker.topic_by_id(topic.topic_id) if version >= 10 else broker.topic(topic.name))
            name = view.name if view is not None else topic.name
            requests.append((name, topic.topic_id if version >= 10 else None, list(topic.partition_indexes)))
    results = []
    for name, topic_id, indexes in requests:
        partitions = []
        for index in indexes:
            offset, epoch, metadata = committed.get((name, index), (-1, -1, ""))
            partitions.append(
                m.OffsetFetchResponsePartitions(
                    partition_index=index,
                    committed_offset=offset,
                    committed_leader_epoch=epoch,
                    metadata=metadata,
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


async def describe_groups(broker: Broker, request: Request) -> m.DescribeGroupsResponse:
    body: m.DescribeGroupsRequest = request.body
    described = []
    for group_id in body.groups:
        group = broker.coordinator.groups.get(group_id)
        if group is None:
            info = await broker.call(_odradek_group, broker, group_id)
            if info is not None:
                described.append(_described_odradek_group(info))
                continue
            code = ErrorCode.GROUP_ID_NOT_FOUND if request.api_version >= 6 else ErrorCode.NONE
            described.append(m.DescribedGroup(error_code=code, group_id=group_id, group_state=DEAD))
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
        (group.group_id, group.protocol_type or "consumer", group.state)
        for group in broker.coordinator.groups.values()
    ]
    for listing in await broker.call(broker.node.groups.listing):
        if listing.group not in broker.coordinator.groups:
            found.append((listing.group, _ODRADEK_PROTOCOL_TYPE, listing.state))
    listed = []
    for group_id, protocol_type, state in found:
        if states and state.lower() not in states:
            continue
        if types and "classic" not in types:
            continue
        listed.append(
            m.ListedGroup(
                group_id=group_id, protocol_type=protocol_type, group_state=state, group_type="classic"
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
