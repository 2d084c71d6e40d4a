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
  gets UnknownMember (a Membership, membership.py, then joins again by itself).
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

Parts: this module has membership, polling and what a group reports; the state and
the primitives every part uses (leases, windows parked) are in core.py, reading the log
into windows in reading.py, acks, nacks, dead letters and the progress file in
settling.py, resetting the committed offsets in reset.py. :class:`Group` is the one
object they make.
"""

from __future__ import annotations

import logging
import time
import uuid

import numpy as np

from odradek import limits
from odradek.errors import InvalidRequest, TopicNotFound
from odradek.groups import dispatcher
from odradek.groups.deadletters import REASON_FAILED
from odradek.groups.delivery import DeliveryBatch
from odradek.groups.dispatcher import Cursor
from odradek.groups.info import KIND_ODRADEK, STATE_EMPTY, STATE_STABLE, GroupInfo, MemberInfo, TopicLag
from odradek.groups.members import Lease, Member
from odradek.groups.options import GroupOptions
from odradek.groups.reading import Reading
from odradek.groups.reset import Resetting
from odradek.groups.subscription import compile_subscription

log = logging.getLogger(__name__)

I64 = dispatcher.I64

# A poll with nothing to do sleeps at most this long between checks (new topics,
# expired members); arrivals, acks and releases wake it at once.
_WAIT_SECONDS_MAX = 1.0
# A poll that delivered reads more of the log when a topic's window has fewer
# deliverable keys than this many polls' worth, so the members never find it dry.
_READ_AHEAD_POLLS = 4


class Group(Resetting, Reading):
    """One consumer group: its members, their polls, what it reports (the rules are in
    the module docstring; the parts it is made of in core.py)."""

    # -- membership -------------------------------------------------------------------

    def join(
        self, pattern: str, options: GroupOptions, *, share: bool = False, member_id: str | None = None
    ) -> str:
        """Add a member; its id is ``member_id`` if given (InvalidRequest if a member has
        it already), else a new one."""
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
            if member_id is not None and member_id in self._members:
                raise InvalidRequest(f"group {self.name!r} has a member {member_id!r} already")
            member_id = uuid.uuid4().hex if member_id is None else member_id
            member = Member(member_id, self._member_sequence, time.time(), now, share=share)
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

    # -- information ------------------------------------------------------------------

    def describe(self) -> GroupInfo:
        with self._lock:
            now = self._clock()
            if self.options is not None:
                self._expire(now)
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
            # Nothing is assigned (see the module): only an ordering="topic" group's
            # members hold something of their own, the active one every topic.
            first = next(iter(self._members), None)
            topic_mode = self.options is not None and self.options.ordering == "topic"
            group_lag = sum(topic.lag for topic in topics)
            members = [
                MemberInfo(
                    member.id,
                    member.joined_at,
                    0.0 if member.polling else max(0.0, now - member.last_seen),
                    sum(self._leases[i].remaining for i in member.leases if i in self._leases),
                    not topic_mode or member.id == first,
                    lag=(group_lag if member.id == first else 0) if topic_mode else None,
                )
                for member in self._members.values()
            ]
            options = self.options.to_json() if self.options is not None else {}
            state = STATE_STABLE if members else STATE_EMPTY
            return GroupInfo(
                self.name, self.pattern, options, members, topics, dict(self.counters), KIND_ODRADEK, state
            )

    def _idle_topics(self) -> list[TopicLag]:
        """Progress of the subscribed topics that have no window (the group is idle)."""
        if self.pattern is None:
            return []
        matches = compile_subscription(self.pattern)
        topics = []
        for name, progress in self._saved.items():
            if not matches(name):
                continue
            try:
                info = self._engine.describe_topic(name)
            except TopicNotFound:
                continue
            if info.incarnation != progress.incarnation:
                continue
            settled = int(np.sum(progress.ends - progress.starts))
            lag = max(0, info.next_offset - progress.committed - settled)
            committed = progress.committed
            topics.append(TopicLag(name, committed, committed, info.next_offset, lag, 0, 0, 0, 0))
        return topics
