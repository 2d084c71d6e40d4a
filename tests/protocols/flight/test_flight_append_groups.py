"""Grouped appends on the append stream: several single appends of one client in one
Flight message, each still its own append (docs/decisions/0009, "Second round").

Goal: a client writes, as one message, the appends its threads queued while its
previous message was being written, and the server answers a grouping client with
every result one fsync made durable in one message; each append keeps its own
atomicity, result and error (a failed expectation fails only its own append, the
others get dense offsets), many threads through one client get dense offsets and
correct per-key versions, a message whose groups do not add up is refused request by
request, and a client that does not group (an older one) is answered one answer a
message. Method: the wire with plain pyarrow Flight calls (grouped requests written by
hand); ``odradek.connect`` with its first write held by the test so that other threads
queue behind it; the messages without IO. Waits are on conditions with generous
deadlines; nothing asserts a duration.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek import limits
from odradek.client import append_stream as client_stream
from odradek.engine import Engine
from odradek.errors import ConflictError, InvalidRequest
from odradek.protocols.flight import messages
from odradek.records import INPUT_SCHEMA, to_input_batch
from odradek.types import AppendResult

DEADLINE_SECONDS = 30.0


def _until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def _records(*pairs: tuple[bytes, bytes]) -> pa.RecordBatch:
    return to_input_batch([{"key": key, "value": value} for key, value in pairs], 1 << 20, "json")


def _open(url: str, requests_max: int) -> tuple[flight.FlightStreamWriter, flight.FlightStreamReader, int]:
    plain = flight.connect(url)
    command = messages.encode_append_stream_command(8, requests_max)
    writer, reader = plain.do_exchange(flight.FlightDescriptor.for_command(command))
    writer.begin(INPUT_SCHEMA)
    _, granted = messages.decode_append_stream_greeting(reader.read_chunk().app_metadata.to_pybytes())
    return writer, reader, granted


def _read_answers(reader: flight.FlightStreamReader, count: int) -> tuple[dict[int, Any], int]:
    """``count`` answers by request id, and how many messages carried them."""
    answers: dict[int, Any] = {}
    messages_read = 0
    while len(answers) < count:
        answers.update(messages.decode_append_answers(reader.read_chunk().app_metadata.to_pybytes()))
        messages_read += 1
    return answers, messages_read


# -- the wire ------------------------------------------------------------------------------


def test_a_failed_expectation_in_a_group_fails_only_its_own_append(url: str, engine: Engine) -> None:
    engine.create_topic("t")
    engine.append("t", [{"key": b"k", "value": b"0"}])
    writer, reader, granted = _open(url, 16)
    assert granted == 16
    records = _records((b"a", b"1"), (b"k", b"2"), (b"k", b"3"), (b"b", b"4"), (b"b", b"5"))
    body = b'{"requests":[%s]}' % b",".join(
        [
            b'{"id":1,"rows":1,"topic":"t"}',
            b'{"id":2,"rows":1,"topic":"t","expect":{"6b":7}}',  # key k is at version 1
            b'{"id":3,"rows":1,"topic":"t","expect":{"6b":1}}',
            b'{"id":4,"rows":2,"topic":"t"}',
        ]
    )
    writer.write_with_metadata(records, pa.py_buffer(body))
    answers, _ = _read_answers(reader, 4)
    assert isinstance(answers[2], ConflictError) and (answers[2].expected, answers[2].actual) == (7, 1)
    assert [answers[i].base_offset for i in (1, 3, 4)] == [1, 2, 3]  # dense: the refusal took none
    assert (answers[3].versions, answers[4].count, answers[4].versions) == ({b"k": 2}, 2, {b"b": 2})
    stored = pa.Table.from_batches(engine.fetch("t", 0, max_records=10, max_bytes=1 << 20))
    assert stored.column("value").to_pylist() == [b"0", b"1", b"3", b"4", b"5"]
    writer.done_writing()
    assert list(reader) == []


def test_results_made_durable_together_come_back_in_one_message(url: str, engine: Engine) -> None:
    """Twelve appends in one message share an fsync: to a grouping client their results
    travel together, which wakes its threads together."""
    engine.create_topic("t")
    writer, reader, _ = _open(url, 64)
    tagged = [(request_id, 1, b'{"topic":"t"}') for request_id in range(12)]
    records = _records(*[(b"k%d" % (i % 3), b"v") for i in range(12)])
    writer.write_with_metadata(records, pa.py_buffer(messages.encode_append_requests(tagged)))
    answers, carried_by = _read_answers(reader, 12)
    assert sorted(answer.base_offset for answer in answers.values()) == list(range(12))
    assert carried_by == 1
    writer.done_writing()


def test_groups_that_do_not_add_up_to_the_batch_are_refused_and_nothing_is_written(
    url: str, engine: Engine
) -> None:
    engine.create_topic("t")
    writer, reader, _ = _open(url, 16)
    body = b'{"requests":[{"id":1,"rows":1,"topic":"t"},{"id":2,"rows":3,"topic":"t"}]}'
    writer.write_with_metadata(_records((b"a", b"1"), (b"b", b"2")), pa.py_buffer(body))
    answers, _ = _read_answers(reader, 2)
    assert all(isinstance(answer, InvalidRequest) for answer in answers.values())
    assert "count 4 records, its batch has 2" in answers[1].message
    assert engine.describe_topic("t").next_offset == 0
    writer.done_writing()


def test_a_client_that_does_not_group_gets_one_answer_a_message(url: str, engine: Engine) -> None:
    engine.create_topic("t")
    writer, reader, granted = _open(url, 1)
    assert granted == 1
    tagged = [(request_id, 1, b'{"topic":"t"}') for request_id in range(4)]
    records = _records(*[(b"k", b"v")] * 4)
    writer.write_with_metadata(records, pa.py_buffer(messages.encode_append_requests(tagged)))
    for _ in range(4):
        raw = reader.read_chunk().app_metadata.to_pybytes()
        assert not raw.startswith(b'{"answers"')
        messages.decode_append_answer(raw)
    writer.done_writing()


# -- the client ----------------------------------------------------------------------------


class _HeldWrites:
    """Holds the client's first write of a grouping stream until released, so that the
    appends other threads make meanwhile queue behind it; counts the messages written."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.release = threading.Event()
        self.holding = threading.Event()
        self.written: list[int] = []  # requests per message
        original = client_stream._Stream._write

        def write(stream: Any, batch: pa.RecordBatch, metadata: bytes) -> None:
            if not self.holding.is_set():
                self.holding.set()
                self.release.wait(DEADLINE_SECONDS)
            grouped = metadata.startswith(b'{"requests"')
            self.written.append(metadata.count(b'"id":') if grouped else 1)
            original(stream, batch, metadata)

        monkeypatch.setattr(client_stream._Stream, "_write", write)


def test_appends_queued_behind_a_write_go_together_and_each_keeps_its_outcome(
    url: str, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.create_topic("t")
    held = _HeldWrites(monkeypatch)
    with odradek.connect(url) as client:
        outcomes: dict[str, object] = {}

        def append(name: str, **options: Any) -> None:
            try:
                outcomes[name] = client.append("t", [{"key": name, "value": name}], **options)
            except ConflictError as exc:
                outcomes[name] = exc

        first = threading.Thread(target=append, args=("first",))
        first.start()
        _until(held.holding.is_set, "the first write to be held")
        queued = [
            threading.Thread(target=append, args=("a",)),
            threading.Thread(target=append, args=("b",), kwargs={"expect": {"b": 3}}),
            threading.Thread(target=append, args=("c",)),
        ]
        for thread in queued:
            thread.start()
        _until(lambda: len(_queue_of(client)) == 3, "three appends queued behind the held write")
        held.release.set()
        for thread in [first, *queued]:
            thread.join(DEADLINE_SECONDS)
    assert held.written == [1, 3]  # the held one alone, then the three queued as one message
    conflict = outcomes["b"]
    assert isinstance(conflict, ConflictError) and (conflict.expected, conflict.actual) == (3, 0)
    results = [outcomes[name] for name in ("first", "a", "c")]
    assert all(isinstance(result, AppendResult) for result in results)
    offsets = [result.base_offset for result in results]  # type: ignore[union-attr]
    assert offsets[0] == 0 and sorted(offsets[1:]) == [1, 2]  # dense: the refusal took none
    assert engine.describe_topic("t").next_offset == 3


def _queue_of(client: Any) -> list[Any]:
    stream = client._appends._stream
    return [] if stream is None else list(stream._queue)


def test_many_threads_through_one_client_get_dense_offsets_and_per_key_versions(
    url: str, engine: Engine
) -> None:
    engine.create_topic("t")
    threads, appends, keys = 16, 40, 5
    results: list[list[AppendResult]] = [[] for _ in range(threads)]
    with odradek.connect(url) as client:

        def work(thread: int) -> None:
            for n in range(appends):
                key = b"k%d" % ((thread + n) % keys)
                results[thread].append(client.append("t", [{"key": key, "value": b"%d-%d" % (thread, n)}]))

        workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(DEADLINE_SECONDS)
    every = [result for mine in results for result in mine]
    assert sorted(result.base_offset for result in every) == list(range(threads * appends))
    for mine in results:  # one thread's appends are written in the order it made them
        offsets = [result.base_offset for result in mine]
        assert offsets == sorted(offsets)
    stored = pa.Table.from_batches(engine.fetch("t", 0, max_records=threads * appends, max_bytes=1 << 30))
    by_offset = {result.base_offset: result for result in every}
    seen: dict[bytes, int] = {}
    for offset, key, version in zip(*(stored.column(c).to_pylist() for c in ("offset", "key", "version"))):
        seen[key] = seen.get(key, 0) + 1
        assert version == seen[key]  # versions of each key dense, in offset order
        assert by_offset[offset].versions == {key: version}  # and answered as stored


# -- the messages --------------------------------------------------------------------------


def test_grouped_requests_and_answers_round_trip() -> None:
    command = messages.encode_append_stream_command(32, 16)
    assert messages.decode_append_stream_command(command) == 32
    assert messages.decode_append_stream_requests_max(command) == 16
    assert messages.decode_append_stream_requests_max(messages.encode_append_stream_command(32)) == 1
    big = messages.encode_append_stream_command(32, limits.append_stream_requests_max * 2)
    assert messages.decode_append_stream_requests_max(big) == limits.append_stream_requests_max
    assert messages.decode_append_stream_greeting(messages.encode_append_stream_ready(8, 4)) == (8, 4)
    assert messages.decode_append_stream_greeting(messages.encode_append_stream_ready(8)) == (8, 1)
    options = messages.encode_append_options({b"k": 2}, None, ("p", 3), topic="t")
    raw = messages.encode_append_requests([(5, 2, options), (6, 1, b'{"topic":"u"}')])
    first, second = messages.decode_append_requests(raw, 3)
    assert (first.request_id, first.topic, first.rows, first.options.expect) == (5, "t", 2, {b"k": 2})
    assert first.options.producer == ("p", 3)
    assert (second.request_id, second.topic, second.rows, second.refused) == (6, "u", 1, None)
    lone = messages.decode_append_requests(messages.encode_append_request(9, "t"), 4)
    assert [(request.request_id, request.rows) for request in lone] == [(9, 4)]
    answers = [messages.encode_append_result(AppendResult(3, 1, {b"k": 2}), 5)]
    answers.append(messages.encode_append_refusal(6, ConflictError("m", b"k", 1, 2)))
    decoded = dict(messages.decode_append_answers(messages.encode_append_answers(answers)))
    assert isinstance(decoded[5], AppendResult) and decoded[5].versions == {b"k": 2}
    assert isinstance(decoded[6], ConflictError) and decoded[6].actual == 2


def test_grouped_requests_that_cannot_be_read_are_refused() -> None:
    with pytest.raises(InvalidRequest, match="must carry its"):
        messages.decode_append_requests(b'{"requests":[{"id":1,"rows":1,"topic":"t"},{"rows":1}]}', 2)
    too_many = messages.encode_append_requests(
        [(i, 1, b'{"topic":"t"}') for i in range(limits.append_stream_requests_max + 1)]
    )
    with pytest.raises(InvalidRequest, match="at most"):
        messages.decode_append_requests(too_many, limits.append_stream_requests_max + 1)
    for bad in (b'{"requests":[]}', b'{"requests":{}}', b'{"requests":[1]}'):
        with pytest.raises(InvalidRequest):
            messages.decode_append_requests(bad, 1)
    (missing_rows,) = messages.decode_append_requests(b'{"requests":[{"id":1,"topic":"t"}]}', 1)
    assert isinstance(missing_rows.refused, InvalidRequest)
    with pytest.raises(InvalidRequest):
        messages.decode_append_answers(b'{"answers":[]}')
