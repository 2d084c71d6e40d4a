"""The console's tail of a pattern over cells (console/cells_tail.py), without sockets.

Goal: what a browser gets from every cell's tail merged: one retry line, each cell's
record events (a cell's in its order), no cell's heartbeats or retry lines; a part's
`end` or `error` passed on as the stream's last event; a part that stops without one,
fails, or sends an event past the bound ends the stream with an `unavailable` error
naming its cell; closing the stream closes every part and stops the reading threads;
only the bytes of the cells served here are metered here.
Method: parts are iterators of bytes fed by queues; real threads.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from odradek import limits
from odradek.console.cells_tail import CellsTail, TailPart

_END = object()


class FeedPart:
    """A cell's tail fed by the test, chunk by chunk."""

    def __init__(self, cell: str, *, local: bool = False) -> None:
        self.feed: queue.Queue[Any] = queue.Queue()
        self.closed = threading.Event()
        self.part = TailPart(cell, self._chunks(), self.closed.set, local=local)

    def _chunks(self) -> Iterator[bytes]:
        while not self.closed.is_set():
            try:
                chunk = self.feed.get(timeout=0.05)
            except queue.Empty:
                continue
            if chunk is _END:
                return
            if isinstance(chunk, BaseException):
                raise chunk
            yield chunk


def _record(topic: str, value: str) -> bytes:
    return f"event: record\ndata: {json.dumps({'topic': topic, 'value': value})}\n\n".encode()


def _events(stream: Iterator[bytes], count: int) -> list[bytes]:
    return [next(stream) for _ in range(count)]


def _tail(*parts: FeedPart) -> CellsTail:
    return CellsTail([part.part for part in parts], heartbeat_seconds=60, stopping=lambda: False)


def test_every_cells_records_are_merged_without_their_heartbeats() -> None:
    home, other = FeedPart("_cell", local=True), FeedPart("_cell.1")
    tail = _tail(home, other)
    stream = iter(tail)
    assert next(stream) == b"retry: 1000\n\n"
    assert tail.metered(b"retry: 1000\n\n") == len(b"retry: 1000\n\n")
    other.feed.put(b"retry: 1000\n\n: heartbeat\n\n")
    other.feed.put(_record("b", "1")[:10])  # an event split over chunks
    other.feed.put(_record("b", "1")[10:] + _record("b", "2"))
    got = _events(stream, 2)
    assert got == [_record("b", "1"), _record("b", "2")]
    assert tail.metered(got[-1]) == 0  # the other agent meters its own
    home.feed.put(b"retry: 1000\n\n" + _record("a", "1"))
    assert next(stream) == _record("a", "1")
    assert tail.metered(_record("a", "1")) == len(_record("a", "1"))
    tail.close()
    assert home.closed.is_set() and other.closed.is_set()


@pytest.mark.parametrize(
    ("fed", "said"),
    [
        (b'event: end\ndata: {"reason": "the server is shutting down"}\n\n', b"event: end"),
        (
            b'event: error\ndata: {"code": "unauthorized"}\n\n',
            b'event: error\ndata: {"code": "unauthorized"}',
        ),
        (_END, b"its stream ended"),
        (OSError("connection reset"), b"connection reset"),
    ],
)
def test_a_part_that_ends_ends_the_stream_saying_why(fed: Any, said: bytes) -> None:
    home, other = FeedPart("_cell"), FeedPart("_cell.1")
    stream = iter(_tail(home, other))
    next(stream)
    other.feed.put(fed)
    last = next(stream)
    assert said in last
    if fed is _END or isinstance(fed, BaseException):
        assert last.startswith(b"event: error") and b"unavailable" in last and b"_cell.1" in last
    with pytest.raises(StopIteration):
        next(stream)
    assert home.closed.is_set()


def test_an_event_past_the_bound_ends_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "console_tail_event_bytes_max", 100)
    part = FeedPart("_cell.1")
    stream = iter(_tail(part))
    next(stream)
    part.feed.put(b"event: record\ndata: " + b"x" * 200)
    last = next(stream)
    assert last.startswith(b"event: error") and b"longer than 100 bytes" in last


def test_a_slow_reader_holds_the_parts_back_and_closing_stops_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "console_tail_cells_events_max", 2)
    before = set(threading.enumerate())
    part = FeedPart("_cell.1")
    tail = _tail(part)
    stream = iter(tail)
    next(stream)
    (pump,) = set(threading.enumerate()) - before
    for index in range(10):
        part.feed.put(_record("b", str(index)))
    assert next(stream) == _record("b", "0")
    # The reader took one event: the queue holds 2, the pump a third; the rest wait.
    for _ in range(100):
        if part.feed.qsize() <= 6:
            break
        threading.Event().wait(0.05)
    threading.Event().wait(0.2)
    assert part.feed.qsize() >= 5
    tail.close()
    pump.join(10)
    assert not pump.is_alive() and part.closed.is_set()
