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
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pyarrow as pa

from odradek.config import TopicConfig
from odradek.engine import segment as seg
from odradek.errors import StorageError
from odradek.files import fsync_directory
from odradek.records import STORED_SCHEMA

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Segment:
    file: seg.SegmentFile
    frames: list[seg.FrameInfo]
    bases: list[int]  # frames[i].base_offset, for bisect
    max_timestamp: int
    opened_at: float
    _bases_array: np.ndarray | None = dataclasses.field(default=None, repr=False)

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


class TopicLog:
    def __init__(self, directory: str, config: TopicConfig) -> None:
        self.directory = directory
        self.config = config
        self.segments: list[Segment] = []
        # Called with the new segment's base offset after the active segment is sealed
        # and before the new one exists (the topic snapshots its producer state there).
        self.before_new_segment: Callable[[int], None] | None = None
        # The stored schema of the frame starting at an offset: a schema'd topic's
        # frames have a typed value column, one type per schema version.
        self.stored_schema_at: Callable[[int], pa.Schema] = schemaless_stored_schema
        self._open()

    # -- recovery ---------------------------------------------------------------------

    def _open(self) -> None:
        bases = list(seg.iter_segment_bases(self.directory))
        expected: int | None = None
        for number, base in enumerate(bases):
            last = number == len(bases) - 1
            if expected is not None and base != expected:
                raise StorageError(
                    f"log of {self.directory} has a gap: segment {base} follows offset {expected}"
                )
            file = seg.SegmentFile(self.directory, base, create=False)
            frames = None if last else seg.read_index(self.directory, base, file.size)
            scanned = frames is None
            if frames is None:
                frames, valid = file.scan(base)
                if valid < file.size:
                    if not last:
                        file.close()
                        raise StorageError(
                            f"closed segment {file.path} is corrupt at position {valid}; "
                            "move the topic directory aside and restore it from a copy"
                        )
                    log.warning(
                        "truncating torn tail of %s: %d bytes after position %d",
                        file.path,
                        file.size - valid,
                        valid,
                    )
                    file.truncate(valid)
                    file.sync()
            segment = Segment(
                file,
                frames,
                [f.base_offset for f in frames],
                max((f.max_timestamp for f in frames), default=0),
                time.time(),
            )
            if not last:
                file.close()
                if scanned:
                    seg.write_index(self.directory, base, frames)
            self.segments.append(segment)
            expected = segment.next_offset
        if not self.segments:
            self._new_segment(0)

    def _new_segment(self, base_offset: int) -> Segment:
        path = os.path.join(self.directory, seg.segment_name(base_offset))
        if os.path.exists(path) and os.path.getsize(path) == 0:
            os.remove(path)  # an empty leftover of a crash right after a roll
        segment = Segment(seg.SegmentFile(self.directory, base_offset, create=True), [], [], 0, time.time())
        self.segments.append(segment)
        fsync_directory(self.directory)
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
            active.file.sync()
            seg.write_index(self.directory, active.base_offset, active.frames)
            if self.before_new_segment is not None:
                self.before_new_segment(active.next_offset)
            self._new_segment(active.next_offset)
        except OSError as exc:
            raise StorageError(f"could not roll segment {active.file.path}: {exc}") from exc
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

    def sync_handle(self) -> int:
        """A duplicate of the active segment's descriptor, for a group-commit fsync."""
        return os.dup(self.active.file.fd)

    # -- reading (lock-free) ----------------------------------------------------------

    def locate(self, offset: int, segments: list[Segment] | None = None) -> tuple[int, int] | None:
        """(segment index, frame index) of the frame holding ``offset`` in ``segments``
        (by default the current list), or None."""
        if segments is None:
            segments = self.segments
        index = bisect.bisect_right([s.base_offset for s in segments], offset) - 1
        if index < 0:
            return None
        segment = segments[index]
        frame_index = bisect.bisect_right(segment.bases, offset) - 1
        if frame_index < 0 or frame_index >= len(segment.frames):
            return None
        if segment.frames[frame_index].next_offset <= offset:
            return None
        return index, frame_index

    def frames_from(self, offset: int, end_offset: int) -> Iterator[tuple[Segment, seg.FrameInfo]]:
        """Frames holding offsets in [offset, end_offset), in order."""
        # One snapshot for the lookup and the walk: retention may replace the list meanwhile.
        segments = list(self.segments)
        start = self.locate(offset, segments)
        if start is None:
            return
        segment_index, frame_index = start
        while segment_index < len(segments):
            segment = segments[segment_index]
            frames = segment.frames
            while frame_index < len(frames):
                frame = frames[frame_index]
                if frame.base_offset >= end_offset:
                    return
                yield segment, frame
                frame_index += 1
            segment_index += 1
            frame_index = 0

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
        return segment.file.read_batch(frame, verify, self.stored_schema_at(frame.base_offset))

    # -- retention (under the topic's writer lock) ------------------------------------

    def expired_segments(self, now: float) -> int:
        """How many of the oldest closed segments retention removes now."""
        config = self.config
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
            for suffix in (seg.LOG_SUFFIX, seg.INDEX_SUFFIX):
                path = os.path.join(self.directory, f"{segment.base_offset:020d}{suffix}")
                try:
                    os.remove(path)
                except FileNotFoundError:
                    pass

    def close(self) -> None:
        for segment in self.segments:
            segment.file.close()


def schemaless_stored_schema(offset: int) -> pa.Schema:
    """The stored schema of every frame of a topic without a schema."""
    return STORED_SCHEMA
