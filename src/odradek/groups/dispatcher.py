"""Key-ordered dispatch of one topic to a consumer group: the window and its rules.

Theory of operation
-------------------
A :class:`Cursor` holds the group's *window* of one topic: the records from the
committed watermark (everything below is settled) up to the furthest record read from
the log. Each record has a *slot* (``offset - base``) in parallel NumPy arrays:

=============  ======================================================================
``state``      PENDING (may be delivered), IN_FLIGHT (delivered, unsettled),
               DEAD_LETTERING (being written to the dead-letter topic) or DONE
``attempts``   deliveries so far (``Delivery.attempt`` of the latest)
``unit``       dense id of the record's ordering unit: its key (``ordering="key"``),
               0 for every record (``"topic"``), or -1 = none (keyless records,
               ``"none"``); see keys.py for how keys become ids
``lease``      the lease (poll) of the latest delivery, -1 before the first
``not_before`` monotonic time before which a nacked record is not redelivered
``next_slot``  the slot of the unit's next record in the window (-1: none yet)
=============  ======================================================================

and per unit: ``unit_head`` (slot of its earliest unsettled record, -1 if none),
``unit_tail`` (its last record, to link the next one), ``unit_in_flight`` (records
IN_FLIGHT or DEAD_LETTERING), ``unit_holder`` (the member holding them) and
``unit_queued``. Each unit's records thus form a chain in offset order, and the
records without a unit wait in the ``loose`` queue (of offsets).

Rules:

1. **Order**: a unit's records are delivered along its chain: a record may go only
   if every earlier unsettled record of its unit is in flight, at most ``limit`` are
   in flight, all with one member. With the default limit of 1 a unit's next record
   is its head, delivered once the one before is settled.
2. **Ready queue**: a unit is queued when it may have a deliverable record (new
   records arrived for it, or it has room again after a settlement or a failure);
   a dispatch examines queued units (their heads, all at once with NumPy) and loose
   records, takes the oldest deliverable ones, and drops from the queue the units
   that turned out to have nothing to give. A poll therefore costs the units it
   examines and the records it delivers, never the window: ten hot keys with a
   full window cost what ten keys cost.
3. **Failure** (ack timeout, nack, member expiry): the failed record goes back to
   PENDING, or to DEAD_LETTERING once it has had ``max_deliveries`` deliveries; a nack
   delay sets ``not_before`` and a timer re-queues the unit. Records of the unit
   delivered after it (possible with a limit above 1) are *rewound*: released without
   counting an attempt, so the unit restarts in order.
4. **Release** (a member leaves): like a failure, but nothing counts as an attempt.
5. **Settling**: an ack or the end of dead-lettering marks records DONE and moves the
   unit's head along its chain; the watermark moves over the window's DONE prefix and
   the window's front is trimmed in whole batches.

The cursor is not thread-safe: its group holds the group's lock around every call.
Reading the log and hashing keys happen outside that lock (:func:`keys.prepare`).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from odradek.groups.keys import KeyTable, Prepared
from odradek.groups.queue import IntQueue
from odradek.groups.state import runs_of

I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
Bools = npt.NDArray[np.bool_]
_Item = TypeVar("_Item", bound=np.generic)

PENDING = 0
IN_FLIGHT = 1
DEAD_LETTERING = 2
DONE = 3

NO_UNIT = -1

# Ack outcomes as small ints (delivery.py names them).
STATUS_SETTLED = 0
STATUS_DONE = 1
STATUS_STALE = 2
STATUS_UNKNOWN = 3

# ufunc.at with a value of the array's own dtype takes NumPy's fast path (2 µs for
# 500 indices instead of 30 µs with a Python int).
_ONE = np.int32(1)

# The front of the window is trimmed once this many settled records precede the
# watermark's batch: trimming copies the window, so it is done in large steps.
_TRIM_RECORDS_MIN = 16_384


@dataclasses.dataclass
class Released:
    """What a failure, release or ack did: records to dead-letter and, for the lease
    bookkeeping, how many records of each lease stopped being in flight."""

    dead: I64
    leases: I64
    lease_counts: I64
    failed: int = 0
    rewound: int = 0


class Cursor:
    def __init__(
        self,
        topic: str,
        incarnation: str,
        committed: int,
        ordering: str,
        limit: int,
        settled_starts: I64 | None = None,
        settled_ends: I64 | None = None,
    ) -> None:
        self.topic = topic
        self.incarnation = incarnation  # the topic's (TopicInfo.incarnation)
        self.ordering = ordering
        self.limit = limit
        self.base = committed  # offset of slot 0
        self.committed = committed  # everything below is settled
        self.end = committed  # next offset to read from the log
        self.fetching = False  # a thread is reading the log for this cursor
        self.idle_at = -1  # the group's change count when a read found nothing new
        self.capacity = 0
        self.state: U8 = np.zeros(0, dtype=np.uint8)
        self.attempts: npt.NDArray[np.uint16] = np.zeros(0, dtype=np.uint16)
        self.unit: I32 = np.zeros(0, dtype=np.int32)
        self.lease: I64 = np.zeros(0, dtype=np.int64)
        self.not_before: F64 = np.zeros(0, dtype=np.float64)
        self.next_slot: I64 = np.zeros(0, dtype=np.int64)
        self.keys = KeyTable()
        self.unit_head: I64 = np.zeros(0, dtype=np.int64)
        self.unit_tail: I64 = np.zeros(0, dtype=np.int64)
        self.unit_in_flight: I32 = np.zeros(0, dtype=np.int32)
        self.unit_holder: I32 = np.zeros(0, dtype=np.int32)
        self.unit_queued: Bools = np.zeros(0, dtype=bool)
        self.ready = IntQueue()  # unit ids that may have a deliverable record
        self.loose = IntQueue()  # offsets of PENDING records without a unit
        self._timers: list[tuple[float, int, I64]] = []  # (when, sequence, offsets)
        self._timer_sequence = 0
        self.batches: list[pa.RecordBatch] = []
        self.batch_starts: list[int] = []
        # Settled runs above the watermark known from the progress file, applied as
        # the window reaches them.
        empty = np.zeros(0, dtype=np.int64)
        self.settled_starts: I64 = settled_starts if settled_starts is not None else empty
        self.settled_ends: I64 = settled_ends if settled_ends is not None else empty
        # Attempts of records delivered before a previous window was released.
        self.preset_attempts: tuple[I64, npt.NDArray[np.uint16]] = (empty, np.zeros(0, dtype=np.uint16))
        self.in_flight = 0  # records IN_FLIGHT or DEAD_LETTERING
        self.undelivered = 0  # PENDING records never delivered
        self.delivered = 0
        self.skipped = 0  # records retention removed before the group read them

    # -- the window -------------------------------------------------------------------

    @property
    def size(self) -> int:
        return self.end - self.base

    @property
    def backlog(self) -> int:
        """Records read and not yet settled, as the window's fill level counts them."""
        return self.end - self.committed

    def needs_records(self, wanted: int) -> bool:
        """Whether reading more of the log could help a dispatch of ``wanted``."""
        if self.ordering == "topic":
            return self.undelivered < wanted
        return len(self.ready) + len(self.loose) < wanted

    def install(self, prepared: Prepared) -> int:
        """Add records read from the log (returns how many entered the window).

        Offsets the log skipped (damaged records: see docs/reliability.md) enter the
        window as settled slots, so the watermark passes over them.
        """
        if prepared.requested != self.end:  # another reader got there first, or a skip
            return 0
        offsets = prepared.batch.column("offset").to_numpy()
        count = len(offsets)
        if prepared.base == self.end and int(offsets[-1]) == self.end + count - 1:
            return self._install_dense(prepared.batch, prepared.hashes, prepared.keyed)
        breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
        bounds = [0, *breaks.tolist(), count]
        for low, high in itertools.pairwise(bounds):
            self._skip_gap(int(offsets[low]) - self.end)
            self._install_dense(
                prepared.batch.slice(low, high - low),
                None if prepared.hashes is None else prepared.hashes[low:high],
                None if prepared.keyed is None else prepared.keyed[low:high],
            )
        return count

    def _skip_gap(self, count: int) -> None:
        """Slots for ``count`` offsets that hold no record: settled at once."""
        if count <= 0:
            return
        first = self.size
        self._reserve(first + count)
        window = slice(first, first + count)
        self.state[window] = DONE
        self.attempts[window] = 0
        self.lease[window] = -1
        self.not_before[window] = 0.0
        self.next_slot[window] = -1
        self.unit[window] = NO_UNIT
        self.end += count
        self.skipped += count
        self._apply_settled_runs(first, count)
        self._advance()

    def _install_dense(
        self,
        batch: pa.RecordBatch,
        hashes: npt.NDArray[np.uint64] | None,
        keyed: npt.NDArray[np.bool_] | None,
    ) -> int:
        count = int(batch.num_rows)
        first = self.size
        self._reserve(first + count)
        window = slice(first, first + count)
        self.state[window] = PENDING
        self.attempts[window] = 0
        self.lease[window] = -1
        self.not_before[window] = 0.0
        self.next_slot[window] = -1
        if hashes is not None:
            units = self.keys.ids(hashes)
            if keyed is not None:
                units[~keyed] = NO_UNIT
        else:
            units = np.full(count, 0 if self.ordering == "topic" else NO_UNIT, dtype=np.int32)
        self.unit[window] = units
        self._grow_units(len(self.keys) if self.ordering == "key" else 1)
        self.batches.append(batch)
        self.batch_starts.append(self.end)
        self.end += count
        settled = self._apply_settled_runs(first, count)
        self.undelivered += count - settled - self._apply_attempts(first, count)
        self._link(units, first)
        loose = np.flatnonzero((units == NO_UNIT) & (self.state[window] == PENDING))
        self.loose.push(loose + self.base + first)
        self._advance()
        return count

    def _link(self, units: I32, first: int) -> None:
        """Append the new records of each unit to its chain; queue the units."""
        keyed = np.flatnonzero(units >= 0)
        if len(keyed) == 0:
            return
        order = np.argsort(units[keyed], kind="stable")
        unit_sorted = units[keyed][order]
        slot_sorted = keyed[order] + first
        starts = np.ones(len(order), dtype=bool)
        starts[1:] = unit_sorted[1:] != unit_sorted[:-1]
        ends = np.ones(len(order), dtype=bool)
        ends[:-1] = starts[1:]
        follow = ~starts[1:]
        self.next_slot[slot_sorted[:-1][follow]] = slot_sorted[1:][follow]
        new_units, new_firsts = unit_sorted[starts], slot_sorted[starts]
        tails = self.unit_tail[new_units]
        linked = tails >= 0
        self.next_slot[tails[linked]] = new_firsts[linked]
        self.unit_tail[unit_sorted[ends]] = slot_sorted[ends]
        headless = self.unit_head[new_units] < 0
        self.unit_head[new_units[headless]] = new_firsts[headless]
        self._advance_heads(new_units[headless])
        # Queue in offset order of each unit's first new record (older first).
        self._enqueue(new_units[np.argsort(new_firsts, kind="stable")], distinct=True)

    def _apply_attempts(self, first: int, count: int) -> int:
        """Restore the attempts of records this group delivered before its window was
        released (see ``attempts_held``); returns how many records got one."""
        offsets, attempts = self.preset_attempts
        if len(offsets) == 0:
            return 0
        low, high = self.base + first, self.base + first + count
        inside = (offsets >= low) & (offsets < high)
        slots = offsets[inside] - self.base
        pending = self.state[slots] == PENDING
        self.attempts[slots[pending]] = attempts[inside][pending]
        self.preset_attempts = (offsets[~inside & (offsets >= high)], attempts[~inside & (offsets >= high)])
        return int(np.count_nonzero(pending))

    def attempts_held(self) -> tuple[I64, npt.NDArray[np.uint16]]:
        """(offsets, attempts) of unsettled records delivered at least once: what a new
        window of this topic must remember so that attempts keep counting."""
        low = self.committed - self.base
        slots = (
            np.flatnonzero((self.attempts[low : self.size] > 0) & (self.state[low : self.size] != DONE)) + low
        )
        offsets, attempts = self.preset_attempts
        return (
            np.concatenate((slots.astype(np.int64) + self.base, offsets)),
            np.concatenate((self.attempts[slots], attempts)).astype(np.uint16),
        )

    def _apply_settled_runs(self, first: int, count: int) -> int:
        """Mark DONE what the progress file says was settled before a restart."""
        if len(self.settled_starts) == 0:
            return 0
        low, high = self.base + first, self.base + first + count
        touching = (self.settled_starts < high) & (self.settled_ends > low)
        marked = 0
        for start, end in zip(
            self.settled_starts[touching].tolist(), self.settled_ends[touching].tolist(), strict=True
        ):
            self.state[max(start, low) - self.base : min(end, high) - self.base] = DONE
            marked += min(end, high) - max(start, low)
        keep = self.settled_ends > high
        self.settled_starts, self.settled_ends = self.settled_starts[keep], self.settled_ends[keep]
        return marked

    def skip_to(self, offset: int) -> bool:
        """Jump an empty window to ``offset`` (retention removed what lay before)."""
        if self.end != self.committed or offset <= self.end:
            return False
        self.skipped += offset - self.end
        self.base = self.committed = self.end = offset
        self.batches, self.batch_starts = [], []
        self.unit_head[:] = -1
        self.unit_tail[:] = -1
        self.unit_queued[:] = False
        self.ready.replace(np.zeros(0, dtype=np.int64))
        self.loose.replace(np.zeros(0, dtype=np.int64))
        self._timers = []
        keep = self.settled_ends > offset
        self.settled_starts, self.settled_ends = self.settled_starts[keep], self.settled_ends[keep]
        return True

    def _reserve(self, needed: int) -> None:
        if needed <= self.capacity:
            return
        capacity = max(needed, 2 * self.capacity, 4096)
        self.state = _grown(self.state, capacity)
        self.attempts = _grown(self.attempts, capacity)
        self.unit = _grown(self.unit, capacity)
        self.lease = _grown(self.lease, capacity)
        self.not_before = _grown(self.not_before, capacity)
        self.next_slot = _grown(self.next_slot, capacity)
        self.capacity = capacity

    def _grow_units(self, count: int) -> None:
        if count <= len(self.unit_head):
            return
        size = max(count, 2 * len(self.unit_head), 1024)
        old = len(self.unit_head)
        self.unit_head = _grown(self.unit_head, size)
        self.unit_tail = _grown(self.unit_tail, size)
        self.unit_head[old:] = -1
        self.unit_tail[old:] = -1
        self.unit_in_flight = _grown(self.unit_in_flight, size)
        self.unit_holder = _grown(self.unit_holder, size)
        self.unit_queued = _grown(self.unit_queued, size)

    def _enqueue(self, units: I32 | I64, *, distinct: bool = False) -> None:
        """Queue units (in the given order, once each) that have room and records;
        ``distinct`` says the caller knows no unit repeats."""
        if len(units) == 0:
            return
        room = self.unit_in_flight[units] < self.limit
        units = units[~self.unit_queued[units] & (self.unit_head[units] >= 0) & room]
        if len(units) == 0:
            return
        if len(units) > 1 and not distinct:
            unique, first = np.unique(units, return_index=True)
            if len(unique) < len(units):
                units = units[np.sort(first)]
        self.unit_queued[units] = True
        self.ready.push(units)

    def _advance_heads(self, units: I32 | I64) -> None:
        """Move the heads of ``units`` past settled records along their chains."""
        units = units[self.unit_head[units] >= 0]
        while len(units):
            heads = self.unit_head[units]
            settled = self.state[heads] == DONE
            units = units[settled]
            self.unit_head[units] = self.next_slot[heads[settled]]
            units = units[self.unit_head[units] >= 0]

    # -- dispatch ---------------------------------------------------------------------

    def dispatch(self, budget: int, member: int, lease: int, now: float) -> I64:
        """Deliver up to ``budget`` records to ``member`` under ``lease``: returns their
        offsets, ascending."""
        self._fire_timers(now)
        taken: list[I64] = []
        examined = 0
        patience = len(self.ready) + len(self.loose)  # look at each queued entry once
        while budget > 0 and (len(self.ready) or len(self.loose)):
            slots, looked = self._dispatch_round(budget, member, now)
            examined += looked
            if len(slots):
                self._deliver(slots, member, lease)
                taken.append(slots + self.base)
                budget -= len(slots)
                if self.limit > 1:  # units with room left may give more
                    self._enqueue(self._units_of(slots))
            elif examined >= patience:
                break
        if not taken:
            return np.zeros(0, dtype=np.int64)
        return taken[0] if len(taken) == 1 else np.sort(np.concatenate(taken))

    def _dispatch_round(self, budget: int, member: int, now: float) -> tuple[I64, int]:
        """One look at the front of both queues: (slots to deliver, entries looked at)."""
        units = self.ready.peek(budget).copy()
        self.ready.drop(len(units))
        unit_slots, owner, keep = self._unit_candidates(units, member, now)
        looked = len(units)
        if len(self.loose):
            taken_loose = self.loose.peek(budget).copy()
            self.loose.drop(len(taken_loose))
            looked += len(taken_loose)
            loose_slots = np.unique(taken_loose) - self.base  # a record failed twice is queued twice
            loose_slots = loose_slots[(loose_slots >= 0) & (loose_slots < self.size)]
            loose_slots = loose_slots[self.state[loose_slots] == PENDING]
            candidates = np.concatenate((unit_slots, loose_slots))
        else:
            loose_slots = candidates = unit_slots
        # Units held by another member go to the back; units whose candidates the
        # budget cut stay at the front (they are the oldest); the rest leave the queue
        # until a settlement, a failure or new records queue them again.
        self.unit_queued[units] = False
        back = units[keep]
        if len(candidates) <= budget:  # everything goes out
            self.unit_queued[back] = True
            self.ready.push(back)
            return np.sort(candidates), looked
        chosen = np.sort(np.argpartition(candidates, budget - 1)[:budget])
        picked = np.zeros(len(candidates), dtype=bool)
        picked[chosen] = True
        unit_picked = picked[: len(unit_slots)]
        front = units[np.unique(owner[~unit_picked])]
        self.unit_queued[front] = True
        self.unit_queued[back] = True
        self.ready.push_front(front)
        self.ready.push(back)
        if candidates is not unit_slots:
            self.loose.push_front(loose_slots[~picked[len(unit_slots) :]] + self.base)
        return np.sort(candidates[chosen]), looked

    def _unit_candidates(self, units: I64, member: int, now: float) -> tuple[I64, I64, Bools]:
        """Deliverable slots of queued units: (slots, index of each slot's unit,
        mask of units to keep queued although they gave nothing now)."""
        if len(units) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0, dtype=bool)
        in_flight = self.unit_in_flight[units]
        holder_ok = (in_flight == 0) | (self.unit_holder[units] == member)
        keep = ~holder_ok & (in_flight < self.limit)
        room = np.where(holder_ok, self.limit - in_flight, 0)
        if self.limit == 1:
            heads = self.unit_head[units]
            ok = (room > 0) & (heads >= 0)
            ok[ok] = (self.state[heads[ok]] == PENDING) & (self.not_before[heads[ok]] <= now)
            index = np.flatnonzero(ok)
            return heads[index], index, keep
        if self.ordering == "topic":
            return self._topic_candidates(units, room, now, keep)
        return self._walk_candidates(units, room, now, keep)

    def _walk_candidates(self, units: I64, room: I64, now: float, keep: Bools) -> tuple[I64, I64, Bools]:
        """Walk the chains of units (all at once) past records in flight or settled,
        taking PENDING ones until the unit's room is used or a delayed one stops it."""
        index = np.flatnonzero((room > 0) & (self.unit_head[units] >= 0))
        cursor = self.unit_head[units[index]]
        left = room[index].copy()
        slots: list[I64] = []
        owners: list[I64] = []
        while len(index):
            state = self.state[cursor]
            pending = state == PENDING
            delayed = pending & (self.not_before[cursor] > now)
            take = pending & ~delayed
            slots.append(cursor[take])
            owners.append(index[take])
            left[take] -= 1
            go_on = ~delayed & (left > 0)
            cursor = self.next_slot[cursor]
            go_on &= cursor >= 0
            index, cursor, left = index[go_on], cursor[go_on], left[go_on]
        if not slots:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, keep
        return np.concatenate(slots), np.concatenate(owners), keep

    def _topic_candidates(self, units: I64, room: I64, now: float, keep: Bools) -> tuple[I64, I64, Bools]:
        """The one unit of ordering="topic": its chain is the window itself."""
        head = int(self.unit_head[0]) if len(self.unit_head) else -1
        if head < 0 or room[0] <= 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, keep
        span = self.state[head : self.size]
        pending = np.flatnonzero(span == PENDING)
        delayed = np.flatnonzero(self.not_before[head + pending] > now)
        if len(delayed):
            pending = pending[: delayed[0]]
        slots = (pending[: int(room[0])] + head).astype(np.int64)
        return slots, np.zeros(len(slots), dtype=np.int64), keep

    def _deliver(self, slots: I64, member: int, lease: int) -> None:
        self.undelivered -= int(np.count_nonzero(self.attempts[slots] == 0))
        self.state[slots] = IN_FLIGHT
        self.attempts[slots] += 1
        self.lease[slots] = lease
        units = self.unit[slots]
        units = units[units >= 0]
        if len(units):
            np.add.at(self.unit_in_flight, units, _ONE)
            self.unit_holder[units] = member
        self.in_flight += len(slots)
        self.delivered += len(slots)

    def _fire_timers(self, now: float) -> None:
        """Nack delays that ended: queue their units, or their loose records."""
        while self._timers and self._timers[0][0] <= now:
            _, _, offsets = heapq.heappop(self._timers)
            offsets = offsets[(offsets >= self.committed) & (offsets < self.end)]
            slots = offsets - self.base
            slots = slots[self.state[slots] == PENDING]
            units = self.unit[slots]
            self._enqueue(units[units >= 0])
            self.loose.push(slots[units < 0] + self.base)

    def records(self, offsets: I64) -> pa.RecordBatch:
        """The stored records at ``offsets`` (ascending) plus their ``attempt``."""
        attempts = pa.array(self.attempts[offsets - self.base].astype(np.int32))
        last, newest = len(self.batches) - 1, self.batch_starts[-1]
        if offsets[0] >= newest:  # all in the newest batch: the usual case
            return _rows(self.batches[last], offsets - newest).append_column("attempt", attempts)
        starts = np.asarray(self.batch_starts, dtype=np.int64)
        which = np.searchsorted(starts, offsets, side="right") - 1
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(which)) + 1, [len(offsets)]))
        pieces = []
        for low, high in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            index = int(which[low])
            pieces.append(_rows(self.batches[index], offsets[low:high] - starts[index]))
        combined = pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)
        return combined.append_column("attempt", attempts)

    # -- settling ---------------------------------------------------------------------

    def classify(self, offsets: I64, leases: I64) -> tuple[npt.NDArray[np.int8], I64]:
        """Status of each named delivery (STATUS_*) and the slots of the settleable
        ones (IN_FLIGHT or timed-out PENDING under the same lease), duplicates removed."""
        status = np.full(len(offsets), STATUS_UNKNOWN, dtype=np.int8)
        status[offsets < self.committed] = STATUS_DONE
        inside = np.flatnonzero((offsets >= self.committed) & (offsets < self.end))
        slots = offsets[inside] - self.base
        states = self.state[slots]
        current = self.lease[slots] == leases[inside]
        settleable = current & ((states == IN_FLIGHT) | (states == PENDING))
        verdict = np.full(len(inside), STATUS_STALE, dtype=np.int8)
        verdict[self.attempts[slots] == 0] = STATUS_UNKNOWN
        verdict[settleable] = STATUS_SETTLED
        verdict[states == DONE] = STATUS_DONE
        status[inside] = verdict
        chosen = inside[settleable]
        chosen_slots = offsets[chosen] - self.base
        if len(chosen_slots) < 2 or bool(np.all(chosen_slots[1:] > chosen_slots[:-1])):
            return status, chosen_slots.astype(np.int64)  # ascending: no duplicate
        unique_slots, first = np.unique(chosen_slots, return_index=True)
        if len(unique_slots) < len(chosen):  # the same delivery named twice
            duplicate = np.ones(len(chosen), dtype=bool)
            duplicate[first] = False
            status[chosen[duplicate]] = STATUS_DONE
        return status, unique_slots.astype(np.int64)

    def settle(self, slots: I64) -> Released:
        """Mark settleable slots DONE (an ack). Returns the leases they leave."""
        flying = slots[self.state[slots] == IN_FLIGHT]
        units = self._units_of(flying)  # before _mark_done, which may trim (move slots)
        released = self._leave_flight(flying)
        self._mark_done(slots)
        # With a limit of 1 a unit has one record in flight: its units are distinct.
        self._enqueue(units, distinct=self.limit == 1)
        return released

    def finish_dead_letters(self, offsets: I64) -> None:
        slots = offsets - self.base
        slots = slots[self.state[slots] == DEAD_LETTERING]
        units = self._units_of(slots)
        if len(units):
            np.subtract.at(self.unit_in_flight, units, _ONE)
        self.in_flight -= len(slots)
        self._mark_done(slots)
        self._enqueue(units)

    def _mark_done(self, slots: I64) -> None:
        """Settle slots. May trim the window: slots held by the caller are stale after."""
        self.undelivered -= int(np.count_nonzero(self.attempts[slots] == 0))
        self.state[slots] = DONE
        self._advance_heads(self._units_of(slots))  # repeated units are harmless
        self._advance()

    def _units_of(self, slots: I64) -> I32:
        units = self.unit[slots]
        result: I32 = units[units >= 0]
        return result

    def _leave_flight(self, slots: I64) -> Released:
        """Bookkeeping for IN_FLIGHT slots that stop being in flight."""
        units = self._units_of(slots)
        if len(units):
            np.subtract.at(self.unit_in_flight, units, _ONE)
        self.in_flight -= len(slots)
        leases = self.lease[slots]
        if len(leases) and leases.min() == leases.max():  # one poll's deliveries: the usual ack
            leases, counts = leases[:1], np.array([len(leases)], dtype=np.int64)
        else:
            leases, counts = np.unique(leases, return_counts=True)
        return Released(np.zeros(0, dtype=np.int64), leases.astype(np.int64), counts.astype(np.int64))

    def _advance(self) -> None:
        """Move the watermark over the DONE prefix of the window."""
        position = self.committed - self.base
        size = self.size
        step = 4096
        while position < size and self.state[position] == DONE:
            window = self.state[position : min(position + step, size)]
            undone = np.flatnonzero(window != DONE)
            if len(undone):
                position += int(undone[0])
                break
            position += len(window)
            step *= 2
        self.committed = self.base + position
        if len(self.batch_starts) > 1 and self.committed - self.base >= _TRIM_RECORDS_MIN:
            self._trim()

    def _trim(self) -> None:
        """Drop whole batches that lie below the watermark."""
        keep_from = int(np.searchsorted(np.asarray(self.batch_starts), self.committed, side="right")) - 1
        if keep_from <= 0:
            return
        shift = self.batch_starts[keep_from] - self.base
        size = self.size - shift
        for name in ("state", "attempts", "unit", "lease", "not_before", "next_slot"):
            array = getattr(self, name)
            array[:size] = array[shift : shift + size]
        links = self.next_slot[:size]
        links[links >= 0] -= shift
        gone = self.unit_tail < shift  # the unit's last record was trimmed (or none)
        self.unit_tail -= shift
        self.unit_tail[gone] = -1
        heads = self.unit_head >= 0
        self.unit_head[heads] -= shift
        self.batches = self.batches[keep_from:]
        self.batch_starts = self.batch_starts[keep_from:]
        self.base += shift

    def settled_above(self) -> tuple[I64, I64]:
        """Runs of DONE offsets above the watermark (for a snapshot)."""
        low = self.committed - self.base
        done = np.flatnonzero(self.state[low : self.size] == DONE).astype(np.int64) + self.committed
        starts, ends = runs_of(done)
        if len(self.settled_starts):
            starts = np.concatenate((starts, self.settled_starts))
            ends = np.concatenate((ends, self.settled_ends))
        return starts, ends

    # -- failures ---------------------------------------------------------------------

    def in_flight_slots(self, offsets: I64, lease: int) -> I64:
        """Slots among ``offsets`` still IN_FLIGHT under ``lease``."""
        offsets = offsets[(offsets >= self.committed) & (offsets < self.end)]
        slots = offsets - self.base
        result: I64 = slots[(self.state[slots] == IN_FLIGHT) & (self.lease[slots] == lease)]
        return result

    def fail(self, slots: I64, *, count: bool, now: float, delay: float, max_deliveries: int) -> Released:
        """Take IN_FLIGHT ``slots`` back (rules 3 and 4). With ``count`` the earliest
        failed record of each unit keeps its attempt and may be dead-lettered; the
        unit's later in-flight records are rewound without counting."""
        slots = np.unique(slots)
        units = self.unit[slots]
        counted = slots if count else np.zeros(0, dtype=np.int64)
        rewound = np.zeros(0, dtype=np.int64) if count else slots
        if self.limit > 1 and np.any(units >= 0):
            counted, rewound = self._rewind_set(slots, units, count)
        self.attempts[rewound] -= 1
        dead = counted[self.attempts[counted] >= max_deliveries]
        back_counted = counted[self.attempts[counted] < max_deliveries]
        back = np.concatenate((back_counted, rewound))
        released = self._leave_flight(np.concatenate((back, dead)))
        # Dead-lettering records stay "in flight" for their unit: it waits for them.
        units_dead = self._units_of(dead)
        if len(units_dead):
            np.add.at(self.unit_in_flight, units_dead, _ONE)
        self.in_flight += len(dead)
        self.state[dead] = DEAD_LETTERING
        self.state[back] = PENDING
        self.not_before[back_counted] = now + delay if delay > 0 else 0.0
        self.not_before[rewound] = 0.0
        if delay > 0 and len(back_counted):
            self._timer_sequence += 1
            heapq.heappush(self._timers, (now + delay, self._timer_sequence, back_counted + self.base))
        back_units = self.unit[back]
        self._enqueue(back_units[back_units >= 0])
        ready_loose = back[(back_units < 0) & (self.not_before[back] <= now)]
        self.loose.push(np.sort(ready_loose) + self.base)
        released.dead = np.sort(dead).astype(np.int64) + self.base
        released.failed = len(counted)
        released.rewound = len(rewound)
        return released

    def _rewind_set(self, slots: I64, units: I32, count: bool) -> tuple[I64, I64]:
        """Split failed slots into counted failures (the earliest per unit, and every
        record without a unit) and rewinds (the unit's other in-flight records)."""
        keyed = units >= 0
        order = np.lexsort((slots[keyed], units[keyed]))
        unit_sorted, slot_sorted = units[keyed][order], slots[keyed][order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = unit_sorted[1:] != unit_sorted[:-1]
        earliest = slot_sorted[first]
        later = self._in_flight_after(earliest)
        if not count:
            return np.zeros(0, dtype=np.int64), np.union1d(slots, later)
        counted = np.concatenate((slots[~keyed], earliest))
        rewound = np.setdiff1d(np.union1d(slots[keyed], later), earliest)
        return counted, rewound

    def _in_flight_after(self, starts: I64) -> I64:
        """In-flight records of the same units after each slot of ``starts``. They sit
        before the unit's first PENDING record (rule 1), so each walk stops there."""
        if self.ordering == "topic":
            low = int(starts.min())
            flying = np.flatnonzero(self.state[low : self.size] == IN_FLIGHT) + low
            return flying[flying > low].astype(np.int64)
        found: list[I64] = []
        cursor = self.next_slot[starts]
        cursor = cursor[cursor >= 0]
        while len(cursor):
            state = self.state[cursor]
            found.append(cursor[state == IN_FLIGHT])
            cursor = self.next_slot[cursor[state != PENDING]]
            cursor = cursor[cursor >= 0]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)

    # -- numbers ----------------------------------------------------------------------

    def settled_in_window(self) -> int:
        low = self.committed - self.base
        return int(np.count_nonzero(self.state[low : self.size] == DONE))

    def waiting(self) -> int:
        low = self.committed - self.base
        return int(np.count_nonzero(self.state[low : self.size] == PENDING))

    def compact_units(self) -> None:
        """Renumber units when the key table holds many keys no longer in the window."""
        if self.ordering != "key" or len(self.keys) < 4 * max(self.size, 65_536):
            return
        units = self.unit[: self.size]
        live = np.unique(units[units >= 0]).astype(np.int32)
        remap = self.keys.compact(live)
        self.unit[: self.size] = np.where(units >= 0, remap[np.maximum(units, 0)], NO_UNIT)
        for name in ("unit_head", "unit_tail", "unit_in_flight", "unit_holder", "unit_queued"):
            setattr(self, name, getattr(self, name)[live].copy())
        renumbered = remap[self.ready.peek(len(self.ready))]
        self.ready.replace(renumbered[renumbered >= 0].astype(np.int64))


def _rows(batch: pa.RecordBatch, rows: I64) -> pa.RecordBatch:
    """Rows of a batch (ascending): a zero-copy slice when they are contiguous."""
    if int(rows[-1]) - int(rows[0]) == len(rows) - 1:
        return batch.slice(int(rows[0]), len(rows))
    return batch.take(pa.array(rows))


def _grown(array: npt.NDArray[_Item], size: int) -> npt.NDArray[_Item]:
    grown = np.zeros(size, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
