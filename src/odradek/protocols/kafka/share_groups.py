"""Share groups (KIP-932) served over Odradek's own consumer groups.

Theory of operation
-------------------
A Kafka share group *is* an ``odradek`` group (decision 0026): the records a share
consumer acquires are a native poll's deliveries, its acquisition lock is the delivery's
lease (the group's ``ack_timeout``), its delivery count the delivery's ``attempt``, and
archiving after ``share.delivery.count.limit`` is the group's ``max_deliveries`` (the
record then goes to the group's dead-letter topic too). So ``odradek group list`` and
``describe``, the metrics and the console see share groups, and native consumers and
share consumers of one group share its records.

Rules:

* **Members.** ShareGroupHeartbeat with epoch 0 joins: the door keeps a share member
  (its id, epoch, subscription) and joins one native member for it, marked as a share
  member (the group's kind is ``share`` while one is in it). A share member subscribes
  to one topic or several: the native group's subscription is that topic, or the list
  of them (groups/subscription.py), so the share members of one group subscribe to the
  same topics, as the native members of a group do. The assignment is every partition
  of every subscribed topic that exists (KIP-932's simple assignor allows it: records,
  not partitions, are shared); the member's epoch goes up by one when it changes (a
  topic appears, gains partitions). Epoch -1 leaves; an unknown member gets
  UNKNOWN_MEMBER_ID, a wrong epoch FENCED_MEMBER_EPOCH; a member silent for
  ``kafka_share_session_timeout_ms`` is removed.
* **Group options.** A group new to the node is created with ordering ``none`` (records
  are independent, as in Kafka's share groups), the lock duration
  ``kafka_share_record_lock_ms`` as ack timeout, ``kafka_share_delivery_count_limit``
  as max deliveries and start ``latest`` (``share.auto.offset.reset``). A group that
  exists keeps its own options: setting them on the native group (``odradek group``,
  or a native member's join) is how the lock duration and the delivery limit are set.
* **Share sessions.** ShareFetch and ShareAcknowledge carry a session epoch: 0 opens a
  session (a new one replaces the member's old one), -1 closes it, any other must be the
  session's next epoch (INVALID_SHARE_SESSION_EPOCH) of a session the door holds
  (SHARE_SESSION_NOT_FOUND). At most ``kafka_share_sessions_max`` are kept, the least
  recently used evicted first.
* **Acknowledgements.** ACCEPT settles a record (an ack), RELEASE gives it back for
  redelivery at once (a nack without delay: the next delivery counts one more), REJECT
  archives it (settled, never delivered again), GAP names an offset without a record.
  An offset the member does not hold (never acquired, already acknowledged, or its lock
  expired and the record went to someone else) makes its partition's acknowledgement
  INVALID_RECORD_STATE; the other offsets of the request are settled all the same.

This module holds the members (ShareGroupHeartbeat, ShareGroupDescribe) and the state
the door keeps; share_fetch.py serves ShareFetch and ShareAcknowledge over it. State
lives on the door's event loop; native calls run on the broker's executor.
"""

from __future__ import annotations

import collections
import dataclasses
import time
import uuid
import weakref

import numpy as np
import numpy.typing as npt

from odradek import limits
from odradek.errors import InvalidRequest, OdradekError
from odradek.groups.options import GroupOptions
from odradek.protocols.kafka.broker import Broker, client_host
from odradek.protocols.kafka.codec import messages_share as s
from odradek.protocols.kafka.codec.api import Request
from odradek.protocols.kafka.codec.errors import ErrorCode

# Error codes of KIP-932 (Kafka's Errors.java).
INVALID_RECORD_STATE = 121
SHARE_SESSION_NOT_FOUND = 122
INVALID_SHARE_SESSION_EPOCH = 123

_LEAVE_EPOCH = -1
_EPOCH_MAX = 2**31 - 1
SHARE_ASSIGNOR = "simple"

I64 = npt.NDArray[np.int64]


@dataclasses.dataclass
class ShareMember:
    group_id: str
    member_id: str
    topics: tuple[str, ...]  # sorted, distinct
    epoch: int
    native_id: str
    client_id: str
    client_host: str
    last_seen: float
    assignment: tuple[tuple[uuid.UUID, str, int], ...] = ()  # (topic id, name, partition count)


@dataclasses.dataclass
class Acquired:
    """One poll's records of a topic that a member holds (their lease not settled by it)."""

    topic: str
    lease: int
    offsets: I64
    partitions: I64
    since: float


@dataclasses.dataclass
class ShareSession:
    epoch: int  # the epoch the next request must carry
    partitions: set[tuple[uuid.UUID, int]]


@dataclasses.dataclass
class ShareGroups:
    """The share members, sessions and held records of one door."""

    members: dict[tuple[str, str], ShareMember] = dataclasses.field(default_factory=dict)
    sessions: collections.OrderedDict[tuple[str, str], ShareSession] = dataclasses.field(
        default_factory=collections.OrderedDict
    )
    held: dict[tuple[str, str], list[Acquired]] = dataclasses.field(default_factory=dict)
    # Members that left the group while holding a share session, by when they left:
    # their session's closing request (ShareAcknowledge or ShareFetch with epoch -1,
    # which clients send beside the leave heartbeat) still settles what they hold.
    leaving: dict[tuple[str, str], tuple[ShareMember, float]] = dataclasses.field(default_factory=dict)

    def of_group(self, group_id: str) -> list[ShareMember]:
        return [member for (group, _), member in self.members.items() if group == group_id]

    def native_ids(self, group_id: str) -> set[str]:
        """The native members that serve the share members of ``group_id``."""
        return {member.native_id for member in self.of_group(group_id)}


_DOORS: weakref.WeakKeyDictionary[Broker, ShareGroups] = weakref.WeakKeyDictionary()


def share_groups(broker: Broker) -> ShareGroups:
    found = _DOORS.get(broker)
    if found is None:
        found = _DOORS[broker] = ShareGroups()
    return found


# -- native groups --------------------------------------------------------------------


def _native_options(broker: Broker, group_id: str) -> GroupOptions:
    """The options of the native group a share member joins: the group's own if it has
    any, else those of a share group (module docstring)."""
    groups = broker.node.groups
    if groups.exists(group_id):
        info = groups.describe_group(group_id)
        if info.options and info.pattern is not None:
            return GroupOptions.from_json(dict(info.options))
    return GroupOptions(
        ordering="none",
        ack_timeout=limits.kafka_share_record_lock_ms / 1000,
        max_deliveries=limits.kafka_share_delivery_count_limit,
        start="latest",
    )


def join_native(broker: Broker, group_id: str, topics: tuple[str, ...]) -> str:
    """Join a native member for a share member subscribed to ``topics``: the group's
    subscription is the topic, or the list of them."""
    pattern: str | tuple[str, ...] = topics[0] if len(topics) == 1 else topics
    return broker.node.groups.join(group_id, pattern, _native_options(broker, group_id), share=True)


def _leave_native(broker: Broker, member: ShareMember, failed: bool = False) -> None:
    """Its native member leaves: what it holds goes back, each record's next delivery
    counting one more if the member ``failed`` (went silent), as for native members."""
    try:
        broker.node.groups.leave(member.group_id, member.native_id, failed=failed)
    except OdradekError:
        pass  # the group is gone or the member expired: nothing is held


def lock_ms(broker: Broker, group_id: str) -> int:
    groups = broker.node.groups
    if groups.exists(group_id):
        info = groups.describe_group(group_id)
        timeout = info.options.get("ack_timeout") if info.options else None
        if isinstance(timeout, int | float):
            return int(timeout * 1000)
    return limits.kafka_share_record_lock_ms


# -- ShareGroupHeartbeat --------------------------------------------------------------


def _heartbeat_refused(
    code: int, message: str, member_id: str | None = None
) -> s.ShareGroupHeartbeatResponse:
    return s.ShareGroupHeartbeatResponse(
        error_code=code,
        error_message=message,
        member_id=member_id,
        member_epoch=-1,
        heartbeat_interval_ms=limits.kafka_share_heartbeat_interval_ms,
    )


async def _assignment(broker: Broker, topics: tuple[str, ...]) -> tuple[tuple[uuid.UUID, str, int], ...]:
    """Every partition of each of ``topics`` that exists."""
    found = []
    for topic in topics:
        view = await broker.topic(topic, refresh=True)
        if view is not None:
            found.append((view.topic_id, view.name, view.partitions))
    return tuple(found)


def _assignment_message(assignment: tuple[tuple[uuid.UUID, str, int], ...]) -> s.ShareAssignment:
    return s.ShareAssignment(
        topic_partitions=tuple(
            s.ShareTopicPartitions(topic_id=topic_id, partitions=tuple(range(count)))
            for topic_id, _name, count in assignment
        )
    )


async def _expire(broker: Broker, state: ShareGroups, now: float) -> None:
    deadline = now - limits.kafka_share_session_timeout_ms / 1000
    for key, member in list(state.members.items()):
        if member.last_seen < deadline:
            _forget(state, key)
            await broker.call(_leave_native, broker, member, True)
    grace = now - limits.kafka_share_leave_grace_ms / 1000
    for key, (member, since) in list(state.leaving.items()):
        if since < grace:
            await depart(broker, state, key, member)


async def depart(broker: Broker, state: ShareGroups, key: tuple[str, str], member: ShareMember) -> None:
    """A leaving member's last request came (or never will): what it still holds goes
    back to the group."""
    state.leaving.pop(key, None)
    _forget(state, key)
    await broker.call(_leave_native, broker, member)


def _forget(state: ShareGroups, key: tuple[str, str]) -> None:
    state.members.pop(key, None)
    state.sessions.pop(key, None)
    state.held.pop(key, None)


async def share_group_heartbeat(broker: Broker, request: Request) -> s.ShareGroupHeartbeatResponse:
    body: s.ShareGroupHeartbeatRequest = request.body
    state = share_groups(broker)
    now = time.monotonic()
    await _expire(broker, state, now)
    if not body.group_id:
        return _heartbeat_refused(ErrorCode.INVALID_GROUP_ID, "a share group needs a non-empty group id")
    key = (body.group_id, body.member_id)
    member = state.members.get(key)
    if body.member_epoch == _LEAVE_EPOCH:
        if member is not None and key in state.sessions:
            del state.members[key]
            state.leaving[key] = (member, now)
        elif member is not None:
            _forget(state, key)
            await broker.call(_leave_native, broker, member)
        return s.ShareGroupHeartbeatResponse(
            member_id=body.member_id,
            member_epoch=_LEAVE_EPOCH,
            heartbeat_interval_ms=limits.kafka_share_heartbeat_interval_ms,
        )
    if body.member_epoch == 0:
        return await _join(broker, state, body, request.client_id or "", now)
    if member is None:
        return _heartbeat_refused(
            ErrorCode.UNKNOWN_MEMBER_ID,
            f"{body.member_id!r} is not a member of share group {body.group_id!r} (it left or was "
            "silent too long): join again with epoch 0",
            body.member_id,
        )
    if body.member_epoch != member.epoch:
        return _heartbeat_refused(
            ErrorCode.FENCED_MEMBER_EPOCH,
            f"member epoch {body.member_epoch} is not the member's epoch {member.epoch}: join again",
            body.member_id,
        )
    if body.subscribed_topic_names is not None and _topics(body.subscribed_topic_names) != member.topics:
        return _heartbeat_refused(
            ErrorCode.INVALID_REQUEST,
            f"a share member's subscription cannot change (it is {list(member.topics)}): leave and "
            "join again",
            body.member_id,
        )
    member.last_seen = now
    assignment = await _assignment(broker, member.topics)
    if assignment == member.assignment:
        return s.ShareGroupHeartbeatResponse(
            member_id=member.member_id,
            member_epoch=member.epoch,
            heartbeat_interval_ms=limits.kafka_share_heartbeat_interval_ms,
        )
    member.assignment = assignment
    member.epoch = member.epoch % _EPOCH_MAX + 1
    return s.ShareGroupHeartbeatResponse(
        member_id=member.member_id,
        member_epoch=member.epoch,
        heartbeat_interval_ms=limits.kafka_share_heartbeat_interval_ms,
        assignment=_assignment_message(assignment),
    )


def _topics(names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(sorted(set(names)))


async def _join(
    broker: Broker, state: ShareGroups, body: s.ShareGroupHeartbeatRequest, client_id: str, now: float
) -> s.ShareGroupHeartbeatResponse:
    member_id = body.member_id or uuid.uuid4().hex
    if not body.subscribed_topic_names:
        return _heartbeat_refused(
            ErrorCode.INVALID_REQUEST,
            "a share member joins subscribed to one topic or more (SubscribedTopicNames), got "
            f"{body.subscribed_topic_names!r}",
            member_id,
        )
    topics = _topics(body.subscribed_topic_names)
    elsewhere = [topic for topic in topics if await broker.elsewhere(topic)]
    if elsewhere:  # topics spread over cells (cells.py): share groups are the home cell's
        return _heartbeat_refused(
            ErrorCode.INVALID_REQUEST,
            f"{', '.join(elsewhere)} {'is' if len(elsewhere) == 1 else 'are'} in another cell of the "
            "cluster: a share group reads the topics of the home cell only (decision 0033)",
            member_id,
        )
    key = (body.group_id, member_id)
    old = state.members.get(key)
    if old is None and len(state.of_group(body.group_id)) >= limits.kafka_share_group_members_max:
        return _heartbeat_refused(
            ErrorCode.GROUP_MAX_SIZE_REACHED,
            f"share group {body.group_id!r} has {limits.kafka_share_group_members_max} members, the most "
            "allowed",
            member_id,
        )
    if old is not None:  # a rejoin: the old incarnation's records go back to the group
        _forget(state, key)
        await broker.call(_leave_native, broker, old)
    try:
        native_id = await broker.call(join_native, broker, body.group_id, topics)
    except InvalidRequest as exc:
        return _heartbeat_refused(ErrorCode.INVALID_REQUEST, exc.message, member_id)
    member = ShareMember(
        group_id=body.group_id,
        member_id=member_id,
        topics=topics,
        epoch=1,
        native_id=native_id,
        client_id=client_id,
        client_host=client_host.get(),
        last_seen=now,
        assignment=await _assignment(broker, topics),
    )
    state.members[key] = member
    return s.ShareGroupHeartbeatResponse(
        member_id=member_id,
        member_epoch=member.epoch,
        heartbeat_interval_ms=limits.kafka_share_heartbeat_interval_ms,
        assignment=_assignment_message(member.assignment),
    )


# -- ShareGroupDescribe ---------------------------------------------------------------


async def share_group_describe(broker: Broker, request: Request) -> s.ShareGroupDescribeResponse:
    """The share members of each group, their epochs and assignments; a name without
    share members gets GROUP_ID_NOT_FOUND (native groups are described by
    ``odradek group describe`` and DescribeGroups)."""
    body: s.ShareGroupDescribeRequest = request.body
    state = share_groups(broker)
    await _expire(broker, state, time.monotonic())
    groups: list[s.DescribedShareGroup] = []
    for group_id in body.group_ids:
        members = state.of_group(group_id)
        if not members:
            groups.append(
                s.DescribedShareGroup(
                    error_code=ErrorCode.GROUP_ID_NOT_FOUND,
                    error_message=f"no share group {group_id!r} (no share member is in it)",
                    group_id=group_id,
                    group_state="Dead",
                    assignor_name=SHARE_ASSIGNOR,
                )
            )
            continue
        described = []
        for member in members:
            assigned = []
            for topic_id, name, count in member.assignment:
                view = await broker.topic(name)
                if view is not None and view.topic_id == topic_id:
                    assigned.append(
                        s.DescribedShareTopicPartitions(
                            topic_id=topic_id, topic_name=name, partitions=tuple(range(count))
                        )
                    )
            described.append(
                s.DescribedShareMember(
                    member_id=member.member_id,
                    member_epoch=member.epoch,
                    client_id=member.client_id,
                    client_host=member.client_host,
                    subscribed_topic_names=member.topics,
                    assignment=s.DescribedShareAssignment(topic_partitions=tuple(assigned)),
                )
            )
        epoch = max(member.epoch for member in members)
        groups.append(
            s.DescribedShareGroup(
                group_id=group_id,
                group_state="Stable",
                group_epoch=epoch,
                assignment_epoch=epoch,
                assignor_name=SHARE_ASSIGNOR,
                members=tuple(described),
            )
        )
    return s.ShareGroupDescribeResponse(groups=tuple(groups))


__all__ = [
    "INVALID_RECORD_STATE",
    "INVALID_SHARE_SESSION_EPOCH",
    "SHARE_SESSION_NOT_FOUND",
    "share_group_describe",
    "share_group_heartbeat",
    "share_groups",
]
