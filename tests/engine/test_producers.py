"""Idempotent producers: ``producer=(producer_id, sequence)`` and range producers,
``producer=(producer_id, first_sequence, last_sequence)``.

Goal: a retry of an append (same producer id and sequence) returns the original result
(offsets, count, versions) with ``duplicate=True`` and writes nothing, whatever the
retry carries; the next sequence is written normally; a gap or a sequence older than
what is remembered is a SequenceError that says what was expected; producers are
independent; and all of it survives a clean close and reopen, also when the appends are
spread over several segments (tiny segments force rolls, so the state comes from
producer snapshots plus the frames after them).

Method: an embedded client; "nothing written" is checked with describe_topic and a
full read; segment counts come from describe_topic.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import assume, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import odradek
from odradek import limits
from odradek.engine.producers import ProducerState, producer_meta, validate_producer
from odradek.errors import ConflictError, InvalidRequest, SequenceError
from odradek.storage import documents
from odradek.storage.disk import LOCAL
from odradek.types import AppendResult

# The smallest segment a topic accepts: appends of ~8 KiB roll one every few appends.
SMALL_SEGMENT = "64KiB"


@pytest.fixture
def topic(client: odradek.EmbeddedClient) -> str:
    client.create_topic("t")
    return "t"


def batch(index: int, key: bytes = b"k", count: int = 2, size: int = 4) -> list[dict[str, Any]]:
    return [{"key": key, "value": f"{index}-{i}".encode().ljust(size, b".")} for i in range(count)]


def test_a_retry_returns_the_original_result_and_writes_nothing(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    client.append(topic, [{"value": b"other"}])
    first = client.append(topic, [*batch(0), {"key": b"j", "value": b"x"}], producer=("p", 0))
    assert first == AppendResult(1, 3, {b"k": 2, b"j": 1})
    before = read_all(client, topic)
    retry = client.append(topic, [*batch(0), {"key": b"j", "value": b"x"}], producer=("p", 0))
    assert retry == AppendResult(1, 3, {b"k": 2, b"j": 1}, duplicate=True)
    assert read_all(client, topic).equals(before)
    assert client.key_version(topic, b"k") == 2


def test_a_retry_with_other_content_or_failing_expectations_still_returns_the_original(
    client: odradek.EmbeddedClient, topic: str
) -> None:
    client.append(topic, batch(0), producer=("p", 5))
    retry = client.append(
        topic,
        [{"key": b"zzz", "value": b"different"}] * 9,
        producer=("p", 5),
        expect={b"k": 0},
        expect_offset=77,
    )
    assert retry == AppendResult(0, 2, {b"k": 2}, duplicate=True)
    assert client.describe_topic(topic).next_offset == 2
    assert client.key_version(topic, b"zzz") == 0


def test_sequences_continue_from_any_first_sequence(client: odradek.EmbeddedClient, topic: str) -> None:
    results = [client.append(topic, batch(i), producer=("p", 1000 + i)) for i in range(4)]
    assert [(r.base_offset, r.duplicate) for r in results] == [(0, False), (2, False), (4, False), (6, False)]
    assert [r.versions[b"k"] for r in results] == [2, 4, 6, 8]


def test_a_gap_is_a_sequence_error(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, batch(0), producer=("p", 0))
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(2), producer=("p", 2))
    error = caught.value
    assert (error.producer_id, error.expected, error.actual) == ("p", 1, 2)
    assert "1" in str(error) and "gap" in str(error)
    assert isinstance(error, InvalidRequest)
    assert client.describe_topic(topic).next_offset == 2
    assert client.append(topic, batch(1), producer=("p", 1)).base_offset == 2


def test_remembered_retries_and_older_regressions(client: odradek.EmbeddedClient, topic: str) -> None:
    results = [client.append(topic, batch(i), producer=("p", i)) for i in range(8)]
    remembered = limits.producer_results_remembered
    for sequence in range(8 - remembered, 8):
        retry = client.append(topic, batch(99), producer=("p", sequence))
        original = results[sequence]
        assert retry == AppendResult(original.base_offset, original.count, original.versions, duplicate=True)
    for sequence in range(0, 8 - remembered):
        with pytest.raises(SequenceError) as caught:
            client.append(topic, batch(99), producer=("p", sequence))
        assert (caught.value.expected, caught.value.actual) == (8, sequence)
    assert client.describe_topic(topic).next_offset == 16


def test_producers_are_independent(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, batch(0), producer=("a", 0))
    client.append(topic, batch(0), producer=("b", 10))
    assert client.append(topic, batch(1), producer=("a", 1)).base_offset == 4
    assert client.append(topic, batch(1), producer=("b", 10)).duplicate
    with pytest.raises(SequenceError):
        client.append(topic, batch(1), producer=("b", 12))
    assert client.append(topic, batch(1), producer=("c", 0)).base_offset == 6


def test_producer_ids_are_per_topic(client: odradek.EmbeddedClient, topic: str) -> None:
    client.create_topic("u")
    client.append(topic, batch(0), producer=("p", 0))
    result = client.append("u", batch(0), producer=("p", 0))
    assert (result.base_offset, result.duplicate) == (0, False)


def test_a_retry_of_keyless_records(client: odradek.EmbeddedClient, topic: str) -> None:
    first = client.append(topic, [{"value": b"a"}, {"value": b"b"}], producer=("p", 0))
    assert first.versions == {}
    assert client.append(topic, [{"value": b"a"}], producer=("p", 0)) == AppendResult(
        0, 2, {}, duplicate=True
    )


@pytest.mark.parametrize(
    "producer",
    [
        "p",
        ("p",),
        ("p", 0, 1, 2),
        ("p", -1),
        ("p", 0, -1),
        ("p", -1, 0),
        ("p", 0, 2**31),
        ("p", True, 0),
        ("p", 0, 1.0),
        ("p", True),
        ("p", 1.0),
        ("p", "1"),
        ("", 0),
        ("x" * 257, 0),
        (None, 0),
    ],
)
def test_malformed_producers_are_invalid_requests(
    client: odradek.EmbeddedClient, topic: str, producer: Any
) -> None:
    with pytest.raises(InvalidRequest, match="producer"):
        client.append(topic, batch(0), producer=producer)
    assert client.describe_topic(topic).next_offset == 0


def test_state_survives_reopen(
    client: odradek.EmbeddedClient, topic: str, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    results = [client.append(topic, batch(i), producer=("p", i)) for i in range(4)]
    client.append(topic, batch(0), producer=("q", 0))
    client = reopen(client)
    retry = client.append(topic, batch(3), producer=("p", 3))
    assert retry == AppendResult(results[3].base_offset, 2, results[3].versions, duplicate=True)
    assert client.append(topic, batch(0), producer=("q", 0)).duplicate
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(5), producer=("p", 5))
    assert caught.value.expected == 4
    assert client.append(topic, batch(4), producer=("p", 4)).base_offset == 10


def fill_segments(
    client: odradek.EmbeddedClient, topic: str, producer: str, appends: int
) -> list[AppendResult]:
    """Idempotent appends of ~8 KiB each: 64 KiB segments roll every few appends."""
    return [
        client.append(topic, batch(i, key=f"k{i % 3}".encode(), count=2, size=4096), producer=(producer, i))
        for i in range(appends)
    ]


def test_state_survives_segment_rolls_and_reopen(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    client.create_topic("t", segment_bytes=SMALL_SEGMENT)
    results = fill_segments(client, "t", "p", 40)
    assert client.describe_topic("t").segments >= 4
    # Retries are answered across rolls before a reopen...
    assert client.append("t", batch(0), producer=("p", 39)).duplicate
    client = reopen(client)
    # ... and after it.
    for sequence in range(40 - limits.producer_results_remembered, 40):
        retry = client.append("t", batch(0), producer=("p", sequence))
        original = results[sequence]
        assert retry == AppendResult(original.base_offset, original.count, original.versions, duplicate=True)
    with pytest.raises(SequenceError):
        client.append("t", batch(0), producer=("p", 41))
    with pytest.raises(SequenceError):
        client.append("t", batch(0), producer=("p", 40 - limits.producer_results_remembered - 1))
    assert client.append("t", batch(0), producer=("p", 40)).base_offset == 80


def test_a_producer_whose_last_append_is_in_a_sealed_segment(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    """The producer's appends all lie in closed segments; other writes filled the rest."""
    client.create_topic("t", segment_bytes=SMALL_SEGMENT)
    results = fill_segments(client, "t", "early", 3)
    for i in range(30):
        client.append("t", [{"value": b"x" * 8192}], producer=("late", i // 2) if i % 2 else None)
    assert client.describe_topic("t").segments >= 3
    client = reopen(client)
    assert client.append("t", batch(0), producer=("early", 2)) == AppendResult(
        results[2].base_offset, 2, results[2].versions, duplicate=True
    )
    assert client.append("t", batch(0), producer=("late", 14)).duplicate
    assert client.append("t", batch(0), producer=("early", 3)).duplicate is False


def test_state_survives_several_reopens_between_rolls(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    client.create_topic("t", segment_bytes=SMALL_SEGMENT)
    sequence = 0
    last: AppendResult | None = None
    for _ in range(4):
        for _ in range(7):
            last = client.append("t", batch(sequence, size=4096), producer=("p", sequence))
            sequence += 1
        client = reopen(client)
        assert last is not None
        assert client.append("t", batch(0), producer=("p", sequence - 1)) == AppendResult(
            last.base_offset, last.count, last.versions, duplicate=True
        )
    assert client.describe_topic("t").next_offset == 2 * sequence


def test_a_retry_after_a_conflict_on_the_same_sequence(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, batch(0), producer=("p", 0))
    with pytest.raises(ConflictError):
        client.append(topic, batch(1), producer=("p", 1), expect={b"k": 0})
    with pytest.raises(SequenceError):
        client.append(topic, batch(1), producer=("p", 2))  # 1 was never written
    assert client.append(topic, batch(1), producer=("p", 1)).duplicate is False


# -- range producers: producer=(producer_id, first_sequence, last_sequence) -------------

WRAP = 2**31  # Kafka's sequences are int32: after 2**31 - 1 comes 0


def test_range_sequences_continue_from_the_last_plus_one(client: odradek.EmbeddedClient, topic: str) -> None:
    first = client.append(topic, batch(0, count=2), producer=("r", 100, 101))
    second = client.append(topic, batch(1, count=3), producer=("r", 102, 104))
    assert [(r.base_offset, r.count, r.duplicate) for r in (first, second)] == [(0, 2, False), (2, 3, False)]
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(2), producer=("r", 106, 106))
    assert (caught.value.producer_id, caught.value.expected, caught.value.actual) == ("r", 105, 106)
    assert "gap" in str(caught.value)
    assert client.describe_topic(topic).next_offset == 5
    assert client.append(topic, batch(2), producer=("r", 105, 106)).base_offset == 5


def test_the_first_range_may_start_anywhere(client: odradek.EmbeddedClient, topic: str) -> None:
    assert client.append(topic, batch(0), producer=("a", WRAP - 1, 0)).duplicate is False
    assert client.append(topic, batch(0), producer=("b", 77, 78)).duplicate is False
    assert client.append(topic, batch(0), producer=("a", 1, 2)).base_offset == 4


def test_range_sequences_wrap_after_int32_max(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, batch(0, count=2), producer=("r", WRAP - 3, WRAP - 2))
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(1, count=1), producer=("r", 0, 0))
    assert caught.value.expected == WRAP - 1
    across = client.append(topic, batch(1, count=3), producer=("r", WRAP - 1, 1))
    assert (across.base_offset, across.duplicate) == (2, False)
    after = client.append(topic, batch(2, count=1), producer=("r", 2, 2))
    assert after.base_offset == 5
    assert client.append(topic, batch(9), producer=("r", WRAP - 1, 1)).duplicate
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(3), producer=("r", 4, 4))
    assert caught.value.expected == 3


def test_a_retry_of_any_remembered_range_returns_the_original(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    results = []
    first = 0
    for i in range(8):
        count = 1 + i % 3
        results.append(
            (
                first,
                first + count - 1,
                client.append(topic, batch(i, count=count), producer=("r", first, first + count - 1)),
            )
        )
        first += count
    before = read_all(client, topic)
    remembered = limits.producer_results_remembered
    for low, high, original in results[-remembered:]:
        retry = client.append(topic, batch(99, count=5), producer=("r", low, high))
        assert retry == AppendResult(original.base_offset, original.count, original.versions, duplicate=True)
    for low, high, _ in results[:-remembered]:
        with pytest.raises(SequenceError) as caught:
            client.append(topic, batch(99), producer=("r", low, high))
        assert (caught.value.expected, caught.value.actual) == (first, low)
        assert "gap" not in str(caught.value)
    assert read_all(client, topic).equals(before)


def test_a_range_that_matches_no_remembered_one_is_a_sequence_error(
    client: odradek.EmbeddedClient, topic: str
) -> None:
    """Kafka recognizes a retry by its first and last sequence: a re-split batch is not one."""
    client.append(topic, batch(0, count=3), producer=("r", 0, 2))
    client.append(topic, batch(1, count=1), producer=("r", 3, 3))
    for first, last in [(0, 1), (0, 3), (1, 2)]:
        with pytest.raises(SequenceError) as caught:
            client.append(topic, batch(9), producer=("r", first, last))
        assert caught.value.expected == 4
    assert client.describe_topic(topic).next_offset == 4


def test_a_producer_keeps_its_form(client: odradek.EmbeddedClient, topic: str) -> None:
    client.append(topic, batch(0), producer=("single", 0))
    client.append(topic, batch(0), producer=("range", 0, 1))
    with pytest.raises(InvalidRequest, match="cannot switch to ranges"):
        client.append(topic, batch(1), producer=("single", 1, 2))
    with pytest.raises(InvalidRequest, match="cannot switch to single sequences"):
        client.append(topic, batch(1), producer=("range", 2))
    assert client.describe_topic(topic).next_offset == 4


def test_single_sequences_do_not_wrap(client: odradek.EmbeddedClient, topic: str) -> None:
    """``(id, sequence)`` keeps its meaning: plain integers, no int32 wrap."""
    client.append(topic, batch(0), producer=("p", WRAP - 1))
    assert client.append(topic, batch(1), producer=("p", WRAP)).duplicate is False
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(2), producer=("p", 0))
    assert caught.value.expected == WRAP + 1


def test_range_state_survives_reopen(
    client: odradek.EmbeddedClient, topic: str, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    first = client.append(topic, batch(0, count=2), producer=("r", WRAP - 1, 0))
    second = client.append(topic, batch(1, count=1), producer=("r", 1, 1))
    client = reopen(client)
    assert client.append(topic, batch(9), producer=("r", WRAP - 1, 0)) == AppendResult(
        first.base_offset, 2, first.versions, duplicate=True
    )
    assert client.append(topic, batch(9), producer=("r", 1, 1)) == AppendResult(
        second.base_offset, 1, second.versions, duplicate=True
    )
    with pytest.raises(SequenceError) as caught:
        client.append(topic, batch(9), producer=("r", 3, 3))
    assert caught.value.expected == 2
    assert client.append(topic, batch(2), producer=("r", 2, 2)).base_offset == 3


def test_range_state_survives_segment_rolls_and_reopen(
    client: odradek.EmbeddedClient, data_dir: str, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    client.create_topic("t", segment_bytes=SMALL_SEGMENT)
    start = WRAP - 20  # the ranges wrap half way
    results = []
    for i in range(40):
        first = (start + 2 * i) % WRAP
        last = (first + 1) % WRAP
        records = batch(i, key=f"k{i % 3}".encode(), count=2, size=4096)
        results.append(((first, last), client.append("t", records, producer=("r", first, last))))
    assert client.describe_topic("t").segments >= 4
    snapshots = os.path.join(data_dir, "topics", "t", "producers")
    assert os.listdir(snapshots), "segment rolls write producer snapshots"
    client = reopen(client)
    for (first, last), original in results[-limits.producer_results_remembered :]:
        retry = client.append("t", batch(0), producer=("r", first, last))
        assert retry == AppendResult(original.base_offset, original.count, original.versions, duplicate=True)
    expected = (start + 80) % WRAP
    with pytest.raises(SequenceError) as caught:
        client.append("t", batch(0), producer=("r", expected + 1, expected + 1))
    assert caught.value.expected == expected
    assert client.append("t", batch(0), producer=("r", expected, expected)).base_offset == 80


def test_state_written_before_ranges_existed_still_loads(tmp_path: os.PathLike[str]) -> None:
    """A snapshot of [sequence, base, count] entries and frame metadata without "l"
    load as single-sequence producers; range entries round-trip through a snapshot."""
    directory = os.fspath(tmp_path)
    with open(os.path.join(directory, f"{10:020d}.json"), "w") as handle:
        json.dump({"old": [[3, 0, 4], [4, 4, 6]]}, handle)
    state, offset = ProducerState.load(LOCAL, directory, at_most=10)
    assert offset == 10
    state.apply_meta({"p": "frame", "s": 7}, 10, 2)
    state.apply_meta({"p": "range", "s": WRAP - 1, "l": 0}, 12, 2)
    assert state.check(validate_producer(("old", 4))) == (4, 4, 6)
    assert state.check(validate_producer(("old", 5))) is None
    assert state.check(validate_producer(("frame", 7))) == (7, 10, 2)
    assert state.check(validate_producer(("range", WRAP - 1, 0))) == (WRAP - 1, 12, 2)
    state.save(LOCAL, directory, 14)
    with open(os.path.join(directory, f"{14:020d}.json"), "rb") as handle:
        saved, _ = documents.decode(handle.read())  # the same JSON, with a checksum line
    assert saved == {"old": [[3, 0, 4], [4, 4, 6]], "frame": [[7, 10, 2]], "range": [[WRAP - 1, 12, 2, 0]]}
    reloaded, _ = ProducerState.load(LOCAL, directory, at_most=14)
    assert reloaded.check(validate_producer(("range", 1, 1))) is None
    with pytest.raises(SequenceError):
        reloaded.check(validate_producer(("range", 2, 2)))
    assert producer_meta(validate_producer(("range", 1, 3))) == {"p": "range", "s": 1, "l": 3}
    assert producer_meta(validate_producer(("p", 1))) == {"p": "p", "s": 1}


# -- a model of range producers through appends, retries, errors and restarts ----------


@dataclasses.dataclass
class ModelProducer:
    remembered: collections.deque[tuple[int, int, int, int]]  # first, last, base offset, count

    @property
    def expected(self) -> int:
        return (self.remembered[-1][1] + 1) % WRAP


class RangeProducerMachine(RuleBasedStateMachine):
    """Two range producers on a topic whose tiny segments roll every few appends, so a
    reopen loads their state from snapshots and frames; the model is a deque per producer."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = tempfile.mkdtemp()
        self.client = odradek.open(self.directory, fsync=False)
        self.client.create_topic("m", segment_bytes=SMALL_SEGMENT)
        self.producers: dict[str, ModelProducer] = {}
        self.next_offset = 0

    def teardown(self) -> None:
        self.client.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    @rule(
        producer=st.sampled_from(["a", "b"]),
        count=st.integers(1, 3),
        start=st.sampled_from([0, WRAP - 3, WRAP - 1]) | st.integers(0, WRAP - 1),
    )
    def append(self, producer: str, count: int, start: int) -> None:
        known = self.producers.get(producer)
        first = start if known is None else known.expected
        last = (first + count - 1) % WRAP
        records = [{"value": b"v" * 4096} for _ in range(count)]
        result = self.client.append("m", records, producer=(producer, first, last))
        assert (result.base_offset, result.count, result.duplicate) == (self.next_offset, count, False)
        if known is None:
            known = self.producers[producer] = ModelProducer(
                collections.deque(maxlen=limits.producer_results_remembered)
            )
        known.remembered.append((first, last, self.next_offset, count))
        self.next_offset += count

    @precondition(lambda self: bool(self.producers))
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        producer = data.draw(st.sampled_from(sorted(self.producers)))
        first, last, base, count = data.draw(st.sampled_from(list(self.producers[producer].remembered)))
        result = self.client.append("m", [{"value": b"retry"}], producer=(producer, first, last))
        assert (result.base_offset, result.count, result.duplicate) == (base, count, True)

    @precondition(lambda self: bool(self.producers))
    @rule(data=st.data(), distance=st.integers(1, WRAP - 1), length=st.integers(0, 2))
    def out_of_order(self, data: st.DataObject, distance: int, length: int) -> None:
        producer = data.draw(st.sampled_from(sorted(self.producers)))
        known = self.producers[producer]
        first = (known.expected + distance) % WRAP
        last = (first + length) % WRAP
        assume(all((first, last) != (low, high) for low, high, _, _ in known.remembered))
        with pytest.raises(SequenceError) as caught:
            self.client.append("m", [{"value": b"bad"}], producer=(producer, first, last))
        assert (caught.value.expected, caught.value.actual) == (known.expected, first)

    @rule()
    def reopen(self) -> None:
        self.client.close()
        self.client = odradek.open(self.directory, fsync=False)

    @invariant()
    def nothing_else_was_written(self) -> None:
        assert self.client.describe_topic("m").next_offset == self.next_offset


RangeProducerMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None, database=None
)
test_range_producer_model = RangeProducerMachine.TestCase
