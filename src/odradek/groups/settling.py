"""How a group settles deliveries: acks, nacks, dead letters, and its progress file.

Rules
-----
* A settlement is written to the progress file (state.py) under the lock and made
  durable (its fsync) outside it; only then is it applied in memory. A failed write or
  fsync raises StorageError and settles nothing. Meanwhile the settlement is held as
  *unapplied*, so a snapshot rewrite of the progress file keeps it.
* A nack fails its deliveries at once: each is redelivered (after its delay) or, after
  ``max_deliveries`` attempts, dead-lettered.
* Dead letters are appended to the dead-letter topic outside the lock (an append
  notifies arrivals, which take group locks), then written as settled to the progress
  file, made durable, and settled; a failed step is retried by a later poll.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from odradek.errors import ClosedError, OdradekError
from odradek.groups import dispatcher
from odradek.groups.core import GroupCore
from odradek.groups.deadletters import REASON_NACKED, dead_letter_batch
from odradek.groups.delivery import DONE, STALE, UNKNOWN, AckResult, Rejection, Settleable, group_refs
from odradek.groups.dispatcher import Cursor
from odradek.groups.state import (
    KIND_DONE,
    TopicProgress,
    encode_done,
    encode_frame,
    needs_rewrite,
    runs_of,
    snapshot_frames,
)

log = logging.getLogger(__name__)

I64 = dispatcher.I64

_STATUS_NAMES = {
    dispatcher.STATUS_DONE: DONE,
    dispatcher.STATUS_STALE: STALE,
    dispatcher.STATUS_UNKNOWN: UNKNOWN,
}

# A dead-letter write that failed is retried after this long.
_DEAD_LETTER_RETRY_SECONDS = 1.0


class Settling(GroupCore):
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
        if settled and self.on_progress is not None:
            self.on_progress()
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
        result = self._give_back(member_id, refs, count=True, delay=delay, reason=REASON_NACKED)
        self._process_dead_letters()
        return result

    def release(self, member_id: str, refs: Settleable) -> AckResult:
        """Give deliveries back unprocessed: each may be delivered again at once, its
        attempt not counted (as a clean leave gives back what a member held)."""
        return self._give_back(member_id, refs, count=False, delay=0.0, reason="")

    def _give_back(
        self, member_id: str, refs: Settleable, *, count: bool, delay: float, reason: str
    ) -> AckResult:
        """Deliveries in flight go back to be delivered again (a nack when ``count``:
        the attempt counts, and with too many the record goes to the dead letters)."""
        requests = list(group_refs(refs))
        settled = 0
        rejected: list[Rejection] = []
        with self._lock:
            self._check_open()
            self._touch(member_id)
            for _topic, cursor, slots in self._classified(requests, rejected):
                flying = slots[cursor.state[slots] == dispatcher.IN_FLIGHT]
                if len(flying):
                    released = self._fail(cursor, flying, count=count, delay=delay, reason=reason)
                    self.counters["rewound" if count else "released"] += released.rewound
                settled += len(slots)  # giving back a timed-out delivery changes nothing
            if count:
                self.counters["nacked"] += settled
            self.counters["rejected_acks"] += len(rejected)
            if settled:
                self._changed()
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

    def _rewrite(self, overrides: dict[str, TopicProgress] | None = None) -> None:
        """Replace the progress file by a snapshot of the current progress, with the
        progress of the topics of ``overrides`` replaced (a reset: reset.py)."""
        if self.options is None:
            return
        overrides = overrides or {}
        topics = dict(self._saved)
        for topic, cursor in self._cursors.items():
            topics[topic] = self._progress_of(cursor)
        topics.update(overrides)
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
                if cursor.topic in overrides:
                    continue
                saved = self._saved.get(cursor.topic)
                if self._cursors.get(cursor.topic) is cursor or (
                    saved is not None and saved.incarnation == cursor.incarnation
                ):
                    frames.append(encode_frame(KIND_DONE, encode_done(cursor.topic, *runs_of(offsets))))
        self._store.rewrite(frames)

    def rewrite_progress(self) -> None:
        """Rewrite the progress file as a snapshot now (upkeep and tests)."""
        with self._lock:
            self._rewrite()

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
                    self.write_dead_letters(topic, dead_letter_batch(job, self.name))
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


def _rejections(topic: str, offsets: I64, leases: I64, status: Any) -> list[Rejection]:
    if status is None:
        return [
            Rejection(topic, int(o), int(lease), UNKNOWN) for o, lease in zip(offsets, leases, strict=True)
        ]
    bad = np.flatnonzero(status != dispatcher.STATUS_SETTLED)
    return [
        Rejection(topic, int(offsets[i]), int(leases[i]), _STATUS_NAMES[int(status[i])]) for i in bad.tolist()
    ]
