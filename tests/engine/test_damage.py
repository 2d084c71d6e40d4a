"""Damage as the findings reported it: each reproduction first, then what must happen.

Goal: the specific failures found by damaging a data directory by hand never come back:
a flipped byte in the active segment silently dropped every later acknowledged frame and
handed their offsets to new records; a flipped bit in a key-index run made key_version
return 1,099,511,627,782; read_key returned a damaged value that a sequential read
refused; a damaged sealed segment without its index stopped the whole server from
starting, or made every read from earliest return nothing; a missing topic.json made a
topic vanish silently; damage in the middle of a group's progress discarded every ack
after it; retention removing records the key index never flushed lost their keys'
versions.

Method: embedded engines on temporary directories, fsync on (the head file that proves
acknowledged offsets is kept only then), files damaged between a close and a reopen.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek import limits
from odradek.engine import segment as seg


def _records(count: int, key: str = "k", tag: str = "") -> list[dict[str, Any]]:
    return [{"key": key, "value": f"{tag}{i}".encode() + b"." * 200} for i in range(count)]


def _topic_dir(data: Path, name: str) -> Path:
    return data / "topics" / name


def _flip(path: Path, position: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[position] ^= 0x01
    path.write_bytes(bytes(raw))


def _frames(path: Path) -> list[seg.FrameInfo]:
    return seg.scan_segment(path.read_bytes(), path.name, int(path.stem)).frames


def test_a_flipped_byte_mid_segment_keeps_later_frames_and_never_reuses_offsets(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        for batch in range(5):
            client.append("t", _records(10, tag=f"{batch}:"), producer=("p", batch))
    segment = _topic_dir(data, "t") / seg.segment_name(0)
    frames = _frames(segment)
    _flip(segment, frames[1].position + frames[1].size // 2)  # the second of five appends
    with odradek.open(data) as client:
        info = client.describe_topic("t")
        assert info.status == "read-only"
        assert [(d["first_offset"], d["end_offset"]) for d in info.damaged] == [(10, 20)]
        offsets = pa.Table.from_batches(list(client.read("t", wait=0))).column("offset").to_pylist()
        assert offsets == list(range(10)) + list(range(20, 50))  # the later frames are kept
        with pytest.raises(odradek.DataDamaged, match=r"offsets 10\.\.19 are damaged.*--drop-range 10-19"):
            client.append("t", _records(1))
        client.repair_topic("t", drop_range=(10, 19))
        result = client.append("t", _records(1), producer=("p", 5))
        assert result.base_offset == 50  # never an offset handed out before
        assert client.append("t", _records(1), producer=("p", 5)).duplicate
    with odradek.open(data) as client:  # the decision and the damage survive a restart
        info = client.describe_topic("t")
        assert info.status == "damaged" and info.damaged[0]["accepted"]
        assert client.append("t", _records(1)).base_offset == 51


def test_a_truncated_active_segment_is_damage_not_a_torn_tail(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        for _ in range(4):
            client.append("t", _records(10))
    segment = _topic_dir(data, "t") / seg.segment_name(0)
    frames = _frames(segment)
    os.truncate(segment, frames[2].position + 7)  # frames 2 and 3 (offsets 20..39) are cut
    with odradek.open(data) as client:
        info = client.describe_topic("t")
        assert [(d["first_offset"], d["end_offset"]) for d in info.damaged] == [(20, 40)]
        assert info.next_offset == 40
        client.repair_topic("t", drop_range=[(20, 39)])
        assert client.append("t", _records(1)).base_offset == 40
        assert client.key_version("t", "k") >= 20


def test_a_torn_tail_without_acknowledgement_is_cut_silently(tmp_path: Path) -> None:
    """The head proves only what was acknowledged: a partial frame after it is a
    crash's torn tail, cut away without a report."""
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        client.append("t", _records(10))
    segment = _topic_dir(data, "t") / seg.segment_name(0)
    with open(segment, "ab") as handle:
        handle.write(b"ODR1" + b"\x00" * 50)  # a write the crash interrupted
    with odradek.open(data) as client:
        info = client.describe_topic("t")
        assert (info.status, info.damaged, info.next_offset) == ("ok", (), 10)
        assert client.append("t", _records(1)).base_offset == 10


def test_a_flipped_bit_in_a_key_index_run_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "key_index_memtable_entries_max", 20)
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        for _ in range(6):
            client.append("t", _records(10))
    runs = sorted((_topic_dir(data, "t") / "keys").glob("run-*.arrow"))
    assert runs
    raw = bytearray(runs[0].read_bytes())
    versions_at = raw.find((1).to_bytes(8, "little"))  # an entry's version
    raw[versions_at + 5] ^= 0x01  # the finding: version 1 became 1,099,511,627,777
    runs[0].write_bytes(bytes(raw))
    with odradek.open(data) as client:
        assert client.key_version("t", "k") == 60
        assert client.append("t", _records(1)).versions == {b"k": 61}
        assert client.read_key("t", "k").column("version").to_pylist() == list(range(1, 62))


def test_read_key_never_returns_a_damaged_value(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        client.append("t", _records(3, key="a"))
        client.append("t", _records(3, key="b"))
    segment = _topic_dir(data, "t") / seg.segment_name(0)
    first = _frames(segment)[0]
    raw = segment.read_bytes()
    _flip(segment, raw.find(b"0....", first.position) + 2)  # inside key a's first value
    with odradek.open(data) as client:
        # The finding: read_key skipped the CRC and returned the damaged value.
        with pytest.raises(odradek.DataDamaged, match="damaged"):
            client.read_key("t", "a")
        assert client.read_key("t", "b").column("version").to_pylist() == [1, 2, 3]
        info = client.describe_topic("t")
        assert [(d["first_offset"], d["end_offset"]) for d in info.damaged] == [(0, 3)]


def test_a_damaged_sealed_segment_without_its_index_does_not_stop_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t", segment_bytes="64KiB")
        client.create_topic("other")
        client.append("other", _records(2))
        for batch in range(12):
            client.append("t", _records(60, key=f"k{batch % 3}"))
        assert client.describe_topic("t").segments >= 3
    topic = _topic_dir(data, "t")
    first = topic / seg.segment_name(0)
    frames = _frames(first)
    _flip(first, frames[0].position + frames[0].size // 2)
    (topic / seg.index_name(0)).unlink()
    with odradek.open(data) as client:  # the finding: the engine refused to start
        assert pa.Table.from_batches(list(client.read("other", wait=0))).num_rows == 2
        table = pa.Table.from_batches(list(client.read("t", start="earliest", wait=0)))
        assert table.num_rows == 12 * 60 - frames[0].count  # not 0 rows
        assert table.column("offset")[0].as_py() == frames[0].count
        info = client.describe_topic("t")
        assert [(d["first_offset"], d["end_offset"]) for d in info.damaged] == [(0, frames[0].count)]
        report = client.verify_topic("t")
        assert not report["ok"] and report["damaged"][0]["first_offset"] == 0


def test_a_missing_topic_json_is_reported_not_silent(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        client.create_topic("other")
        client.append("t", _records(1))
    for name in ("topic.json", "topic.json.copy"):
        (_topic_dir(data, "t") / name).unlink()
    with odradek.open(data) as client:
        assert client.list_topics() == ["other"]
        reason = client.engine.unavailable_topics()["t"]
        assert "topic.json" in reason and "missing" in reason
        with pytest.raises(odradek.DataDamaged, match="unavailable"):
            client.append("t", _records(1))


def test_one_damaged_copy_of_topic_json_is_healed_by_the_other(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t", retention="3d")
    meta = _topic_dir(data, "t") / "topic.json"
    _flip(meta, 10)
    with odradek.open(data) as client:
        assert client.describe_topic("t").config["retention_seconds"] == 3 * 86400
        client.engine.alter_topic("t", retention="4d")  # a save writes both copies again
    assert b"crc32c=" in meta.read_bytes()
    _flip(_topic_dir(data, "t") / "topic.json.copy", 10)
    with odradek.open(data) as client:
        assert client.describe_topic("t").config["retention_seconds"] == 4 * 86400


def test_key_index_damage_that_retention_made_unrepairable_stops_appends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A damaged run whose records retention already removed cannot be rebuilt: the
    versions of keys last written there are unknown, so appends wait for an operator."""
    monkeypatch.setattr(limits, "key_index_memtable_entries_max", 50)
    data = tmp_path / "data"
    with odradek.open(data, retention_check_seconds=3600) as client:
        client.create_topic("t", segment_bytes="64KiB", retention_bytes="64KiB")
        client.append("t", _records(100, key="old"))
        for _ in range(12):
            client.append("t", _records(60, key="new"))
        assert client.engine.enforce_retention() > 0
        assert client.describe_topic("t").first_offset > 100
        assert client.key_version("t", "old") == 100  # kept although its records are gone
    runs = sorted((_topic_dir(data, "t") / "keys").glob("run-*.arrow"))
    _flip(runs[0], runs[0].stat().st_size // 2)
    with odradek.open(data) as client:
        info = client.describe_topic("t")
        assert info.status == "read-only"
        assert info.damaged[0]["segment"] == "keys"
        with pytest.raises(odradek.DataDamaged, match="key index"):
            client.append("t", _records(1, key="old"))
        damaged = info.damaged[0]
        client.repair_topic("t", drop_range=(damaged["first_offset"], damaged["end_offset"] - 1))
        client.append("t", _records(1, key="new"))


def test_retention_waits_for_the_key_index_to_hold_what_it_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: retention removed segments whose key entries were only in memory, and a
    crash then lost those keys' versions. Now it writes the key index first."""
    data = tmp_path / "data"
    with odradek.open(data, retention_check_seconds=3600) as client:
        client.create_topic("t", segment_bytes="64KiB", retention_bytes="64KiB")
        client.append("t", _records(100, key="old"))
        for _ in range(12):
            client.append("t", _records(60, key="new"))
        assert client.engine.enforce_retention() > 0
        topic = client.engine._topics["t"]
        assert topic.keys.covered_until >= topic.log.first_offset
        # A crash now (no clean close): the index on disk already holds "old".
        runs = sorted((_topic_dir(data, "t") / "keys").glob("run-*.arrow"))
        assert runs
        snapshot = tmp_path / "crashed"
        import shutil

        shutil.copytree(data, snapshot)
    (snapshot / "LOCK").unlink(missing_ok=True)
    with odradek.open(snapshot) as client:
        assert client.key_version("t", "old") == 100
        assert client.append("t", _records(1, key="old")).versions == {b"old": 101}


@pytest.mark.parametrize("ordering", ["key", "topic"])
def test_a_consumer_group_passes_over_damaged_offsets(tmp_path: Path, ordering: str) -> None:
    """Reads skip damaged offsets, so a group's window gets a gap: before, it waited at
    the gap forever (its watermark never moved); now the gap counts as settled."""
    data = tmp_path / "data"
    with odradek.open(data) as client:
        client.create_topic("t")
        for batch in range(5):
            client.append("t", [{"key": f"k{i % 3}", "value": f"{batch}:{i}".encode()} for i in range(10)])
    segment = _topic_dir(data, "t") / seg.segment_name(0)
    frames = _frames(segment)
    _flip(segment, frames[2].position + frames[2].size // 2)  # offsets 20..29
    with odradek.open(data) as client:
        client.repair_topic("t", drop_range=(20, 29))
        client.append("t", [{"key": "k0", "value": b"after"}])
        consumer = client.subscribe("t", group="g", start="earliest", ordering=ordering)
        seen: list[int] = []
        for _ in range(50):
            deliveries = consumer.poll(max_records=100, timeout=0.2)
            seen.extend(d.offset for d in deliveries)
            consumer.ack(deliveries)
            if len(seen) >= 41:
                break
        assert sorted(seen) == [*range(20), *range(30, 51)]
        info = client.node.groups.describe_group("g")
        (progress,) = info.topics
        assert progress.committed == 51 and progress.lag == 0
        consumer.close()
