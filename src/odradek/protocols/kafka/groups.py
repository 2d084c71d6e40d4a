"""Classic Kafka consumer groups: membership, generations, rebalances, offsets.

Theory of operation (as Kafka's GroupCoordinator, one node, one event loop)
----------------------------------------------------------------------------
A group moves through the states::

    Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance
      ^                   ^    ^                                       |
      |                   |    +----- join, leave, expiry -------------+
      |                   +---------- join, leave, expiry ----- Stable <-- leader's SyncGroup
      +-- last member leaves or expires

* JoinGroup parks the member until the rebalance completes: when every known member
  has rejoined, or when the longest rebalance timeout passes (members that did not
  rejoin are dropped). A new group waits ``kafka_initial_rebalance_delay_ms`` first so
  that members starting together land in one generation. Completing bumps the
  generation, picks the protocol every member supports that most members prefer, and
  answers every member; only the leader gets the members' metadata.
* Assignment is the clients' business (range, roundrobin, cooperative-sticky all run
  in the leader): the leader's SyncGroup carries every member's assignment, which the
  coordinator relays to each member's SyncGroup. Followers wait for the leader.
* Static members (KIP-345) join with a ``group.instance.id``. One that comes back
  under the same instance id with no member id (a restart) takes its old member's
  place, new member id, same assignment: in a Stable group whose subscribed topics
  and selected protocol still fit, it is answered at once with the current generation
  and no rebalance happens; otherwise the group rebalances as for any join. The old
  member id is fenced from then on: a request naming the instance id with another
  member id gets FENCED_INSTANCE_ID. A static member that closes sends no LeaveGroup;
  if it does not come back within its session timeout it is removed as any silent
  member is.
* Heartbeats keep a member alive and tell it to rejoin (REBALANCE_IN_PROGRESS) while
  a rebalance is being prepared. A member silent for its session timeout is removed,
  which starts a rebalance; members parked in a join or sync are not expired.
* Groups of the consumer protocol (KIP-848, ConsumerGroupHeartbeat) share the names,
  the offsets and the node's view with classic ones; their state machine is
  consumer_groups.py, held in :attr:`Group.consumer`. A group with members of one
  protocol refuses members of the other (JoinGroup gets INCONSISTENT_GROUP_PROTOCOL,
  a heartbeat GROUP_ID_NOT_FOUND, as Kafka answers without online migration); an
  empty group takes whichever protocol comes next.
* Committed offsets are kept per (topic, partition) with their leader epoch and
  metadata and written to the door's store after every commit, so they survive a
  restart. A commit with generation -1 and no member id is a standalone commit.
* Group names are shared with Odradek's own groups (decision 0008): a group this
  coordinator does not know yet is made (by a join or a commit) only under a name the
  node's ``odradek`` groups do not hold (``catalog.claim``); otherwise the request
  gets INCONSISTENT_GROUP_PROTOCOL, Kafka's answer to a group of another type.
* The node reads the groups through :meth:`Coordinator.view` and deletes them through
  :meth:`Coordinator.remove`, both run on the loop (catalog.py).

Everything runs on the event loop: no locks; timers are loop call_later handles.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.protocols.kafka import consumer_groups
from odradek.protocols.kafka.codec.consumer_protocol import assigned_partitions
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.primitives import DecodeError
from odradek.protocols.kafka.consumer_groups import (
    ConsumerGroup,
    Heartbeat,
    HeartbeatAnswer,
    TopicPartition,
    Topics,
)
from odradek.protocols.kafka.store import DoorStore, OffsetEntry

log = logging.getLogger(__name__)

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"
CONSUMER_PROTOCOL_TYPE = "consumer"


@dataclasses.dataclass(frozen=True)
class JoinResult:
    error: ErrorCode
    generation: int = -1
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str = ""
    member_id: str = ""
    members: tuple[tuple[str, str | None, bytes], ...] = ()  # id, instance id, metadata
    skip_assignment: bool = False  # the leader is told the group's assignment stands (KIP-814)


@dataclasses.dataclass
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    joining: asyncio.Future[JoinResult] | None = None
    syncing: asyncio.Future[tuple[ErrorCode, bytes]] | None = None
    last_seen: float = 0.0
    joined_at: float = dataclasses.field(default_factory=time.time)  # wall clock

    def metadata_for(self, protocol: str | None) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""


@dataclasses.dataclass
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = dataclasses.field(default_factory=dict)
    static: dict[str, str] = dataclasses.field(default_factory=dict)  # instance id -> member id
    offsets: dict[tuple[str, int], OffsetEntry] = dataclasses.field(default_factory=dict)
    timer: asyncio.TimerHandle | None = None
    initial_delay: bool = False
    consumer: ConsumerGroup | None = None  # the consumer protocol's state (KIP-848 groups)

    def size(self) -> int:
        """Members of either protocol."""
        return len(self.members) + (len(self.consumer.members) if self.consumer is not None else 0)

    def sync_consumer_state(self) -> None:
        """A consumer-protocol group's state, epoch and assignor, as the group APIs show them."""
        if self.consumer is None:
            return
        self.state = self.consumer.state()
        self.generation = self.consumer.epoch
        self.protocol_type = CONSUMER_PROTOCOL_TYPE
        self.protocol = self.consumer.assignor


@dataclasses.dataclass(frozen=True)
class MemberView:
    member_id: str
    client_id: str
    client_host: str
    joined_at: float
    idle_seconds: float
    assigned: bool
    # The partitions it holds: a classic member's last SyncGroup assignment (decoded for
    # protocol type "consumer"), a consumer-protocol member's owned ones (those it must
    # still give up included); None when its assignment's bytes cannot be read.
    partitions: frozenset[TopicPartition] | None = None


@dataclasses.dataclass(frozen=True)
class GroupView:
    """A group as the node sees it (a copy: the group itself stays on the loop)."""

    group_id: str
    state: str
    generation: int
    protocol_type: str | None
    protocol: str | None
    members: tuple[MemberView, ...]
    offsets: dict[tuple[str, int], OffsetEntry]


class GroupNameClaims(Protocol):
    """Who holds group names (the node's catalog)."""

    def holder(self, group_id: str) -> str | None:
        """The other kind that holds the name, if any."""
        ...

    def claim(self, group_id: str) -> str | None: ...

    def release(self, group_id: str) -> None: ...


class _Unclaimed:
    """Every name is free: a coordinator on its own (tests of the state machine)."""

    def holder(self, group_id: str) -> str | None:
        return None

    def claim(self, group_id: str) -> str | None:
        return None

    def release(self, group_id: str) -> None:
        pass


class Coordinator:
    def __init__(
        self,
        store: DoorStore,
        clock: Callable[[], float] = time.monotonic,
        *,
        names: GroupNameClaims | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.names = names if names is not None else _Unclaimed()
        self.groups: dict[str, Group] = {}
        for group_id, offsets in store.load_groups().items():
            self.groups[group_id] = Group(group_id, offsets=offsets)
        self._save_locks: dict[str, asyncio.Lock] = {}

    def _new_group(self, group_id: str) -> Group | None:
        """The group ``group_id``, made if new; None if another kind holds the name."""
        group = self.groups.get(group_id)
        if group is None:
            holder = self.names.claim(group_id)
            if holder is not None:
                log.warning(
                    "a Kafka client asked for group %r, which is an %s group: refused "
                    "(INCONSISTENT_GROUP_PROTOCOL)",
                    group_id,
                    holder,
                )
                return None
            group = self.groups[group_id] = Group(group_id)
        return group

    # -- membership -------------------------------------------------------------------

    async def join(
        self,
        group_id: str,
        member_id: str,
        instance_id: str | None,
        client_id: str,
        client_host: str,
        session_timeout_ms: int,
        rebalance_timeout_ms: int,
        protocol_type: str,
        protocols: Sequence[tuple[str, bytes]],
    ) -> JoinResult:
        if not group_id:
            return JoinResult(ErrorCode.INVALID_GROUP_ID, member_id=member_id)
        if (
            not limits.kafka_session_timeout_ms_min
            <= session_timeout_ms
            <= limits.kafka_session_timeout_ms_max
        ):
            return JoinResult(ErrorCode.INVALID_SESSION_TIMEOUT, member_id=member_id)
        if not protocols or not protocol_type:
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
        group = self._new_group(group_id)
        if group is None:
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
        if group.consumer is not None:
            if group.consumer.members:
                return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
            group.consumer = None  # an empty group takes the protocol of its next member
            group.state, group.protocol_type, group.protocol = EMPTY, None, None
        if group.members and (
            protocol_type != group.protocol_type
            or not self._candidates(group) & {name for name, _ in protocols}
        ):
            return JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, member_id=member_id)
        replaced = False  # a restarted static member: never the shortcut below
        if instance_id:
            current = group.static.get(instance_id)
            if current is not None and member_id and member_id != current:
                return JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id=member_id)
            if current is not None and not member_id:
                member_id = self._replace_static(group, instance_id, current, client_id, client_host)
                replaced = True
                answer = self._static_rejoin(group, group.members[member_id], protocols)
                if answer is not None:
                    return answer
        if member_id and member_id not in group.members:
            return JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id)
        known = bool(member_id)
        if not member_id:
            if len(group.members) >= limits.kafka_group_members_max:
                return JoinResult(ErrorCode.GROUP_MAX_SIZE_REACHED)
            member_id = f"{instance_id or client_id or 'member'}-{uuid.uuid4()}"
            if instance_id:
                group.static[instance_id] = member_id
            group.members[member_id] = Member(
                member_id,
                instance_id,
                client_id,
                client_host,
                session_timeout_ms,
                rebalance_timeout_ms if rebalance_timeout_ms > 0 else session_timeout_ms,
                list(protocols),
            )
        member = group.members[member_id]
        unchanged = known and not replaced and member.protocols == list(protocols)
        if unchanged and (group.state == COMPLETING or (group.state == STABLE and member_id != group.leader)):
            # A member repeating its join (a lost response, a client timeout) gets the
            # current generation again instead of forcing everybody to rebalance.
            member.last_seen = self.clock()
            return self._join_result(group, member)
        member.protocols = list(protocols)
        member.session_timeout_ms = session_timeout_ms
        member.last_seen = self.clock()
        if member.joining is not None and not member.joining.done():
            member.joining.set_result(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id))
        joining: asyncio.Future[JoinResult] = asyncio.get_running_loop().create_future()
        member.joining = joining
        group.protocol_type = protocol_type
        if group.state != PREPARING:
            self._prepare_rebalance(group)
        self._maybe_complete_join(group)  # may answer every member, this one too, at once
        return await joining

    def _replace_static(
        self, group: Group, instance_id: str, old_id: str, client_id: str, client_host: str
    ) -> str:
        """The static member ``instance_id`` restarted: a new member id takes the old
        one's place (its assignment, its leadership); the old id is fenced."""
        old = group.members.pop(old_id)
        new_id = f"{instance_id}-{uuid.uuid4()}"
        member = dataclasses.replace(
            old, member_id=new_id, client_id=client_id, client_host=client_host, joining=None, syncing=None
        )
        member.last_seen = self.clock()
        group.members[new_id] = member
        group.static[instance_id] = new_id
        if group.leader == old_id:
            group.leader = new_id
        if old.joining is not None and not old.joining.done():
            old.joining.set_result(JoinResult(ErrorCode.FENCED_INSTANCE_ID, member_id=old_id))
        if old.syncing is not None and not old.syncing.done():
            old.syncing.set_result((ErrorCode.FENCED_INSTANCE_ID, b""))
        log.info(
            "group %s: static member %s came back as %s (was %s)", group.group_id, instance_id, new_id, old_id
        )
        return new_id

    def _static_rejoin(
        self, group: Group, member: Member, protocols: Sequence[tuple[str, bytes]]
    ) -> JoinResult | None:
        """The answer to a restarted static member of a Stable group whose subscription
        and the group's protocol still fit: the current generation, no rebalance. None
        if the group must rebalance (the caller then joins the member as usual)."""
        if group.state != STABLE or group.protocol not in {name for name, _ in protocols}:
            return None
        before = _subscribed_topics(member.metadata_for(group.protocol))
        after = _subscribed_topics(dict(protocols)[group.protocol])
        if before is None or before != after:
            return None
        member.protocols = list(protocols)
        return dataclasses.replace(
            self._join_result(group, member), skip_assignment=member.member_id == group.leader
        )

    def _candidates(self, group: Group) -> set[str]:
        names: set[str] | None = None
        for member in group.members.values():
            supported = {name for name, _ in member.protocols}
            names = supported if names is None else names & supported
        return names or set()

    def _prepare_rebalance(self, group: Group) -> None:
        first = group.state == EMPTY
        group.state = PREPARING
        for member in group.members.values():
            if member.syncing is not None and not member.syncing.done():
                member.syncing.set_result((ErrorCode.REBALANCE_IN_PROGRESS, b""))
            member.syncing = None
        if group.timer is not None:
            group.timer.cancel()
        loop = asyncio.get_running_loop()
        if first:
            group.initial_delay = True
            delay = limits.kafka_initial_rebalance_delay_ms / 1000
        else:
            group.initial_delay = False
            delay = max(m.rebalance_timeout_ms for m in group.members.values()) / 1000
        group.timer = loop.call_later(delay, self._rebalance_timeout, group)

    def _rebalance_timeout(self, group: Group) -> None:
        group.timer = None
        if group.initial_delay:
            group.initial_delay = False
            if all(m.joining is not None for m in group.members.values()):
                self._complete_join(group)
                return
            delay = max(m.rebalance_timeout_ms for m in group.members.values()) / 1000
            group.timer = asyncio.get_running_loop().call_later(delay, self._rebalance_timeout, group)
            return
        self._complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        if group.state != PREPARING or group.initial_delay:
            return
        if all(member.joining is not None for member in group.members.values()):
            self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        if group.state != PREPARING:
            return
        for member_id in [m.member_id for m in group.members.values() if m.joining is None]:
            log.info("group %s: member %s did not rejoin in time; removed", group.group_id, member_id)
            del group.members[member_id]
        group.generation += 1
        if not group.members:
            self._become_empty(group)
            return
        group.protocol = self._choose_protocol(group)
        if group.leader not in group.members:
            group.leader = next(iter(group.members))
        group.state = COMPLETING
        now = self.clock()
        for member in group.members.values():
            result = self._join_result(group, member)
            if member.joining is not None and not member.joining.done():
                member.joining.set_result(result)
            member.joining = None
            member.last_seen = now
        log.info(
            "group %s: generation %d with %d member(s), protocol %s",
            group.group_id,
            group.generation,
            len(group.members),
            group.protocol,
        )

    def _join_result(self, group: Group, member: Member) -> JoinResult:
        everyone: tuple[tuple[str, str | None, bytes], ...] = ()
        if member.member_id == group.leader:
            everyone = tuple(
                (m.member_id, m.instance_id, m.metadata_for(group.protocol)) for m in group.members.values()
            )
        return JoinResult(
            ErrorCode.NONE,
            group.generation,
            group.protocol_type,
            group.protocol,
            group.leader or "",
            member.member_id,
            everyone,
        )

    def _choose_protocol(self, group: Group) -> str:
        candidates = self._candidates(group)
        votes: dict[str, int] = {}
        for member in group.members.values():
            for name, _ in member.protocols:
                if name in candidates:
                    votes[name] = votes.get(name, 0) + 1
                    break
        leader = group.members.get(group.leader or "") or next(iter(group.members.values()))
        order = [name for name, _ in leader.protocols if name in candidates]
        return max(order, key=lambda name: (votes.get(name, 0), -order.index(name)))

    def _become_empty(self, group: Group) -> None:
        group.state = EMPTY
        group.protocol = None
        group.leader = None
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None

    def _fenced(self, group: Group | None, member_id: str, instance_id: str | None) -> ErrorCode:
        """Kafka's check of a member naming its instance id: UNKNOWN_MEMBER_ID if the
        instance is not in the group, FENCED_INSTANCE_ID if another member id holds it."""
        if not instance_id:
            return ErrorCode.NONE
        current = group.static.get(instance_id) if group is not None else None
        if current is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return ErrorCode.NONE if current == member_id else ErrorCode.FENCED_INSTANCE_ID

    async def sync(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        assignments: Sequence[tuple[str, bytes]],
        instance_id: str | None = None,
    ) -> tuple[ErrorCode, bytes, Group | None]:
        group = self.groups.get(group_id)
        fenced = self._fenced(group, member_id, instance_id)
        if fenced != ErrorCode.NONE:
            return fenced, b"", group
        if group is None or member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID, b"", group
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION, b"", group
        member = group.members[member_id]
        member.last_seen = self.clock()
        if group.state == PREPARING:
            return ErrorCode.REBALANCE_IN_PROGRESS, b"", group
        if group.state == STABLE:
            return ErrorCode.NONE, member.assignment, group
        if member_id == group.leader:
            given = dict(assignments)
            for other in group.members.values():
                other.assignment = given.get(other.member_id, b"")
            group.state = STABLE
            for other in group.members.values():
                if other.syncing is not None and not other.syncing.done():
                    other.syncing.set_result((ErrorCode.NONE, other.assignment))
                other.syncing = None
            return ErrorCode.NONE, member.assignment, group
        syncing: asyncio.Future[tuple[ErrorCode, bytes]] = asyncio.get_running_loop().create_future()
        member.syncing = syncing
        error, assignment = await syncing
        return error, assignment, group

    def heartbeat(
        self, group_id: str, member_id: str, generation: int, instance_id: str | None = None
    ) -> ErrorCode:
        group = self.groups.get(group_id)
        fenced = self._fenced(group, member_id, instance_id)
        if fenced != ErrorCode.NONE:
            return fenced
        if group is None or member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        group.members[member_id].last_seen = self.clock()
        if group.state == PREPARING:
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def leave(
        self, group_id: str, member_ids: Sequence[str], instance_ids: Sequence[str | None] | None = None
    ) -> list[ErrorCode]:
        """Remove members; a member named by its instance id alone (member id "") is
        found by it, and one whose member id is not the instance's gets FENCED_INSTANCE_ID."""
        group = self.groups.get(group_id)
        results = []
        instances = instance_ids if instance_ids is not None else [None] * len(member_ids)
        for member_id, instance_id in zip(member_ids, instances, strict=True):
            if instance_id and group is not None:
                current = group.static.get(instance_id)
                if current is not None and member_id and member_id != current:
                    results.append(ErrorCode.FENCED_INSTANCE_ID)
                    continue
                member_id = current or member_id
            if group is None or member_id not in group.members:
                results.append(ErrorCode.UNKNOWN_MEMBER_ID)
                continue
            self._remove(group, member_id, "left")
            results.append(ErrorCode.NONE)
        return results

    def _remove(self, group: Group, member_id: str, why: str) -> None:
        member = group.members.pop(member_id)
        if member.instance_id and group.static.get(member.instance_id) == member_id:
            del group.static[member.instance_id]
        log.info("group %s: member %s %s", group.group_id, member_id, why)
        if member.joining is not None and not member.joining.done():
            member.joining.set_result(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id=member_id))
        if member.syncing is not None and not member.syncing.done():
            member.syncing.set_result((ErrorCode.UNKNOWN_MEMBER_ID, b""))
        if not group.members:
            group.generation += 1
            self._become_empty(group)
        elif group.state == PREPARING:
            self._maybe_complete_join(group)
        else:
            self._prepare_rebalance(group)
            self._maybe_complete_join(group)

    def expire(self) -> None:
        """Remove members whose session timed out (called periodically)."""
        now = self.clock()
        for group in list(self.groups.values()):
            if group.consumer is not None and group.consumer.members:
                consumer_groups.expire(group.group_id, group.consumer, now)
                group.sync_consumer_state()
            for member in list(group.members.values()):
                if member.joining is not None or member.syncing is not None:
                    continue
                if now - member.last_seen > member.session_timeout_ms / 1000:
                    self._remove(group, member.member_id, "expired (session timeout)")

    # -- the consumer protocol (KIP-848) ----------------------------------------------

    def consumer_interest(self, group_id: str, request: Heartbeat) -> tuple[set[str], bool]:
        """The topic names a heartbeat to ``group_id`` needs resolved, and whether it
        needs every topic (a member subscribes by regex)."""
        group = self.groups.get(group_id)
        consumer = group.consumer if group is not None else None
        names = set(request.names or ())
        if consumer is not None:
            names |= consumer.wanted_names()
        everything = bool(request.regex) or (consumer is not None and consumer.has_regex())
        return names, everything

    def consumer_heartbeat(self, group_id: str, request: Heartbeat, topics: Topics) -> HeartbeatAnswer:
        """A ConsumerGroupHeartbeat (``topics``: see :meth:`consumer_interest`)."""
        if not group_id:
            return HeartbeatAnswer(ErrorCode.INVALID_GROUP_ID, "the group id is empty")
        group = self.groups.get(group_id)
        if group is None and request.member_epoch != consumer_groups.JOIN_EPOCH:
            return HeartbeatAnswer(
                ErrorCode.UNKNOWN_MEMBER_ID, f"group {group_id!r} has no member {request.member_id}"
            )
        if group is None:
            group = self._new_group(group_id)
            if group is None:
                return HeartbeatAnswer(
                    ErrorCode.GROUP_ID_NOT_FOUND,
                    f"group {group_id!r} is an {self.names.holder(group_id)} group, not a consumer group",
                )
        if group.members:
            return HeartbeatAnswer(
                ErrorCode.GROUP_ID_NOT_FOUND,
                f"group {group_id!r} is a classic group with members; it takes consumer-protocol "
                "members once they have left",
            )
        if group.consumer is None:
            if group.timer is not None:
                group.timer.cancel()
                group.timer = None
            group.consumer = consumer_groups.ConsumerGroup()
        answer = consumer_groups.heartbeat(group_id, group.consumer, request, topics, self.clock())
        group.sync_consumer_state()
        return answer

    def consumer_group(self, group_id: str) -> ConsumerGroup | None:
        group = self.groups.get(group_id)
        return group.consumer if group is not None else None

    # -- offsets ----------------------------------------------------------------------

    def check_commit(
        self,
        group_id: str,
        member_id: str,
        generation: int,
        instance_id: str | None = None,
        *,
        transactional: bool = False,
    ) -> ErrorCode:
        """Whether a member may commit offsets now, as Kafka's coordinator decides: a
        member of the current generation may while the group is stable and while a
        rebalance is prepared (the heartbeat tells it of the rebalance); between the
        JoinGroup answers and SyncGroup it gets REBALANCE_IN_PROGRESS, unless the commit
        is a transaction's (TxnOffsetCommit: no state check)."""
        if not group_id:
            return ErrorCode.INVALID_GROUP_ID
        group = self.groups.get(group_id)
        if group is None and self.names.holder(group_id) is not None:
            return ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if generation < 0 and not member_id:
            if group is not None and group.consumer is not None and group.consumer.members:
                return ErrorCode.UNKNOWN_MEMBER_ID  # Kafka: only an empty consumer group takes these
            return ErrorCode.NONE  # a standalone commit (assign(), not subscribe())
        if group is not None and group.consumer is not None:
            return self._check_consumer_member(group.consumer, member_id, generation)
        fenced = self._fenced(group, member_id, instance_id)
        if fenced != ErrorCode.NONE:
            return fenced
        if group is None or member_id not in group.members:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return ErrorCode.ILLEGAL_GENERATION
        if group.state == COMPLETING and not transactional:
            return ErrorCode.REBALANCE_IN_PROGRESS
        group.members[member_id].last_seen = self.clock()
        return ErrorCode.NONE

    def _check_consumer_member(self, consumer: ConsumerGroup, member_id: str, epoch: int) -> ErrorCode:
        member = consumer.members.get(member_id)
        if member is None or member.departed:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if epoch != member.epoch:
            return ErrorCode.STALE_MEMBER_EPOCH
        member.last_seen = self.clock()
        return ErrorCode.NONE

    def check_fetch(self, group_id: str, member_id: str | None, epoch: int) -> ErrorCode:
        """An OffsetFetch naming a member (v9+): checked against a consumer-protocol
        group's members (Kafka checks nothing for classic groups)."""
        group = self.groups.get(group_id)
        if not member_id or group is None or group.consumer is None or epoch < 0:
            return ErrorCode.NONE
        return self._check_consumer_member(group.consumer, member_id, epoch)

    async def commit(self, group_id: str, offsets: dict[tuple[str, int], OffsetEntry]) -> None:
        """Save the offsets, then let fetches see them: a commit whose write failed
        (StorageError) changes nothing; one to a name another kind of group took since
        :meth:`check_commit` raises InvalidRequest."""
        group = self.groups.get(group_id) or self._new_group(group_id)
        if group is None:
            raise InvalidRequest(f"group {group_id!r} is not a Kafka consumer group")
        lock = self._save_locks.setdefault(group_id, asyncio.Lock())
        async with lock:
            snapshot = {**group.offsets, **offsets}
            await asyncio.get_running_loop().run_in_executor(None, self.store.save_group, group_id, snapshot)
            group.offsets.update(offsets)

    def committed(self, group_id: str) -> dict[tuple[str, int], OffsetEntry]:
        group = self.groups.get(group_id)
        return dict(group.offsets) if group is not None else {}

    def subscribed(self, group_id: str, topic: str) -> bool:
        """Whether a member of the group may consume ``topic``: one whose subscription
        names it, or, as Kafka assumes, one whose subscription cannot be read (OffsetDelete
        refuses to delete such a topic's offsets: GROUP_SUBSCRIBED_TO_TOPIC)."""
        group = self.groups.get(group_id)
        if group is None:
            return False
        for member in group.members.values():
            topics = _subscribed_topics(member.metadata_for(group.protocol))
            if topics is None or topic in topics:
                return True
        if group.consumer is not None:
            present = {topic: (uuid.UUID(int=0), 1)}
            return any(member.topics(present) for member in group.consumer.members.values())
        return False

    async def delete_offsets(self, group_id: str, partitions: set[tuple[str, int]]) -> None:
        """Forget the group's committed offsets of ``partitions`` (OffsetDelete): the file
        is written first, so a failed write (StorageError) changes nothing."""
        group = self.groups.get(group_id)
        if group is None:
            return
        lock = self._save_locks.setdefault(group_id, asyncio.Lock())
        async with lock:
            kept = {key: entry for key, entry in group.offsets.items() if key not in partitions}
            if len(kept) == len(group.offsets):
                return
            await asyncio.get_running_loop().run_in_executor(None, self.store.save_group, group_id, kept)
            for key in partitions:
                group.offsets.pop(key, None)

    def forget_topic(self, topic: str) -> None:
        for group in self.groups.values():
            for key in [key for key in group.offsets if key[0] == topic]:
                del group.offsets[key]

    async def delete(self, group_id: str) -> ErrorCode:
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.GROUP_ID_NOT_FOUND
        if group.size():
            return ErrorCode.NON_EMPTY_GROUP
        # The file goes first: a deletion that failed (StorageError) leaves the group.
        await asyncio.get_running_loop().run_in_executor(None, self.store.delete_group, group_id)
        if self.groups.get(group_id) is group and not group.size():
            del self.groups[group_id]
            self.names.release(group_id)
        return ErrorCode.NONE

    # -- the node's view (catalog.py) -------------------------------------------------

    def view(self, group_id: str) -> GroupView | None:
        group = self.groups.get(group_id)
        if group is None:
            return None
        now = self.clock()
        members = tuple(
            MemberView(
                member.member_id,
                member.client_id,
                member.client_host,
                member.joined_at,
                0.0 if member.joining or member.syncing else max(0.0, now - member.last_seen),
                bool(member.assignment),
                _classic_partitions(group.protocol_type, member.assignment),
            )
            for member in group.members.values()
        )
        if group.consumer is not None:
            members += tuple(
                MemberView(
                    member.member_id,
                    member.client_id,
                    member.client_host,
                    member.joined_at,
                    max(0.0, now - member.last_seen),
                    bool(member.assigned),
                    member.assigned | member.revoking,
                )
                for member in group.consumer.members.values()
            )
        return GroupView(
            group.group_id,
            group.state,
            group.generation,
            group.protocol_type,
            group.protocol,
            members,
            dict(group.offsets),
        )

    def listing(self) -> list[tuple[str, str, int]]:
        """(group, state, members) of every group."""
        return [(group.group_id, group.state, group.size()) for group in self.groups.values()]

    async def remove(self, group_id: str) -> bool:
        """Delete a group for the node: False if there is none; InvalidRequest while it
        has members; StorageError if its file stays."""
        group = self.groups.get(group_id)
        if group is None:
            return False
        if group.size():
            raise InvalidRequest(f"group {group_id!r} has {group.size()} member(s); they must leave first")
        return await self.delete(group_id) == ErrorCode.NONE

    async def reset(self, group_id: str, offsets: dict[tuple[str, int], OffsetEntry]) -> bool:
        """Replace committed offsets for the node (``odradek group reset-offsets``): False
        if there is no such group; InvalidRequest while it has members (Kafka's tool
        refuses the same); the file is written first (a failed write changes nothing)."""
        group = self.groups.get(group_id)
        if group is None:
            return False
        if group.size():
            raise InvalidRequest(
                f"group {group_id!r} has {group.size()} active member(s): offsets can only be reset "
                "while it has none (stop its consumers, reset, then start them again)"
            )
        await self.commit(group_id, offsets)
        return True

    def close(self) -> None:
        for group in self.groups.values():
            if group.timer is not None:
                group.timer.cancel()
            for member in group.members.values():
                for future in (member.joining, member.syncing):
                    if future is not None and not future.done():
                        future.cancel()


def _classic_partitions(protocol_type: str | None, assignment: bytes) -> frozenset[TopicPartition] | None:
    """A classic member's partitions, from its assignment's bytes: None for a group of
    another protocol type (its bytes are not the consumer protocol's) or bytes that do
    not decode (a client's bug: the group is described all the same)."""
    if protocol_type != CONSUMER_PROTOCOL_TYPE:
        return None
    try:
        return assigned_partitions(assignment)
    except DecodeError:
        return None


def _subscribed_topics(metadata: bytes) -> frozenset[str] | None:
    """The topics of a ``consumer`` protocol subscription (version, topics, ...), or
    None if the bytes are not one."""
    if len(metadata) < 6:
        return None
    count = int.from_bytes(metadata[2:6], "big", signed=True)
    if not 0 <= count <= (len(metadata) - 6) // 2:  # each name takes 2 bytes at least
        return None
    position, topics = 6, set()
    for _ in range(count):
        size = int.from_bytes(metadata[position : position + 2], "big", signed=True)
        end = position + 2 + size
        if size < 0 or end > len(metadata):
            return None
        topics.add(metadata[position + 2 : end].decode("utf-8", "replace"))
        position = end
    return frozenset(topics)
