"""Idempotent producers: ``producer=(producer_id, sequence)``.

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

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek import limits
from odradek.errors import ConflictError, InvalidRequest, SequenceError
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
        ("p", 0, 1),
        ("p", -1),
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
