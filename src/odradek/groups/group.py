"""One consumer group: members, leases, the windows of its topics, dead letters.

Theory of operation
-------------------
* **Members** join and leave at any moment; nothing is assigned to a member, so there
  is no rebalance. Each poll hands the polling member whatever the dispatcher allows
  right now (dispatcher.py has the ordering rules). With ``ordering="topic"`` only the
  *active* member (the longest-joined one still present) is served; the others wait
  in their polls and take over, in order, when it leaves or expires.
* **Leases**: every poll that delivers something opens a lease (a number, unique and
  increasing across restarts because it starts from the clock) with a deadline of
  ``ack_timeout``. Acks and nacks name deliveries by (topic, offset, lease). A lease
  past its deadline fails its unsettled records: they are redelivered to any member,
  or dead-lettered once they have had ``max_deliveries`` deliveries.
* **Members expire** when they make no call (poll, ack, nack) for ``ack_timeout``
  while not waiting in a poll: their leases fail at once, and a later poll of theirs
  gets UnknownMember (the embedded consumer then joins again by itself).
* **Dead letters** are written to the dead-letter topic outside the group's lock,
  then marked settled; a failed write is retried by the next poll. A record is
  therefore dead-lettered at least once (twice only if the process dies between the
  two steps).
* **Progress**: a settlement is appended to the group's progress file (state.py)
  and made durable (its fsync) *before* the records are settled in memory. An ack
  whose write or fsync failed (a full disk) therefore changes nothing: it raises
  StorageError, the deliveries stay in flight, and a retried ack writes them again;
  once space is freed the group goes on without a restart. A snapshot rewrite
  includes the settlements written but not yet applied, so none is lost. Dead
  letters follow the same order (append, progress write and fsync, then settle).

Attempts: every delivery handed out counts
------------------------------------------
A delivery counts as an attempt of its record from the moment a poll hands it to a
member (``attempt`` is that count), and it stays counted however it comes back,
unless the member *explicitly and cleanly* returns it unprocessed. So a record that
kills its consumer (a crash, an exception, a record the consumer cannot decode) is
dead-lettered after ``max_deliveries`` instead of being redelivered forever. Per path:

=====================================================  ===============================
how deliveries come back                               counted as an attempt?
=====================================================  ===============================
``nack``                                               yes (reason ``nacked``)
lease past ``ack_timeout``                             yes (``ack_timeout``)
member silent for ``ack_timeout`` (expired)            yes (``member_expired``)
member failed: ``leave(..., failed=True)``: a          yes (``member_failed``)
consumer closed by an exception (``with`` block),
``close(failed=True)``, a DoExchange stream that
ended without ``{"op": "leave"}`` (client died,
cancelled, stream broken, or just stopped writing)
clean leave: ``Consumer.close()`` (or a ``with``       no
block left normally), ``{"op": "leave"}`` on a
DoExchange stream, ``GroupManager.leave(g, m)``
the server drains (shutting down)                      no (the member did nothing wrong)
*rewound*: a key's later in-flight records when an     no (they go back for the key's
earlier one fails (``max_in_flight_per_key`` > 1)      order, not for failing)
=====================================================  ===============================

Only the clean calls above give deliveries back uncounted. A consumer that fails
while holding many deliveries spends an attempt of each: poll fewer records, or ack
as you go, where a record may kill the consumer.

Locks: the group's ``_lock`` (with ``_wakeup``, its condition) guards everything here
and in the cursors. While holding it the group reads the engine (list, describe,
resolve, fetch: none of them takes a group lock) and writes its progress file, but
never appends to a topic: an append notifies arrivals, which takes group locks.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from odradek import limits
from odradek.errors import (
    ClosedError,
    InvalidRequest,
    OdradekError,
    OffsetOutOfRange,
    TopicNotFound,
    UnknownMember,
)
from odradek.groups import dispatcher
from odradek.groups.deadletters import (
    REASON_EXPIRED,
    REASON_FAILED,
    REASON_NACKED,
    REASON_TIMEOUT,
    DeadLetterJob,
    dead_letter_batch,
)
from odradek.groups.delivery import (
    DONE,
    STALE,
    UNKNOWN,
    AckResult,
    DeliveryBatch,
    Rejection,
    Settleable,
    group_refs,
)
from odradek.groups.dispatcher import Cursor, Released
from odradek.groups.info import GroupInfo, MemberInfo, TopicLag
from odradek.groups.keys import prepare
from odradek.groups.members import COUNTERS, Lease, Member
from odradek.groups.options import GroupOptions
from odradek.groups.state import (
    KIND_DONE,
    GroupState,
    ProgressStore,
    TopicProgress,
    encode_done,
    encode_frame,
    needs_rewrite,
    runs_of,
    snapshot_frames,
)
from odradek.names import compile_pattern

if TYPE_CHECKING:
    from odradek.engine.engine import Engine

log = logging.getLogger(__name__)

I64 = dispatcher.I64

_STATUS_NAMES = {
    dispatcher.STATUS_DONE: DONE,
    dispatcher.STATUS_STALE: STALE,
    dispatcher.STATUS_UNKNOWN: UNKNOWN,
}

# How often a busy group looks for new topics matching its pattern (an idle poll looks
# every time it would wait).
_REFRESH_SECONDS = 0.5
# A poll with nothing to do sleeps at most this long between checks (new topics,
# expired members); arrivals, acks and releases wake it at once.
_WAIT_SECONDS_MAX = 1.0
# A poll that delivered reads more of the log when a topic's window has fewer
# deliverable keys than this many polls' worth, so the members never find it dry.
_READ_AHEAD_POLLS = 4
# A dead-letter write that failed is retried after this long.
_DEAD_LETTER_RETRY_SECONDS = 1.0


class Group:
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
        self._since = 0.0
        meta = state.meta if state else None
        if meta is not None:
            self.pattern = str(meta["pattern"])
            self.options = GroupOptions.from_json(meta["options"])
            self._since = float(meta["since"])

    # -- membership -------------------------------------------------------------------

    def join(self, pattern: str, options: GroupOptions) -> str:
        with self._lock:
            self._check_open()
            now = self._clock()
            self._expire(now)
            if self._members:
                self._check_same(pattern, options)
            else:
                self._adopt(pattern, options)
            if len(self._members) >= limits.group_members_max:
                raise InvalidRequest(
                    f"group {self.name!r} has {limits.group_members_max} members, the most allowed"
                )
            self._refresh_topics(now, resolve_errors=True)
            member = Member(uuid.uuid4().hex, self._member_sequence, time.time(), now)
            self._member_sequence += 1
            self._members[member.id] = member
            self.counters["members_joined"] += 1
            ticket = self._ticket
        self._store.sync(ticket)
        return member.id

    def _check_same(self, pattern: str, options: GroupOptions) -> None:
        assert self.options is not None
        if pattern != self.pattern:
            raise InvalidRequest(
                f"group {self.name!r} subscribes to {self.pattern!r}; a member cannot join it with "
                f"{pattern!r} while it has members (use another group, or wait until it is empty)"
            )
        ours, theirs = self.options.policy(), options.policy()
        if ours != theirs:
            differences = ", ".join(
                f"{k}={theirs[k]!r} (group: {ours[k]!r})" for k in ours if ours[k] != theirs[k]
            )
            raise InvalidRequest(f"group {self.name!r} has members with other options: {differences}")

    def _adopt(self, pattern: str, options: GroupOptions) -> None:
        """The first member of an empty group sets its pattern and options."""
        same_policy = (
            self.options is not None and pattern == self.pattern and self.options.policy() == options.policy()
        )
        if same_policy and self.options == options:
            return
        if not same_policy:
            self._since = time.time()
            for topic, cursor in self._cursors.items():  # rebuilt under the new policy
                self._park(topic, cursor)
            self._cursors.clear()
        self.pattern, self.options = pattern, options
        meta = {
            "group": self.name,
            "pattern": pattern,
            "options": options.to_json(),
            "since": self._since,
            "format": 1,
        }
        self._ticket = self._store.write_meta(meta)

    def leave(self, member_id: str, *, failed: bool = False) -> bool:
        """Remove a member. Its unsettled deliveries go back to the group at once:
        uncounted after a clean leave, each counting an attempt if the member
        ``failed`` (see "Attempts" above)."""
        with self._lock:
            member = self._members.pop(member_id, None)
            if member is None:
                return False
            if failed:
                self.counters["members_failed"] += 1
                self._drop_leases(member, count=True, reason=REASON_FAILED)
            else:
                self.counters["members_left"] += 1
                self._drop_leases(member, count=False, reason="")
            self._changed()
        self._process_dead_letters()
        with self._lock:
            self._release_windows_if_idle(self._clock(), grace=0.0)
        return True

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

    # -- polling ----------------------------------------------------------------------

    def poll(self, member_id: str, max_records: int, timeout: float) -> list[DeliveryBatch]:
        deadline = self._clock() + timeout
        with self._lock:
            member = self._member(member_id)
            member.polling += 1
        try:
            return self._poll_loop(member, max_records, deadline)
        finally:
            with self._lock:
                member.polling -= 1
                member.last_seen = self._clock()

    def _poll_loop(self, member: Member, max_records: int, deadline: float) -> list[DeliveryBatch]:
        while True:
            with self._lock:
                self._check_open()
                now = self._clock()
                member.last_seen = now
                self._expire(now)
                if member.id not in self._members:  # it left (close from another thread)
                    raise self._unknown(member.id)
                if now >= self._refresh_due:
                    self._refresh_topics(now)
                batches = self._dispatch(member, max_records, now) if self._is_active(member) else []
                if batches:
                    ticket = self._ticket
                    ahead = self._plan_fetches(max_records * _READ_AHEAD_POLLS)
                    break
                fetches = self._plan_fetches(max_records)
                has_jobs = bool(self._dead_letter_jobs)
                seen = self._changes
            if has_jobs:
                self._process_dead_letters()
            if fetches and self._fetch(fetches):
                continue
            with self._lock:
                if self._changes != seen:
                    continue
                now = self._clock()
                if now >= deadline:
                    return []
                self._refresh_topics(now)
                if self._changes != seen:
                    continue
                self._wakeup.wait(max(0.0, min(deadline, self._next_timer(now)) - now))
        if ahead:  # read on before the window runs dry, so other members never wait
            self._fetch(ahead)
        self._store.sync(ticket)
        return batches

    def _is_active(self, member: Member) -> bool:
        assert self.options is not None
        return self.options.ordering != "topic" or next(iter(self._members)) == member.id

    def _dispatch(self, member: Member, budget: int, now: float) -> list[DeliveryBatch]:
        assert self.options is not None
        lease_id = self._next_lease
        cursors = list(self._cursors.values())
        if not cursors:
            return []
        self._rotation = (self._rotation + 1) % len(cursors)
        parts: list[tuple[Cursor, I64]] = []
        for cursor in cursors[self._rotation :] + cursors[: self._rotation]:
            if budget == 0:
                break
            offsets = cursor.dispatch(budget, member.index, lease_id, now)
            if len(offsets):
                parts.append((cursor, offsets))
                budget -= len(offsets)
        if not parts:
            return []
        self._next_lease += 1
        total = sum(len(offsets) for _, offsets in parts)
        self._leases[lease_id] = Lease(lease_id, member.id, now + self.options.ack_timeout, parts, total)
        member.leases.add(lease_id)
        batches = []
        for cursor, offsets in parts:
            records = cursor.records(offsets)
            self.counters["redelivered"] += int(np.count_nonzero(cursor.attempts[offsets - cursor.base] > 1))
            batches.append(DeliveryBatch(cursor.topic, lease_id, records))
        self.counters["delivered"] += total
        return batches

    def _next_timer(self, now: float) -> float:
        """When something may become deliverable without a notification."""
        timer = now + _WAIT_SECONDS_MAX
        if self._leases:
            timer = min(timer, next(iter(self._leases.values())).deadline)
        if self._delays:
            timer = min(timer, self._delays[0])
        timeout = self._ack_timeout()
        for member in self._members.values():
            if member.polling == 0:
                timer = min(timer, member.last_seen + timeout)
        if self._dead_letter_jobs:
            timer = min(timer, min(job.not_before for job in self._dead_letter_jobs))
        return timer

    # -- reading the log --------------------------------------------------------------

    def _plan_fetches(self, wanted: int) -> list[tuple[Cursor, int, int, int]]:
        """Cursors to read more of: (cursor, from offset, records, wake count)."""
        plans = []
        for cursor in self._cursors.values():
            room = limits.group_window_records_max - cursor.backlog
            if cursor.fetching or not cursor.needs_records(wanted) or room <= 0:
                continue
            if cursor.idle_at == self._changes:
                continue  # read to the end, and nothing arrived since
            cursor.fetching = True
            plans.append((cursor, cursor.end, min(room, limits.group_fetch_records_max), self._changes))
        return plans

    def _fetch(self, plans: list[tuple[Cursor, int, int, int]]) -> bool:
        """Read the planned cursors outside the lock; True if any window changed."""
        assert self.options is not None
        changed = False
        for cursor, offset, count, changes in plans:
            prepared = None
            problem: OdradekError | None = None
            try:
                prepared = prepare(
                    # A schema'd topic's values are delivered as JSON text: a group's
                    # deliveries span topics and go over one stream with one schema.
                    self._engine.fetch(cursor.topic, offset, max_records=count, value_format="json"),
                    self.options.ordering,
                    offset,
                )
            except (OffsetOutOfRange, TopicNotFound) as exc:
                problem = exc
            except BaseException:
                with self._lock:
                    cursor.fetching = False
                raise
            with self._lock:
                cursor.fetching = False
                if problem is not None:
                    changed |= self._fetch_failed(cursor, problem)
                elif prepared is None:
                    cursor.idle_at = changes
                elif cursor.install(prepared):
                    cursor.compact_units()
                    self._changed()  # other members' polls may now find work
                    changed = True
        return changed

    def _fetch_failed(self, cursor: Cursor, problem: OdradekError) -> bool:
        if self._cursors.get(cursor.topic) is not cursor:
            return False
        if isinstance(problem, OffsetOutOfRange) and problem.requested < problem.first:
            if cursor.skip_to(problem.first):
                log.warning(
                    "group %s: retention removed offsets %d..%d of %s before the group read them",
                    self.name,
                    problem.requested,
                    problem.first - 1,
                    cursor.topic,
                )
                self._ticket = self._store.write_start(cursor.topic, cursor.created_at, problem.first)
                return True
            return False
        # The topic was deleted, or deleted and created again (its offsets restarted).
        log.info(
            "group %s: topic %s is gone or was re-created; dropping its progress", self.name, cursor.topic
        )
        del self._cursors[cursor.topic]
        self._ticket = self._store.write_forget(cursor.topic)
        self._refresh_due = 0.0
        return True

    def _refresh_topics(self, now: float, *, resolve_errors: bool = False) -> None:
        """Open cursors for topics that match the pattern, close those that vanished."""
        assert self.options is not None and self.pattern is not None
        self._refresh_due = now + _REFRESH_SECONDS
        existing = self._engine.list_topics()
        matches = compile_pattern(self.pattern)
        names = [n for n in existing if matches(n) and n != self.options.dead_letters]
        for name in names:
            if name not in self._cursors:
                try:
                    self._open_cursor(name)
                except TopicNotFound:
                    continue
                except OdradekError:
                    if resolve_errors:
                        raise
                    log.exception("group %s: cannot start reading %s", self.name, name)
                self._changed()
        current = set(names)
        for name in [n for n in self._cursors if n not in current]:
            cursor = self._cursors.pop(name)
            if name in existing:  # still there: the pattern changed
                self._park(name, cursor)
            else:
                self._ticket = self._store.write_forget(name)

    def _open_cursor(self, name: str) -> None:
        assert self.options is not None
        created_at = self._engine.describe_topic(name).created_at
        saved = self._saved.pop(name, None)
        if saved is not None and saved.created_at == created_at:
            cursor = Cursor(
                name,
                created_at,
                saved.committed,
                self.options.ordering,
                self.options.in_flight_limit,
                saved.starts,
                saved.ends,
            )
            attempts = self._saved_attempts.pop(name, None)
            if attempts is not None:
                cursor.preset_attempts = attempts
        else:
            self._saved_attempts.pop(name, None)
            start = self.options.start if created_at <= self._since else "earliest"
            offset = self._engine.resolve_start(name, start)
            self._ticket = self._store.write_start(name, created_at, offset)
            cursor = Cursor(name, created_at, offset, self.options.ordering, self.options.in_flight_limit)
        self._cursors[name] = cursor

    # -- settling ---------------------------------------------------------------------

    def ack(self, member_id: str, refs: Settleable) -> AckResult:
        """Settle deliveries: their DONE frames are written (under the lock) and made
        durable (outside it) before the records are settled in memory, so a failed
        write or fsync raises StorageError and leaves the deliveries in flight."""
        requests = list(group_refs(refs))
        settled = 0
        rejected: list[Rejection] = []
        written: list[tuple[Cursor, I64]] = []
        with self._lock:
            self._check_open()
            self._touch(member_id)
            for topic, cursor, slots in self._classified(requests, rejected):
                if len(slots):
                    done = slots + cursor.base
                    self._ticket = self._store.write_done(topic, *runs_of(done))  # raises: nothing settled
                    written.append((cursor, done))
                    settled += len(slots)
            self.counters["rejected_acks"] += len(rejected)
            ticket = self._ticket
            token = self._hold_unapplied(written)
        try:
            self._store.sync(ticket)
        finally:
            with self._lock:
                self._unapplied.pop(token, None)
        with self._lock:
            self._apply_settlements(written)
            self.counters["acked"] += settled
            if settled:
                self._changed()
                self._maybe_rewrite()
        return AckResult(settled, rejected)

    def _hold_unapplied(self, written: list[tuple[Cursor, I64]]) -> int:
        """Remember settlements written but not yet durable (for a snapshot rewrite)."""
        self._unapplied_sequence += 1
        if written:
            self._unapplied[self._unapplied_sequence] = written
        return self._unapplied_sequence

    def _apply_settlements(self, written: list[tuple[Cursor, I64]]) -> None:
        """Settle in memory what the progress file now holds as settled. A record
        redelivered meanwhile (its lease ran out during the fsync) is settled too: the
        ack came first and is durable. Records already settled or being dead-lettered
        are left alone."""
        for cursor, offsets in written:
            if self._cursors.get(cursor.topic) is not cursor:
                continue  # the window was closed meanwhile: its progress is on disk
            slots = offsets[offsets >= cursor.committed] - cursor.base
            states = cursor.state[slots]
            slots = slots[(states == dispatcher.IN_FLIGHT) | (states == dispatcher.PENDING)]
            if len(slots):
                self._forget_leased(cursor.settle(slots))

    def nack(self, member_id: str, refs: Settleable, delay: float) -> AckResult:
        requests = list(group_refs(refs))
        settled = 0
        rejected: list[Rejection] = []
        with self._lock:
            self._check_open()
            self._touch(member_id)
            for _topic, cursor, slots in self._classified(requests, rejected):
                flying = slots[cursor.state[slots] == dispatcher.IN_FLIGHT]
                if len(flying):
                    released = self._fail(cursor, flying, count=True, delay=delay, reason=REASON_NACKED)
                    self.counters["rewound"] += released.rewound
                settled += len(slots)  # a nack of a timed-out delivery changes nothing
            self.counters["nacked"] += settled
            self.counters["rejected_acks"] += len(rejected)
            if settled:
                self._changed()
        self._process_dead_letters()
        return AckResult(settled, rejected)

    def _classified(
        self, requests: list[Any], rejected: list[Rejection]
    ) -> Iterator[tuple[str, Cursor, npt.NDArray[np.int64]]]:
        """(topic, cursor, settleable slots) of each requested topic; what cannot be
        settled goes to ``rejected`` with its status."""
        for topic, offsets, leases in requests:
            cursor = self._cursors.get(topic)
            if cursor is None:
                rejected.extend(_rejections(topic, offsets, leases, None))
                continue
            status, slots = cursor.classify(offsets, leases)
            yield topic, cursor, slots
            rejected.extend(_rejections(topic, offsets, leases, status))

    def _touch(self, member_id: str) -> None:
        member = self._members.get(member_id)
        if member is not None:
            member.last_seen = self._clock()

    def _maybe_rewrite(self) -> None:
        if needs_rewrite(self._store.size):
            self._rewrite()

    def _rewrite(self) -> None:
        """Replace the progress file by a snapshot of the current progress."""
        if self.options is None:
            return
        topics = dict(self._saved)
        for topic, cursor in self._cursors.items():
            topics[topic] = self._progress_of(cursor)
        meta = {
            "group": self.name,
            "pattern": self.pattern,
            "options": self.options.to_json(),
            "since": self._since,
            "format": 1,
        }
        frames = snapshot_frames(meta, topics)
        for written in self._unapplied.values():  # durable with the snapshot, applied later
            for cursor, offsets in written:
                saved = self._saved.get(cursor.topic)
                if self._cursors.get(cursor.topic) is cursor or (
                    saved is not None and saved.created_at == cursor.created_at
                ):
                    frames.append(encode_frame(KIND_DONE, encode_done(cursor.topic, *runs_of(offsets))))
        self._store.rewrite(frames)

    @staticmethod
    def _progress_of(cursor: Cursor) -> TopicProgress:
        starts, ends = cursor.settled_above()
        return TopicProgress(cursor.created_at, cursor.committed, starts, ends)

    # -- dead letters -----------------------------------------------------------------

    def _process_dead_letters(self) -> None:
        """Write waiting dead letters (outside the lock), then settle them."""
        assert self.options is not None
        with self._lock:
            now = self._clock()
            jobs = [job for job in self._dead_letter_jobs if job.not_before <= now]
            self._dead_letter_jobs = [job for job in self._dead_letter_jobs if job.not_before > now]
            topic = self.options.dead_letters
        for index, job in enumerate(jobs):
            token = 0
            try:
                appended = not job.appended
                if appended:  # a retry after a failed progress write skips the append
                    self._engine.create_topic(topic, exist_ok=True)
                    self._engine.append(topic, dead_letter_batch(job, self.name))
                    job.appended = True
                with self._lock:
                    if appended:
                        self.counters["dead_lettered"] += len(job.offsets)
                    offsets = np.sort(job.offsets)
                    if self._cursors.get(job.cursor.topic) is job.cursor:
                        self._ticket = self._store.write_done(job.cursor.topic, *runs_of(offsets))
                    ticket = self._ticket
                    token = self._hold_unapplied([(job.cursor, offsets)])
                self._store.sync(ticket)
            except ClosedError:
                raise
            except OdradekError as exc:
                log.warning(
                    "group %s: cannot %s %d dead letter(s) to %s, will retry: %s",
                    self.name,
                    "record the progress of" if job.appended else "write",
                    len(job.offsets),
                    topic,
                    exc,
                )
                with self._lock:
                    self._unapplied.pop(token, None)
                    for waiting in jobs[index:]:
                        waiting.not_before = self._clock() + _DEAD_LETTER_RETRY_SECONDS
                    self._dead_letter_jobs.extend(jobs[index:])
                return
            with self._lock:
                self._unapplied.pop(token, None)
                if self._cursors.get(job.cursor.topic) is job.cursor:
                    job.cursor.finish_dead_letters(job.offsets)
                self._changed()
        if jobs:
            with self._lock:
                self._release_windows_if_idle(self._clock(), grace=self._ack_timeout())

    # -- information ------------------------------------------------------------------

    def describe(self) -> GroupInfo:
        with self._lock:
            now = self._clock()
            if self.options is not None:
                self._expire(now)
            first = next(iter(self._members), None)
            topic_mode = self.options is not None and self.options.ordering == "topic"
            members = [
                MemberInfo(
                    member.id,
                    member.joined_at,
                    0.0 if member.polling else max(0.0, now - member.last_seen),
                    sum(self._leases[i].remaining for i in member.leases if i in self._leases),
                    not topic_mode or member.id == first,
                )
                for member in self._members.values()
            ]
            topics = self._idle_topics()
            for cursor in self._cursors.values():
                try:
                    end = self._engine.describe_topic(cursor.topic).next_offset
                except TopicNotFound:
                    end = cursor.end
                lag = max(0, max(end, cursor.end) - cursor.committed - cursor.settled_in_window())
                topics.append(
                    TopicLag(
                        cursor.topic,
                        cursor.committed,
                        cursor.end,
                        end,
                        lag,
                        cursor.in_flight,
                        cursor.waiting(),
                        cursor.delivered,
                        cursor.skipped,
                    )
                )
            options = self.options.to_json() if self.options is not None else {}
            return GroupInfo(self.name, self.pattern, options, members, topics, dict(self.counters))

    def _idle_topics(self) -> list[TopicLag]:
        """Progress of the subscribed topics that have no window (the group is idle)."""
        if self.pattern is None:
            return []
        matches = compile_pattern(self.pattern)
        topics = []
        for name, progress in self._saved.items():
            if not matches(name):
                continue
            try:
                info = self._engine.describe_topic(name)
            except TopicNotFound:
                continue
            if info.created_at != progress.created_at:
                continue
            settled = int(np.sum(progress.ends - progress.starts))
            lag = max(0, info.next_offset - progress.committed - settled)
            committed = progress.committed
            topics.append(TopicLag(name, committed, committed, info.next_offset, lag, 0, 0, 0, 0))
        return topics

    @property
    def member_count(self) -> int:
        return len(self._members)

    # -- plumbing ---------------------------------------------------------------------

    def wake(self) -> None:
        """New data or topics may be there (called by the engine's arrivals)."""
        with self._lock:
            self._changed()

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

    def rewrite_progress(self) -> None:
        """Rewrite the progress file as a snapshot now (upkeep and tests)."""
        with self._lock:
            self._rewrite()


def _rejections(topic: str, offsets: I64, leases: I64, status: Any) -> list[Rejection]:
    if status is None:
        return [
            Rejection(topic, int(o), int(lease), UNKNOWN) for o, lease in zip(offsets, leases, strict=True)
        ]
    bad = np.flatnonzero(status != dispatcher.STATUS_SETTLED)
    return [
        Rejection(topic, int(offsets[i]), int(leases[i]), _STATUS_NAMES[int(status[i])]) for i in bad.tolist()
    ]
