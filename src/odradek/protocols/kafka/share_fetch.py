"""ShareFetch and ShareAcknowledge (KIP-932): share sessions, acquiring records from
the member's Odradek poll, and settling acknowledgements.

The rules are share_groups.py's (its module docstring); this module holds the record
side: what a member acquires (one native poll, split into the Kafka partitions of its
records and described as runs of offsets with one delivery count, with NumPy) and what
it holds (per poll and topic: offsets, partitions and the lease), which
acknowledgements settle as native acks (ACCEPT, REJECT) and nacks (RELEASE). State lives
on the door's event loop (share_groups.ShareGroups); native calls run on the broker's
executor.

Bytes. A ShareFetch answers at most its MaxBytes of record batches (capped at
``kafka_share_fetch_bytes_max``), counted as a Fetch counts them (data.py: each
partition's batch header and an upper bound of each record's encoded size), partition
after partition in the order of the poll's topics and partitions, offsets ascending.
Only the first record may exceed it (so that a consumer always progresses), as in Kafka;
then the fetch stops. What the poll acquired beyond it goes back to the group at once,
not counted as a delivery (``groups.release``), and so do records of partitions outside
the member's share session. A poll asks for no more records than MaxBytes could hold.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.errors import UnknownMember
from odradek.groups.delivery import DeliveryBatch
from odradek.protocols.kafka import share_groups as g
from odradek.protocols.kafka.broker import Broker, TopicView
from odradek.protocols.kafka.codec import messages_share as s
from odradek.protocols.kafka.codec.api import Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.records import encode_batch
from odradek.protocols.kafka.data import _BATCH_HEADER_BYTES, _RECORD_OVERHEAD_BYTES, _record_bytes_max
from odradek.protocols.kafka.partition_map import partition_map, partitions_of
from odradek.protocols.kafka.share_groups import (
    INVALID_RECORD_STATE,
    INVALID_SHARE_SESSION_EPOCH,
    SHARE_SESSION_NOT_FOUND,
    Acquired,
    ShareGroups,
    ShareMember,
    ShareSession,
)

_OPEN_SESSION = 0
_CLOSE_SESSION = -1
_EPOCH_MAX = 2**31 - 1
_STORED_COLUMNS = ("offset", "timestamp", "key", "value", "headers")

I64 = npt.NDArray[np.int64]

# -- share sessions -------------------------------------------------------------------


def _session(
    state: ShareGroups, key: tuple[str, str], epoch: int
) -> tuple[ShareSession | None, int, str | None]:
    """The request's session (None when it closes one), or an error code and message."""
    if epoch == _OPEN_SESSION:
        state.sessions.pop(key, None)
        while len(state.sessions) >= limits.kafka_share_sessions_max:
            state.sessions.popitem(last=False)
        opened = state.sessions[key] = ShareSession(epoch=1, partitions=set())
        return opened, 0, None
    session = state.sessions.get(key)
    if session is None:
        return None, SHARE_SESSION_NOT_FOUND, "no share session of this member: open one with epoch 0"
    if epoch == _CLOSE_SESSION:
        del state.sessions[key]
        return None, 0, None
    if epoch != session.epoch:
        return (
            None,
            INVALID_SHARE_SESSION_EPOCH,
            f"share session epoch {epoch} is not the next one, {session.epoch}",
        )
    session.epoch = session.epoch % _EPOCH_MAX + 1
    state.sessions.move_to_end(key)
    return session, 0, None


# -- acknowledgements -----------------------------------------------------------------


def _expanded(batches: Iterable[s.AcknowledgementBatch]) -> tuple[I64, npt.NDArray[np.int8]] | str:
    """(offsets, types) of acknowledgement batches, gaps left out, or what is wrong."""
    offsets: list[I64] = []
    types: list[npt.NDArray[np.int8]] = []
    for batch in batches:
        count = batch.last_offset - batch.first_offset + 1
        if batch.first_offset < 0 or count < 1 or count > limits.kafka_share_fetch_records_max * 16:
            return (
                f"acknowledgement batch {batch.first_offset}..{batch.last_offset} is not a range of offsets"
            )
        kinds = np.asarray(batch.acknowledge_types, dtype=np.int8)
        if len(kinds) == 1:
            kinds = np.full(count, kinds[0], dtype=np.int8)
        elif len(kinds) != count:
            return (
                f"acknowledgement batch {batch.first_offset}..{batch.last_offset} has {len(kinds)} types; "
                f"it needs 1 or {count}"
            )
        if len(kinds) and (kinds.min() < s.ACKNOWLEDGE_GAP or kinds.max() > s.ACKNOWLEDGE_REJECT):
            return "acknowledge types are 0 (gap), 1 (accept), 2 (release) and 3 (reject)"
        offsets.append(np.arange(batch.first_offset, batch.last_offset + 1, dtype=np.int64))
        types.append(kinds)
    if not offsets:
        return np.zeros(0, np.int64), np.zeros(0, np.int8)
    all_offsets, all_types = np.concatenate(offsets), np.concatenate(types)
    keep = all_types != s.ACKNOWLEDGE_GAP
    return all_offsets[keep], all_types[keep]


def _offsets_batch(offsets: I64) -> pa.RecordBatch:
    return pa.record_batch([pa.array(offsets, pa.int64())], ["offset"])


def _settle(
    broker: Broker,
    member: ShareMember,
    held: list[Acquired],
    topic: str,
    partition: int,
    offsets: I64,
    types: npt.NDArray[np.int8],
) -> bool:
    """Settle what the member holds of ``offsets`` (runs on the executor); False if any
    offset was not held or could not be settled (INVALID_RECORD_STATE)."""
    groups = broker.node.groups
    order = np.argsort(offsets, kind="stable")
    offsets, types = offsets[order], types[order]
    found = np.zeros(len(offsets), dtype=bool)
    fine = True
    for chunk in held:
        if chunk.topic != topic or not len(chunk.offsets):
            continue
        mine = (chunk.partitions == partition) & np.isin(chunk.offsets, offsets)
        if not mine.any():
            continue
        chosen = chunk.offsets[mine]
        where = np.searchsorted(offsets, chosen)
        found[where] = True
        kinds = types[where]
        for kind in (s.ACKNOWLEDGE_ACCEPT, s.ACKNOWLEDGE_REJECT, s.ACKNOWLEDGE_RELEASE):
            picked = chosen[kinds == kind]
            if not len(picked):
                continue
            refs = DeliveryBatch(topic, chunk.lease, _offsets_batch(picked))
            try:
                if kind == s.ACKNOWLEDGE_RELEASE:
                    result = groups.nack(member.group_id, member.native_id, refs, 0.0)
                else:
                    result = groups.ack(member.group_id, member.native_id, refs)
            except UnknownMember:
                fine = False
                continue
            fine = fine and result.ok
        chunk.offsets, chunk.partitions = chunk.offsets[~mine], chunk.partitions[~mine]
    return fine and bool(found.all())


async def _acknowledge(
    broker: Broker,
    state: ShareGroups,
    member: ShareMember,
    topic_id: uuid.UUID,
    partition: int,
    batches: tuple[s.AcknowledgementBatch, ...],
) -> tuple[int, str | None]:
    """(error code, message) of acknowledging a partition's batches."""
    expanded = _expanded(batches)
    if isinstance(expanded, str):
        return ErrorCode.INVALID_REQUEST, expanded
    offsets, types = expanded
    if not len(offsets):
        return 0, None
    view = await broker.topic_by_id(topic_id)
    held = state.held.setdefault((member.group_id, member.member_id), [])
    if view is None or view.name not in member.topics:
        return ErrorCode.UNKNOWN_TOPIC_ID, "the member holds no records of that topic"
    # The executor thread gets a copy of the list: the event loop alone changes the list
    # (a fetch of the member may add to it meanwhile); settled chunks are dropped here.
    settled = await broker.call(_settle, broker, member, list(held), view.name, partition, offsets, types)
    held[:] = [chunk for chunk in held if len(chunk.offsets)]
    if not settled:
        return INVALID_RECORD_STATE, (
            "some offsets are not held by this member (never acquired, already acknowledged, or "
            "their acquisition lock expired)"
        )
    return 0, None


# -- acquiring records ----------------------------------------------------------------


def _partitions(broker: Broker, view: TopicView, records: pa.RecordBatch) -> I64:
    offsets = records.column("offset").to_numpy().astype(np.int64)
    if len(view.history) == 1 and view.history[0][1] == 1:
        return np.zeros(len(offsets), dtype=np.int64)
    first, end = int(offsets[0]), int(offsets[-1]) + 1
    history: list[list[int]] = []
    stored: list[list[int]] = []
    while first < end:
        answer = partition_map(broker.engine, view.name, first, end)
        history = answer["history"]
        stored.extend(answer["stored"])
        if answer["end"] <= first:
            break
        first = answer["end"]
    return np.asarray(partitions_of(records.column("key"), offsets, history, stored), dtype=np.int64)


def _poll(broker: Broker, member: ShareMember, max_records: int) -> list[DeliveryBatch]:
    groups = broker.node.groups
    try:
        return groups.poll_batches(member.group_id, member.native_id, max_records, 0.0)
    except UnknownMember:  # silent longer than the group's ack timeout: join again
        member.native_id = g.join_native(broker, member.group_id, member.topics)
        return groups.poll_batches(member.group_id, member.native_id, max_records, 0.0)


def _ranges(offsets: I64, attempts: I64) -> tuple[s.AcquiredRecords, ...]:
    """Runs of consecutive offsets with one delivery count."""
    if not len(offsets):
        return ()
    breaks = np.flatnonzero((np.diff(offsets) != 1) | (np.diff(attempts) != 0)) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(offsets)]]) - 1
    return tuple(
        s.AcquiredRecords(first_offset=int(a), last_offset=int(b), delivery_count=int(c))
        for a, b, c in zip(offsets[starts], offsets[ends], attempts[starts], strict=True)
    )


Answers = dict[tuple[uuid.UUID, int], tuple[bytes, tuple[s.AcquiredRecords, ...]]]


class _Budget:
    """What is left of a ShareFetch's bytes, and whether it took a record yet."""

    def __init__(self, max_bytes: int) -> None:
        self.left = max_bytes
        self.any_records = False

    def take(self, records: pa.RecordBatch) -> int:
        """How many of ``records`` (one partition's) fit in what is left: at least one
        if no record was taken yet."""
        sizes = _BATCH_HEADER_BYTES + np.cumsum(_record_bytes_max(pa.Table.from_batches([records])))
        count = int(np.searchsorted(sizes, self.left, side="right"))
        if count == 0 and not self.any_records:
            count = 1
        if count:
            self.left = max(self.left - int(sizes[count - 1]), 0)
            self.any_records = True
        return count


def _give_back(broker: Broker, member: ShareMember, batch: DeliveryBatch, offsets: I64) -> None:
    """Records polled that this fetch does not hand on go back to the group, uncounted."""
    if len(offsets):
        refs = DeliveryBatch(batch.topic, batch.lease, _offsets_batch(offsets))
        broker.node.groups.release(member.group_id, member.native_id, refs)


def _acquire(
    broker: Broker,
    member: ShareMember,
    views: dict[str, TopicView],
    wanted: dict[str, set[int]],
    max_records: int,
    budget: _Budget,
    now: float,
) -> tuple[Answers, list[Acquired]]:
    """Poll the member's native group once: per (topic id, partition), the record batch
    and the acquired ranges, and what the member now holds (runs on the executor)."""
    answers: Answers = {}
    held: list[Acquired] = []
    for batch in _poll(broker, member, max_records):
        if batch.records.num_rows == 0:
            continue
        records = batch.records.take(pc.sort_indices(batch.records, [("offset", "ascending")]))
        offsets = records.column("offset").to_numpy().astype(np.int64)
        view, chosen = views.get(batch.topic), wanted.get(batch.topic)
        if view is None or not chosen:
            _give_back(broker, member, batch, offsets)
            continue
        partitions = _partitions(broker, view, records)
        attempts = records.column("attempt").to_numpy().astype(np.int64)
        inside = np.isin(partitions, np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
        keep = np.zeros(len(offsets), dtype=bool)
        stored = records.select(list(_STORED_COLUMNS))
        for partition in np.unique(partitions[inside]):
            where = np.flatnonzero(partitions == partition)
            chunk = stored.take(pa.array(where))
            count = budget.take(chunk)
            if not count:
                continue
            where = where[:count]
            keep[where] = True
            answers[(view.topic_id, int(partition))] = (
                encode_batch(chunk.slice(0, count)),
                _ranges(offsets[where], attempts[where]),
            )
        _give_back(broker, member, batch, offsets[~keep])
        if keep.any():
            held.append(Acquired(batch.topic, batch.lease, offsets[keep], partitions[keep], now))
    return answers, held


async def _wait_and_acquire(
    broker: Broker,
    member: ShareMember,
    views: dict[str, TopicView],
    wanted: dict[str, set[int]],
    max_records: int,
    max_bytes: int,
    wait_ms: int,
) -> Answers:
    state = g.share_groups(broker)
    deadline = time.monotonic() + min(max(wait_ms, 0), limits.kafka_fetch_wait_ms_max) / 1000
    # No record takes fewer bytes than its overhead: never poll more than could fit.
    max_records = max(1, min(max_records, max_bytes // _RECORD_OVERHEAD_BYTES + 1))
    while True:
        seen = broker.arrivals.generation
        now = time.monotonic()
        answers, held = await broker.call(
            _acquire, broker, member, views, wanted, max_records, _Budget(max_bytes), now
        )
        if held:
            state.held.setdefault((member.group_id, member.member_id), []).extend(held)
        remaining = deadline - time.monotonic()
        if answers or remaining <= 0:
            return answers
        # Released and expired records come back without an arrival: look again soon.
        await broker.arrivals.wait(seen, min(remaining, limits.kafka_share_fetch_recheck_ms / 1000))


def _prune(state: ShareGroups, key: tuple[str, str], lock_ms: int, now: float) -> None:
    """Forget held records whose lock ran out long ago (their acknowledgement can only
    be INVALID_RECORD_STATE now), so that a member that never acknowledges holds a
    bounded list."""
    held = state.held.get(key)
    if held:
        horizon = now - 2 * lock_ms / 1000
        held[:] = [chunk for chunk in held if chunk.since >= horizon]


def _requesting_member(
    state: ShareGroups, key: tuple[str, str], epoch: int
) -> tuple[ShareMember | None, bool]:
    """The member a ShareFetch or ShareAcknowledge comes from, and whether it is one that
    left the group and closes its session now (epoch -1) after its last heartbeat."""
    member = state.members.get(key)
    if member is None and epoch == _CLOSE_SESSION and key in state.leaving:
        return state.leaving[key][0], True
    return member, False


# -- ShareFetch -----------------------------------------------------------------------


def _fetch_refused(code: int, message: str) -> s.ShareFetchResponse:
    return s.ShareFetchResponse(error_code=code, error_message=message)


async def share_fetch(broker: Broker, request: Request) -> s.ShareFetchResponse:
    body: s.ShareFetchRequest = request.body
    state = g.share_groups(broker)
    key = (body.group_id or "", body.member_id or "")
    member, departing = _requesting_member(state, key, body.share_session_epoch)
    if member is None:
        return _fetch_refused(
            ErrorCode.UNKNOWN_MEMBER_ID,
            f"{body.member_id!r} is not a member of share group {body.group_id!r}: join with "
            "ShareGroupHeartbeat first",
        )
    has_acks = any(p.acknowledgement_batches for t in body.topics for p in t.partitions)
    if body.share_session_epoch == _OPEN_SESSION and has_acks:
        return _fetch_refused(
            ErrorCode.INVALID_REQUEST, "a request that opens a share session acknowledges nothing"
        )
    session, code, message = _session(state, key, body.share_session_epoch)
    if code:
        return _fetch_refused(code, message or "")
    lock_ms = await broker.call(g.lock_ms, broker, member.group_id)
    now = time.monotonic()
    member.last_seen = now
    _prune(state, key, lock_ms, now)
    acks: dict[tuple[uuid.UUID, int], tuple[int, str | None]] = {}
    named: list[tuple[uuid.UUID, int]] = []
    for topic in body.topics:
        for p in topic.partitions:
            named.append((topic.topic_id, p.partition_index))
            if p.acknowledgement_batches:
                acks[(topic.topic_id, p.partition_index)] = await _acknowledge(
                    broker, state, member, topic.topic_id, p.partition_index, p.acknowledgement_batches
                )
    views: dict[str, TopicView] = {}
    for name in member.topics:
        view = await broker.topic(name)
        if view is not None:
            views[name] = view
    by_id = {view.topic_id: view for view in views.values()}
    acquired: Answers = {}
    if session is not None:
        session.partitions.update(named)
        for forgotten in body.forgotten_topics_data:
            session.partitions.difference_update((forgotten.topic_id, p) for p in forgotten.partitions)
        wanted: dict[str, set[int]] = {}
        for topic_id, partition in session.partitions:
            if topic_id in by_id:
                wanted.setdefault(by_id[topic_id].name, set()).add(partition)
        if wanted:
            max_records = max(1, min(body.max_records, limits.kafka_share_fetch_records_max))
            max_bytes = min(max(body.max_bytes, 0), limits.kafka_share_fetch_bytes_max)
            acquired = await _wait_and_acquire(
                broker, member, views, wanted, max_records, max_bytes, body.max_wait_ms
            )
    if departing:
        await g.depart(broker, state, key, member)
    return _fetch_response(by_id, named, acks, acquired, lock_ms)


def _fetch_response(
    by_id: dict[uuid.UUID, TopicView],
    named: list[tuple[uuid.UUID, int]],
    acks: dict[tuple[uuid.UUID, int], tuple[int, str | None]],
    acquired: Answers,
    lock_ms: int,
) -> s.ShareFetchResponse:
    by_topic: dict[uuid.UUID, dict[int, s.ShareFetchPartitionData]] = {}
    for topic_id, partition in named:
        code, message = acks.get((topic_id, partition), (0, None))
        by_topic.setdefault(topic_id, {})[partition] = s.ShareFetchPartitionData(
            partition_index=partition,
            error_code=0 if topic_id in by_id else ErrorCode.UNKNOWN_TOPIC_ID,
            acknowledge_error_code=code,
            acknowledge_error_message=message,
        )
    for (topic_id, partition), (records, ranges) in acquired.items():
        code, message = acks.get((topic_id, partition), (0, None))
        by_topic.setdefault(topic_id, {})[partition] = s.ShareFetchPartitionData(
            partition_index=partition,
            acknowledge_error_code=code,
            acknowledge_error_message=message,
            records=records,
            acquired_records=ranges,
        )
    return s.ShareFetchResponse(
        acquisition_lock_timeout_ms=lock_ms,
        responses=tuple(
            s.ShareFetchTopicResponse(topic_id=topic_id, partitions=tuple(partitions.values()))
            for topic_id, partitions in by_topic.items()
        ),
    )


# -- ShareAcknowledge -----------------------------------------------------------------


async def share_acknowledge(broker: Broker, request: Request) -> s.ShareAcknowledgeResponse:
    body: s.ShareAcknowledgeRequest = request.body
    state = g.share_groups(broker)
    key = (body.group_id or "", body.member_id or "")
    member, departing = _requesting_member(state, key, body.share_session_epoch)
    if member is None:
        return s.ShareAcknowledgeResponse(
            error_code=ErrorCode.UNKNOWN_MEMBER_ID,
            error_message=f"{body.member_id!r} is not a member of share group {body.group_id!r}",
        )
    if body.share_session_epoch == _OPEN_SESSION:
        return s.ShareAcknowledgeResponse(
            error_code=INVALID_SHARE_SESSION_EPOCH,
            error_message="ShareAcknowledge cannot open a share session (epoch 0): ShareFetch opens it",
        )
    _session_now, code, message = _session(state, key, body.share_session_epoch)
    if code:
        return s.ShareAcknowledgeResponse(error_code=code, error_message=message)
    member.last_seen = time.monotonic()
    topics: list[s.ShareAcknowledgeTopicResponse] = []
    for topic in body.topics:
        partitions: list[s.ShareAcknowledgePartitionData] = []
        for p in topic.partitions:
            code, message = await _acknowledge(
                broker, state, member, topic.topic_id, p.partition_index, p.acknowledgement_batches
            )
            partitions.append(
                s.ShareAcknowledgePartitionData(
                    partition_index=p.partition_index, error_code=code, error_message=message
                )
            )
        topics.append(s.ShareAcknowledgeTopicResponse(topic_id=topic.topic_id, partitions=tuple(partitions)))
    if departing:
        await g.depart(broker, state, key, member)
    return s.ShareAcknowledgeResponse(responses=tuple(topics))
