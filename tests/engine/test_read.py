"""Reads: start positions, long-poll, limits, patterns across topics, read_key.

Goal: ``read`` starts at an offset, at "earliest", at "latest" or at the first record
at or after a datetime / ISO timestamp; it yields every durable record once, in offset
order per topic, in batches within ``max_records`` (and about ``max_bytes``); it waits
up to ``wait`` seconds for new records (a reader blocked in it receives a record
appended by another thread) and then ends, or never ends with ``follow``; a pattern
reads every matching topic with a ``topic`` column, including topics created after the
read began; bad patterns, starts and options are InvalidRequest; a start below the
first offset left by retention is OffsetOutOfRange unless it is "earliest".

Method: an embedded client; long-polls run in a background thread (see conftest) that
the test feeds by appending. Timeouts there only guard against hangs; no test asserts
how long anything took.
"""

from __future__ import annotations

import datetime
import itertools
import tempfile
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import odradek
from odradek import limits
from odradek.errors import InvalidRequest, OffsetOutOfRange, RequestTooLarge, TopicNotFound
from odradek.records import STORED_SCHEMA

UTC = datetime.UTC
T0 = datetime.datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def topic(client: odradek.EmbeddedClient) -> str:
    client.create_topic("t")
    return "t"


def fill(
    client: odradek.EmbeddedClient, topic: str, appends: int, per_append: int = 1, prefix: str = ""
) -> None:
    for i in range(appends):
        client.append(topic, [{"key": f"k{j % 2}", "value": f"{prefix}{i}.{j}"} for j in range(per_append)])


def offsets(table: pa.Table) -> list[int]:
    return table.column("offset").to_pylist()


# -- start positions ----------------------------------------------------------------------------


def test_read_from_an_offset(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    fill(client, topic, 4, per_append=3)
    assert offsets(read_all(client, topic)) == list(range(12))
    assert offsets(read_all(client, topic, start=0)) == list(range(12))
    assert offsets(read_all(client, topic, start=4)) == list(range(4, 12))  # inside a frame
    assert offsets(read_all(client, topic, start=11)) == [11]
    assert read_all(client, topic, start=12).num_rows == 0  # the next offset: nothing yet


@pytest.mark.parametrize("start", [13, 1000, -1])
def test_a_start_outside_the_log_is_out_of_range(
    client: odradek.EmbeddedClient, topic: str, start: int
) -> None:
    fill(client, topic, 4, per_append=3)
    with pytest.raises(OffsetOutOfRange) as caught:
        client.read(topic, start=start, wait=0)
    assert (caught.value.requested, caught.value.first, caught.value.next_offset) == (start, 0, 12)
    assert "earliest" in str(caught.value)


def test_earliest_and_latest(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    fill(client, topic, 3)
    assert offsets(read_all(client, topic, start="earliest")) == [0, 1, 2]
    assert read_all(client, topic, start="latest").num_rows == 0
    latest = client.read(topic, start="latest", wait=0)  # the position is fixed now
    fill(client, topic, 2)
    assert [row["offset"] for batch in latest for row in batch.to_pylist()] == [3, 4]


def test_an_empty_topic_reads_nothing(
    client: odradek.EmbeddedClient, topic: str, read_all: Callable[..., pa.Table]
) -> None:
    for start in ("earliest", "latest", 0):
        table = read_all(client, topic, start=start)
        assert table.num_rows == 0
        assert table.schema == STORED_SCHEMA


def stamped(client: odradek.EmbeddedClient, topic: str, minutes: list[int], one_append: bool) -> None:
    records = [{"value": str(m), "timestamp": T0 + datetime.timedelta(minutes=m)} for m in minutes]
    if one_append:
        client.append(topic, records)
    else:
        for record in records:
            client.append(topic, [record])


@pytest.mark.parametrize("one_append", [False, True], ids=["frame per record", "one frame"])
@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (T0, list(range(10))),
        (T0 - datetime.timedelta(days=365), list(range(10))),
        (T0 + datetime.timedelta(minutes=5), list(range(5, 10))),
        (T0 + datetime.timedelta(minutes=4, seconds=30), list(range(5, 10))),
        (T0 + datetime.timedelta(minutes=9), [9]),
        (T0 + datetime.timedelta(minutes=9, microseconds=1), []),
        (datetime.datetime(2024, 1, 1, 0, 7), [7, 8, 9]),  # naive: UTC
        (
            datetime.datetime(2024, 1, 1, 2, 7, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
            [7, 8, 9],
        ),
        ("2024-01-01T00:03:00+00:00", list(range(3, 10))),
        ("2024-01-01T00:03:00Z", list(range(3, 10))),
        ("2024-01-01T00:03:00", list(range(3, 10))),
        ("2024-01-01T01:03:00+01:00", list(range(3, 10))),
        ("2024-01-01", list(range(10))),
    ],
)
def test_read_from_a_timestamp(
    client: odradek.EmbeddedClient,
    topic: str,
    read_all: Callable[..., pa.Table],
    one_append: bool,
    start: Any,
    expected: list[int],
) -> None:
    stamped(client, topic, list(range(10)), one_append)
    assert offsets(read_all(client, topic, start=start)) == expected


@settings(max_examples=40, deadline=None, database=None)
@given(
    stamps=st.lists(st.integers(0, 50), min_size=1, max_size=30),
    cuts=st.sets(st.integers(1, 29), max_size=6),
    probe=st.integers(-1, 52),
)
def test_a_timestamp_start_is_the_first_record_at_or_after_it(
    stamps: list[int], cuts: set[int], probe: int
) -> None:
    """Timestamps in any order (given ones need not grow), spread over frames at random."""
    with tempfile.TemporaryDirectory() as directory, odradek.open(directory, fsync=False) as client:
        client.create_topic("t")
        bounds = [0, *sorted(c for c in cuts if c < len(stamps)), len(stamps)]
        for low, high in itertools.pairwise(bounds):
            client.append("t", [{"value": b"", "timestamp": 1_000_000 * (60 + s)} for s in stamps[low:high]])
        start = datetime.datetime.fromtimestamp(60 + probe, UTC)
        expected = next((i for i, s in enumerate(stamps) if s >= probe), len(stamps))
        assert client.engine.resolve_start("t", start) == expected
        got = [o for b in client.read("t", start=start, wait=0) for o in b.column("offset").to_pylist()]
        assert got == list(range(expected, len(stamps)))


@pytest.mark.parametrize("start", ["yesterday", "2024-13-01", 1.5, True, b"earliest", object(), [0]])
def test_bad_starts_are_invalid_requests(client: odradek.EmbeddedClient, topic: str, start: Any) -> None:
    fill(client, topic, 2)
    with pytest.raises(InvalidRequest, match="start"):
        client.read(topic, start=start, wait=0)


# -- limits -------------------------------------------------------------------------------------


def test_max_records_bounds_every_batch(client: odradek.EmbeddedClient, topic: str) -> None:
    fill(client, topic, 5, per_append=7)
    for limit in (1, 3, 7, 10, 100):
        batches = list(client.read(topic, wait=0, max_records=limit))
        assert all(0 < b.num_rows <= limit for b in batches)
        assert [o for b in batches for o in b.column("offset").to_pylist()] == list(range(35))


def test_max_bytes_returns_at_least_one_frame(client: odradek.EmbeddedClient, topic: str) -> None:
    fill(client, topic, 6, per_append=4)
    assert [b.num_rows for b in client.fetch(topic, 0, max_bytes=1)] == [4]
    assert [b.num_rows for b in client.fetch(topic, 2, max_bytes=1)] == [2]
    batches = list(client.read(topic, wait=0, max_bytes=1))
    assert [o for b in batches for o in b.column("offset").to_pylist()] == list(range(24))
    everything = client.fetch(topic, 0)
    assert sum(b.num_rows for b in everything) == 24


def test_fetch_max_records(client: odradek.EmbeddedClient, topic: str) -> None:
    fill(client, topic, 3, per_append=4)
    assert [b.num_rows for b in client.fetch(topic, 1, max_records=5)] == [3, 2]
    assert client.fetch(topic, 12) == []
    with pytest.raises(OffsetOutOfRange):
        client.fetch(topic, 13)


@pytest.mark.parametrize(
    "options",
    [
        {"max_records": 0},
        {"max_bytes": 0},
        {"max_records": -5},
        {"wait": -1},
        {"wait": limits.wait_seconds_max + 1},
        {"wait": float("inf")},
        {"wait": float("nan")},  # would never end
        {"wait": "1"},
        {"wait": True},
        {"wait": None},
    ],
)
def test_bad_read_options_are_invalid_requests(
    client: odradek.EmbeddedClient, topic: str, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest):
        client.read(topic, **options)


@pytest.mark.parametrize(
    "options", [{"max_records": "5"}, {"max_bytes": 1.5j}, {"max_records": None, "max_bytes": "x"}]
)
def test_non_integer_limits_are_invalid_requests(
    client: odradek.EmbeddedClient, topic: str, options: dict[str, Any]
) -> None:
    with pytest.raises(InvalidRequest):
        client.read(topic, **options)


# -- long-poll ----------------------------------------------------------------------------------


def test_a_blocked_reader_receives_a_record_appended_by_another_thread(
    client: odradek.EmbeddedClient, topic: str, background_read: Callable[..., Any]
) -> None:
    fill(client, topic, 2)
    reader = background_read(client.read(topic, start="earliest", wait=60), stop_after_rows=3)
    assert offsets(reader.take(2)) == [0, 1]
    time.sleep(0.1)  # let it go to sleep waiting (not required for correctness)
    client.append(topic, [{"value": b"late"}])
    late = reader.take(1)
    assert offsets(late) == [2]
    assert late.column("value").to_pylist() == [b"late"]
    reader.finish()
    assert reader.error is None


def test_a_read_ends_after_wait_with_nothing_new(
    client: odradek.EmbeddedClient, topic: str, background_read: Callable[..., Any]
) -> None:
    fill(client, topic, 3)
    reader = background_read(client.read(topic, wait=0.2))
    reader.finish()
    assert reader.error is None
    assert [o for b in reader.rest() for o in b.column("offset").to_pylist()] == [0, 1, 2]
    empty = background_read(client.read(topic, start="latest", wait=0.2))
    empty.finish()
    assert empty.rest() == [] and empty.error is None


def test_a_follow_read_outlives_wait_and_ends_when_the_engine_closes(
    client: odradek.EmbeddedClient, topic: str, background_read: Callable[..., Any]
) -> None:
    reader = background_read(client.read(topic, wait=0, follow=True))
    for round_number in range(3):
        time.sleep(0.05)  # longer than wait=0: a non-follow read would have ended
        client.append(topic, [{"value": str(round_number)}])
        assert offsets(reader.take(1)) == [round_number]
    assert not reader.done.is_set()
    client.close()
    reader.finish()
    assert reader.error is None


def test_a_stop_callback_ends_a_follow_read(
    client: odradek.EmbeddedClient, topic: str, background_read: Callable[..., Any]
) -> None:
    stopped = [False]
    reader = background_read(client.engine.read(topic, follow=True, stop=lambda: stopped[0]))
    client.append(topic, [{"value": b"x"}])
    reader.take(1)
    stopped[0] = True
    reader.finish()
    assert reader.error is None


def test_a_deleted_topic_ends_its_read_with_topic_not_found(
    client: odradek.EmbeddedClient, topic: str, background_read: Callable[..., Any]
) -> None:
    fill(client, topic, 1)
    reader = background_read(client.read(topic, wait=60))
    reader.take(1)
    client.delete_topic(topic)
    reader.finish()
    assert isinstance(reader.error, TopicNotFound)


# -- patterns -----------------------------------------------------------------------------------


@pytest.fixture
def hierarchy(client: odradek.EmbeddedClient) -> list[str]:
    names = ["orders.eu.created", "orders.us.created", "orders.eu.cancelled", "payments"]
    for name in names:
        client.create_topic(name)
        fill(client, name, 3, prefix=f"{name}:")
    return names


def by_topic(table: pa.Table) -> dict[str, list[int]]:
    result: dict[str, list[int]] = {}
    for name, offset in zip(table.column("topic").to_pylist(), table.column("offset").to_pylist()):
        result.setdefault(name, []).append(offset)
    return result


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("orders.*.created", ["orders.eu.created", "orders.us.created"]),
        ("orders.>", ["orders.eu.cancelled", "orders.eu.created", "orders.us.created"]),
        ("*", ["payments"]),
        (">", ["orders.eu.cancelled", "orders.eu.created", "orders.us.created", "payments"]),
        ("*.eu.*", ["orders.eu.cancelled", "orders.eu.created"]),
        ("nothing.>", []),
    ],
)
def test_a_pattern_reads_every_matching_topic_with_a_topic_column(
    client: odradek.EmbeddedClient,
    hierarchy: list[str],
    read_all: Callable[..., pa.Table],
    pattern: str,
    expected: list[str],
) -> None:
    batches = list(client.read(pattern, wait=0))
    for batch in batches:
        assert batch.schema == STORED_SCHEMA.append(pa.field("topic", pa.utf8()))
    table = pa.Table.from_batches(batches) if batches else None
    assert (by_topic(table) if table is not None else {}) == {name: [0, 1, 2] for name in expected}
    if table is not None:
        for name, value in zip(table.column("topic").to_pylist(), table.column("value").to_pylist()):
            assert value.startswith(f"{name}:".encode())


def test_an_exact_name_has_no_topic_column(client: odradek.EmbeddedClient, hierarchy: list[str]) -> None:
    for batch in client.read("payments", wait=0):
        assert batch.schema == STORED_SCHEMA


def test_a_pattern_picks_up_topics_created_after_the_read_began(
    client: odradek.EmbeddedClient, hierarchy: list[str], background_read: Callable[..., Any]
) -> None:
    reader = background_read(client.read("orders.*.created", start="latest", wait=60))
    client.create_topic("orders.asia.created")
    client.create_topic("orders.asia.cancelled")  # does not match
    client.append("orders.asia.cancelled", [{"value": b"no"}])
    client.append("orders.asia.created", [{"value": b"new 0"}, {"value": b"new 1"}])
    client.append("orders.eu.created", [{"value": b"old topic"}])
    table = reader.take(3)
    assert sorted(zip(table.column("topic").to_pylist(), table.column("offset").to_pylist())) == [
        ("orders.asia.created", 0),
        ("orders.asia.created", 1),
        ("orders.eu.created", 3),
    ]


def test_a_pattern_read_with_no_topic_yet(
    client: odradek.EmbeddedClient, background_read: Callable[..., Any]
) -> None:
    reader = background_read(client.read("later.>", wait=60), stop_after_rows=1)
    client.create_topic("later.topic")
    client.append("later.topic", [{"value": b"first"}])
    table = reader.take(1)
    assert table.column("topic").to_pylist() == ["later.topic"]
    reader.finish()


def test_a_deleted_topic_drops_out_of_a_pattern_read(
    client: odradek.EmbeddedClient, hierarchy: list[str], background_read: Callable[..., Any]
) -> None:
    reader = background_read(client.read("orders.>", start="latest", wait=60), stop_after_rows=1)
    client.delete_topic("orders.eu.cancelled")
    client.append("orders.us.created", [{"value": b"still here"}])
    table = reader.take(1)
    assert table.column("topic").to_pylist() == ["orders.us.created"]
    reader.finish()
    assert reader.error is None


@pytest.mark.parametrize("pattern", ["", "orders.>.created", "orders..eu", "orders*", "*orders", ">>", "a b"])
def test_invalid_patterns_are_invalid_requests(
    client: odradek.EmbeddedClient, hierarchy: list[str], pattern: str
) -> None:
    with pytest.raises(InvalidRequest):
        client.read(pattern, wait=0)


@pytest.mark.parametrize("pattern", [None, 7, ["payments"], b"payments"])
def test_non_string_patterns_are_invalid_requests(
    client: odradek.EmbeddedClient, hierarchy: list[str], pattern: Any
) -> None:
    with pytest.raises(InvalidRequest):
        client.read(pattern, wait=0)


def test_unknown_topic_is_topic_not_found(client: odradek.EmbeddedClient) -> None:
    with pytest.raises(TopicNotFound):
        client.read("missing", wait=0)
    with pytest.raises(TopicNotFound):
        client.read("_reserved", wait=0)


@pytest.mark.parametrize("reopened", [False, True], ids=["live", "reopened"])
def test_reads_across_many_segments(
    client: odradek.EmbeddedClient,
    read_all: Callable[..., pa.Table],
    reopen: Callable[..., odradek.EmbeddedClient],
    reopened: bool,
) -> None:
    """Sealed segments are read from their sidecar index after a reopen."""
    client.create_topic("s", segment_bytes="64KiB")
    for i in range(40):
        client.append(
            "s",
            [
                {
                    "key": f"k{i % 4}",
                    "value": bytes([i]) * 3000,
                    "timestamp": T0 + datetime.timedelta(seconds=i),
                },
                {"value": b"small", "timestamp": T0 + datetime.timedelta(seconds=i)},
            ],
        )
    if reopened:
        client = reopen(client)
    info = client.describe_topic("s")
    assert info.segments >= 3 and info.next_offset == 80
    assert offsets(read_all(client, "s", max_records=9)) == list(range(80))
    for start in (0, 1, 37, 38, 79, 80):
        assert offsets(read_all(client, "s", start=start)) == list(range(start, 80))
    assert offsets(read_all(client, "s", start=T0 + datetime.timedelta(seconds=25))) == list(range(50, 80))
    key = client.read_key("s", b"k1")
    assert key.column("offset").to_pylist() == [2 * i for i in range(1, 40, 4)]
    assert key.column("version").to_pylist() == list(range(1, 11))
    assert key.column("value").to_pylist() == [bytes([i]) * 3000 for i in range(1, 40, 4)]


# -- after retention ----------------------------------------------------------------------------


def test_reading_below_the_first_offset_after_retention(
    client: odradek.EmbeddedClient, read_all: Callable[..., pa.Table]
) -> None:
    client.create_topic("r", segment_bytes="64KiB", retention="1h")
    for i in range(30):
        client.append("r", [{"key": b"k", "value": bytes([i]) * 8000}])
    assert client.describe_topic("r").segments > 2
    assert client.engine.enforce_retention(now=time.time() + 7200) > 0
    first = client.describe_topic("r").first_offset
    assert 0 < first < 30
    for start in (0, first - 1):
        with pytest.raises(OffsetOutOfRange) as caught:
            client.read("r", start=start, wait=0)
        assert (caught.value.requested, caught.value.first, caught.value.next_offset) == (start, first, 30)
    assert offsets(read_all(client, "r", start="earliest")) == list(range(first, 30))
    assert offsets(read_all(client, "r", start=first)) == list(range(first, 30))
    assert offsets(read_all(client, "r", start=T0)) == list(range(first, 30))  # clamped to the first offset
    with pytest.raises(OffsetOutOfRange):
        client.fetch("r", 0)


# -- read_key and key_version -------------------------------------------------------------------


def test_read_key_ranges(client: odradek.EmbeddedClient, topic: str) -> None:
    for i in range(5):
        client.append(
            topic, [{"key": b"k", "value": str(i)}, {"key": b"other", "value": b"-"}, {"value": b"-"}]
        )
    assert client.read_key(topic, b"k").column("version").to_pylist() == [1, 2, 3, 4, 5]
    assert client.read_key(topic, b"k").column("offset").to_pylist() == [0, 3, 6, 9, 12]
    assert client.read_key(topic, b"k", from_version=3).column("value").to_pylist() == [b"2", b"3", b"4"]
    assert client.read_key(topic, b"k", 2, 3).column("version").to_pylist() == [2, 3]
    assert client.read_key(topic, b"k", 6).num_rows == 0
    assert client.read_key(topic, "k", 5).column("offset").to_pylist() == [12]
    missing = client.read_key(topic, b"missing")
    assert missing.num_rows == 0 and missing.schema == STORED_SCHEMA
    assert client.key_version(topic, b"missing") == 0


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ((b"k", 0), "from_version"),
        ((b"k", -1), "from_version"),
        ((b"k", "1"), "from_version"),
        ((b"k", 1, "2"), "to_version"),
        ((None,), "key"),
        ((7,), "key"),
    ],
)
def test_bad_read_key_arguments(
    client: odradek.EmbeddedClient, topic: str, arguments: tuple[Any, ...], match: str
) -> None:
    with pytest.raises(InvalidRequest, match=match):
        client.read_key(topic, *arguments)


@pytest.mark.parametrize("size", [limits.key_bytes_max + 1, 70_000])
def test_keys_over_the_key_limit_in_lookups_and_expectations(
    client: odradek.EmbeddedClient, topic: str, size: int
) -> None:
    """No record can have such a key; asking about one is refused, not a crash."""
    big = b"x" * size
    with pytest.raises(RequestTooLarge, match="key"):
        client.key_version(topic, big)
    with pytest.raises(RequestTooLarge, match="key"):
        client.read_key(topic, big)
    with pytest.raises(RequestTooLarge, match="key"):
        client.append(topic, [{"value": b"v"}], expect={big: 0})
    assert client.describe_topic(topic).next_offset == 0
    assert client.key_version(topic, b"x" * limits.key_bytes_max) == 0
