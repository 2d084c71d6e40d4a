"""One consumer group's state and the primitives its parts share.

A group (group.py) is one object made of three parts over one state, each in its own
module: :class:`GroupCore` here (the state; the lock and the condition polls wait on;
leases and how they fail; windows parked and released), reading.py (reading the log
into the windows) and settling.py (acks, nacks, dead letters and the progress file).
The rules of the whole are in group.py's docstring; every method here runs with the
group's ``_lock`` held unless it says otherwise.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from odradek.errors import ClosedError, UnknownMember
from odradek.groups import dispatcher
from odradek.groups.deadletters import REASON_EXPIRED, REASON_FAILED, REASON_TIMEOUT, DeadLetterJob
from odradek.groups.dispatcher import Cursor, Released
from odradek.groups.info import KIND_ODRADEK, KIND_SHARE
from odradek.groups.members import COUNTERS, Lease, Member
from odradek.groups.options import GroupOptions
from odradek.groups.state import GroupState, ProgressStore, TopicProgress

if TYPE_CHECKING:
    from odradek.engine.engine import Engine

log = logging.getLogger(__name__)

I64 = dispatcher.I64


class GroupCore:
    def __init__(
        self,
        name: str,
        engine: Engine,
        store: ProgressStore,
        state: GroupState | None,
        clock: Callable[[], float],
    ) -> None:
        self.name = name
        self._engine = engine
        self._store = store
        self._clock = clock
        self._lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._changes = 0  # bumped (with a notify) whenever a poll may now find work
        self._members: dict[str, Member] = {}  # in join order: the first is active
        self._member_sequence = 0
        self._cursors: dict[str, Cursor] = {}
        self._saved: dict[str, TopicProgress] = dict(state.topics) if state else {}
        self._saved_attempts: dict[str, tuple[I64, npt.NDArray[np.uint16]]] = {}
        self._empty_since: float | None = None  # when the last member went
        self._leases: dict[int, Lease] = {}  # in deadline order (ack_timeout is fixed)
        self._next_lease = time.time_ns() // 1000  # > every lease before a restart
        self._delays: list[float] = []  # heap of nack-delay ends
        self._dead_letter_jobs: list[DeadLetterJob] = []
        # Appends dead letters to the group's dead-letter topic (the manager's writer).
        self.write_dead_letters: Callable[[str, pa.RecordBatch], None] = self._append_here
        self._ticket = 0  # the last progress frame written
        # Settlements written to the progress file whose fsync is awaited: applied in
        # memory only once durable, and written again by a snapshot rewrite meanwhile.
        self._unapplied: dict[int, list[tuple[Cursor, I64]]] = {}
        self._unapplied_sequence = 0
        self._refresh_due = 0.0
        self._rotation = 0
        self.counters = dict.fromkeys(COUNTERS, 0)
        self.closed = False
        self.pattern: str | None = None
        self.options: GroupOptions | None = None
        # Called (holding no lock) after an ack moved what is settled: appends waiting
        # for the group (``wait_for``, views/waits.py) look again.
        self.on_progress: Callable[[], None] | None = None
        self._since = 0.0
        meta = state.meta if state else None
        if meta is not None:
            self.pattern = str(meta["pattern"])
            self.options = GroupOptions.from_json(meta["options"])
            self._since = float(meta["since"])

    # -- leases ---------------------------------------------------------------------------

    def _drop_leases(self, member: Member, *, count: bool, reason: str) -> None:
        for lease_id in sorted(member.leases):
            lease = self._leases.get(lease_id)
            if lease is not None:
                self._fail_lease(lease, count=count, reason=reason)
        member.leases.clear()

    def _expire(self, now: float) -> None:
        """Fail leases past their deadline and remove silent members."""
        timeout = self._ack_timeout()
        for member in list(self._members.values()):
            if member.polling == 0 and now - member.last_seen > timeout:
                log.info(
                    "group %s: member %s made no call for %.1f s; removing it", self.name, member.id, timeout
                )
                del self._members[member.id]
                self.counters["members_expired"] += 1
                self._drop_leases(member, count=True, reason=REASON_EXPIRED)
                self._changed()
        while self._leases:
            lease = next(iter(self._leases.values()))
            if lease.deadline > now:
                break
            self._fail_lease(lease, count=True, reason=REASON_TIMEOUT)
            self._changed()
        while self._delays and self._delays[0] <= now:
            heapq.heappop(self._delays)
            self._changed()
        self._release_windows_if_idle(now, grace=timeout)

    def _fail_lease(self, lease: Lease, *, count: bool, reason: str) -> None:
        del self._leases[lease.id]
        member = self._members.get(lease.member)
        if member is not None:
            member.leases.discard(lease.id)
        for cursor, offsets in lease.parts:
            if self._cursors.get(cursor.topic) is not cursor:
                continue
            slots = cursor.in_flight_slots(offsets, lease.id)
            if len(slots):
                released = self._fail(cursor, slots, count=count, delay=0.0, reason=reason)
                if count:
                    self.counters["abandoned" if reason == REASON_FAILED else "timed_out"] += released.failed
                    self.counters["rewound"] += released.rewound
                else:
                    self.counters["released"] += released.rewound

    def _fail(self, cursor: Cursor, slots: I64, *, count: bool, delay: float, reason: str) -> Released:
        assert self.options is not None
        now = self._clock()
        released = cursor.fail(
            slots, count=count, now=now, delay=delay, max_deliveries=self.options.max_deliveries
        )
        self._forget_leased(released)
        if delay > 0:
            heapq.heappush(self._delays, now + delay)
        if len(released.dead):
            self._dead_letter_jobs.append(
                DeadLetterJob(cursor, released.dead, cursor.records(released.dead), reason)
            )
        return released

    def _forget_leased(self, released: Released) -> None:
        """Records stopped being in flight: their leases hold fewer."""
        for lease_id, count in zip(released.leases.tolist(), released.lease_counts.tolist(), strict=True):
            lease = self._leases.get(lease_id)
            if lease is None:
                continue
            lease.remaining -= count
            if lease.remaining <= 0:
                del self._leases[lease_id]
                member = self._members.get(lease.member)
                if member is not None:
                    member.leases.discard(lease_id)

    # -- windows ----------------------------------------------------------------------------

    def _release_windows_if_idle(self, now: float, grace: float) -> None:
        """A group without members keeps its progress, not its windows: their arrays
        and the log batches they reference are freed, and rebuilt from the progress
        when a member joins again (records above the watermark are read again). After
        the last member expired (rather than left) the windows stay ``grace`` seconds
        more, so a late ack of the silent member still settles what it did."""
        if self._members:
            self._empty_since = None
            return
        if self._empty_since is None:
            self._empty_since = now
        if self._dead_letter_jobs or not self._cursors or now - self._empty_since < grace:
            return
        for topic, cursor in self._cursors.items():
            self._park(topic, cursor)
        self._cursors.clear()

    def _park(self, topic: str, cursor: Cursor) -> None:
        """Keep what a closed window knew: its progress, and (in memory only, like nack
        delays) how many times its unsettled records were delivered."""
        self._saved[topic] = self._progress_of(cursor)
        self._saved_attempts[topic] = cursor.attempts_held()

    @staticmethod
    def _progress_of(cursor: Cursor) -> TopicProgress:
        starts, ends = cursor.settled_above()
        return TopicProgress(cursor.incarnation, cursor.committed, starts, ends)

    # -- plumbing ---------------------------------------------------------------------------

    @property
    def member_count(self) -> int:
        return len(self._members)

    @property
    def kind(self) -> str:
        """``share`` while a member joined for a Kafka share member is in the group,
        else ``odradek`` (info.py)."""
        members = list(self._members.values())
        return KIND_SHARE if any(member.share for member in members) else KIND_ODRADEK

    def wake(self) -> None:
        """New data or topics may be there (called by the engine's arrivals)."""
        with self._lock:
            self._changed()

    def committed_offset(self, topic: str) -> int | None:
        """The offset below which every record of ``topic`` is settled (None: the group
        has not read the topic yet)."""
        with self._lock:
            cursor = self._cursors.get(topic)
            if cursor is not None:
                return cursor.committed
            saved = self._saved.get(topic)
            return saved.committed if saved is not None else None

    def _append_here(self, topic: str, batch: pa.RecordBatch) -> None:
        """Dead letters to the topic in the group's engine (created if missing)."""
        self._engine.create_topic(topic, exist_ok=True)
        self._engine.append(topic, batch)

    def _changed(self) -> None:
        self._changes += 1
        self._wakeup.notify_all()

    def _member(self, member_id: str) -> Member:
        self._check_open()
        member = self._members.get(member_id)
        if member is None:
            raise self._unknown(member_id)
        return member

    def _unknown(self, member_id: str) -> UnknownMember:
        return UnknownMember(
            f"member {member_id!r} is not in group {self.name!r}: it left, or made no call for "
            f"ack_timeout ({self._ack_timeout()} s) and was removed; join again",
            self.name,
            member_id,
        )

    def _ack_timeout(self) -> float:
        return self.options.ack_timeout if self.options is not None else 30.0

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError(f"group {self.name!r} is closed (the engine is closing)")

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self._wakeup.notify_all()
        self._store.close()

    def delete(self) -> None:
        """Close the group and remove its progress file (the manager checked it is empty)."""
        self.close()
        self._store.delete()
