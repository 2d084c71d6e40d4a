"""A topic's durable frames one by one, with the partition a door stored with each.

The Kafka door keeps the partition a producer chose with the records (decision 0014):
an append through it carries the partition in its frame's metadata (key
:data:`PARTITION_META`), since one Kafka partition's records of one request are one
append, so one frame. Native appends carry none. :func:`walk` lists the frames of a
range of offsets with that partition, their offsets, record count, maximum timestamp
and size, without decoding them: a reader that needs only some partitions decodes
only the frames that may hold them (:meth:`StoredFrame.records`).

Like every read, a walk takes no lock: it sees the frames below the durable offset
when it starts, and a segment removed by retention meanwhile reads as gone (None).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from odradek.engine import segment as seg

if TYPE_CHECKING:
    from odradek.engine.log import Segment
    from odradek.engine.topic import Topic

PARTITION_META = "kp"  # a frame's metadata key for its records' partition


def partition_meta(partition: int) -> dict[str, object]:
    """What an append's frame carries for the partition of its records."""
    return {PARTITION_META: partition}


@dataclasses.dataclass(frozen=True)
class StoredFrame:
    """One durable frame: where its offsets are and the partition stored with it."""

    base_offset: int
    count: int
    max_timestamp: int  # µs since the epoch
    size: int  # bytes the frame takes in the log
    partition: int | None  # stored with the records (None: a native append, or not asked)
    _topic: Topic = dataclasses.field(repr=False, compare=False)
    _segment: Segment = dataclasses.field(repr=False, compare=False)
    _frame: seg.FrameInfo = dataclasses.field(repr=False, compare=False)

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.count

    def records(self, value_format: str | None = "typed") -> pa.RecordBatch | None:
        """The frame's records as a read returns them (a schema'd topic's values typed,
        or ``json`` / ``wire`` bytes; None: as stored); None if the frame is damaged
        (recorded, as any read records it) or retention removed it meanwhile."""
        topic = self._topic
        try:
            batch = topic._read_or_note(self._segment, self._frame, verify=True)
        except FileNotFoundError:
            return None
        if batch is None or value_format is None:
            return batch
        return topic.present(batch, value_format)


def walk(
    topic: Topic, start: int, end: int | None = None, *, partitions: bool = True
) -> Iterator[StoredFrame]:
    """The durable frames holding offsets in [start, end) (end: the durable offset),
    in order; damaged ones are left out. ``partitions=False`` skips reading the stored
    partition (a header read per frame of a sealed segment)."""
    durable = topic.durable_offset
    end = durable if end is None else min(end, durable)
    start = max(start, topic.first_offset)
    for segment, frame in topic.log.frames_from(start, end):
        partition = None
        if partitions:
            meta = segment.file.frame_meta(frame)
            value = meta.get(PARTITION_META) if meta else None
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                partition = value
        yield StoredFrame(
            frame.base_offset,
            frame.count,
            frame.max_timestamp,
            frame.size,
            partition,
            topic,
            segment,
            frame,
        )
