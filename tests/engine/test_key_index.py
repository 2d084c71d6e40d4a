"""Key streams: read_key and key_version cost the key's own records, and survive restarts.

Method: topics where one key is rare among many; the topic counts the frames that
read_key decodes (``frames_touched``), which must equal the frames that hold the key,
not the topic's frame count. The key index memtable limit is lowered so that runs are
flushed and merged during the test; restarts check the index is rebuilt or reused
correctly, including when a run reaches past the log's end (as after a crash that lost
an unsynced tail).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pyarrow as pa
import pytest

import odradek
from odradek import limits


@pytest.fixture
def small_memtable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "key_index_memtable_entries_max", 1000)
    monkeypatch.setattr(limits, "key_index_merge_fan_in", 3)


def _filler(count: int, prefix: str) -> pa.RecordBatch:
    keys = pa.array([f"{prefix}-{i % 500}".encode() for i in range(count)])
    return pa.record_batch({"key": keys, "value": pa.array([b"v" * 20] * count)})


def test_read_key_touches_only_frames_holding_the_key(tmp_path: Path, small_memtable: None) -> None:
    with odradek.open(tmp_path, fsync=False) as client:
        client.create_topic("t")
        rare_frames = 0
        for round_number in range(60):
            client.append("t", _filler(1000, f"r{round_number}"))
            if round_number % 6 == 0:
                client.append("t", [{"key": b"rare", "value": f"{round_number}".encode()}])
                rare_frames += 1
        topic = client.engine._topics["t"]
        topic.keys.wait_idle()
        assert topic.keys.run_count >= 1, "the test should exercise flushed runs"
        total_frames = sum(len(s.frames) for s in topic.log.segments)
        before = topic.frames_touched
        table = client.read_key("t", b"rare")
        assert table.num_rows == rare_frames == 10
        assert table.column("version").to_pylist() == list(range(1, 11))
        assert table.column("value").to_pylist() == [f"{r}".encode() for r in range(0, 60, 6)]
        assert topic.frames_touched - before == rare_frames
        assert total_frames > 6 * rare_frames
        assert client.key_version("t", b"rare") == 10
        # from_version / to_version select a slice of the stream.
        assert client.read_key("t", b"rare", from_version=4).column("version").to_pylist() == list(
            range(4, 11)
        )
        assert client.read_key("t", b"rare", 2, 3).column("version").to_pylist() == [2, 3]
        assert client.read_key("t", b"absent").num_rows == 0
        assert client.key_version("t", b"absent") == 0


def test_index_survives_restart_and_merges(tmp_path: Path, small_memtable: None) -> None:
    with odradek.open(tmp_path, fsync=False) as client:
        client.create_topic("t")
        for _ in range(12):
            client.append("t", _filler(1000, "k"))
        client.engine._topics["t"].keys.wait_idle()
        stats = client.engine.topic_stats("t")
        # 12 flushes of 1000 with fan-in 3 merge into few runs.
        assert stats["key_index_runs"] < 12
    with odradek.open(tmp_path, fsync=False) as client:
        for key in (b"k-0", b"k-499", b"k-250"):
            table = client.read_key("t", key)
            assert table.num_rows == 24
            assert table.column("version").to_pylist() == list(range(1, 25))
            assert client.key_version("t", key) == 24
        result = client.append("t", [{"key": "k-0", "value": "x"}])
        assert result.versions == {b"k-0": 25}


def test_run_past_log_end_is_discarded_and_rebuilt(tmp_path: Path, small_memtable: None) -> None:
    with odradek.open(tmp_path, fsync=False) as client:
        client.create_topic("t", segment_bytes="64KiB")
        for _ in range(4):
            client.append("t", _filler(1000, "k"))
        directory = client.engine._topics["t"].directory
    # Simulate a crash that lost the log's tail after the index had flushed it: cut
    # the last segment back to its first frame.
    segments = sorted(n for n in os.listdir(directory) if n.endswith(".log"))
    last = os.path.join(directory, segments[-1])
    os.truncate(last, 0)
    with odradek.open(tmp_path, fsync=False) as client:
        info = client.describe_topic("t")
        table = pa.Table.from_batches(list(client.read("t", wait=0)))
        assert table.num_rows == info.records < 4000
        expected = sum(1 for k in table.column("key").to_pylist() if k == b"k-7")
        replay = client.read_key("t", b"k-7")
        assert replay.num_rows == expected
        assert client.key_version("t", b"k-7") == expected
        assert replay.column("offset").to_pylist() == [
            o
            for o, k in zip(table.column("offset").to_pylist(), table.column("key").to_pylist())
            if k == b"k-7"
        ]


def test_retention_keeps_versions_counting(tmp_path: Path, small_memtable: None) -> None:
    with odradek.open(tmp_path, fsync=False) as client:
        client.create_topic("t", segment_bytes="64KiB", retention="1h")
        for _ in range(8):
            client.append("t", _filler(1000, "k"))
        assert client.engine.enforce_retention(now=10**10) > 0
        first = client.describe_topic("t").first_offset
        assert first > 0
        replay = client.read_key("t", b"k-3")
        assert all(offset >= first for offset in replay.column("offset").to_pylist())
        assert client.key_version("t", b"k-3") == 16
    with odradek.open(tmp_path, fsync=False) as client:
        assert client.key_version("t", b"k-3") == 16
        assert client.append("t", [{"key": "k-3", "value": "x"}]).versions == {b"k-3": 17}


def test_a_version_range_compares_keys_only_among_the_entries_in_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A replay from a snapshot asks for a key's last versions: the memtable's keys are
    compared only among the entries in that version range (the memtable held 200,000
    entries and every such lookup compared all their keys: 2.4 ms for 1,000 events
    after a snapshot through the native door). Counted by wrapping the key compare,
    not timed; the answers stay the whole range's offsets."""
    import pyarrow.compute as pc

    with odradek.open(tmp_path, fsync=False) as client:
        client.create_topic("t")
        for key in (b"a", b"b"):
            for _ in range(5):
                keys = pa.array([key] * 2000, pa.binary())
                client.append("t", pa.record_batch({"key": keys, "value": pa.array([b"v"] * 2000)}))
        compared: list[int] = []
        equal = pc.equal

        def counting_equal(left: object, right: object) -> object:
            compared.append(len(left))  # type: ignore[arg-type]
            return equal(left, right)

        monkeypatch.setattr(pc, "equal", counting_equal)
        keys_index = client.engine._topics["t"].keys
        assert keys_index.lookup(b"b", 9001).tolist() == list(range(19_000, 20_000))
        assert keys_index.lookup(b"b", 9001, 9010).tolist() == list(range(19_000, 19_010))
        assert keys_index.lookup(b"a", 10_001).tolist() == []
        assert compared and max(compared) <= 2 * 1000, compared  # not the 20,000 entries
        assert client.read_key("t", b"b", from_version=9999).column("offset").to_pylist() == [19_998, 19_999]
        assert len(keys_index.lookup(b"a")) == 10_000  # a whole replay still compares them all


@pytest.mark.parametrize("gathered_max", [1, 7, 10**9])
def test_keys_are_indexed_again_from_many_small_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, gathered_max: int
) -> None:
    """After a crash (no clean close: the memtable was never written as a run), the
    index is rebuilt from the log: frames of a few records, some keyless or half keyless,
    gathered across frames and added ``gathered_max`` records at a time (every frame
    alone; cut many times; all at once at the log's end)."""
    monkeypatch.setattr(limits, "key_index_reindex_records", gathered_max)
    source = tmp_path / "source"
    client = odradek.open(source)
    client.create_topic("t")
    expected: dict[bytes, list[int]] = {}
    for number in range(400):
        records: list[dict[str, object]] = []
        for slot in range(number % 4 + 1):
            keyless = (number % 9 == 0) or (slot == 1 and number % 5 == 0)
            records.append({"key": None if keyless else f"k{(number * 3 + slot) % 37}", "value": b"v"})
        result = client.append("t", records)
        for slot, record in enumerate(records):
            if record["key"] is not None:
                expected.setdefault(str(record["key"]).encode(), []).append(result.base_offset + slot)
    copy = tmp_path / "copy"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("LOCK"))  # a crash: no run written
    client.close()
    assert not list((copy / "topics").rglob("run-*.arrow")), "the copy must hold no run"
    with odradek.open(copy) as reopened:
        for key, offsets in expected.items():
            replay = reopened.read_key("t", key)
            assert replay.column("offset").to_pylist() == offsets, key
            assert replay.column("version").to_pylist() == list(range(1, len(offsets) + 1))
            assert reopened.key_version("t", key) == len(offsets)
        assert reopened.append("t", [{"key": "k0", "value": b"x"}]).versions == {
            b"k0": len(expected[b"k0"]) + 1
        }


def test_an_old_memtable_is_written_as_a_run_once_it_holds_enough(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A memtable far below the full size is written as a run once it is older than
    key_index_spill_seconds and holds key_index_spill_entries_min entries (so a crash
    leaves little to index again): not before either, whichever path added them."""
    monkeypatch.setattr(limits, "key_index_spill_entries_min", 5)
    monkeypatch.setattr(limits, "key_index_spill_seconds", 3600.0)
    with odradek.open(tmp_path) as client:
        client.create_topic("t")
        keys = client.engine._topics["t"].keys
        client.append("t", _filler(50, "young"))  # enough entries, not old enough
        keys.wait_idle()
        assert keys.run_count == 0
        monkeypatch.setattr(limits, "key_index_spill_seconds", 0.0)
        client.append("t", _filler(2, "a"))  # old enough now: the 52 entries go
        keys.wait_idle()
        assert keys.run_count == 1 and keys.covered_until == 52
        for number in range(4):  # single appends (the small path), below the floor
            client.append("t", [{"key": f"s{number}", "value": b"v"}])
        keys.wait_idle()
        assert keys.run_count == 1 and keys.covered_until == 52
        client.append("t", [{"key": "s4", "value": b"v"}])  # the fifth: at the floor
        keys.wait_idle()
        assert keys.covered_until == 57
        assert client.read_key("t", b"s4").column("offset").to_pylist() == [56]
        assert client.read_key("t", b"young-7").column("offset").to_pylist() == [7]
