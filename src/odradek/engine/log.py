"""A topic's log: its segments, recovery, rolling, offset and time lookup, retention.

The log is the source of truth of a topic; everything else (key index, key heads,
producer state) is derived from it and can be rebuilt from it.

Threading: the owning :class:`~odradek.engine.topic.Topic` serializes every mutation
(append, roll, retention) under its writer lock. Readers take a snapshot of the
segment list and read frames without any lock: frames below the durable offset never
change, and a segment removed by retention stays readable through its mapping.
"""

from __future__ import annotations

import bisect
import dataclasses
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from odradek import limits
from odradek.config import TopicConfig
from odradek.engine import segment as seg
from odradek.errors import StorageError
from odradek.records import STORED_SCHEMA
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.handles import HandleCache

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Segment:
    file: seg.SegmentFile
    frames: list[seg.FrameInfo]
    bases: list[int]  # frames[i].base_offset, for bisect
    max_timestamp: int
    opened_at: float
    tail: int = 0  # position after the last valid frame found when the segment was opened
    damages: list[seg.Damage] = dataclasses.field(default_factory=list)  # recorded in its index
    bad: set[int] = dataclasses.field(default_factory=set)  # base offsets of frames found damaged
    verified: bytearray = dataclasses.field(default_factory=bytearray)  # 1 = frame's CRC checked
    _bases_array: np.ndarray | None = dataclasses.field(default=None, repr=False)
    _counts_array: np.ndarray | None = dataclasses.field(default=None, repr=False)

    @property
    def base_offset(self) -> int:
        return self.file.base_offset

    @property
    def next_offset(self) -> int:
        return self.frames[-1].next_offset if self.frames else self.file.base_offset

    def add(self, frame: seg.FrameInfo) -> None:
        self.frames.append(frame)
        self.bases.append(frame.base_offset)
        self.max_timestamp = max(self.max_timestamp, frame.max_timestamp)

    def bases_array(self) -> np.ndarray:
        """``bases`` as a NumPy array, for locating many offsets at once (cached; frames
        are only ever appended, so a cache of the right length is current)."""
        count = len(self.bases)
        cached = self._bases_array
        if cached is None or len(cached) != count:
            cached = np.array(self.bases[:count], dtype=np.int64)
            self._bases_array = cached
        return cached

    def counts_array(self) -> np.ndarray:
        """The frames' record counts as a NumPy array (cached like ``bases_array``)."""
        count = len(self.bases)
        cached = self._counts_array
        if cached is None or len(cached) != count:
            cached = np.array([frame.count for frame in self.frames[:count]], dtype=np.int64)
            self._counts_array = cached
        return cached


class TopicLog:
    def __init__(
        self,
        directory: str,
        config: TopicConfig,
        disk: Disk = LOCAL,
        *,
        acknowledged: int = 0,
        fsync: bool = True,
        handles: HandleCache | None = None,
    ) -> None:
        """Open (recover) the log in ``directory``.

        ``acknowledged`` is a lower bound of the offsets that were acknowledged before
        (the topic's head file): a log that ends before it lost acknowledged records,
        which is damage, never a torn tail, and offsets below it are never handed out
        again.
        """
        self.directory = directory
        self.config = config
        self.disk = disk
        self.fsync = fsync
        self.handles = handles or HandleCache(disk)
        self.segments: list[Segment] = []
        # Ranges of offsets that are lost or unreadable, in offset order (see Damage).
        self.damages: list[seg.Damage] = []
        # Called with the new segment's base offset after the active segment is sealed
        # and before the new one exists (the topic snapshots its producer state there).
        self.before_new_segment: Callable[[int], None] | None = None
        # The stored schema of the frame starting at an offset: a schema'd topic's
        # frames have a typed value column, one type per schema version.
        self.stored_schema_at: Callable[[int], pa.Schema] = schemaless_stored_schema
        # Offsets below this were compacted (engine/compaction.py): records are missing
        # there by design, so gaps below it are no damage.
        self.compacted_until = read_compacted_until(disk, directory)
        self._open(acknowledged)

    # -- recovery ---------------------------------------------------------------------

    def _open(self, acknowledged: int) -> None:
        bases = list(seg.iter_segment_bases(self.disk, self.directory))
        for number, base in enumerate(bases):
            if self.segments and base < self.segments[-1].next_offset:
                raise StorageError(
                    f"log of {self.directory} is inconsistent: segment {seg.segment_name(base)} starts "
                    f"at offset {base}, inside the segment before it (which ends at offset "
                    f"{self.segments[-1].next_offset}); move one of them aside"
                )
            following = bases[number + 1] if number + 1 < len(bases) else None
            self.segments.append(self._open_segment(base, following))
        if not self.segments:
            self._new_segment(max(acknowledged, 0))
            return
        self._note_gaps()
        active = self.segments[-1]
        end = active.next_offset
        lost = acknowledged > end
        if lost:
            self.add_damage(
                seg.Damage(
                    active.file.name,
                    active.tail,
                    active.file.size,
                    end,
                    acknowledged,
                    f"offsets up to {acknowledged - 1} were acknowledged but the log ends at offset "
                    f"{end}: the segment was truncated, deleted or damaged at its end",
                )
            )
        elif active.tail < active.file.size:
            if _all_zeros(active.file.view(active.file.size)[active.tail :]):
                log.debug(
                    "trimming %d preallocated bytes of %s", active.file.size - active.tail, active.file.path
                )
            else:
                log.warning(
                    "truncating torn tail of %s: %d bytes after position %d",
                    active.file.path,
                    active.file.size - active.tail,
                    active.tail,
                )
            active.file.truncate(active.tail)
            if self.fsync:
                active.file.sync()
        if lost or active.damages:
            # Keep the damaged bytes as they are for the operator, and write on in a new
            # segment: the sidecar index of the sealed one records the damage.
            self._seal(active)
            self._new_segment(max(end, acknowledged))

    def _open_segment(self, base: int, following: int | None) -> Segment:
        """A segment as its sidecar index (sealed) or a full scan (active, or sealed
        without a usable index) describes it."""
        file = seg.SegmentFile(
            self.disk,
            self.directory,
            base,
            create=False,
            handles=self.handles,
            preallocate=self._preallocate() if following is None else 0,
        )
        index = None if following is None else seg.read_index(self.disk, self.directory, base, file.size)
        if index is not None:
            frames, damages, tail = index.frames, index.damages, file.size
        else:
            scan = file.scan(gaps=base < self.compacted_until)
            frames, damages, tail = scan.frames, scan.damages, scan.tail
        segment = Segment(
            file,
            frames,
            [f.base_offset for f in frames],
            max((f.max_timestamp for f in frames), default=0),
            time.time(),
            tail=tail,
            damages=list(damages),
        )
        for damage in damages:
            self.add_damage(damage)
        if following is not None:
            end = segment.next_offset
            if end < following and following <= self.compacted_until and tail == file.size:
                end = following  # its last records were compacted away
            if index is None and (tail < file.size or end < following):
                damage = seg.Damage(
                    file.name,
                    tail,
                    file.size,
                    end,
                    following,
                    "the end of a sealed segment holds no valid frame"
                    if tail < file.size
                    else "a sealed segment ends before the next segment starts (truncated)",
                )
                if end < following:
                    segment.damages.append(damage)
                    self.add_damage(damage)
                else:
                    log.error("%s: %d bytes after the last frame hold no frame", file.path, file.size - tail)
            file.close()
            if index is None:
                self._write_index(segment)
        return segment

    def _note_gaps(self) -> None:
        """Offsets between consecutive frames that no recorded damage explains (a sealed
        segment deleted, or frames cut out) are damage too."""
        previous_end: int | None = None
        previous_name = ""
        for segment in self.segments:
            if not segment.frames:
                continue
            first = segment.frames[0].base_offset
            if previous_end is None:
                previous_end = first if segment.base_offset == first else segment.base_offset
            if first > previous_end and not self._covered(previous_end, first):
                self.add_damage(
                    seg.Damage(
                        segment.file.name if segment.base_offset < first else previous_name,
                        0,
                        0,
                        previous_end,
                        first,
                        "no segment holds these offsets (a segment file is missing)",
                    )
                )
            previous_end = segment.next_offset
            previous_name = segment.file.name

    def _covered(self, start: int, end: int) -> bool:
        if end <= self.compacted_until:
            return True  # records compacted away
        position = start
        for damage in self.damages:
            if damage.first_offset <= position < damage.end_offset:
                position = damage.end_offset
        return position >= end

    def add_damage(self, damage: seg.Damage) -> None:
        if any(
            d.first_offset == damage.first_offset and d.end_offset == damage.end_offset for d in self.damages
        ):
            return
        self.damages = sorted([*self.damages, damage], key=lambda d: (d.first_offset, d.end_offset))

    def note_damage(self, segment: Segment, frame: seg.FrameInfo, reason: str) -> seg.Damage:
        """A frame found damaged by a read: readers skip it from now on."""
        damage = seg.Damage(
            segment.file.name,
            frame.position,
            frame.position + frame.size,
            frame.base_offset,
            frame.next_offset,
            reason,
        )
        segment.bad.add(frame.base_offset)
        self.add_damage(damage)
        return damage

    def _write_index(self, segment: Segment) -> None:
        try:
            seg.write_index(
                self.disk,
                self.directory,
                segment.base_offset,
                segment.frames,
                segment.file.size,
                segment.damages,
                sync=self.fsync,
            )
        except OSError as exc:  # the index is an optimization: the next open scans instead
            log.warning("cannot write the index of %s: %s", segment.file.path, describe_os_error(exc))

    def _seal(self, segment: Segment) -> None:
        if self.fsync:
            segment.file.sync()
        seg.write_index(
            self.disk,
            self.directory,
            segment.base_offset,
            segment.frames,
            segment.file.size,
            segment.damages,
            sync=self.fsync,
        )
        segment.file.close()

    def _new_segment(self, base_offset: int) -> Segment:
        path = os.path.join(self.directory, seg.segment_name(base_offset))
        if self.disk.exists(path) and self.disk.getsize(path) == 0:
            self.disk.remove(path)  # an empty leftover of a crash right after a roll
        segment = Segment(
            seg.SegmentFile(
                self.disk,
                self.directory,
                base_offset,
                create=True,
                handles=self.handles,
                preallocate=self._preallocate(),
            ),
            [],
            [],
            0,
            time.time(),
        )
        self.segments.append(segment)
        if self.fsync:
            self.disk.fsync_directory(self.directory)
        return segment

    # -- state ------------------------------------------------------------------------

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def first_offset(self) -> int:
        return self.segments[0].base_offset

    @property
    def next_offset(self) -> int:
        return self.active.next_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.file.size for s in self.segments)

    # -- writing (under the topic's writer lock) --------------------------------------

    def should_roll(self, frame_size: int) -> bool:
        active = self.active
        if not active.frames:
            return False
        if active.file.size + frame_size > self.config.segment_bytes:
            return True
        age = self.config.segment_seconds
        return age is not None and time.time() - active.opened_at >= age

    def roll(self) -> None:
        """Seal the active segment (fsync, sidecar index) and start a new one.

        If any step fails the active segment stays active and StorageError is raised.
        """
        active = self.active
        try:
            active.file.trim()
            active.file.sync()
            seg.write_index(
                self.disk,
                self.directory,
                active.base_offset,
                active.frames,
                active.file.size,
                active.damages,
                sync=self.fsync,
            )
            if self.before_new_segment is not None:
                self.before_new_segment(active.next_offset)
            self._new_segment(active.next_offset)
        except OSError as exc:
            raise StorageError(
                f"could not roll segment {active.file.path}: {describe_os_error(exc)}"
            ) from exc
        active.file.close()

    def append(
        self, batch: pa.RecordBatch, base_offset: int, max_timestamp: int, meta: dict[str, Any] | None
    ) -> seg.FrameInfo:
        pieces, size = seg.encode_frame(batch, base_offset, max_timestamp, meta)
        if self.should_roll(size):
            self.roll()
        active = self.active
        position = active.file.append(pieces, size)
        frame = seg.FrameInfo(base_offset, position, batch.num_rows, max_timestamp, size, meta)
        active.add(frame)
        return frame

    def sync_handle(self) -> tuple[int, seg.SegmentFile, int]:
        """A duplicate of the active segment's descriptor for a group-commit fsync, the
        segment, and the token that marks its handle clean once the fsync is done."""
        active = self.active.file
        fd, token = active.sync_handle()
        return fd, active, token

    def journal_mark(self) -> tuple[int, Callable[[], None]]:
        """Where the active segment's writes so far stand in a journaled disk's journal,
        and what marks its handle clean once the journal is durable up to there (for the
        group commit, under the writer lock)."""
        return self.active.file.journal_mark()

    # -- reading (lock-free) ----------------------------------------------------------

    def locate(self, offset: int, segments: list[Segment] | None = None) -> tuple[int, int] | None:
        """(segment index, frame index) of the first frame holding ``offset`` or, if no
        frame holds it (damage, a gap), an offset after it; None if there is none."""
        return locate(self.segments if segments is None else segments, offset)

    def frames_from(self, offset: int, end_offset: int) -> Iterator[tuple[Segment, seg.FrameInfo]]:
        """Frames holding offsets in [offset, end_offset), in order; frames found damaged
        are left out (their offsets are in ``damages``)."""
        # One snapshot for the lookup and the walk: retention may replace the list meanwhile.
        segments = list(self.segments)
        yield from frames_at(segments, self.locate(offset, segments), end_offset)

    def offset_for_time(self, micros: int, end_offset: int, segments: list[Segment] | None = None) -> int:
        """The first frame's base offset whose max timestamp is >= ``micros``, else end."""
        for segment in list(self.segments) if segments is None else segments:
            if segment.max_timestamp < micros:
                continue
            for frame in list(segment.frames):
                if frame.base_offset >= end_offset:
                    return end_offset
                if frame.max_timestamp >= micros:
                    return frame.base_offset
        return end_offset

    def read_frame(self, segment: Segment, frame: seg.FrameInfo, verify: bool = True) -> pa.RecordBatch:
        """A frame's batch; raises FrameDamaged if its bytes are not what was written.

        ``verify=False`` checks the CRC only the first time a frame is read (point reads,
        which cost the frame otherwise); ``True`` checks it on every read.
        """
        if not verify:
            number = bisect.bisect_left(segment.bases, frame.base_offset)
            verified = segment.verified
            if len(verified) < len(segment.frames):
                verified.extend(bytes(len(segment.frames) - len(verified)))
            if not verified[number]:
                batch = segment.file.read_batch(frame, True, self.stored_schema_at(frame.base_offset))
                verified[number] = 1
                return batch
        return segment.file.read_batch(frame, verify, self.stored_schema_at(frame.base_offset))

    # -- retention (under the topic's writer lock) ------------------------------------

    def expired_segments(self, now: float) -> int:
        """How many of the oldest closed segments retention removes now."""
        config = self.config
        if not config.deletes:
            return 0  # a compacted topic keeps the latest record of every key
        closed = self.segments[:-1]
        count = 0
        if config.retention_seconds is not None:
            limit_micros = int((now - config.retention_seconds) * 1_000_000)
            while count < len(closed) and closed[count].max_timestamp < limit_micros:
                count += 1
        if config.retention_bytes is not None:
            total = self.size_bytes - sum(s.file.size for s in closed[:count])
            while count < len(closed) and total > config.retention_bytes:
                total -= closed[count].file.size
                count += 1
        return count

    def drop_oldest(self, count: int) -> None:
        doomed, self.segments = self.segments[:count], self.segments[count:]
        for segment in doomed:
            segment.file.close()
            for name in (segment.file.name, seg.index_name(segment.base_offset)):
                try:
                    self.disk.remove(os.path.join(self.directory, name))
                except FileNotFoundError:
                    pass
        if self.fsync:
            # A segment that came back after a power loss would hold offsets below the
            # first offset the topic (and its key index) moved to.
            self.disk.fsync_directory(self.directory)
        floor = self.first_offset
        self.damages = [d for d in self.damages if d.end_offset > floor]

    def close(self) -> None:
        try:
            self.active.file.trim()
        except OSError as exc:  # zeros left after the last frame are trimmed at the next open
            log.warning("cannot trim %s: %s", self.active.file.path, describe_os_error(exc))
        for segment in self.segments:
            segment.file.close()

    def _preallocate(self) -> int:
        """Bytes of zeros written ahead of an active segment's frames: only worth it when
        appends are fsync'd to a file system (not journaled to a store), and never more
        than a segment holds."""
        if not self.fsync or not self.disk.preallocation_pays:
            return 0
        return min(limits.segment_preallocate_bytes, self.config.segment_bytes)


def _all_zeros(view: memoryview) -> bool:
    return not bytes(view).strip(b"\0")


def schemaless_stored_schema(offset: int) -> pa.Schema:
    """The stored schema of every frame of a topic without a schema."""
    return STORED_SCHEMA


# The offset below which a topic's log was compacted, kept in the topic's directory
# (engine/compaction.py writes it before it swaps any compacted segment in).
COMPACTED_FILE = "compacted.json"


def locate(segments: list[Segment], offset: int) -> tuple[int, int] | None:
    """(segment index, frame index) in ``segments`` of the first frame holding
    ``offset`` or, if no frame holds it (damage, a gap), an offset after it; None if
    there is none."""
    index = max(bisect.bisect_right([s.base_offset for s in segments], offset) - 1, 0)
    while index < len(segments):
        segment = segments[index]
        frames = segment.frames
        frame_index = max(bisect.bisect_right(segment.bases, offset) - 1, 0)
        if frame_index < len(frames) and frames[frame_index].next_offset <= offset:
            frame_index += 1
        if frame_index < len(frames):
            return index, frame_index
        index += 1
    return None


def frames_at(
    segments: list[Segment], start: tuple[int, int] | None, end_offset: int
) -> Iterator[tuple[Segment, seg.FrameInfo]]:
    """The frames of ``segments`` from ``start`` (what :func:`locate` found) holding
    offsets before ``end_offset``, in order; frames found damaged are left out. The
    owner's log walks its own segments with it, a reader of the store a checkpoint's
    sealed ones (replica.py)."""
    if start is None:
        return
    segment_index, frame_index = start
    while segment_index < len(segments):
        segment = segments[segment_index]
        frames = segment.frames
        bad = segment.bad
        while frame_index < len(frames):
            frame = frames[frame_index]
            if frame.base_offset >= end_offset:
                return
            if not bad or frame.base_offset not in bad:
                yield segment, frame
            frame_index += 1
        segment_index += 1
        frame_index = 0


def gather(
    decoded: Iterable[tuple[seg.FrameInfo, pa.RecordBatch | None]],
    offset: int,
    max_records: int,
    max_bytes: int,
) -> list[pa.RecordBatch]:
    """A fetch's batches from ``decoded`` (frames holding offsets from ``offset`` on, in
    order, each with its batch or None when it is left out), read lazily: at most
    ``max_records`` records, and frames up to about ``max_bytes`` (always at least one
    frame's records if any). Shared by the owner's fetch and the store's (replica.py)."""
    batches: list[pa.RecordBatch] = []
    rows = size = 0
    for frame, batch in decoded:
        if batch is None:
            continue
        if frame.base_offset < offset:
            batch = batch.slice(offset - frame.base_offset)
        if rows + batch.num_rows > max_records:
            batch = batch.slice(0, max_records - rows)
        batches.append(batch)
        rows += batch.num_rows
        size += frame.size
        if rows >= max_records or size >= max_bytes:
            break
    return batches


def read_compacted_until(disk: Disk, directory: str) -> int:
    """The offset below which the log in ``directory`` was compacted (0: none)."""
    path = os.path.join(directory, COMPACTED_FILE)
    try:
        raw = disk.read_bytes(path)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise StorageError(f"cannot read {path}: {describe_os_error(exc)}") from exc
    try:
        until = json.loads(raw)["until"]
    except (ValueError, KeyError, TypeError):
        until = None
    if isinstance(until, bool) or not isinstance(until, int) or until < 0:
        raise StorageError(
            f"{path} is damaged (it holds no offset): the compacted part of the log is unknown; "
            "move the file aside only if the topic was never compacted"
        )
    return until


def write_compacted_until(disk: Disk, directory: str, until: int, *, sync: bool) -> None:
    disk.write_atomically(
        os.path.join(directory, COMPACTED_FILE), json.dumps({"until": until}).encode(), sync=sync
    )
