"""Storage faults: a full disk or a failing fsync leaves nothing half-written.

Method: fault injection through the engine's file-system seam: a FaultyDisk
(odradek/storage/faults.py) fails writes like a full disk (outright, or after a short
write) and fsyncs like an I/O error, while the engine runs; the tests check that the
append raised StorageError saying why, nothing of it is visible (now or after a
restart), and the engine keeps working once the fault clears, without a restart.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

import odradek
from odradek import limits
from odradek.storage.faults import FaultyDisk


def _records(count: int, key: str = "k") -> list[dict[str, Any]]:
    return [{"key": key, "value": f"v{i}".encode()} for i in range(count)]


@pytest.mark.parametrize("partial", [None, 40])
def test_full_disk_refuses_append_and_recovers(tmp_path: Path, partial: int | None) -> None:
    disk = FaultyDisk()
    with odradek.open(tmp_path, disk=disk) as client:
        client.create_topic("t")
        client.append("t", _records(3))
        disk.fail_writes(errno.ENOSPC, partial=partial, paths=".log")
        with pytest.raises(odradek.StorageError, match=r"no space left on device.*nothing was written"):
            client.append("t", _records(5), expect={"k": 3})
        info = client.describe_topic("t")
        assert info.next_offset == 3
        assert client.key_version("t", "k") == 3
        disk.heal()
        # The failed append left no trace: the same expectation still holds.
        result = client.append("t", _records(2), expect={"k": 3})
        assert (result.base_offset, result.versions) == (3, {b"k": 5})
    with odradek.open(tmp_path) as client:
        table = pa.Table.from_batches(list(client.read("t", wait=0)))
        assert table.column("offset").to_pylist() == list(range(5))
        assert table.column("version").to_pylist() == [1, 2, 3, 4, 5]


def test_fsync_failure_fails_the_append_then_the_topic_recovers(tmp_path: Path) -> None:
    disk = FaultyDisk()
    with odradek.open(tmp_path, disk=disk) as client:
        client.create_topic("t")
        client.create_topic("other")
        client.append("t", _records(2))
        disk.fail_syncs(errno.EIO, paths="/t/")
        with pytest.raises(odradek.StorageError, match="fsync failed"):
            client.append("t", _records(1))
        disk.heal()
        # Other topics are unaffected; the failed topic is reopened from disk and,
        # because the unacknowledged write may or may not have reached the disk, it
        # may hold it: what matters is that offsets and versions stay consistent.
        client.append("other", _records(1))
        result = client.append("t", _records(1))
        table = pa.Table.from_batches(list(client.read("t", wait=0)))
        offsets = table.column("offset").to_pylist()
        assert offsets == list(range(result.base_offset + 1))
        assert table.column("version").to_pylist() == list(range(1, len(offsets) + 1))


def test_engine_keeps_serving_after_bad_input(tmp_path: Path) -> None:
    with odradek.open(tmp_path, fsync=False) as client:
        client.create_topic("t")
        bad_inputs: list[Any] = [
            [],
            [{"key": "k"}],  # no value: a null value is allowed, so this is fine below
            "not records",
            [1, 2, 3],
            pa.record_batch({"value": pa.array([1, 2, 3])}),
            pa.record_batch({"value": pa.array([b"x"]), "surprise": pa.array([1])}),
            [{"value": b"x", "timestamp": "yesterday"}],
        ]
        rejected = 0
        for records in bad_inputs:
            try:
                client.append("t", records)
            except odradek.InvalidRequest:
                rejected += 1
        assert rejected == len(bad_inputs) - 1
        assert client.append("t", [{"value": b"ok"}]).base_offset == 1


def test_a_full_disk_during_a_key_index_flush_does_not_wedge_the_topic(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: after ENOSPC in a key-index flush the topic refused every append until a
    restart, even once space was freed (its flush error was never reset). Now appends go
    on into memory up to a bound, are refused with the reason past it, and resume by
    themselves when a retried flush succeeds."""
    monkeypatch.setattr(limits, "key_index_memtable_entries_max", 10)
    monkeypatch.setattr(limits, "key_index_flush_retry_seconds", 0.0)
    disk = FaultyDisk()
    with odradek.open(tmp_path, disk=disk, fsync=False) as client:
        client.create_topic("t")
        disk.fail_writes(errno.ENOSPC, paths="/keys/")
        refused = None
        for _ in range(50):
            try:
                client.append("t", _records(10))
            except odradek.StorageError as exc:
                refused = exc
                break
            client.engine._topics["t"].keys.wait_idle()
        assert refused is not None and "no space left on device" in str(refused)
        assert disk.writes_failed > 0
        disk.heal()
        deadline = time.monotonic() + 30
        while True:  # the next appends retry the flush; one of them gets through
            try:
                client.append("t", _records(10))
                break
            except odradek.StorageError:
                assert time.monotonic() < deadline, "the topic stayed wedged after space was freed"
                client.engine._topics["t"].keys.wait_idle()
        keys = client.engine._topics["t"].keys
        keys.wait_idle()
        assert keys.flush_error is None
        total = client.describe_topic("t").next_offset
        assert client.key_version("t", "k") == total
        assert client.read_key("t", "k").num_rows == total


def test_a_failing_reopen_raises_a_storage_error_naming_the_topic(tmp_path: Path) -> None:
    """Before: after an fsync failure the next append reopened the topic, and a failure
    there escaped as a bare OSError. Now it is a StorageError naming the topic, the topic
    is listed as unavailable, and the other topics serve."""
    disk = FaultyDisk()
    with odradek.open(tmp_path, disk=disk) as client:
        client.create_topic("t")
        client.create_topic("other")
        client.append("t", _records(2))
        disk.fail_syncs(errno.EIO, paths="/t/")
        with pytest.raises(odradek.StorageError, match="fsync failed"):
            client.append("t", _records(1))
        disk.heal()
        (tmp_path / "topics" / "t" / "topic.json").unlink()
        (tmp_path / "topics" / "t" / "topic.json.copy").unlink()
        with pytest.raises(odradek.StorageError, match="topic t") as raised:
            client.append("t", _records(1))
        assert not isinstance(raised.value, OSError)
        assert "t" in client.engine.unavailable_topics()
        client.append("other", _records(1))


def test_temporary_files_left_by_a_crash_are_removed_at_start(tmp_path: Path) -> None:
    with odradek.open(tmp_path) as client:
        client.create_topic("t")
    leftovers = [
        tmp_path / "topics" / "t" / "topic.json.tmp",
        tmp_path / "schemas" / "ids.json.tmp",
        tmp_path / "groups" / "g.state.tmp",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    with odradek.open(tmp_path) as client:
        assert client.list_topics() == ["t"]
    assert not any(path.exists() for path in leftovers)
