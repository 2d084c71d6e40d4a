"""Merging the parts of a read over cells (protocols/flight/peers.py, decision 0035).

Goal: every batch of every part comes out once, each part's in its order; a part that
waits does not hold back the others; a failing part fails the merged read with its
error; a caller's stop and closing the merged read end every part.
Method: parts as generators of real record batches, run through merge_streams.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pytest

from odradek.errors import Unavailable
from odradek.protocols.flight.peers import merge_streams


def _batch(part: str, number: int) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict({"part": [part], "n": [number]})


def _part(
    name: str, count: int, pause: float = 0.0
) -> Callable[[Callable[[], bool]], Iterator[pa.RecordBatch]]:
    def run(stopped: Callable[[], bool]) -> Iterator[pa.RecordBatch]:
        for number in range(count):
            if stopped():
                return
            if pause:
                time.sleep(pause)
            yield _batch(name, number)

    return run


def _rows(batches: Iterator[pa.RecordBatch]) -> list[tuple[str, int]]:
    return [(row["part"], row["n"]) for batch in batches for row in batch.to_pylist()]


def test_every_batch_once_in_each_parts_order() -> None:
    rows = _rows(merge_streams([_part("a", 50), _part("b", 30), _part("c", 0)], lambda: False))
    assert sorted(rows) == sorted([("a", n) for n in range(50)] + [("b", n) for n in range(30)])
    for name in ("a", "b"):
        assert [n for part, n in rows if part == name] == sorted(n for part, n in rows if part == name)


def test_a_waiting_part_does_not_hold_back_another() -> None:
    release = threading.Event()

    def waiting(stopped: Callable[[], bool]) -> Iterator[pa.RecordBatch]:
        while not release.is_set() and not stopped():
            time.sleep(0.01)
        yield _batch("slow", 0)

    merged = merge_streams([waiting, _part("fast", 3)], lambda: False)
    assert _rows(iter([next(merged) for _ in range(3)])) == [("fast", 0), ("fast", 1), ("fast", 2)]
    release.set()
    assert _rows(merged) == [("slow", 0)]


def test_a_failing_part_fails_the_read_and_ends_the_others() -> None:
    ended = threading.Event()

    def failing(stopped: Callable[[], bool]) -> Iterator[pa.RecordBatch]:
        yield _batch("bad", 0)
        raise Unavailable("its agent died")

    def endless(stopped: Callable[[], bool]) -> Iterator[pa.RecordBatch]:
        while not stopped():
            time.sleep(0.01)
        ended.set()
        return
        yield  # a generator

    with pytest.raises(Unavailable, match="its agent died"):
        _rows(merge_streams([failing, endless], lambda: False))
    assert ended.wait(5)


def _endless(
    stopped: Callable[[], bool], index: int, ended: list[threading.Event]
) -> Iterator[pa.RecordBatch]:
    try:
        number = 0
        while not stopped():
            yield _batch(str(index), number)
            number += 1
    finally:
        ended[index].set()


@pytest.mark.parametrize("how", ["close", "stop"])
def test_closing_the_read_or_the_callers_stop_ends_every_part(how: str) -> None:
    stop = threading.Event()
    ended = [threading.Event(), threading.Event()]
    parts = [lambda stopped, i=i: _endless(stopped, i, ended) for i in range(2)]
    merged = merge_streams(parts, stop.is_set)
    next(merged)
    if how == "close":
        merged.close()
    else:
        stop.set()
        for _ in merged:  # what was queued, then the end
            pass
    assert all(event.wait(5) for event in ended)
