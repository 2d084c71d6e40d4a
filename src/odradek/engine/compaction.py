"""Compaction of a topic's sealed segments: the latest record of each key is kept.

Theory of operation (docs/decisions/0015-compacted-topics.md)
--------------------------------------------------------------
A topic with ``cleanup="compact"`` (or ``"compact,delete"``) is compacted in the
background, as Kafka's log cleaner does it:

* The log below ``compacted_until`` (``TopicLog``) is *clean*: each key has at most one
  record there. The sealed segments after it are *dirty*. The active segment is never
  touched, so compaction never waits for appends nor makes them wait (it takes the
  topic's writer lock only to freeze the key index's memory, which it then writes
  outside the lock, and to swap a segment's file).
* A round starts when the dirty bytes reach ``min_cleanable_dirty_ratio`` of the sealed
  bytes, or when a tombstone it kept is due. It reads the dirty segments' keys and
  offsets (at most ``compaction_map_records_max`` records: the rest waits for the next
  round) and finds each key's latest offset with one Arrow ``group_by``.
* Then every sealed segment up to the end of that dirty part is filtered, a segment at a
  time, with one ``index_in`` against that map: a record stays if its key is not in the
  map or it is the key's latest; a tombstone (a null value) that stays goes once it is
  ``delete_retention`` old; a record younger than ``min_compaction_lag`` always stays.
  Keyless records always stay (a compacted topic refuses them; older ones are kept).
* The records that stay keep their offsets, versions, timestamps and headers: each run
  of consecutive kept records of a frame is written as one frame (with the partition
  the frame was stored with, decision 0014). Offsets between frames are gaps, which a
  read skips; ``next_offset`` does not move.
* A segment is swapped atomically through the storage seam: ``compacted.json`` is moved
  past the segment first (gaps below it are by design, not damage), the new file is
  written whole under a temporary name and fsync'd, the old sidecar index is removed,
  the file is renamed over the old one, then the new index is written. A crash leaves
  either the old segment (the temporary file is removed on open) or the new one (read
  by a scan that allows gaps when its index is missing), never a mix.
* A round that stopped (a kill, a close) leaves segments below ``compacted_until``
  that were never compacted. The compactor therefore trusts as clean only what a round
  of its own session finished (``clean_until``): the first round after an open maps the
  whole sealed log again, and a tombstone whose key is not in the round's map goes only
  from that known-clean part (else an older record of its key could stay, and the key
  would come back).
* Reads take no lock: a reader holding the old segment reads the old file through its
  mapping. Its I/O (bytes read plus written) is held to ``compaction_bytes_per_second``.

The key index keeps the entries of records compacted away (they say which versions a
key had); ``read_key`` skips offsets no frame holds any more below ``compacted_until``.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.engine import segment as seg
from odradek.engine.frames import PARTITION_META
from odradek.engine.log import Segment, write_compacted_until
from odradek.errors import StorageError
from odradek.storage.disk import TEMPORARY_SUFFIX, describe_os_error

if TYPE_CHECKING:
    from odradek.engine.topic import Topic

log = logging.getLogger(__name__)


@dataclasses.dataclass
class CompactionResult:
    """What one round did."""

    segments_rewritten: int = 0
    records_read: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    compacted_until: int = 0


@dataclasses.dataclass(frozen=True)
class CompactionLag:
    """How far compaction lags on one topic (:meth:`Compactor.lag`), from what the
    engine holds in memory: the sizes of its sealed segments and the compactor's state.

    ``dirty_bytes`` are the sealed bytes past the clean point (``compacted_until``; for
    ``cleanup="snapshot"`` what the last round left covered); a round is due once
    ``dirty_ratio`` reaches ``trigger_ratio`` (``min_cleanable_dirty_ratio``; 0 for
    ``cleanup="snapshot"``, whose rounds take any dirty segment). ``due_since`` is when the
    compactor first found a round due that has not finished since (None: none due)."""

    topic: str
    cleanup: str
    dirty_bytes: int
    sealed_bytes: int
    trigger_ratio: float
    rounds: int  # rounds finished since the topic was opened
    last_round_at: float | None  # when the latest finished (seconds since the epoch)
    due_since: float | None

    @property
    def dirty_ratio(self) -> float:
        return self.dirty_bytes / self.sealed_bytes if self.sealed_bytes else 0.0

    @property
    def over_trigger(self) -> bool:
        """Whether the dirty part is large enough for a round."""
        return self.dirty_bytes > 0 and self.dirty_ratio >= self.trigger_ratio

    def behind_seconds(self, now: float) -> float:
        """How long a round has been due without one finishing (0: none due)."""
        return 0.0 if self.due_since is None else max(0.0, now - self.due_since)

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "cleanup": self.cleanup,
            "dirty_bytes": self.dirty_bytes,
            "sealed_bytes": self.sealed_bytes,
            "dirty_ratio": self.dirty_ratio,
            "trigger_ratio": self.trigger_ratio,
            "over_trigger": self.over_trigger,
            "rounds": self.rounds,
            "last_round_at": self.last_round_at,
            "behind_seconds": self.behind_seconds(now),
        }


def lag_summary(
    lags: list[CompactionLag], now: float, topics_max: int = limits.compaction_lag_topics_max
) -> dict[str, Any]:
    """Totals over ``lags`` and the ``topics_max`` worst by dirty ratio (then dirty
    bytes): what ``odradek cluster status`` shows of compaction. A topic whose round has
    been due for ``compaction_lag_warning_seconds`` or more counts in ``topics_behind``."""
    worst = heapq.nsmallest(topics_max, lags, key=lambda lag: (-lag.dirty_ratio, -lag.dirty_bytes, lag.topic))
    dirty = sum(lag.dirty_bytes for lag in lags)
    sealed = sum(lag.sealed_bytes for lag in lags)
    behind = [lag.behind_seconds(now) for lag in lags]
    finished = [lag.last_round_at for lag in lags if lag.last_round_at is not None]
    return {
        "topics": len(lags),
        "dirty_bytes": dirty,
        "sealed_bytes": sealed,
        "dirty_ratio": dirty / sealed if sealed else 0.0,
        "topics_over_trigger": sum(lag.over_trigger for lag in lags),
        "topics_behind": sum(seconds >= limits.compaction_lag_warning_seconds for seconds in behind),
        "behind_seconds_max": max(behind, default=0.0),
        "warning_seconds": limits.compaction_lag_warning_seconds,
        "rounds": sum(lag.rounds for lag in lags),
        "last_round_at": max(finished, default=None),
        "worst": [lag.to_json(now) for lag in worst],
    }


def _dirty_and_sealed(sealed: list[Segment], clean: int) -> tuple[int, int]:
    """The bytes of the sealed segments from the clean point on (dirty), and of them all."""
    return sum(s.file.size for s in sealed if s.base_offset >= clean), sum(s.file.size for s in sealed)


class CompactionStopped(Exception):
    """The engine is closing: a round stops between two reads or writes (what it did
    so far is whole: segments are swapped one at a time)."""


class Throttle:
    """Holds a round's I/O to ``rate`` bytes per second (:meth:`spent` waits when it is
    ahead) and stops it once ``stop`` is set."""

    def __init__(
        self,
        rate: float,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate
        self.stop = stop or threading.Event()
        self.clock = clock
        self.started = clock()
        self.bytes = 0

    def spent(self, count: int) -> None:
        if self.stop.is_set():
            raise CompactionStopped
        self.bytes += count
        ahead = self.bytes / self.rate - (self.clock() - self.started)
        if ahead > 0 and self.stop.wait(ahead):
            raise CompactionStopped


class Compactor:
    """Compacts one topic; the topic's ``compact`` calls :meth:`run`."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        # When the oldest tombstone kept by the last round is due (µs since the epoch);
        # 0 after an open: the first round looks.
        self.tombstone_due_micros = 0
        self.rounds = 0
        # Below this offset the log is known clean in this session. ``compacted_until``
        # moves before a round's swaps, so a round that stopped (a kill, a close) leaves
        # segments below it that were never compacted: after an open the first round
        # maps the whole sealed log again.
        self.clean_until = 0
        # cleanup="snapshot" (engine/snapshots.py): the snapshot log's durable offset the
        # last round read, and below which that round left nothing covered.
        self.snapshot_mark = -1
        self.snapshot_clean_until = 0
        # What lag() reports: when the latest round finished (time.time()), and when
        # due() first found a round due that has not finished since (its ``now``).
        self.last_round_at: float | None = None
        self.due_since: float | None = None

    # -- deciding -----------------------------------------------------------------------

    def due(self, now: float) -> bool:
        due = self._due(now)
        if not due:
            self.due_since = None
        elif self.due_since is None:
            self.due_since = now
        return due

    def lag(self) -> CompactionLag:
        """How far compaction lags on this topic: sizes of the sealed segments held in
        memory, nothing read, no lock taken (``segments`` is replaced whole on a swap)."""
        topic = self.topic
        config = topic.config
        if config.snapshot_cleanup:
            clean, trigger = self.snapshot_clean_until, 0.0
        else:
            clean, trigger = topic.log.compacted_until, config.min_cleanable_dirty_ratio
        dirty, sealed = _dirty_and_sealed(topic.log.segments[:-1], clean)
        return CompactionLag(
            topic=topic.name,
            cleanup=config.cleanup,
            dirty_bytes=dirty,
            sealed_bytes=sealed,
            trigger_ratio=trigger,
            rounds=self.rounds,
            last_round_at=self.last_round_at,
            due_since=self.due_since,
        )

    def _due(self, now: float) -> bool:
        topic = self.topic
        config = topic.config
        if config.snapshot_cleanup:
            sealed_end = topic.log.segments[-1].base_offset
            companion = topic.snapshots.companion()
            mark = -1 if companion is None else companion.durable_offset
            return mark != self.snapshot_mark or sealed_end > self.snapshot_clean_until
        if not config.compacted:
            return False
        sealed = topic.log.segments[:-1]
        if not sealed:
            return False
        until = topic.log.compacted_until
        dirty, total = _dirty_and_sealed(sealed, until)
        if dirty and total and dirty / total >= config.min_cleanable_dirty_ratio:
            return True
        if self.tombstone_due_micros:
            return now * 1_000_000 >= self.tombstone_due_micros
        return self.rounds == 0 and until > 0  # after an open: tombstones kept may be due

    # -- one round ----------------------------------------------------------------------

    def run(self, now: float, throttle: Throttle | None = None) -> CompactionResult:
        topic = self.topic
        throttle = throttle or Throttle(limits.compaction_bytes_per_second)
        if topic.config.snapshot_cleanup:
            from odradek.engine.snapshots import snapshot_round  # it imports this module

            result = snapshot_round(self, now, throttle)
            self._finished()
            return result
        result = CompactionResult()
        sealed = list(topic.log.segments)[:-1]
        if not sealed:
            return result
        until = topic.log.compacted_until
        start = self.clean_until
        dirty = [s for s in sealed if s.base_offset >= start]
        config = topic.config
        now_micros = int(now * 1_000_000)
        young = now_micros - int(config.min_compaction_lag_seconds * 1_000_000)
        taken: list[Segment] = []
        records = 0
        for segment in dirty:
            count = sum(f.count for f in segment.frames)
            if taken and records + count > limits.compaction_map_records_max:
                break
            if segment.max_timestamp > young:
                break  # it holds records younger than min_compaction_lag: not yet
            taken.append(segment)
            records += count
        end = until
        clean = start
        if taken:
            following = sealed.index(taken[-1]) + 1
            end = sealed[following].base_offset if following < len(sealed) else topic.log.active.base_offset
            clean = end
        latest_keys, latest_offsets = self._latest(taken, throttle, result)
        self._prepare(max(end, until))
        result.compacted_until = max(end, until)
        tombstone_limit = (
            None
            if config.delete_retention_seconds is None
            else now_micros - int(config.delete_retention_seconds * 1_000_000)
        )
        due = 0
        for segment in sealed:
            if segment.base_offset >= result.compacted_until:
                break
            if segment.damages or segment.bad or not segment.frames:
                continue  # damage is kept as found, for the operator
            kept = self._filter(
                segment,
                latest_keys,
                latest_offsets,
                tombstone_limit,
                segment.base_offset < start,
                young,
                throttle,
                result,
            )
            if kept is None:
                continue
            keep, batches, tombstone_due = kept
            if tombstone_due:
                due = tombstone_due if not due else min(due, tombstone_due)
            if keep is not None:
                self._rewrite(segment, batches, keep, throttle, result)
        self.tombstone_due_micros = due
        self.clean_until = max(self.clean_until, clean)
        self._finished()
        return result

    def _finished(self) -> None:
        self.rounds += 1
        self.last_round_at = time.time()
        self.due_since = None

    def _latest(
        self, segments: list[Segment], throttle: Throttle, result: CompactionResult
    ) -> tuple[pa.Array, np.ndarray]:
        """Each key's latest offset in ``segments`` (keys, offsets)."""
        keys: list[pa.Array] = []
        offsets: list[pa.Array] = []
        for segment in segments:
            for frame in list(segment.frames):
                batch = self._read(segment, frame)
                throttle.spent(frame.size)
                if batch is None:
                    continue
                keys.append(batch.column("key"))
                offsets.append(batch.column("offset"))
                result.records_read += batch.num_rows
        if not keys:
            return pa.array([], pa.binary()), np.zeros(0, dtype=np.int64)
        table = pa.table({"key": pa.chunked_array(keys, pa.binary()), "offset": pa.chunked_array(offsets)})
        table = table.filter(pc.is_valid(table.column("key")))
        grouped = table.group_by("key").aggregate([("offset", "max")])
        return grouped.column("key").combine_chunks(), grouped.column("offset_max").to_numpy()

    def _read(self, segment: Segment, frame: seg.FrameInfo) -> pa.RecordBatch | None:
        return self.topic._read_or_note(segment, frame, verify=True)

    def _filter(
        self,
        segment: Segment,
        latest_keys: pa.Array,
        latest_offsets: np.ndarray,
        tombstone_limit: int | None,
        known_clean: bool,
        young: int,
        throttle: Throttle,
        result: CompactionResult,
    ) -> tuple[np.ndarray | None, list[pa.RecordBatch], int] | None:
        """(rows kept over the segment's frames, or None if all; the frames' batches;
        when the earliest tombstone kept is due), or None if a frame cannot be read.

        A tombstone whose key is in the map goes with every older record of its key in
        this round; one whose key is not goes only from a segment ``known_clean`` (else
        older records of its key may still be in a segment no round compacted)."""
        batches: list[pa.RecordBatch] = []
        for frame in segment.frames:
            batch = self._read(segment, frame)
            throttle.spent(frame.size)
            if batch is None:
                return None
            batches.append(batch)
        table = pa.Table.from_batches(batches)
        keys = table.column("key")
        offsets = table.column("offset").to_numpy()
        timestamps = table.column("timestamp").cast(pa.int64()).to_numpy()
        positions = pc.index_in(keys, value_set=latest_keys)
        found = positions.is_valid().to_numpy(zero_copy_only=False)
        latest = latest_offsets[positions.fill_null(0).to_numpy()] if len(latest_offsets) else offsets
        keep = ~found | (offsets >= latest)
        tombstones = (
            keys.is_valid().to_numpy(zero_copy_only=False)
            & table.column("value").is_null().to_numpy(zero_copy_only=False)
            & keep
        )
        due = 0
        if tombstones.any():
            if tombstone_limit is not None:
                expired = tombstones & (timestamps <= tombstone_limit)
                if not known_clean:
                    expired &= found
                result.tombstones_removed += int((expired & (timestamps <= young)).sum())
                keep &= ~expired
                remaining = tombstones & ~expired
            else:
                remaining = np.zeros(0, dtype=bool)
            if remaining.any() and self.topic.config.delete_retention_seconds is not None:
                retention = int(self.topic.config.delete_retention_seconds * 1_000_000)
                due = int(timestamps[remaining].min()) + retention
        keep |= timestamps > young
        removed = len(keep) - int(keep.sum())
        result.records_removed += removed
        return (None if removed == 0 else keep), batches, due

    # -- swapping a segment ---------------------------------------------------------------

    def _prepare(self, until: int) -> None:
        """Make the key index cover what is compacted, and ``compacted.json`` say where
        gaps are by design, before any segment is swapped."""
        topic = self.topic
        with topic._write_lock:
            topic._check_open_for_repair()
            flush = topic.keys.covered_until < until
            if flush:
                topic.keys.freeze(topic.log.next_offset)
        if flush:
            # Written outside the writer lock: appends go on meanwhile (into a new
            # memtable); under it the flush of a large memtable held them for its sort.
            topic.keys.flush_frozen()
        with topic._write_lock:
            topic._check_open_for_repair()
            if topic.keys.covered_until < until:  # not an assert: it must hold under -O too
                raise StorageError(
                    f"the key index of topic {topic.name} does not cover what compaction removes"
                )
            if until > topic.log.compacted_until:
                try:
                    write_compacted_until(topic.disk, topic.directory, until, sync=topic.fsync)
                except OSError as exc:
                    raise StorageError(
                        f"could not save the compaction state of topic {topic.name}: {describe_os_error(exc)}"
                    ) from exc
                topic.log.compacted_until = until

    def _rewrite(
        self,
        segment: Segment,
        batches: list[pa.RecordBatch],
        keep: np.ndarray,
        throttle: Throttle,
        result: CompactionResult,
    ) -> None:
        topic = self.topic
        disk = topic.disk
        frames = segment.frames
        counts = np.array([f.count for f in frames], dtype=np.int64)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        # Runs of kept rows, broken at frame boundaries.
        boundary = np.zeros(len(keep), dtype=bool)
        boundary[starts] = True
        previous = np.concatenate(([False], keep[:-1]))
        run_starts = np.flatnonzero(keep & (~previous | boundary))
        following = np.concatenate((keep[1:], [False]))
        next_boundary = np.concatenate((boundary[1:], [True]))
        run_ends = np.flatnonzero(keep & (~following | next_boundary)) + 1
        owners = np.searchsorted(starts, run_starts, side="right") - 1
        timestamps = np.concatenate([b.column("timestamp").cast(pa.int64()).to_numpy() for b in batches])
        maxima = np.maximum.reduceat(timestamps, run_starts) if len(run_starts) else np.zeros(0, np.int64)
        temporary = segment.file.path + TEMPORARY_SUFFIX
        new_frames: list[seg.FrameInfo] = []
        try:
            try:
                disk.remove(temporary)
            except FileNotFoundError:
                pass
            fd = disk.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
            try:
                position = 0
                metas: dict[int, dict[str, Any] | None] = {}
                for start, stop, owner, maximum in zip(
                    run_starts.tolist(), run_ends.tolist(), owners.tolist(), maxima.tolist()
                ):
                    if owner not in metas:
                        metas[owner] = _kept_meta(segment.file.frame_meta(frames[owner]))
                    row = start - int(starts[owner])
                    # A copy, not a slice: IPC would write a slice's whole buffers.
                    batch = batches[owner].take(pa.array(np.arange(row, row + stop - start)))
                    base = frames[owner].base_offset + row
                    pieces, size = seg.encode_frame(batch, base, maximum, metas[owner])
                    disk.pwritev(fd, pieces, position, size)
                    new_frames.append(
                        seg.FrameInfo(base, position, stop - start, maximum, size, metas[owner])
                    )
                    position += size
                    throttle.spent(size)
                if topic.fsync:
                    disk.fsync(fd)
            finally:
                disk.close(fd)
        except OSError as exc:
            _remove_quietly(disk, temporary)
            raise StorageError(
                f"could not write the compacted segment {temporary}: {describe_os_error(exc)}"
            ) from exc
        except BaseException:  # stopped: the old segment stays
            _remove_quietly(disk, temporary)
            raise
        self._swap(segment, temporary, new_frames, result)

    def _swap(
        self, old: Segment, temporary: str, frames: list[seg.FrameInfo], result: CompactionResult
    ) -> None:
        topic = self.topic
        disk = topic.disk
        directory = topic.directory
        with topic._write_lock:
            if topic.closed or not any(s is old for s in topic.log.segments):
                _remove_quietly(disk, temporary)  # retention removed it, or the topic closed
                return
            if old.file.size:
                old.file.mapping()  # readers of the old segment keep reading the old file
            try:
                try:
                    disk.remove(os.path.join(directory, seg.index_name(old.base_offset)))
                except FileNotFoundError:
                    pass
                if topic.fsync:
                    disk.fsync_directory(directory)
                disk.replace(temporary, old.file.path)
                if topic.fsync:
                    disk.fsync_directory(directory)
            except OSError as exc:
                _remove_quietly(disk, temporary)
                raise StorageError(
                    f"could not swap in the compacted segment {old.file.path}: {describe_os_error(exc)}"
                ) from exc
            file = seg.SegmentFile(disk, directory, old.base_offset, create=False, handles=topic.log.handles)
            file.close()
            new = Segment(
                file,
                frames,
                [f.base_offset for f in frames],
                max((f.max_timestamp for f in frames), default=0),
                old.opened_at,
                tail=file.size,
            )
            topic.log.segments = [new if s is old else s for s in topic.log.segments]
            try:
                seg.write_index(disk, directory, new.base_offset, frames, file.size, [], sync=topic.fsync)
            except OSError as exc:  # the index is an optimization: the next open scans
                log.warning("cannot write the index of %s: %s", file.path, describe_os_error(exc))
        result.segments_rewritten += 1
        result.bytes_before += old.file.size
        result.bytes_after += file.size


def _kept_meta(meta: dict[str, Any] | None) -> dict[str, Any] | None:
    """What a compacted frame keeps of its frame's metadata: the Kafka partition (a
    producer's sequence no longer describes the frame's records)."""
    if meta and PARTITION_META in meta:
        return {PARTITION_META: meta[PARTITION_META]}
    return None


def _remove_quietly(disk: Any, path: str) -> None:
    try:
        disk.remove(path)
    except OSError:
        pass
