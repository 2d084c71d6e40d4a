"""Retention by time and by bytes.

Goal: retention removes whole segments only, oldest first, never the active one: by
time, the leading closed segments whose newest record is older than the retention
period; by bytes, the fewest leading closed segments that bring the topic within the
limit. Afterwards the first offset is the first remaining segment's base, reads and
read_key return only what is left, key versions continue where they were (also after
a reopen), and "forever" keeps everything.

Method: topics with the smallest segment size (64 KiB) and ~8 KiB records, so a few
dozen appends roll many segments; ``engine.enforce_retention(now=...)`` runs with a
chosen clock (a fake future time instead of waiting). Segment boundaries are read from
the segment file names (``<base offset>.log``, see segment.py). One test lets the
engine's own background check run, polling with a generous timeout.
"""

from __future__ import annotations

import datetime
import os
import time
from collections.abc import Callable

import pyarrow as pa
import pytest

import odradek
from odradek.errors import OffsetOutOfRange

HOUR = 3600.0
RECORD = 8000  # bytes of value: 8 records fill a 64 KiB segment


def segment_bases(data_dir: str, topic: str) -> list[int]:
    directory = os.path.join(data_dir, "topics", topic)
    return sorted(int(name[:-4]) for name in os.listdir(directory) if name.endswith(".log"))


def fill(
    client: odradek.EmbeddedClient, topic: str, count: int, timestamp: datetime.datetime | None = None
) -> None:
    start = client.describe_topic(topic).next_offset
    for i in range(start, start + count):
        record: dict[str, object] = {"key": f"k{i % 3}", "value": bytes([i % 256]) * RECORD}
        if timestamp is not None:
            record["timestamp"] = timestamp
        client.append(topic, [record])


def test_time_retention_waits_for_the_period(client: odradek.EmbeddedClient, data_dir: str) -> None:
    client.create_topic("t", retention="1h", segment_bytes="64KiB")
    fill(client, "t", 40)
    bases = segment_bases(data_dir, "t")
    assert len(bases) >= 4
    now = time.time()
    assert client.engine.enforce_retention(now=now) == 0
    assert client.engine.enforce_retention(now=now + HOUR / 2) == 0
    assert segment_bases(data_dir, "t") == bases
    removed = client.engine.enforce_retention(now=now + 2 * HOUR)
    assert removed == len(bases) - 1  # every closed segment, never the active one
    assert segment_bases(data_dir, "t") == bases[-1:]
    info = client.describe_topic("t")
    assert (info.first_offset, info.next_offset, info.segments) == (bases[-1], 40, 1)
    assert info.records == 40 - bases[-1]


def test_whole_segments_only_oldest_first(client: odradek.EmbeddedClient, data_dir: str) -> None:
    """Old, old, new, old segments: only the leading old ones go (no holes in the log)."""
    client.create_topic("t", retention="1h", segment_bytes="64KiB")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    fill(client, "t", 16, timestamp=old)
    fill(client, "t", 1)  # a recent record
    fill(client, "t", 23, timestamp=old)
    bases = segment_bases(data_dir, "t")
    recent_segment = max(b for b in bases if b <= 16)
    removed = client.engine.enforce_retention()
    remaining = segment_bases(data_dir, "t")
    assert remaining == [b for b in bases if b >= recent_segment]
    assert removed == len(bases) - len(remaining) > 0
    assert client.describe_topic("t").first_offset == recent_segment


def test_the_active_segment_is_never_removed(
    client: odradek.EmbeddedClient, read_all: Callable[..., pa.Table]
) -> None:
    client.create_topic("t", retention="1s", retention_bytes=1, segment_bytes="64KiB")
    client.append("t", [{"value": b"ancient", "timestamp": 0}])
    assert client.engine.enforce_retention(now=time.time() + 1e9) == 0
    assert read_all(client, "t").column("value").to_pylist() == [b"ancient"]


def test_forever_keeps_everything(client: odradek.EmbeddedClient, data_dir: str) -> None:
    client.create_topic("t", retention="forever", segment_bytes="64KiB")
    fill(client, "t", 30, timestamp=datetime.datetime(2000, 1, 1))
    bases = segment_bases(data_dir, "t")
    assert client.engine.enforce_retention(now=time.time() + 1e9) == 0
    assert segment_bases(data_dir, "t") == bases
    assert client.describe_topic("t").first_offset == 0


@pytest.mark.parametrize("limit", [100_000, 200_000, 300_000])
def test_byte_retention_removes_the_fewest_oldest_segments(
    client: odradek.EmbeddedClient, data_dir: str, limit: int
) -> None:
    client.create_topic("t", retention="forever", retention_bytes=limit, segment_bytes="64KiB")
    fill(client, "t", 60)
    directory = os.path.join(data_dir, "topics", "t")
    sizes = {
        b: os.path.getsize(os.path.join(directory, f"{b:020d}.log")) for b in segment_bases(data_dir, "t")
    }
    total = client.describe_topic("t").bytes
    assert total == sum(sizes.values()) > limit
    client.engine.enforce_retention()
    remaining = segment_bases(data_dir, "t")
    removed = [b for b in sizes if b not in remaining]
    assert removed == sorted(sizes)[: len(removed)]  # a prefix
    kept = sum(sizes[b] for b in remaining)
    assert client.describe_topic("t").bytes == kept
    assert kept <= limit or len(remaining) == 1
    assert kept + sizes[removed[-1]] > limit  # removing one segment fewer would not do
    assert client.engine.enforce_retention() == 0  # nothing more to do


def test_time_and_bytes_together(client: odradek.EmbeddedClient, data_dir: str) -> None:
    client.create_topic("t", retention="1h", retention_bytes="10MiB", segment_bytes="64KiB")
    fill(client, "t", 30)
    bases = segment_bases(data_dir, "t")
    assert client.engine.enforce_retention(now=time.time()) == 0  # within both limits
    assert client.engine.enforce_retention(now=time.time() + 2 * HOUR) == len(bases) - 1


def test_after_retention_reads_keys_and_versions(
    client: odradek.EmbeddedClient,
    data_dir: str,
    read_all: Callable[..., pa.Table],
    reopen: Callable[..., odradek.EmbeddedClient],
) -> None:
    client.create_topic("t", retention="1h", segment_bytes="64KiB")
    fill(client, "t", 30)  # keys k0, k1, k2 round robin: versions 1..10 each
    client.append("t", [{"key": b"only-old", "value": b"x"}])
    fill(client, "t", 9)
    client.engine.enforce_retention(now=time.time() + 2 * HOUR)
    first = client.describe_topic("t").first_offset
    assert first > 30  # "only-old" is gone
    assert read_all(client, "t").column("offset").to_pylist() == list(range(first, 40))
    expected_k0 = [o for o in range(first, 40) if o != 30 and o % 3 == 0]  # fill keys by offset
    assert client.read_key("t", b"k0").column("offset").to_pylist() == expected_k0
    assert client.read_key("t", b"only-old").num_rows == 0
    before = {k: client.key_version("t", k) for k in (b"k0", b"k1", b"k2", b"only-old")}
    assert before[b"only-old"] == 1
    client = reopen(client)
    assert client.describe_topic("t").first_offset == first
    assert {k: client.key_version("t", k) for k in before} == before
    result = client.append("t", [{"key": b"only-old", "value": b"y"}, {"key": b"k0", "value": b"y"}])
    assert result.versions == {b"only-old": 2, b"k0": before[b"k0"] + 1}
    with pytest.raises(OffsetOutOfRange):
        client.read("t", start=0, wait=0)


def test_the_background_check_applies_retention(open_client: Callable[..., odradek.EmbeddedClient]) -> None:
    client = open_client(retention_check_seconds=0.05)
    client.create_topic("t", retention="1h", segment_bytes="64KiB")
    fill(client, "t", 30, timestamp=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=2))
    deadline = time.monotonic() + 30
    while client.describe_topic("t").segments > 1:
        assert time.monotonic() < deadline, "the retention thread never removed the expired segments"
        time.sleep(0.02)
    assert client.describe_topic("t").first_offset > 0


def test_segments_roll_by_age(client: odradek.EmbeddedClient, data_dir: str) -> None:
    client.create_topic("t", segment_age="10ms")
    client.append("t", [{"value": b"1"}])
    time.sleep(0.05)  # older than segment_age: the next append starts a new segment
    client.append("t", [{"value": b"2"}])
    assert segment_bases(data_dir, "t") == [0, 1]


def test_producer_state_survives_retention_and_reopen(
    client: odradek.EmbeddedClient, reopen: Callable[..., odradek.EmbeddedClient]
) -> None:
    client.create_topic("t", retention="1h", segment_bytes="64KiB")
    results = [
        client.append("t", [{"key": b"k", "value": bytes([i]) * RECORD}], producer=("p", i))
        for i in range(30)
    ]
    assert client.engine.enforce_retention(now=time.time() + 2 * HOUR) > 0
    client = reopen(client)
    retry = client.append("t", [{"value": b"retry"}], producer=("p", 29))
    assert (retry.base_offset, retry.count, dict(retry.versions), retry.duplicate) == (
        29,
        1,
        {b"k": 30},
        True,
    )
    assert results[29].versions == {b"k": 30}
    assert client.append("t", [{"key": b"k", "value": b"next"}], producer=("p", 30)).versions == {b"k": 31}


# -- reads racing retention ---------------------------------------------------------------------
#
# Readers take no lock: retention may replace the topic's segment list between any two
# steps of a read. These tests make it happen at one chosen step, deterministically, by
# running retention from inside ``TopicLog.locate``.


@pytest.fixture
def old_then_recent(client: odradek.EmbeddedClient, data_dir: str) -> list[int]:
    """Topic "t": one segment of 3-hour-old records, then recent segments (keys k0..k2)."""
    client.create_topic("t", retention="1h", segment_bytes="64KiB")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=3)
    fill(client, "t", 7, timestamp=old)  # 7 records of 8 KB fill a 64 KiB segment
    fill(client, "t", 33)
    bases = segment_bases(data_dir, "t")
    assert bases[1] == 7 and len(bases) >= 4
    return bases


def retention_during_locate(
    monkeypatch: pytest.MonkeyPatch, client: odradek.EmbeddedClient, before: bool, call: str = "locate"
) -> list[int]:
    """Run retention once, inside the next call of the log's ``call`` method (``locate``
    or ``read_frame``), before or after it runs."""
    topic = client.engine._topic("t")
    original = getattr(topic.log, call)
    removed: list[int] = []

    def hooked(*args: object, **kwargs: object) -> object:
        if before and not removed:
            removed.append(topic.enforce_retention())
        result = original(*args, **kwargs)
        if not before and not removed:
            removed.append(topic.enforce_retention())
        return result

    monkeypatch.setattr(topic.log, call, hooked)
    return removed


def test_a_fetch_racing_retention_returns_the_requested_offsets(
    client: odradek.EmbeddedClient, old_then_recent: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    start = old_then_recent[2] + 1  # in a segment retention keeps
    removed = retention_during_locate(monkeypatch, client, before=False)
    batches = client.fetch("t", start, max_records=5)
    assert removed == [1]
    assert [o for b in batches for o in b.column("offset").to_pylist()] == list(range(start, start + 5))


def test_read_key_racing_retention_returns_what_remains(
    client: odradek.EmbeddedClient, old_then_recent: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    # read_key locates frames from its own snapshot of the segment list; retention runs
    # between that and its first frame read.
    removed = retention_during_locate(monkeypatch, client, before=True, call="read_frame")
    table = client.read_key("t", b"k0")
    assert removed == [1]
    every = [o for o in range(40) if o % 3 == 0]
    got = table.column("offset").to_pylist()
    assert got == every[len(every) - len(got) :]  # a suffix of the key's records...
    assert set(got) >= {o for o in every if o >= old_then_recent[1]}  # ... holding all that is left


def test_a_timestamp_start_racing_retention(
    client: odradek.EmbeddedClient, old_then_recent: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    stamps = [t for b in client.read("t", wait=0) for t in b.column("timestamp").to_pylist()]
    expected = next(o for o, t in enumerate(stamps) if t >= stamps[25])  # 25 unless equal stamps
    removed = retention_during_locate(monkeypatch, client, before=False)
    assert client.engine.resolve_start("t", stamps[25]) == expected
    assert removed == [1]
