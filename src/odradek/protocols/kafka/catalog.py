"""The Kafka door's consumer groups as every thread of a node sees them.

This is the ``kafka`` kind of group of the node's directory (groups/directory.py,
decision 0008): ``odradek group list|describe|delete|reset-offsets``, the Flight
actions, the embedded client and ``/metrics`` reach Kafka groups here.

Theory of operation
-------------------
* The door's coordinator (groups.py) keeps its groups on its event loop, without
  locks, and their committed offsets in the door's store (store.py, ``kafka/groups/``).
* While a Kafka listener runs, the catalog is *attached* to its coordinator: a question
  (list, describe) is answered by the coordinator on its loop, one round trip, so that
  members, state and offsets are the live ones; a deletion goes through the
  coordinator as a DeleteGroups would (refused while the group has members). An answer
  not given within ``kafka_group_answer_seconds_max`` raises Unavailable. Asked on the
  loop itself (an application running the listener in its own loop), a list or a
  describe is answered at once; a deletion, which waits for a file, is refused there.
* While none runs, the groups are those whose offsets are on disk, each Empty; a
  deletion removes the offsets file. The catalog's lock keeps a listener from
  attaching in the middle.
* Names: a new Kafka group takes its name in the node's table (``claim``), refused
  when an ``odradek`` group holds it; a deleted one gives it back.
* Lag, computed in the asking thread from the partition index (partition_index.py):
  per committed partition its high watermark (its last record's offset + 1) minus the
  committed offset, what Kafka's tools show, so a group that read and committed
  everything has lag 0; per topic the sum over its committed partitions; per member
  the sum over the committed partitions it holds (its decoded assignment, groups.py),
  the others listed as uncommitted (groups/info.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from odradek import limits
from odradek.errors import InvalidRequest, OdradekError, TopicNotFound, Unavailable
from odradek.groups.directory import GroupNames
from odradek.groups.info import (
    KIND_KAFKA,
    STATE_EMPTY,
    AssignedPartitions,
    GroupInfo,
    GroupListing,
    MemberInfo,
    OffsetReset,
    PartitionLag,
    TopicLag,
)
from odradek.groups.reset import check_rows, members_refusal, target_offset
from odradek.names import compile_pattern, tenant_of, tenant_prefix
from odradek.protocols.kafka.groups import EMPTY, Coordinator, GroupView, MemberView
from odradek.protocols.kafka.partition_index import index_of
from odradek.protocols.kafka.store import (
    GroupOffsetStore,
    OffsetEntry,
    load_partition_histories,
    partition_history,
)

if TYPE_CHECKING:
    from odradek.api import Start
    from odradek.engine.engine import Engine

T = TypeVar("T")


class KafkaGroups:
    """The ``kafka`` kind of group (a :class:`~odradek.groups.directory.GroupKind`)."""

    kind = KIND_KAFKA

    def __init__(self, engine: Engine, names: GroupNames) -> None:
        self._engine = engine
        self._names = names
        self._offline = GroupOffsetStore(engine.path, engine.disk, fsync=engine.fsync)
        self._lock = threading.Lock()
        self._attached: tuple[asyncio.AbstractEventLoop, Coordinator] | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()

    # -- the door's side --------------------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop, make: Callable[[], Coordinator]) -> Coordinator:
        """Make the listener's coordinator (which loads the groups from disk) and answer
        through it from now on; refused while another listener's is attached."""
        with self._lock:
            if self._attached is not None:
                raise OdradekError("another Kafka listener already serves this node's consumer groups")
            coordinator = make()
            self._attached = (loop, coordinator)
            return coordinator

    def detach(self, coordinator: Coordinator) -> None:
        """The listener stops: questions are answered from disk again."""
        with self._lock:
            if self._attached is not None and self._attached[1] is coordinator:
                self._attached = None
            pending, self._pending = self._pending, set()
        for future in pending:  # their askers ask again, of the disk
            future.cancel()

    def holder(self, group_id: str) -> str | None:
        """The other kind holding ``group_id`` (for the coordinator), or None."""
        others = self._names.kinds_of(group_id) - {KIND_KAFKA}
        return min(others) if others else None

    def claim(self, group_id: str) -> str | None:
        return self._names.claim(group_id, KIND_KAFKA)

    def release(self, group_id: str) -> None:
        self._names.release(group_id, KIND_KAFKA)

    def stored_names(self) -> list[str]:
        """The groups with offsets on disk (the node's name table reads them first)."""
        return self._offline.names()

    # -- the directory's side ---------------------------------------------------------

    def list_groups(self) -> list[GroupListing]:
        def offline() -> list[tuple[str, str, int]]:
            return [(name, STATE_EMPTY, 0) for name in self._offline.names()]

        listed = self._ask(_synchronous(Coordinator.listing), offline)
        return [GroupListing(group, KIND_KAFKA, state, members) for group, state, members in sorted(listed)]

    def describe_group(self, name: str) -> GroupInfo | None:
        def question(coordinator: Coordinator) -> GroupView | None:
            return coordinator.view(name)

        view = self._ask(_synchronous(question), lambda: self._offline_view(name))
        return None if view is None else self._info(view)

    def delete_group(self, name: str) -> bool:
        async def question(coordinator: Coordinator) -> bool:
            return await coordinator.remove(name)

        return self._ask(_Question(question, None), lambda: self._offline_delete(name))

    def reset_offsets(
        self, name: str, pattern: str | None, to: Start, *, dry_run: bool
    ) -> list[OffsetReset] | None:
        """Move the group's committed offsets of the topics of ``pattern`` (None: those it
        committed in) (groups/reset.py): every Kafka partition of each topic (those it
        committed and those the topic has now) goes to the same offset, since a Kafka
        offset is the log's offset. None if there is no such Kafka group."""
        matches = compile_pattern(pattern or ">")
        view = self._view(name)
        if view is None:
            return None
        if view.members:
            raise members_refusal(name, len(view.members))
        committed_topics = {topic for topic, _ in view.offsets}
        topics = [
            topic
            for topic in self._engine.list_topics(pattern or ">")
            if matches(topic) and (pattern is not None or topic in committed_topics)
        ]
        if not topics:
            raise InvalidRequest(
                f"no topic matches {pattern!r}" if pattern else f"group {name!r} has no committed offsets"
            )
        histories = load_partition_histories(self._engine.path, self._engine.disk)
        plan: list[OffsetReset] = []
        offsets: dict[tuple[str, int], OffsetEntry] = {}
        for topic in topics:
            try:
                incarnation = self._engine.describe_topic(topic).incarnation
                new = target_offset(self._engine, topic, to)
            except TopicNotFound:
                continue  # deleted meanwhile: nothing to reset
            count = partition_history(histories, topic, incarnation)[-1][1]
            committed = {p for t, p in view.offsets if t == topic}
            partitions = sorted(committed | set(range(count)))
            check_rows(name, len(plan) + len(partitions))
            for partition in partitions:
                old = view.offsets.get((topic, partition))
                plan.append(OffsetReset(topic, partition, None if old is None else old[0], new))
                offsets[(topic, partition)] = (new, -1, None if old is None else old[2])
        if dry_run or not offsets:
            return plan

        async def question(coordinator: Coordinator) -> bool:
            return await coordinator.reset(name, offsets)

        if not self._ask(_Question(question, None), lambda: self._offline_reset(name, offsets)):
            return None
        return plan

    # -- plumbing ---------------------------------------------------------------------

    def _view(self, name: str) -> GroupView | None:
        def question(coordinator: Coordinator) -> GroupView | None:
            return coordinator.view(name)

        return self._ask(_synchronous(question), lambda: self._offline_view(name))

    def _offline_reset(self, name: str, offsets: dict[tuple[str, int], OffsetEntry]) -> bool:
        stored = self._offline.load_group(name)
        if stored is None:
            return False
        self._offline.save_group(name, {**stored, **offsets})
        return True

    def _ask(self, question: _Question[T], offline: Callable[[], T]) -> T:
        with self._lock:
            if self._attached is None:
                return offline()  # under the lock: no listener attaches meanwhile
            loop, coordinator = self._attached
            if _running_loop() is loop:  # asked on the door's own loop: it cannot wait for itself
                if question.at_once is None:
                    raise OdradekError(
                        "a Kafka group cannot be deleted from the Kafka door's own event loop; "
                        "call delete_group from another thread (asyncio.to_thread)"
                    )
                return question.at_once(coordinator)
            future = asyncio.run_coroutine_threadsafe(question.answer(coordinator), loop)
            self._pending.add(future)
        try:
            return future.result(timeout=limits.kafka_group_answer_seconds_max)
        except concurrent.futures.CancelledError:
            return self._ask(question, offline)  # the listener stopped: ask the disk
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise Unavailable(
                f"the Kafka door did not answer within {limits.kafka_group_answer_seconds_max} s; retry"
            ) from None
        finally:
            with self._lock:
                self._pending.discard(future)

    def _offline_view(self, name: str) -> GroupView | None:
        offsets = self._offline.load_group(name)
        if offsets is None:
            return None
        return GroupView(name, EMPTY, 0, None, None, (), offsets)

    def _offline_delete(self, name: str) -> bool:
        if name not in self._offline.names():
            return False
        self._offline.delete_group(name)
        self.release(name)
        return True

    def _info(self, view: GroupView) -> GroupInfo:
        by_topic: dict[str, list[tuple[int, OffsetEntry]]] = {}
        for (topic, partition), entry in sorted(view.offsets.items()):
            by_topic.setdefault(topic, []).append((partition, entry))
        topics = []
        histories = load_partition_histories(self._engine.path, self._engine.disk) if by_topic else {}
        for topic, committed in by_topic.items():
            try:
                info = self._engine.describe_topic(topic)
                history = partition_history(histories, topic, info.incarnation)
                index = index_of(self._engine, topic, info.incarnation, history)
                ends = index.snapshot(self._engine)
            except OdradekError:  # deleted (or unavailable): its offsets say nothing now
                continue
            partitions = tuple(
                PartitionLag(
                    partition, offset, max(0, ends.high_watermark(partition) - max(offset, 0)), metadata
                )
                for partition, (offset, _epoch, metadata) in committed
            )
            lowest = min(partition.committed for partition in partitions)
            lag = sum(partition.lag for partition in partitions)
            topics.append(TopicLag(topic, lowest, lowest, info.next_offset, lag, 0, 0, 0, 0, partitions))
        lags = {
            (topic.topic, partition.partition): partition.lag
            for topic in topics
            for partition in topic.partitions or ()
        }
        tenant = tenant_of(view.group_id)
        prefix = "" if tenant is None else tenant_prefix(tenant)
        members = [_member_info(member, lags, prefix) for member in view.members]
        options = {
            "protocol_type": view.protocol_type,
            "protocol": view.protocol,
            "generation": view.generation,
        }
        return GroupInfo(view.group_id, None, options, members, topics, {}, KIND_KAFKA, view.state)


def _member_info(member: MemberView, lags: dict[tuple[str, int], int], prefix: str = "") -> MemberInfo:
    """A member with the partitions it holds and their lag (``lags``: per committed
    partition of a topic that still exists). In a tenant's group (``prefix``, its names'
    start) the assignment a member's client encoded names topics as the tenant says them
    (the Kafka door does not open assignments): they are taken to the engine's names."""
    assignment: tuple[AssignedPartitions, ...] | None = None
    lag: int | None = None
    if member.partitions is not None:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(member.partitions):
            engine = topic if topic.startswith(prefix) else prefix + topic
            by_topic.setdefault(engine, []).append(partition)
        assignment = tuple(
            AssignedPartitions(
                topic,
                tuple(partitions),
                sum(lags.get((topic, partition), 0) for partition in partitions),
                tuple(partition for partition in partitions if (topic, partition) not in lags),
            )
            for topic, partitions in by_topic.items()
        )
        lag = sum(topic.lag for topic in assignment)
    return MemberInfo(
        member.member_id,
        member.joined_at,
        member.idle_seconds,
        0,
        member.assigned,
        member.client_id,
        member.client_host,
        lag,
        assignment,
    )


@dataclasses.dataclass(frozen=True)
class _Question(Generic[T]):
    """What to ask the coordinator on its loop; ``at_once`` answers without waiting
    (for a caller already on the loop), None if the question must wait."""

    ask: Callable[[Coordinator], Awaitable[T]]
    at_once: Callable[[Coordinator], T] | None

    async def answer(self, coordinator: Coordinator) -> T:
        return await self.ask(coordinator)


def _synchronous(question: Callable[[Coordinator], T]) -> _Question[T]:
    async def ask(coordinator: Coordinator) -> T:
        return question(coordinator)

    return _Question(ask, question)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
