"""Key-ordered dispatch of one topic to a consumer group: the window and its rules.

Theory of operation
-------------------
A :class:`Cursor` holds the group's *window* of one topic: the records from the
committed watermark (everything below is settled) up to the furthest record read from
the log. Each record of the window has a slot in parallel NumPy arrays, indexed by
``offset - base``:

=============  ======================================================================
``state``      PENDING (may be delivered), IN_FLIGHT (delivered, unsettled),
               DEAD_LETTERING (being written to the dead-letter topic) or DONE
``attempts``   deliveries so far (``Delivery.attempt`` of the latest)
``unit``       dense id of the record's ordering unit: its key (``ordering="key"``),
               0 for every record (``"topic"``), or -1 = no unit (keyless records,
               ``"none"``)
``lease``      the lease (poll) of the latest delivery, -1 before the first
``not_before`` monotonic time before which a nacked record is not redelivered
=============  ======================================================================

and per unit: ``unit_in_flight`` (records IN_FLIGHT or DEAD_LETTERING) and
``unit_holder`` (the member holding them).

Rules, each applied to whole arrays at once:

1. **Order**: a record may be delivered only if every earlier unsettled record of its
   unit is in flight (none is waiting), and at most ``limit`` records of a unit are in
   flight, all with the same member. With the default limit of 1 a unit's records
   are delivered one at a time, in offset (= version) order.
2. **Candidates**: records below ``scan`` that are PENDING are *parked* (an array of
   offsets, ascending): they wait for their unit, a nack delay, or a redelivery. The
   records from ``scan`` on are *fresh*: never looked at. A dispatch examines all
   parked records and a chunk of fresh ones, ranks the candidates of each unit in
   offset order (a stable argsort by unit), and takes, in offset order, those whose
   rank is below the unit's free room and below its first delayed candidate.
3. **Failure** (ack timeout, nack, member expiry): the failed record goes back to
   PENDING, or to DEAD_LETTERING once it has had ``max_deliveries`` deliveries. Records
   of the same unit delivered after it (possible with a limit above 1) are *rewound*:
   released without counting an attempt, so the unit restarts in order.
4. **Release** (a member leaves): like a failure, but nothing counts as an attempt.
5. **Settling**: an ack or the end of dead-lettering marks records DONE; the watermark
   then moves over the DONE prefix, and the window's front is trimmed in whole batches.

The cursor is not thread-safe: its group holds the group's lock around every call.
Fetching from the log and hashing keys happen outside that lock (:func:`prepare`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from odradek.groups.keys import KeyTable, hash_keys

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
class Prepared:
    """Records read from the log, ready to enter a window: one batch, its first
    offset and each record's unit hash (``None`` when the ordering has no units)."""

    base: int
    batch: pa.RecordBatch
    hashes: npt.NDArray[np.uint64] | None
    keyed: Bools | None


def prepare(batches: Sequence[pa.RecordBatch], ordering: str) -> Prepared | None:
    """Combine fetched batches into one and hash their keys. Runs outside any lock."""
    if not batches:
        return None
    batch = batches[0] if len(batches) == 1 else pa.concat_batches(list(batches))
    if batch.num_rows == 0:
        return None
    base = int(batch.column("offset")[0].as_py())
    if ordering != "key":
        return Prepared(base, batch, None, None)
    keys = batch.column("key")
    keyed = keys.is_valid().to_numpy(zero_copy_only=False) if keys.null_count else None
    return Prepared(base, batch, hash_keys(keys), keyed)


@dataclasses.dataclass
class Released:
    """What a failure or release did: records to dead-letter and, for the lease
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
        created_at: float,
        committed: int,
        ordering: str,
        limit: int,
        settled_starts: I64 | None = None,
        settled_ends: I64 | None = None,
    ) -> None:
        self.topic = topic
        self.created_at = created_at
        self.ordering = ordering
        self.limit = limit
        self.base = committed  # offset of slot 0
        self.committed = committed  # everything below is settled
        self.end = committed  # next offset to read from the log
        self.scan = committed  # records from here on were never examined
        self.fetching = False  # a thread is reading the log for this cursor
        self.idle_at = -1  # the group's change count when a read found nothing new
        self.capacity = 0
        self.state: U8 = np.zeros(0, dtype=np.uint8)
        self.attempts: npt.NDArray[np.uint16] = np.zeros(0, dtype=np.uint16)
        self.unit: I32 = np.zeros(0, dtype=np.int32)
        self.lease: I64 = np.zeros(0, dtype=np.int64)
        self.not_before: F64 = np.zeros(0, dtype=np.float64)
        self.parked: I64 = np.zeros(0, dtype=np.int64)
        self.batches: list[pa.RecordBatch] = []
        self.batch_starts: list[int] = []
        self.keys = KeyTable()
        self.unit_in_flight: I32 = np.zeros(0, dtype=np.int32)
        self.unit_holder: I32 = np.zeros(0, dtype=np.int32)
        # Settled runs above the watermark known from the progress file, applied as
        # the window reaches them.
        empty = np.zeros(0, dtype=np.int64)
        self.settled_starts: I64 = settled_starts if settled_starts is not None else empty
        self.settled_ends: I64 = settled_ends if settled_ends is not None else empty
        self.in_flight = 0  # records IN_FLIGHT or DEAD_LETTERING
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

    def fresh(self) -> int:
        return self.end - self.scan

    def install(self, prepared: Prepared) -> int:
        """Add records read from the log (returns how many entered the window)."""
        if prepared.base != self.end:  # another reader got there first, or a skip
            return 0
        count = int(prepared.batch.num_rows)
        first = self.size
        self._reserve(first + count)
        window = slice(first, first + count)
        self.state[window] = PENDING
        self.attempts[window] = 0
        self.lease[window] = -1
        self.not_before[window] = 0.0
        if prepared.hashes is None:
            self.unit[window] = 0 if self.ordering == "topic" else NO_UNIT
        else:
            units = self.keys.ids(prepared.hashes)
            if prepared.keyed is not None:
                units[~prepared.keyed] = NO_UNIT
            self.unit[window] = units
            if len(self.keys) > len(self.unit_in_flight):
                grow = max(len(self.keys), 2 * len(self.unit_in_flight), 1024)
                self.unit_in_flight = _grown(self.unit_in_flight, grow)
                self.unit_holder = _grown(self.unit_holder, grow)
        if self.ordering == "topic" and len(self.unit_in_flight) == 0:
            self.unit_in_flight = np.zeros(1, dtype=np.int32)
            self.unit_holder = np.zeros(1, dtype=np.int32)
        self.batches.append(prepared.batch)
        self.batch_starts.append(self.end)
        self.end += count
        self._apply_settled_runs(first, count)
        return count

    def _apply_settled_runs(self, first: int, count: int) -> None:
        """Mark DONE what the progress file says was settled before a restart."""
        if len(self.settled_starts) == 0:
            return
        low, high = self.base + first, self.base + first + count
        touching = (self.settled_starts < high) & (self.settled_ends > low)
        for start, end in zip(
            self.settled_starts[touching].tolist(), self.settled_ends[touching].tolist(), strict=True
        ):
            self.state[max(start, low) - self.base : min(end, high) - self.base] = DONE
        keep = self.settled_ends > high
        self.settled_starts, self.settled_ends = self.settled_starts[keep], self.settled_ends[keep]
        self._advance()

    def skip_to(self, offset: int) -> bool:
        """Jump an empty window to ``offset`` (retention removed what lay before)."""
        if self.end != self.committed or offset <= self.end:
            return False
        self.skipped += offset - self.end
        self.base = self.committed = self.end = self.scan = offset
        self.batches, self.batch_starts = [], []
        self.parked = np.zeros(0, dtype=np.int64)
        self.settled_starts = self.settled_starts[self.settled_ends > offset]
        self.settled_ends = self.settled_ends[self.settled_ends > offset]
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
        self.capacity = capacity

    # -- dispatch ---------------------------------------------------------------------

    def dispatch(self, budget: int, member: int, lease: int, now: float) -> I64:
        """Deliver up to ``budget`` records to ``member`` under ``lease``: returns their
        offsets, ascending."""
        taken: list[I64] = []
        while budget > 0:
            chunk = min(self.fresh(), budget + budget // 2 + 64)
            if len(self.parked) == 0 and chunk == 0:
                break
            offsets = self._choose(budget, member, now, chunk)
            if len(offsets):
                self._deliver(offsets, member, lease)
                taken.append(offsets)
                budget -= len(offsets)
            if chunk == 0 or self.fresh() == 0 or (len(offsets) == 0 and chunk == 0):
                break
        if not taken:
            return np.zeros(0, dtype=np.int64)
        return taken[0] if len(taken) == 1 else np.sort(np.concatenate(taken))

    def _choose(self, budget: int, member: int, now: float, chunk: int) -> I64:
        fresh = np.arange(self.scan, self.scan + chunk, dtype=np.int64)
        candidates = np.concatenate((self.parked, fresh)) if len(self.parked) else fresh
        slots = candidates - self.base
        valid = self.state[slots] == PENDING
        ready = valid & (self.not_before[slots] <= now)
        units = self.unit[slots]
        allowed = ready.copy()
        keyed = np.flatnonzero(valid & (units >= 0))
        if len(keyed):
            allowed[keyed] = self._unit_rules(units[keyed], ready[keyed], member)
        chosen = np.flatnonzero(allowed)
        cut = len(chosen) > budget
        if cut:
            chosen = chosen[:budget]
        # Where fresh examination stops: after the last record taken when the budget
        # cut the candidates short, else after the whole chunk.
        if cut:
            scan = max(self.scan, int(candidates[chosen[-1]]) + 1)
        else:
            scan = self.scan + chunk
        keep = valid & (candidates < scan)
        keep[chosen] = False
        self.parked = candidates[keep]
        self.scan = scan
        result: I64 = candidates[chosen]
        return result

    def _unit_rules(self, units: I32, ready: Bools, member: int) -> Bools:
        """Rule 1 over the PENDING candidates that have a unit (in offset order)."""
        order = np.argsort(units, kind="stable")
        grouped = units[order]
        starts_flag = np.empty(len(order), dtype=bool)
        starts_flag[0] = True
        starts_flag[1:] = grouped[1:] != grouped[:-1]
        group_first = np.flatnonzero(starts_flag)
        group_of = np.cumsum(starts_flag) - 1
        rank = np.arange(len(order)) - group_first[group_of]
        # The first candidate of each unit that must wait (nack delay) stops the unit.
        waiting_rank = np.where(ready[order], len(order), rank)
        first_waiting = np.minimum.reduceat(waiting_rank, group_first)[group_of]
        in_flight = self.unit_in_flight[grouped]
        holder_ok = (in_flight == 0) | (self.unit_holder[grouped] == member)
        ok = (rank < self.limit - in_flight) & (rank < first_waiting) & holder_ok
        result = np.empty(len(order), dtype=bool)
        result[order] = ok
        return result

    def _deliver(self, offsets: I64, member: int, lease: int) -> None:
        slots = offsets - self.base
        self.state[slots] = IN_FLIGHT
        self.attempts[slots] += 1
        self.lease[slots] = lease
        units = self.unit[slots]
        units = units[units >= 0]
        if len(units):
            np.add.at(self.unit_in_flight, units, _ONE)
            self.unit_holder[units] = member
        self.in_flight += len(offsets)
        self.delivered += len(offsets)

    def records(self, offsets: I64) -> pa.RecordBatch:
        """The stored records at ``offsets`` (ascending) plus their ``attempt``."""
        starts = np.asarray(self.batch_starts, dtype=np.int64)
        which = np.searchsorted(starts, offsets, side="right") - 1
        bounds = np.concatenate(([0], np.flatnonzero(np.diff(which)) + 1, [len(offsets)]))
        pieces = []
        for low, high in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            index = int(which[low])
            rows = offsets[low:high] - starts[index]
            batch = self.batches[index]
            if int(rows[-1]) - int(rows[0]) == high - low - 1:
                pieces.append(batch.slice(int(rows[0]), high - low))
            else:
                pieces.append(batch.take(pa.array(rows)))
        combined = pieces[0] if len(pieces) == 1 else pa.concat_batches(pieces)
        attempts = pa.array(self.attempts[offsets - self.base].astype(np.int32))
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
        never = self.attempts[slots] == 0
        status[inside] = np.select(
            [states == DONE, settleable, never], [STATUS_DONE, STATUS_SETTLED, STATUS_UNKNOWN], STATUS_STALE
        )
        chosen = inside[settleable]
        unique_slots, first = np.unique(offsets[chosen] - self.base, return_index=True)
        if len(unique_slots) < len(chosen):  # the same delivery named twice
            duplicate = np.ones(len(chosen), dtype=bool)
            duplicate[first] = False
            status[chosen[duplicate]] = STATUS_DONE
        return status, unique_slots.astype(np.int64)

    def settle(self, slots: I64) -> Released:
        """Mark settleable slots DONE (an ack). Returns the leases they leave."""
        was_in_flight = slots[self.state[slots] == IN_FLIGHT]
        released = self._leave_flight(was_in_flight)
        self.state[slots] = DONE
        self._advance()
        return released

    def finish_dead_letters(self, offsets: I64) -> None:
        slots = offsets - self.base
        slots = slots[self.state[slots] == DEAD_LETTERING]
        units = self.unit[slots]
        units = units[units >= 0]
        if len(units):
            np.subtract.at(self.unit_in_flight, units, _ONE)
        self.in_flight -= len(slots)
        self.state[slots] = DONE
        self._advance()

    def _leave_flight(self, slots: I64) -> Released:
        """Bookkeeping for IN_FLIGHT slots that stop being in flight."""
        units = self.unit[slots]
        units = units[units >= 0]
        if len(units):
            np.subtract.at(self.unit_in_flight, units, _ONE)
        self.in_flight -= len(slots)
        leases, counts = np.unique(self.lease[slots], return_counts=True)
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
        if self.scan < self.committed:
            self.scan = self.committed
        if len(self.batch_starts) > 1 and self.committed - self.base >= _TRIM_RECORDS_MIN:
            self._trim()

    def _trim(self) -> None:
        """Drop whole batches that lie below the watermark."""
        keep_from = int(np.searchsorted(np.asarray(self.batch_starts), self.committed, side="right")) - 1
        if keep_from <= 0:
            return
        new_base = self.batch_starts[keep_from]
        shift = new_base - self.base
        size = self.size - shift
        for name in ("state", "attempts", "unit", "lease", "not_before"):
            array = getattr(self, name)
            array[:size] = array[shift : shift + size]
        self.batches = self.batches[keep_from:]
        self.batch_starts = self.batch_starts[keep_from:]
        self.base = new_base

    def settled_above(self) -> tuple[I64, I64]:
        """Runs of DONE offsets above the watermark (for a snapshot)."""
        low = self.committed - self.base
        done = np.flatnonzero(self.state[low : self.size] == DONE).astype(np.int64) + self.committed
        from odradek.groups.state import runs_of  # no cycle at import time

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
        units_dead = self.unit[dead]
        units_dead = units_dead[units_dead >= 0]
        if len(units_dead):
            np.add.at(self.unit_in_flight, units_dead, _ONE)
        self.in_flight += len(dead)
        self.state[dead] = DEAD_LETTERING
        self.state[back] = PENDING
        self.not_before[back_counted] = now + delay if delay > 0 else 0.0
        self.not_before[rewound] = 0.0
        if len(back):
            self.parked = np.union1d(self.parked, back.astype(np.int64) + self.base)
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
        failed_units, earliest = unit_sorted[first], slot_sorted[first]
        flying = np.flatnonzero(self.state[: self.size] == IN_FLIGHT)
        position = np.searchsorted(failed_units, self.unit[flying])
        position = np.minimum(position, len(failed_units) - 1)
        hit = (failed_units[position] == self.unit[flying]) & (flying > earliest[position])
        later = flying[hit]
        if not count:
            return np.zeros(0, dtype=np.int64), np.union1d(slots, later)
        counted = np.concatenate((slots[~keyed], earliest))
        rewound = np.setdiff1d(np.union1d(slots[keyed], later), earliest)
        return counted, rewound

    # -- numbers ----------------------------------------------------------------------

    def settled_in_window(self) -> int:
        low = self.committed - self.base
        return int(np.count_nonzero(self.state[low : self.size] == DONE))

    def compact_units(self) -> None:
        """Renumber units when the key table holds many keys no longer in the window."""
        if self.ordering != "key" or len(self.keys) < 4 * max(self.size, 65_536):
            return
        units = self.unit[: self.size]
        live = np.unique(units[units >= 0]).astype(np.int32)
        remap = self.keys.compact(live)
        self.unit[: self.size] = np.where(units >= 0, remap[np.maximum(units, 0)], NO_UNIT)
        self.unit_in_flight = self.unit_in_flight[live].copy()
        self.unit_holder = self.unit_holder[live].copy()


def _grown(array: npt.NDArray[_Item], size: int) -> npt.NDArray[_Item]:
    grown = np.zeros(size, dtype=array.dtype)
    grown[: len(array)] = array
    return grown
