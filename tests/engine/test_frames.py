"""A door's partition kept with the records of an append, and the walk over frames.

Goal: an append may carry the partition its records were produced to (the Kafka door's,
decision 0014); it is kept with the frame and read back by ``Engine.frames`` whatever
happened since: the segment sealed (its sidecar index keeps no metadata), the engine
reopened, an idempotent producer's metadata beside it. Native appends carry none and
cost nothing. A bad partition is refused with nothing written. The walk lists frames
without decoding them, and decodes one on demand.

Method: a real engine in a temporary directory with tiny segments so that frames land
in sealed segments; the walk's answers are compared with what was appended.
"""

from __future__ import annotations

import os

import pytest

from odradek.engine import Engine
from odradek.errors import InvalidRequest


def _walk(engine: Engine, topic: str, start: int = 0) -> list[tuple[int, int, int | None]]:
    return [(f.base_offset, f.count, f.partition) for f in engine.frames(topic, start)]


def test_partition_is_kept_with_the_frame_across_seals_and_restarts(tmp_path: os.PathLike[str]) -> None:
    path = os.path.join(os.fspath(tmp_path), "data")
    engine = Engine(path, fsync=False)
    engine.create_topic("t", segment_bytes="64KiB")
    expected = []
    for i in range(30):
        records = [{"key": b"k%d" % i, "value": bytes(6000)}] * 2
        partition = None if i % 3 == 0 else i % 5
        producer = ("p", i // 4) if i % 4 == 0 else None
        result = engine.submit_append("t", records, partition=partition, producer=producer).wait()
        expected.append((result.base_offset, 2, partition))
    assert _walk(engine, "t") == expected
    engine.close()
    engine = Engine(path, fsync=False)  # sealed segments: frames come from sidecar indexes
    try:
        assert _walk(engine, "t") == expected
        assert _walk(engine, "t", start=11) == [e for e in expected if e[0] + 2 > 11]
        assert [f.count for f in engine.frames("t", 0, partitions=False)] == [2] * 30
        assert {f.partition for f in engine.frames("t", 0, partitions=False)} == {None}
        frame = next(iter(engine.frames("t", 6)))
        batch = frame.records()
        assert batch is not None and batch.column("offset").to_pylist() == [6, 7]
        # The idempotent producer's state read from the same metadata is intact.
        assert engine.submit_append("t", [{"value": b"x"}], producer=("p", 7)).wait().duplicate
    finally:
        engine.close()


@pytest.mark.parametrize("bad", [-1, True, "1", 1.5])
def test_a_bad_partition_is_refused_with_nothing_written(tmp_path: os.PathLike[str], bad: object) -> None:
    with Engine(os.path.join(os.fspath(tmp_path), "data"), fsync=False) as engine:
        engine.create_topic("t")
        with pytest.raises(InvalidRequest, match="partition"):
            engine.submit_append("t", [{"value": b"x"}], partition=bad)  # type: ignore[arg-type]
        assert engine.describe_topic("t").next_offset == 0
        assert _walk(engine, "t") == []


def test_walk_stops_at_the_durable_end_and_starts_at_the_first_offset(tmp_path: os.PathLike[str]) -> None:
    with Engine(os.path.join(os.fspath(tmp_path), "data"), fsync=False) as engine:
        engine.create_topic("t")
        for _ in range(5):
            engine.append("t", [{"value": b"x"}] * 3)
        assert [f.base_offset for f in engine.frames("t", 4, 10)] == [3, 6, 9]
        assert [f.base_offset for f in engine.frames("t", -5)] == [0, 3, 6, 9, 12]
        assert list(engine.frames("t", 15)) == []
