"""The Kafka partition map native readers ask for (protocols/kafka/partition_map.py).

Goal: applied by ``partitions_of``, a map gives each record the partition the Kafka
door serves it in: the one stored with a frame produced through the door, else its
key's murmur2 hash modulo the count that held at its offset (decision 0014), the same
as the door's partition index finds; a map is bounded (``kafka_partition_map_frames_max``
frames, its ``end`` saying how far it reached) and a reader asking again from there
gets the rest; bad ranges are refused. Method: an engine with a topic of 1, then 3
partitions (the door's store sets the history), frames appended natively and with a
stored partition; the door's ``gather`` of each partition is the reference.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from odradek import limits
from odradek.engine import Engine
from odradek.errors import InvalidRequest
from odradek.protocols.kafka.partition_index import Wanted, gather, index_of
from odradek.protocols.kafka.partition_map import partition_map, partitions_of
from odradek.protocols.kafka.store import DoorStore, load_partition_histories, partition_history


def _keyed(prefix: str, count: int) -> list[dict[str, bytes]]:
    return [{"key": f"{prefix}-{index}".encode(), "value": b"v"} for index in range(count)]


def test_the_map_gives_the_doors_partitions_and_is_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Engine(tmp_path, fsync=False) as engine:
        incarnation = engine.create_topic("orders").incarnation
        engine.append("orders", _keyed("before", 4))  # one partition then: all in 0
        DoorStore(str(tmp_path), fsync=False).set_partitions("orders", incarnation, 3, from_offset=4)
        for partition in (2, 0, 2, 1):  # as the door appends a Produce: the partition kept
            engine.submit_append("orders", _keyed(f"sent{partition}", 3), partition=partition).wait()
        engine.append("orders", _keyed("native", 20))
        end = engine.describe_topic("orders").next_offset

        monkeypatch.setattr(limits, "kafka_partition_map_frames_max", 2)
        history, stored, position, maps = None, [], 0, 0
        while position < end:
            found = partition_map(engine, "orders", position, end)
            assert found["end"] > position
            history, position, maps = found["history"], found["end"], maps + 1
            stored.extend(found["stored"])
        assert maps == 3  # 6 frames, 2 a map
        assert history == [[0, 1], [4, 3]]

        table = pa.Table.from_batches(list(engine.read("orders", start="earliest", wait=0)))
        offsets = table.column("offset").to_numpy().astype(np.int64)
        ours = partitions_of(table.column("key").combine_chunks(), offsets, history, stored)
        assert len(offsets) == end

        door = index_of(
            engine,
            "orders",
            incarnation,
            partition_history(load_partition_histories(str(tmp_path)), "orders", incarnation),
        )
        for partition in range(3):
            (gathered,) = gather(
                engine, door, door.snapshot(engine), [Wanted(partition, 0, 1 << 30)], 1 << 30, "typed"
            )
            expected = sorted(int(o) for b in gathered.batches for o in b.column("offset").to_pylist())
            assert sorted(offsets[ours == partition].tolist()) == expected, partition

        for start, stop in ((-1, 3), (5, 2), (True, 3)):
            with pytest.raises(InvalidRequest):
                partition_map(engine, "orders", start, stop)
