"""Consumer groups of the consumer protocol (KIP-848): server-side assignment, member
epochs, revocation before assignment.

Theory of operation (as Kafka's GroupCoordinator for ``group.protocol=consumer``)
---------------------------------------------------------------------------------
There are no JoinGroup/SyncGroup rounds and no rebalance barrier: each member sends
ConsumerGroupHeartbeat on its own, every ``heartbeat_interval_ms``, and every answer
says what it may own now.

* The **group epoch** moves whenever what the assignment depends on changes: a member
  joins or leaves (or expires), a member's subscription (topic names or regex) or
  assignor changes, or a subscribed topic appears, disappears or gets more
  partitions. Each move computes the **target assignment** at once (the ``uniform``
  or the ``range`` assignor below, over the topics' virtual partitions) and makes it
  the assignment epoch's.
* Each member moves toward its target on its own heartbeats (reconciliation, Kafka's
  CurrentAssignmentBuilder): partitions it owns but must give up are **revoked
  first** -- it is told the smaller set and keeps its epoch until it heartbeats back
  without them (or is removed once its rebalance timeout passes); then it gets the
  target's partitions that no other member still owns, and the assignment epoch as
  its **member epoch**. Partitions another member has yet to release come on a later
  heartbeat. A partition is therefore never owned by two members at once.
* A heartbeat carries the member's epoch. Epoch 0 joins (a known member id rejoining
  with 0 starts over, its partitions released); -1 leaves; -2 is a static member's
  leave that keeps its place and assignment for the session timeout, so that the same
  ``group.instance.id`` joining again (new member id, epoch 0) takes them over without
  a rebalance. Any other epoch must be the member's current one (or, after a lost
  answer, its previous one, if it owns nothing it should not); otherwise
  FENCED_MEMBER_EPOCH, and the client rejoins with epoch 0. A member whose
  heartbeats stop for the session timeout is removed.
* An answer carries the assignment only when the member joined, sent its full state,
  or its assignment or epoch changed since the last answer (as Kafka's).
* Offsets are the classic groups' (the coordinator's OffsetCommit/OffsetFetch path):
  a commit must carry the member's current epoch (STALE_MEMBER_EPOCH otherwise).

Everything here is synchronous and clock-driven (the caller passes ``now``); topics
come in as a mapping name -> (topic id, partition count) the caller resolved, so this
module is tested without a server or a loop.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import time
import uuid
from collections.abc import Mapping

from odradek import limits
from odradek.protocols.kafka.codec.errors import ErrorCode

log = logging.getLogger(__name__)

TopicPartition = tuple[str, int]
Topics = Mapping[str, tuple[uuid.UUID, int]]  # name -> (topic id, partition count)

JOIN_EPOCH = 0
LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2

# Kafka's ConsumerGroupState names.
EMPTY = "Empty"
RECONCILING = "Reconciling"
STABLE = "Stable"

UNIFORM = "uniform"
RANGE = "range"
ASSIGNORS = (UNIFORM, RANGE)


@dataclasses.dataclass
class ConsumerMember:
    member_id: str
    instance_id: str | None
    rack_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    names: tuple[str, ...] = ()
    regex: str | None = None
    epoch: int = 0
    previous_epoch: int = -1
    assigned: frozenset[TopicPartition] = frozenset()  # what it may own now
    revoking: frozenset[TopicPartition] = frozenset()  # what it must give up, owned until it does
    revoke_deadline: float | None = None
    sent: tuple[int, frozenset[TopicPartition]] | None = None  # epoch and assignment last answered
    departed: bool = False  # a static member that left with epoch -2, its place kept
    last_seen: float = 0.0
    joined_at: float = dataclasses.field(default_factory=time.time)  # wall clock

    def topics(self, topics: Topics) -> set[str]:
        """The existing topics this member subscribes to."""
        found = {name for name in self.names if name in topics}
        if self.regex:
            pattern = re.compile(self.regex)
            found.update(name for name in topics if pattern.fullmatch(name))
        return found

    @property
    def stable(self) -> bool:
        return not self.revoking


@dataclasses.dataclass
class ConsumerGroup:
    """The consumer-protocol state of one group (held by the coordinator's Group)."""

    epoch: int = 0
    assignment_epoch: int = 0
    assignor: str = UNIFORM
    members: dict[str, ConsumerMember] = dataclasses.field(default_factory=dict)
    static: dict[str, str] = dataclasses.field(default_factory=dict)  # instance id -> member id
    target: dict[str, frozenset[TopicPartition]] = dataclasses.field(default_factory=dict)
    metadata: dict[str, tuple[uuid.UUID, int]] = dataclasses.field(default_factory=dict)

    def state(self) -> str:
        if not self.members:
            return EMPTY
        settled = all(
            member.epoch == self.assignment_epoch
            and member.stable
            and member.assigned == self.target.get(member.member_id, frozenset())
            for member in self.members.values()
        )
        return STABLE if settled else RECONCILING

    def wanted_names(self) -> set[str]:
        names: set[str] = set()
        for member in self.members.values():
            names.update(member.names)
        return names

    def has_regex(self) -> bool:
        return any(member.regex for member in self.members.values())


@dataclasses.dataclass(frozen=True)
class Heartbeat:
    """A ConsumerGroupHeartbeat, topic ids already turned into names."""

    member_id: str
    member_epoch: int
    instance_id: str | None = None
    rack_id: str | None = None
    rebalance_timeout_ms: int = -1
    names: tuple[str, ...] | None = None
    regex: str | None = None
    assignor: str | None = None
    owned: frozenset[TopicPartition] | None = None
    client_id: str = ""
    client_host: str = ""


@dataclasses.dataclass(frozen=True)
class HeartbeatAnswer:
    error: ErrorCode
    message: str | None = None
    member_id: str | None = None
    member_epoch: int = -1
    assignment: frozenset[TopicPartition] | None = None


def _refuse(error: ErrorCode, message: str, member_id: str | None = None) -> HeartbeatAnswer:
    return HeartbeatAnswer(error, message, member_id)


def heartbeat(
    group_id: str, group: ConsumerGroup, request: Heartbeat, topics: Topics, now: float
) -> HeartbeatAnswer:
    """Apply one heartbeat to ``group`` and answer it (``topics`` holds at least every
    topic a member subscribes to by name, and every topic when a member has a regex)."""
    if request.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
        return _leave(group_id, group, request, topics)
    if request.regex:
        try:
            re.compile(request.regex)
        except re.error as exc:
            return _refuse(ErrorCode.INVALID_REGULAR_EXPRESSION, f"invalid subscription regex: {exc}")
    if request.assignor is not None and request.assignor not in ASSIGNORS:
        return _refuse(
            ErrorCode.UNSUPPORTED_ASSIGNOR,
            f"server assignor {request.assignor!r} is not supported; use one of {', '.join(ASSIGNORS)}",
        )
    if request.member_epoch == JOIN_EPOCH:
        found = _join(group_id, group, request, now)
        if isinstance(found, HeartbeatAnswer):
            return found
        member, changed = found
    else:
        member_or_refusal = _known(group, request)
        if isinstance(member_or_refusal, HeartbeatAnswer):
            return member_or_refusal
        member, changed = member_or_refusal, False
    member.last_seen = now
    changed |= _update_subscription(group, member, request)
    _maybe_new_target(group_id, group, topics, changed)
    if request.owned is not None and member.revoking and not member.revoking & request.owned:
        member.revoking = frozenset()  # the member let go of what it had to give up
        member.revoke_deadline = None
    _reconcile(group, member, now)
    full = request.member_epoch == JOIN_EPOCH or (request.names is not None and request.owned is not None)
    current = (member.epoch, member.assigned)
    assignment = member.assigned if full or member.sent != current else None
    member.sent = current
    return HeartbeatAnswer(ErrorCode.NONE, None, member.member_id, member.epoch, assignment)


def _join(
    group_id: str, group: ConsumerGroup, request: Heartbeat, now: float
) -> tuple[ConsumerMember, bool] | HeartbeatAnswer:
    """The member joining (epoch 0) and whether the group's epoch must move."""
    if request.names is None and request.regex is None:
        return _refuse(ErrorCode.INVALID_REQUEST, "a joining member must send its subscription")
    member_id = request.member_id or uuid.uuid4().hex
    if request.instance_id:
        holder = group.static.get(request.instance_id)
        if holder is not None and holder != member_id:
            previous = group.members[holder]
            if not previous.departed:
                return _refuse(
                    ErrorCode.UNRELEASED_INSTANCE_ID,
                    f"group.instance.id {request.instance_id!r} is used by member {holder}",
                    member_id,
                )
            # The static member came back: it takes the old place, epoch and partitions.
            del group.members[holder]
            member = dataclasses.replace(
                previous,
                member_id=member_id,
                client_id=request.client_id,
                client_host=request.client_host,
                departed=False,
                sent=None,
            )
            group.members[member_id] = member
            group.static[request.instance_id] = member_id
            group.target[member_id] = group.target.pop(holder, frozenset())
            log.info("group %s: static member %s came back as %s", group_id, request.instance_id, member_id)
            return member, False
    rejoining = group.members.get(member_id)
    if rejoining is not None:  # rejoining after being fenced: it starts over
        rejoining.assigned = rejoining.revoking = frozenset()
        rejoining.revoke_deadline = None
        rejoining.epoch, rejoining.previous_epoch, rejoining.sent = 0, -1, None
        return rejoining, True
    if len(group.members) >= limits.kafka_group_members_max:
        return _refuse(
            ErrorCode.GROUP_MAX_SIZE_REACHED,
            f"the group has {limits.kafka_group_members_max} members already",
            member_id,
        )
    member = ConsumerMember(
        member_id,
        request.instance_id,
        request.rack_id,
        request.client_id,
        request.client_host,
        request.rebalance_timeout_ms
        if request.rebalance_timeout_ms > 0
        else limits.kafka_consumer_session_timeout_ms,
        last_seen=now,
    )
    group.members[member_id] = member
    if request.instance_id:
        group.static[request.instance_id] = member_id
    log.info("group %s: member %s joined (consumer protocol)", group_id, member_id)
    return member, True


def _known(group: ConsumerGroup, request: Heartbeat) -> ConsumerMember | HeartbeatAnswer:
    member = group.members.get(request.member_id)
    if member is None or member.departed:
        return _refuse(
            ErrorCode.UNKNOWN_MEMBER_ID,
            f"member {request.member_id} is not in the group; rejoin with epoch 0",
        )
    if request.member_epoch == member.epoch:
        return member
    lost_answer = request.member_epoch == member.previous_epoch and (
        request.owned is None or request.owned <= member.assigned | member.revoking
    )
    if lost_answer:
        return member
    return _refuse(
        ErrorCode.FENCED_MEMBER_EPOCH,
        f"member epoch {request.member_epoch} is not the member's current epoch {member.epoch}; "
        "rejoin with epoch 0",
        member.member_id,
    )


def _update_subscription(group: ConsumerGroup, member: ConsumerMember, request: Heartbeat) -> bool:
    changed = False
    if request.names is not None and tuple(sorted(set(request.names))) != member.names:
        member.names = tuple(sorted(set(request.names)))
        changed = True
    if request.regex is not None and (request.regex or None) != member.regex:
        member.regex = request.regex or None
        changed = True
    if request.assignor is not None and request.assignor != group.assignor:
        group.assignor = request.assignor
        changed = True
    if request.rebalance_timeout_ms > 0:
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
    if request.rack_id is not None:
        member.rack_id = request.rack_id
    return changed


def _leave(group_id: str, group: ConsumerGroup, request: Heartbeat, topics: Topics) -> HeartbeatAnswer:
    member = group.members.get(request.member_id)
    if member is None:
        return _refuse(ErrorCode.UNKNOWN_MEMBER_ID, f"member {request.member_id} is not in the group")
    if request.member_epoch == STATIC_LEAVE_EPOCH and member.instance_id:
        member.departed = True  # its place and partitions wait for the same instance id
        log.info("group %s: static member %s left for now", group_id, member.instance_id)
        return HeartbeatAnswer(ErrorCode.NONE, None, member.member_id, STATIC_LEAVE_EPOCH)
    remove(group_id, group, member.member_id, "left", topics)
    return HeartbeatAnswer(ErrorCode.NONE, None, member.member_id, LEAVE_EPOCH)


def remove(
    group_id: str, group: ConsumerGroup, member_id: str, why: str, topics: Topics | None = None
) -> None:
    """Remove a member (left, expired, fenced): its partitions are free at once and the
    group's epoch moves (with the topics known at the last target if none are given)."""
    member = group.members.pop(member_id)
    group.target.pop(member_id, None)
    if member.instance_id and group.static.get(member.instance_id) == member_id:
        del group.static[member.instance_id]
    log.info("group %s: member %s %s", group_id, member_id, why)
    known = topics if topics is not None else group.metadata
    _maybe_new_target(group_id, group, known, changed=True)


def expire(group_id: str, group: ConsumerGroup, now: float) -> None:
    """Remove members silent for the session timeout, and members that did not give up
    revoked partitions within their rebalance timeout."""
    session = limits.kafka_consumer_session_timeout_ms / 1000
    for member in list(group.members.values()):
        if now - member.last_seen > session:
            remove(group_id, group, member.member_id, "expired (session timeout)")
        elif member.revoke_deadline is not None and now > member.revoke_deadline:
            remove(group_id, group, member.member_id, "did not revoke its partitions in time; removed")


def _maybe_new_target(group_id: str, group: ConsumerGroup, topics: Topics, changed: bool) -> None:
    subscribed: dict[str, set[str]] = {
        member.member_id: member.topics(topics) for member in group.members.values()
    }
    metadata = {name: topics[name] for names in subscribed.values() for name in names}
    if not changed and metadata == group.metadata:
        return
    group.epoch += 1
    group.metadata = metadata
    partitions = {name: count for name, (_, count) in metadata.items()}
    assign = assign_range if group.assignor == RANGE else assign_uniform
    current = {member.member_id: member.assigned | member.revoking for member in group.members.values()}
    group.target = assign(subscribed, partitions, current)
    group.assignment_epoch = group.epoch
    log.info(
        "group %s: epoch %d, %d member(s), %d partition(s) assigned (%s)",
        group_id,
        group.epoch,
        len(group.members),
        sum(len(parts) for parts in group.target.values()),
        group.assignor,
    )


def _reconcile(group: ConsumerGroup, member: ConsumerMember, now: float) -> None:
    """Move ``member`` toward its target: revoke first, then take what is free."""
    if member.revoking:
        return  # still waiting for the member to give them up
    target = group.target.get(member.member_id, frozenset())
    to_revoke = member.assigned - target
    if to_revoke:
        member.assigned -= to_revoke
        member.revoking = to_revoke
        member.revoke_deadline = now + member.rebalance_timeout_ms / 1000
        return
    others: set[TopicPartition] = set()
    for other in group.members.values():
        if other is not member:
            others.update(other.assigned)
            others.update(other.revoking)
    member.assigned |= frozenset(target - member.assigned - others)
    if member.epoch != group.assignment_epoch:
        member.previous_epoch, member.epoch = member.epoch, group.assignment_epoch


# -- assignors ------------------------------------------------------------------------


def assign_range(
    subscribed: Mapping[str, set[str]],
    partitions: Mapping[str, int],
    current: Mapping[str, frozenset[TopicPartition]],
) -> dict[str, frozenset[TopicPartition]]:
    """Kafka's range assignor: each topic's partitions split into contiguous ranges
    over its subscribers in member id order (the first ones get one more)."""
    result: dict[str, set[TopicPartition]] = {member: set() for member in subscribed}
    for topic, count in sorted(partitions.items()):
        members = sorted(member for member, topics in subscribed.items() if topic in topics)
        if not members:
            continue
        share, extra = divmod(count, len(members))
        start = 0
        for index, member in enumerate(members):
            size = share + (1 if index < extra else 0)
            result[member].update((topic, partition) for partition in range(start, start + size))
            start += size
    return {member: frozenset(parts) for member, parts in result.items()}


def assign_uniform(
    subscribed: Mapping[str, set[str]],
    partitions: Mapping[str, int],
    current: Mapping[str, frozenset[TopicPartition]],
) -> dict[str, frozenset[TopicPartition]]:
    """Kafka's uniform assignor, simply: every partition goes to one subscriber, loads
    differ by at most one among members of the same subscription, and a partition stays
    with its current owner whenever that keeps the balance (sticky)."""
    result: dict[str, set[TopicPartition]] = {member: set() for member in subscribed}
    eligible: dict[TopicPartition, list[str]] = {}
    for topic, count in sorted(partitions.items()):
        members = sorted(member for member, topics in subscribed.items() if topic in topics)
        if members:
            for partition in range(count):
                eligible[(topic, partition)] = members
    # Each member's fair share: its topics' partitions divided among their subscribers.
    fair: dict[str, float] = {member: 0.0 for member in subscribed}
    for members in eligible.values():
        for member in members:
            fair[member] += 1 / len(members)
    floor = {member: int(share + 1e-9) for member, share in fair.items()}
    extra_slots = round(sum(fair.values())) - sum(floor.values())
    # Sticky pass: owners keep up to their floor, and a few up to floor + 1.
    kept_extra = 0
    for member in sorted(current):
        if member not in result:
            continue
        for part in sorted(current[member]):
            if member not in eligible.get(part, ()):
                continue
            if len(result[member]) < floor[member]:
                result[member].add(part)
            elif len(result[member]) == floor[member] and kept_extra < extra_slots:
                result[member].add(part)
                kept_extra += 1
    taken = {part for parts in result.values() for part in parts}
    # Balance pass: the rest go to the least loaded subscriber, the partitions with the
    # fewest subscribers first (they have the least choice).
    for part, members in sorted(eligible.items(), key=lambda item: (len(item[1]), item[0])):
        if part in taken:
            continue
        chosen = min(members, key=lambda member: (len(result[member]) - fair[member], member))
        result[chosen].add(part)
    return {member: frozenset(parts) for member, parts in result.items()}
