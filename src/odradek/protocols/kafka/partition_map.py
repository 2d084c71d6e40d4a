"""Which Kafka partition each record of a topic belongs to, for readers beside the door.

The Kafka door serves a topic as N partitions over its one log (decision 0014): a
record belongs to the partition stored in its frame's metadata (produced through the
door), else to the hash of its key (keyless: its offset) modulo the count that held
when it was written (the topic's partition history). A native reader that wants to
think in partitions (``odradek consume --partition N``, ``%p`` in a ``--format``)
asks for the :func:`partition_map` of the offsets it read and applies it with
:func:`partitions_of`, the door's own function: the map carries the history and the
runs of offsets whose frames store a partition, never the records, so it costs a
frame header read per frame (no decoding) and a few bytes per frame.

Bounds: one map covers at most ``kafka_partition_map_frames_max`` frames; its ``end``
says how far it reached, and a reader asks again from there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from odradek import limits
from odradek.errors import InvalidRequest
from odradek.protocols.kafka.partitions import partitions_by_history
from odradek.protocols.kafka.store import load_partition_histories, partition_history

if TYPE_CHECKING:
    from odradek.engine import Engine


def partition_map(engine: Engine, topic: str, start: Any, end: Any) -> dict[str, Any]:
    """``{"history": [[first offset, count], ...], "stored": [[from, to, partition], ...],
    "end": offset}`` for the offsets of ``topic`` in [start, ``end``): the partition
    history, and the offset runs whose frames store their partition (merged when
    adjacent and alike); the map covers [start, its ``end``)."""
    for name, value in (("start", start), ("end", end)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidRequest(f"kafka_partitions: {name} is an offset (an int >= 0), got {value!r}")
    if end < start:
        raise InvalidRequest(f"kafka_partitions: end ({end}) is before start ({start})")
    incarnation = engine.describe_topic(topic).incarnation
    history = partition_history(load_partition_histories(engine.path, engine.disk), topic, incarnation)
    result: dict[str, Any] = {"history": [list(entry) for entry in history], "stored": [], "end": end}
    if max(count for _, count in history) == 1:
        return result  # one partition: every record is partition 0
    stored: list[list[int]] = result["stored"]
    for index, frame in enumerate(engine.frames(topic, start, end, partitions=True)):
        if index == limits.kafka_partition_map_frames_max:
            result["end"] = frame.base_offset
            break
        if frame.partition is None:
            continue
        if stored and stored[-1][1] == frame.base_offset and stored[-1][2] == frame.partition:
            stored[-1][1] = frame.next_offset
        else:
            stored.append([frame.base_offset, frame.next_offset, frame.partition])
    return result


def partitions_of(
    keys: pa.Array, offsets: np.ndarray, history: list[list[int]], stored: list[list[int]]
) -> np.ndarray:
    """The Kafka partition of each record (``offsets`` ascending, as read) under a map of
    :func:`partition_map` covering them."""
    partitions = partitions_by_history(keys, offsets, [(int(first), int(count)) for first, count in history])
    if stored:
        runs = np.asarray(stored, dtype=np.int64).reshape(-1, 3)
        run = np.searchsorted(runs[:, 0], offsets, side="right") - 1
        inside = (run >= 0) & (offsets < runs[np.maximum(run, 0), 1])
        partitions = np.where(inside, runs[np.maximum(run, 0), 2], partitions)
    return partitions
