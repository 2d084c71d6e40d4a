"""The partition index against a record-by-record reference.

Goal: whatever the mix of appends (with a stored partition, as the Kafka door writes
them, or without, hashed by key or spread by offset), partition-count changes, tiny
blocks and an index forced to coarsen, the index answers what a scan of every record
answers: each partition's records from any offset in order (one read for several
partitions), its high watermark and log start, and its timestamp lookups.

Method: hypothesis generates appends into a real engine with the block size and entry
bound shrunk (so blocks close and merge); the reference assigns each record its
partition one at a time in plain Python (kafka-python's murmur2 as the hash) and the
index's answers are compared with it, after each round of appends (the index extends
itself).
"""

from __future__ import annotations

import datetime
import os
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odradek import limits
from odradek.engine import Engine
from odradek.protocols.kafka import partition_index
from odradek.protocols.kafka.partition_index import (
    PartitionIndex,
    Wanted,
    gather,
    max_timestamp,
    offset_for_time,
)

kafka_murmur2 = pytest.importorskip("kafka.partitioner.default").murmur2

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)

appends = st.lists(
    st.tuples(
        st.none() | st.integers(0, 7),  # the stored partition (None: a native append)
        st.lists(st.tuples(st.none() | st.binary(max_size=6), st.integers(0, 50)), min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=25,
)


def _moment(seconds: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.UTC)


def _reference(rows: list[dict[str, Any]], history: list[tuple[int, int]]) -> list[int]:
    """The partition of every record, one at a time."""
    partitions = []
    for row in rows:
        if row["stored"] is not None:
            partitions.append(row["stored"])
            continue
        count = [c for start, c in history if start <= row["offset"]][-1]
        if row["key"] is None:
            partitions.append(row["offset"] % count)
        else:
            partitions.append((kafka_murmur2(row["key"]) & 0x7FFFFFFF) % count)
    return partitions


@SETTINGS
@given(
    rounds=st.lists(appends, min_size=1, max_size=3),
    growth=st.lists(st.integers(1, 8), min_size=3, max_size=3),
)
def test_the_index_answers_what_a_scan_answers(
    rounds: list[list[tuple[int | None, list[tuple[bytes | None, int]]]]], growth: list[int]
) -> None:
    with (
        tempfile.TemporaryDirectory() as directory,
        Engine(os.path.join(directory, "data"), fsync=False) as engine,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(limits, "kafka_partition_index_block_bytes", 600)
        patch.setattr(limits, "kafka_partition_index_entries_max", 12)
        engine.create_topic("t")
        rows: list[dict[str, Any]] = []
        history: list[tuple[int, int]] = [(0, 1)]
        for number, appended in enumerate(rounds):
            count = max(history[-1][1], growth[number])  # counts only grow
            if count != history[-1][1]:
                history.append((len(rows), count))
            for stored, records in appended:
                stored = None if stored is None else stored % count
                batch = [{"key": key, "value": b"v", "timestamp": _moment(stamp)} for key, stamp in records]
                result = (
                    engine.append("t", batch)
                    if stored is None
                    else engine.submit_append("t", batch, partition=stored).wait()
                )
                for i, (key, stamp) in enumerate(records):
                    rows.append(
                        {"offset": result.base_offset + i, "key": key, "stamp": stamp, "stored": stored}
                    )
            incarnation = engine.describe_topic("t").incarnation
            index = partition_index.index_of(engine, "t", incarnation, tuple(history))
            _check(engine, index, rows, history, count)


def _check(
    engine: Engine,
    index: PartitionIndex,
    rows: list[dict[str, Any]],
    history: list[tuple[int, int]],
    count: int,
) -> None:
    owners = _reference(rows, history)
    snapshot = index.snapshot(engine)
    assert snapshot.covered == len(rows)
    partitions = range(max(count, max(owners) + 1))
    for partition in partitions:
        own = [row for row, owner in zip(rows, owners) if owner == partition]
        assert snapshot.high_watermark(partition) == (own[-1]["offset"] + 1 if own else 0)
        assert snapshot.log_start(partition) == (own[0]["offset"] if own else 0)
    # One read for every partition from a middle offset: each gets exactly its records.
    middle = len(rows) // 3
    wanted = [Wanted(p, middle, 1 << 30) for p in partitions]
    for read in gather(engine, index, snapshot, wanted, 1 << 30, "typed"):
        offsets = [o for b in read.batches for o in b.column("offset").to_pylist()]
        expected = [row["offset"] for row, owner in zip(rows, owners) if owner == read.wanted.partition]
        assert offsets == [o for o in expected if o >= middle]
    for partition in partitions:
        own = [row for row, owner in zip(rows, owners) if owner == partition]
        for sought in (0, 10, 25, 51):
            found = offset_for_time(engine, index, snapshot, partition, sought * 1000 * 1000)
            later = [row for row in own if row["stamp"] >= sought]
            assert found == ((later[0]["offset"], later[0]["stamp"] * 1_000_000) if later else None)
        best = max_timestamp(engine, index, snapshot, partition)
        if own:
            top = max(row["stamp"] for row in own)
            first_top = next(row for row in own if row["stamp"] == top)
            assert best == (first_top["offset"], top * 1_000_000)
        else:
            assert best is None
