"""How far compaction lags (``Engine.compaction_lags``, ``Engine.compaction_summary``):
the dirty bytes of a compacted topic's sealed segments against the sealed bytes, the
ratio that triggers a round, the rounds finished and how long a round has been due.

Method: topics with 64 KiB segments are filled through the embedded client and compacted
with ``Engine.compact(force=True)``; the sizes the summary reports are checked against
the segment files' sizes on disk (``os.path.getsize``) past the topic's clean point, before
and after a round. A round found due but never run is made by calling the compactor's
``due`` with a ``now`` in the past (the clock is passed, nothing sleeps).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

import odradek
from odradek import limits
from odradek.engine.compaction import CompactionLag, lag_summary

SEGMENT = "64KiB"


@pytest.fixture
def client(tmp_path: str) -> Iterator[odradek.EmbeddedClient]:
    c = odradek.open(str(tmp_path), fsync=False)
    yield c
    c.close()


def _fill(client: odradek.EmbeddedClient, topic: str, rounds: int, keys: int) -> None:
    for round_number in range(rounds):
        client.append(
            topic,
            [
                {"key": f"k{j}".encode(), "value": f"{round_number}-{j}".encode().ljust(200)}
                for j in range(keys)
            ],
        )


def _on_disk(client: odradek.EmbeddedClient, topic: str, clean_until: int) -> tuple[int, int]:
    """(dirty, sealed) bytes of ``topic``'s sealed segment files as the file system sizes them."""
    segments = client.engine._topic(topic).log.segments[:-1]
    sealed = [os.path.getsize(segment.file.path) for segment in segments]
    dirty = [
        size for size, segment in zip(sealed, segments, strict=True) if segment.base_offset >= clean_until
    ]
    return sum(dirty), sum(sealed)


def _lag(client: odradek.EmbeddedClient, topic: str) -> CompactionLag:
    (lag,) = [lag for lag in client.engine.compaction_lags() if lag.topic == topic]
    return lag


def test_the_dirty_bytes_fall_after_a_round(client: odradek.EmbeddedClient) -> None:
    client.create_topic("c", cleanup="compact", segment_bytes=SEGMENT, min_cleanable_dirty_ratio=0.3)
    _fill(client, "c", 40, 25)
    topic = client.engine._topic("c")
    before = _lag(client, "c")
    assert before.sealed_bytes > 0, "the test needs sealed segments"
    assert (before.dirty_bytes, before.sealed_bytes) == _on_disk(client, "c", topic.log.compacted_until)
    assert before.dirty_bytes == before.sealed_bytes  # nothing compacted yet
    assert before.dirty_ratio == 1.0 and before.trigger_ratio == 0.3 and before.over_trigger
    assert before.rounds == 0 and before.last_round_at is None
    started = time.time()
    assert "c" in client.engine.compact(force=True)
    after = _lag(client, "c")
    assert after.dirty_bytes < before.dirty_bytes
    assert (after.dirty_bytes, after.sealed_bytes) == _on_disk(client, "c", topic.log.compacted_until)
    assert after.sealed_bytes < before.sealed_bytes  # the round shrank the files
    assert not after.over_trigger
    assert after.rounds == 1 and after.last_round_at is not None and after.last_round_at >= started
    assert after.due_since is None and after.behind_seconds(time.time()) == 0.0
    # New records seal new segments past the clean point: dirty again, in part.
    _fill(client, "c", 40, 25)
    again = _lag(client, "c")
    assert 0 < again.dirty_bytes < again.sealed_bytes
    assert (again.dirty_bytes, again.sealed_bytes) == _on_disk(client, "c", topic.log.compacted_until)
    assert again.over_trigger == (again.dirty_ratio >= 0.3)


def test_a_round_due_and_not_finished_is_behind(client: odradek.EmbeddedClient) -> None:
    client.create_topic("c", cleanup="compact", segment_bytes=SEGMENT)
    _fill(client, "c", 40, 25)
    now = time.time()
    compactor = client.engine._topic("c").compactor
    long_ago = now - 2 * limits.compaction_lag_warning_seconds
    assert compactor.due(long_ago)  # the compaction thread found it due then; no round ran since
    assert compactor.due(now)  # still due: it keeps the first time it was found so
    lag = _lag(client, "c")
    assert lag.due_since == long_ago
    assert lag.behind_seconds(now) == now - long_ago
    summary = client.engine.compaction_summary(now)
    assert summary["topics_behind"] == 1
    assert summary["behind_seconds_max"] == now - long_ago
    assert summary["warning_seconds"] == limits.compaction_lag_warning_seconds
    client.engine.compact(force=True)
    summary = client.engine.compaction_summary(now)
    assert summary["topics_behind"] == 0 and summary["behind_seconds_max"] == 0.0


def test_the_summary_lists_the_worst_within_its_cap_and_totals_them_all(
    client: odradek.EmbeddedClient,
) -> None:
    for name in ("a", "b", "c"):
        client.create_topic(name, cleanup="compact", segment_bytes=SEGMENT, min_cleanable_dirty_ratio=1.0)
        _fill(client, name, 40, 25)
    client.create_topic("plain", segment_bytes=SEGMENT)  # cleanup=delete: not listed
    _fill(client, "plain", 10, 25)
    client.engine._topic("a").compact(force=True)  # a: clean
    client.engine._topic("b").compact(force=True)
    _fill(client, "b", 40, 25)  # b: dirty in part (under its trigger, 1.0); c: all dirty
    lags = client.engine.compaction_lags()
    assert [lag.topic for lag in lags] == ["a", "b", "c"]
    now = time.time()
    summary = lag_summary(lags, now, topics_max=2)
    assert summary["topics"] == 3
    assert summary["dirty_bytes"] == sum(lag.dirty_bytes for lag in lags)
    assert summary["sealed_bytes"] == sum(lag.sealed_bytes for lag in lags)
    assert summary["dirty_ratio"] == summary["dirty_bytes"] / summary["sealed_bytes"]
    assert summary["topics_over_trigger"] == 1
    assert summary["rounds"] == 2 and summary["last_round_at"] == _lag(client, "b").last_round_at
    by_ratio = sorted(lags, key=lambda lag: (-lag.dirty_ratio, -lag.dirty_bytes))
    assert [row["topic"] for row in summary["worst"]] == [lag.topic for lag in by_ratio[:2]] == ["c", "b"]
    assert summary["worst"][0] == _lag(client, "c").to_json(now)
    # The engine's own summary is capped by the limit.
    assert len(client.engine.compaction_summary()["worst"]) == min(3, limits.compaction_lag_topics_max)


def test_a_snapshot_topic_is_dirty_until_a_round_looked_at_its_segments(
    client: odradek.EmbeddedClient,
) -> None:
    client.create_topic("s", cleanup="snapshot", segment_bytes=SEGMENT)
    _fill(client, "s", 40, 25)
    client.snapshot("s", b"k0", b"state", version=20)
    before = _lag(client, "s")
    assert before.cleanup == "snapshot" and before.trigger_ratio == 0.0
    assert before.dirty_bytes == before.sealed_bytes > 0 and before.over_trigger
    assert "s" in client.engine.compact()  # due by itself: new sealed segments
    after = _lag(client, "s")
    assert after.dirty_bytes == 0 and not after.over_trigger
    assert after.sealed_bytes < before.sealed_bytes  # k0's covered events went
    assert after.rounds == 1 and after.last_round_at is not None


def test_an_empty_engine_has_an_empty_summary(client: odradek.EmbeddedClient) -> None:
    summary = client.engine.compaction_summary()
    assert summary["topics"] == 0 and summary["worst"] == []
    assert summary["dirty_ratio"] == 0.0 and summary["last_round_at"] is None
