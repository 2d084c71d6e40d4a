"""``verify_topic`` looks inside a topic's snapshot log too.

Goal: a damaged frame of the snapshot log (a lost snapshot) is named by ``odradek topic
verify`` (the report is not ``ok``, its ``snapshot_log`` lists the damaged offsets and
``problems`` says what was lost), whether recovery found it at open or verify finds it
now, and never mixed into the topic's own ``damaged`` list (whose ranges ``topic
repair`` drops from the topic's offsets). A sound snapshot log is counted and clean.

Method: an embedded engine on a temporary directory; three keys with a snapshot each
(three frames of the snapshot log); one byte of the second frame flipped, between a
close and a reopen, or in place while the engine runs; then ``verify_topic``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import odradek
from odradek.engine import segment as seg

KEYS = (b"a", b"b", b"c")


def _fill(client: odradek.EmbeddedClient) -> None:
    client.create_topic("t")
    for key in KEYS:
        client.append("t", [{"key": key, "value": b"event"}] * 3)
        client.snapshot("t", key, b"state of " + key, version=3)


def _snapshot_segment(data: Path) -> Path:
    return data / "topics" / "t" / "snapshots" / seg.segment_name(0)


def _flip_second_frame(path: Path) -> None:
    frames = seg.scan_segment(path.read_bytes(), path.name, 0).frames
    assert len(frames) == len(KEYS)
    with open(path, "r+b") as handle:  # in place: a running engine's mapping sees it
        position = frames[1].position + frames[1].size // 2
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0x01]))


def _check_damage_named(report: dict[str, object]) -> None:
    assert report["ok"] is False
    assert report["damaged"] == []  # the topic's own offsets are all sound
    snapshot_log = report["snapshot_log"]
    assert isinstance(snapshot_log, dict)
    assert [(d["first_offset"], d["end_offset"]) for d in snapshot_log["damaged"]] == [(1, 2)]
    problems = report["problems"]
    assert isinstance(problems, list)
    assert any("snapshot log: offsets 1-1" in problem and "lost" in problem for problem in problems), problems


def test_a_sound_snapshot_log_is_checked_and_clean(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as client:
        _fill(client)
        report = client.verify_topic("t")
    assert report["ok"] is True, report
    assert report["snapshot_log"]["frames"] == len(KEYS)
    assert report["snapshot_log"]["damaged"] == [] and report["snapshot_log"]["problems"] == []


def test_a_topic_without_snapshots_has_no_snapshot_log_report(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data") as client:
        client.create_topic("t")
        client.append("t", [{"key": b"a", "value": b"event"}])
        report = client.verify_topic("t")
    assert report["ok"] is True and report["snapshot_log"] is None


def test_damage_recovery_found_in_the_snapshot_log_is_named(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        _fill(client)
    _flip_second_frame(_snapshot_segment(data))
    with odradek.open(data) as client:
        _check_damage_named(client.verify_topic("t"))


def test_damage_in_the_snapshot_log_is_found_by_verify_itself(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with odradek.open(data) as client:
        _fill(client)
        _flip_second_frame(_snapshot_segment(data))
        _check_damage_named(client.verify_topic("t"))


def test_a_damaged_snapshot_log_refuses_new_snapshots_naming_the_topic(tmp_path: Path) -> None:
    # The refusal came from the snapshot log's own append, naming a topic "t (snapshots)"
    # that does not exist and a `topic repair` of it that cannot work.
    data = tmp_path / "data"
    with odradek.open(data) as client:
        _fill(client)
    _flip_second_frame(_snapshot_segment(data))
    with odradek.open(data) as client:
        with pytest.raises(odradek.DataDamaged) as refused:
            client.snapshot("t", b"a", b"newer state", version=3)
        message = str(refused.value)
        assert "topic t refuses new snapshots" in message and "offsets 1-1" in message
        assert "(snapshots)" not in message and "topic repair" not in message
        assert [row["value"] for row in client.read_key("t", b"a").to_pylist()] == [b"event"] * 3
