"""Fetch sessions (KIP-227): the partitions a consumer fetches, kept between its Fetch
requests so that each request names only what changed and each answer holds only what
changed.

Rules (Kafka's FetchSession, FetchMetadata; decision 0023):

* A request's ``session_epoch`` says what it is. ``-1``: no session (one named by a
  non-zero ``session_id`` is closed); the request is read in full and answered with
  session id 0. ``0``: a full request opening a session (one it names is closed first);
  it is answered in full with the new session's id, or with id 0 when the cache has no
  room for it, and the client then goes on with full requests. ``> 0``: an incremental
  request in session ``session_id``, whose expected epoch it must carry.
* An incremental request updates the session: its partitions are added or take the
  fetch offset and byte bound it names, its forgotten topics' partitions leave. Every
  partition of the session is then read, and the answer holds those that have records,
  an error, or a high watermark, last stable offset or log start different from the
  last answer's. A partition that returned records moves to the end of the session, so
  that with a small ``max_bytes`` the others get their turn (as in Kafka).
* An unknown session id is FETCH_SESSION_ID_NOT_FOUND, as a Kafka broker answers after
  a restart; a wrong epoch is INVALID_FETCH_SESSION_EPOCH (the session stays, expecting
  the same epoch). Either way nothing is read and the client starts again with a full
  request. An incremental request whose topics are named the other way than the
  session's (by name below Fetch v13, by id from v13) gets FETCH_SESSION_ID_NOT_FOUND.
* Bounds: at most ``kafka_fetch_session_cache_slots`` sessions holding together at most
  ``kafka_fetch_session_cache_partitions_max`` partitions. A new session takes the place
  of the least recently used one unused for ``kafka_fetch_session_eviction_ms``, else of
  the smallest session if it is smaller than the new one, else it is not kept. An
  incremental request that would grow the cache past its partition bound closes its
  session (FETCH_SESSION_ID_NOT_FOUND); the client's next full request is then served
  without a session.

Everything here runs on the door's event loop, so no lock is taken: a session is
checked and its epoch moved on before the fetch waits for records, so that a retried
request (same epoch) is refused rather than served twice.
"""

from __future__ import annotations

import collections
import dataclasses
import secrets
import time
import uuid
from collections.abc import Callable, Iterable

from odradek import limits
from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.errors import ErrorCode

# Kafka's FetchMetadata epochs.
FINAL_EPOCH = -1
INITIAL_EPOCH = 0
_EPOCH_MAX = 0x7FFFFFFF
_NIL_TOPIC_ID = uuid.UUID(int=0)

# A partition of a session: (topic name, or its id from Fetch v13; partition index).
PartitionKey = tuple[str | uuid.UUID, int]


def next_epoch(epoch: int) -> int:
    """The epoch after ``epoch``: wraps from INT32 max to 1, never back to 0."""
    return 1 if epoch >= _EPOCH_MAX else epoch + 1


@dataclasses.dataclass(slots=True)
class CachedPartition:
    """A partition of a session: what the client asked last and what it was told last."""

    topic: str
    topic_id: uuid.UUID
    partition: int
    fetch_offset: int
    max_bytes: int
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1


@dataclasses.dataclass(slots=True)
class FetchSession:
    session_id: int
    by_id: bool
    epoch: int  # the epoch the next incremental request must carry
    last_used: float
    partitions: collections.OrderedDict[PartitionKey, CachedPartition]


@dataclasses.dataclass(frozen=True, slots=True)
class FetchPlan:
    """What to do with one Fetch request.

    ``error`` other than NONE: answer it at once, reading nothing. Otherwise read
    ``topics`` and pass the answers through :meth:`FetchSessions.answer`; the response
    carries ``session_id``."""

    error: ErrorCode
    session_id: int
    topics: tuple[m.FetchTopic, ...]
    session: FetchSession | None = None
    incremental: bool = False


class FetchSessions:
    """The door's fetch session cache (see the module's rules)."""

    def __init__(
        self,
        *,
        slots: int = limits.kafka_fetch_session_cache_slots,
        partitions_max: int = limits.kafka_fetch_session_cache_partitions_max,
        eviction_ms: int = limits.kafka_fetch_session_eviction_ms,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots
        self.partitions_max = partitions_max
        self.eviction_seconds = eviction_ms / 1000
        self._clock = clock
        self._sessions: dict[int, FetchSession] = {}
        self.partitions = 0  # held by all sessions together

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._sessions

    def sessions(self) -> list[FetchSession]:
        """The sessions kept, least recently created first."""
        return list(self._sessions.values())

    def plan(self, request: m.FetchRequest, by_id: bool) -> FetchPlan:
        """Check ``request`` against the cache and update it; say what to read."""
        if request.session_epoch > INITIAL_EPOCH:
            return self._incremental(request, by_id)
        if request.session_id != 0:
            self._remove(request.session_id)  # a full request closes the session it names
        if request.session_epoch != INITIAL_EPOCH:
            return FetchPlan(ErrorCode.NONE, 0, request.topics)
        partitions = _partitions_of(request.topics, by_id)
        session = self._create(partitions, by_id)
        if session is None:
            return FetchPlan(ErrorCode.NONE, 0, request.topics)
        return FetchPlan(ErrorCode.NONE, session.session_id, request.topics, session)

    def answer(
        self, plan: FetchPlan, responses: tuple[m.FetchableTopicResponse, ...]
    ) -> tuple[m.FetchableTopicResponse, ...]:
        """Remember what ``responses`` told the client; for an incremental request, keep
        only the partitions that changed."""
        session = plan.session
        if session is None or self._sessions.get(session.session_id) is not session:
            return responses  # no session, or closed while the fetch waited
        kept: list[m.FetchableTopicResponse] = []
        returned_records: list[PartitionKey] = []
        for topic in responses:
            name: str | uuid.UUID = topic.topic_id if session.by_id else topic.topic
            changed = []
            for data in topic.partitions:
                key = (name, data.partition_index)
                cached = session.partitions.get(key)
                if cached is None:
                    continue
                if _update(cached, data) or not plan.incremental:
                    changed.append(data)
                if data.records:
                    returned_records.append(key)
            if changed:
                kept.append(dataclasses.replace(topic, partitions=tuple(changed)))
        if plan.incremental:
            for key in returned_records:
                session.partitions.move_to_end(key)
            return tuple(kept)
        return responses

    def _incremental(self, request: m.FetchRequest, by_id: bool) -> FetchPlan:
        session = self._sessions.get(request.session_id)
        if session is None or session.by_id != by_id:
            return FetchPlan(ErrorCode.FETCH_SESSION_ID_NOT_FOUND, 0, ())
        if request.session_epoch != session.epoch:
            return FetchPlan(ErrorCode.INVALID_FETCH_SESSION_EPOCH, 0, ())
        held = len(session.partitions)
        for forgotten in request.forgotten_topics_data:
            name: str | uuid.UUID = forgotten.topic_id if by_id else forgotten.topic
            for index in forgotten.partitions:
                session.partitions.pop((name, index), None)
        for key, wanted in _partitions_of(request.topics, by_id).items():
            cached = session.partitions.get(key)
            if cached is None:
                session.partitions[key] = wanted
            else:
                cached.fetch_offset, cached.max_bytes = wanted.fetch_offset, wanted.max_bytes
        self.partitions += len(session.partitions) - held
        if self.partitions > self.partitions_max:
            self._remove(session.session_id)
            return FetchPlan(ErrorCode.FETCH_SESSION_ID_NOT_FOUND, 0, ())
        session.epoch = next_epoch(session.epoch)
        session.last_used = self._clock()
        return FetchPlan(ErrorCode.NONE, session.session_id, _topics_of(session), session, incremental=True)

    def _create(
        self, partitions: collections.OrderedDict[PartitionKey, CachedPartition], by_id: bool
    ) -> FetchSession | None:
        size = len(partitions)
        if size > self.partitions_max:
            return None
        while len(self._sessions) >= self.slots or self.partitions + size > self.partitions_max:
            victim = self._victim(size)
            if victim is None:
                return None
            self._remove(victim)
        session_id = 0
        while session_id == 0 or session_id in self._sessions:
            session_id = secrets.randbelow(_EPOCH_MAX) + 1
        session = FetchSession(session_id, by_id, next_epoch(INITIAL_EPOCH), self._clock(), partitions)
        self._sessions[session_id] = session
        self.partitions += size
        return session

    def _victim(self, size: int) -> int | None:
        """The session a new one of ``size`` partitions may take the place of: the least
        recently used if stale, else the smallest (then least recently used) if smaller."""
        if not self._sessions:
            return None
        oldest = min(self._sessions.values(), key=lambda s: s.last_used)
        if self._clock() - oldest.last_used >= self.eviction_seconds:
            return oldest.session_id
        smallest = min(self._sessions.values(), key=lambda s: (len(s.partitions), s.last_used))
        if len(smallest.partitions) < size:
            return smallest.session_id
        return None

    def _remove(self, session_id: int) -> None:
        session = self._sessions.pop(session_id, None)
        if session is not None:
            self.partitions -= len(session.partitions)


def _partitions_of(
    topics: Iterable[m.FetchTopic], by_id: bool
) -> collections.OrderedDict[PartitionKey, CachedPartition]:
    partitions: collections.OrderedDict[PartitionKey, CachedPartition] = collections.OrderedDict()
    for topic in topics:
        name: str | uuid.UUID = topic.topic_id if by_id else topic.topic
        for wanted in topic.partitions:
            partitions[(name, wanted.partition)] = CachedPartition(
                topic.topic if not by_id else "",
                topic.topic_id if by_id else _NIL_TOPIC_ID,
                wanted.partition,
                wanted.fetch_offset,
                wanted.partition_max_bytes,
            )
    return partitions


def _topics_of(session: FetchSession) -> tuple[m.FetchTopic, ...]:
    """The session's partitions as request topics, each topic once, in session order."""
    grouped: dict[str | uuid.UUID, list[CachedPartition]] = {}
    for (name, _), cached in session.partitions.items():
        grouped.setdefault(name, []).append(cached)
    return tuple(
        m.FetchTopic(
            topic=cached[0].topic,
            topic_id=cached[0].topic_id,
            partitions=tuple(
                m.FetchPartition(
                    partition=c.partition, fetch_offset=c.fetch_offset, partition_max_bytes=c.max_bytes
                )
                for c in cached
            ),
        )
        for cached in grouped.values()
    )


def _update(cached: CachedPartition, data: m.FetchPartitionData) -> bool:
    """Record what ``data`` tells the client; whether it must be in an incremental answer."""
    changed = (
        data.error_code != ErrorCode.NONE
        or bool(data.records)
        or cached.high_watermark != data.high_watermark
        or cached.last_stable_offset != data.last_stable_offset
        or cached.log_start_offset != data.log_start_offset
    )
    cached.high_watermark = data.high_watermark
    cached.last_stable_offset = data.last_stable_offset
    cached.log_start_offset = data.log_start_offset
    return changed
