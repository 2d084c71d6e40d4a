"""The group progress file and restarts: what survives, what is redelivered.

Method: the file format is exercised directly (runs, frames, torn tails, corrupt
frames, snapshots); restarts are clean close-and-reopen cycles of a real engine
(test_durability.py kills a process instead): after each, acknowledged records must
never come back and unacknowledged ones must, from attempt 1; a topic deleted and
created again must not inherit the old progress; a group that started at "latest" must
not jump again; records retention removed before the group read them are skipped.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np
import pytest

from odradek.groups.state import ProgressStore, merge_runs, runs_of

TOPIC = "orders.created"


def test_runs_and_merging() -> None:
    starts, ends = runs_of(np.array([3, 4, 5, 9, 11, 12]))
    assert starts.tolist() == [3, 9, 11] and ends.tolist() == [6, 10, 13]
    floor, starts, ends = merge_runs(np.array([5, 0, 9, 7]), np.array([8, 3, 12, 9]), 3)
    assert (floor, starts.tolist(), ends.tolist()) == (3, [5], [12])  # [5,8) [7,9) [9,12) touch
    floor, starts, ends = merge_runs(np.array([3, 5]), np.array([5, 8]), 3)
    assert (floor, starts.tolist(), ends.tolist()) == (8, [], [])


def test_replay_of_frames(tmp_path: Any) -> None:
    path = str(tmp_path / "g.state")
    store = ProgressStore(path, fsync=False)
    assert store.load() is None
    store.create()
    store.write_meta({"pattern": "a", "options": {}, "since": 1.0})
    store.write_start("a", "7" * 32, 10)
    store.write_done("a", np.array([12, 10]), np.array([14, 11]))
    store.write_start("b", "1" * 32, 0)
    store.write_forget("b")
    store.write_done("a", np.array([11]), np.array([12]))
    store.close()
    state = ProgressStore(path, fsync=False).load()
    assert state is not None and state.meta is not None and state.meta["pattern"] == "a"
    assert list(state.topics) == ["a"]
    assert state.topics["a"].committed == 14 and len(state.topics["a"].starts) == 0


def test_progress_written_with_created_at_is_read_as_its_legacy_incarnation(tmp_path: Any) -> None:
    """Files of earlier versions name the topic by its creation time: they load, matched
    to the incarnation such a topic is given (so no group starts its topics over)."""
    from odradek.engine.topicfiles import legacy_incarnation
    from odradek.groups.state import KIND_START, _json

    path = str(tmp_path / "g.state")
    store = ProgressStore(path, fsync=False)
    store.create()
    store.write_meta({"pattern": "a"})
    store._write(_json(KIND_START, {"topic": "a", "created_at": 1700000000.25, "offset": 7}))
    store.close()
    state = ProgressStore(path, fsync=False).load()
    assert state is not None
    assert state.topics["a"].incarnation == legacy_incarnation("a", 1700000000.25)
    assert state.topics["a"].committed == 7


def test_a_torn_tail_is_truncated_and_the_rest_kept(tmp_path: Any) -> None:
    path = str(tmp_path / "g.state")
    store = ProgressStore(path, fsync=False)
    store.create()
    store.write_meta({"pattern": "a"})
    store.write_start("a", "1" * 32, 0)
    store.write_done("a", np.array([0]), np.array([5]))
    good = store.size
    store.write_done("a", np.array([5]), np.array([9]))
    store.close()
    with open(path, "r+b") as handle:
        handle.truncate(good + 11)  # the last frame half written
    state = ProgressStore(path, fsync=False).load()
    assert state is not None and state.topics["a"].committed == 5
    assert os.path.getsize(path) == good


def test_a_corrupt_frame_ends_the_replay(tmp_path: Any) -> None:
    """Everything before a bad CRC is kept; after it, progress is lost (so records are
    redelivered: at-least-once, never lost)."""
    path = str(tmp_path / "g.state")
    store = ProgressStore(path, fsync=False)
    store.create()
    store.write_meta({"pattern": "a"})
    store.write_start("a", "1" * 32, 0)
    middle = store.size
    store.write_done("a", np.array([0]), np.array([5]))
    store.write_done("a", np.array([5]), np.array([9]))
    store.close()
    with open(path, "r+b") as handle:
        handle.seek(middle + 20)
        byte = handle.read(1)
        handle.seek(middle + 20)
        handle.write(bytes([byte[0] ^ 0xFF]))
    state = ProgressStore(path, fsync=False).load()
    assert state is not None and state.topics["a"].committed == 0


def test_restart_redelivers_only_what_was_not_acked(open_client: Any, append_keyed: Any, reopen: Any) -> None:
    client = open_client()
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b", b"a", b"c", None, b"b"])
    consumer = client.subscribe(TOPIC, group="g")
    got = consumer.poll(10, timeout=0)
    assert [d.offset for d in got] == [0, 1, 3, 4]
    consumer.ack([got[1], got[3]])  # offsets 1 and 4; 0 and 3 stay in flight
    client = reopen(client)
    consumer = client.subscribe(TOPIC, group="g")
    again = consumer.poll(10, timeout=0)
    assert [(d.offset, d.attempt) for d in again] == [(0, 1), (3, 1), (5, 1)]
    consumer.ack(again)
    assert [d.offset for d in consumer.poll(10, timeout=0)] == [2]


def test_snapshots_keep_progress(open_client: Any, append_keyed: Any, reopen: Any, monkeypatch: Any) -> None:
    from odradek import limits

    monkeypatch.setattr(limits, "group_state_log_bytes_max", 200)
    client = open_client()
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [f"k{i % 7}".encode() for i in range(300)])
    consumer = client.subscribe(TOPIC, group="g", max_deliveries=1000)
    acked: set[int] = set()
    for _ in range(40):
        got = consumer.poll(9, timeout=0)
        keep = [d for d in got if d.offset % 5 == 0]  # left in flight: redelivered later
        consumer.ack([d for d in got if d.offset % 5])
        acked.update(d.offset for d in got if d.offset % 5)
        consumer.nack(keep)
    size = os.path.getsize(os.path.join(client.engine.path, "groups", "g.state"))
    assert size < 2000, "the progress file was not rewritten as a snapshot"
    client = reopen(client)
    consumer = client.subscribe(TOPIC, group="g", max_deliveries=1000)
    received = []
    for _ in range(200):
        got = consumer.poll(50, timeout=0)
        if not got:
            break
        received.extend(d.offset for d in got)
        consumer.ack(got)
    assert not set(received) & acked
    assert set(received) | acked == set(range(300))


def test_a_recreated_topic_starts_afresh(open_client: Any, append_keyed: Any, reopen: Any) -> None:
    client = open_client()
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b", b"c"])
    consumer = client.subscribe(TOPIC, group="g")
    consumer.ack(consumer.poll(10, timeout=0))
    consumer.close()
    client.delete_topic(TOPIC)
    time.sleep(0.01)  # creation times must differ
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"x", b"y"])
    client = reopen(client)
    consumer = client.subscribe(TOPIC, group="g")
    assert [d.value for d in consumer.poll(10, timeout=0)] == [b"v0", b"v1"]


def test_latest_is_resolved_once(open_client: Any, append_keyed: Any, reopen: Any) -> None:
    client = open_client()
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"old"])
    client.subscribe(TOPIC, group="g", start="latest").close()
    append_keyed(client, TOPIC, [b"after-join"], prefix="new")
    client = reopen(client)
    append_keyed(client, TOPIC, [b"after-restart"], prefix="newer")
    consumer = client.subscribe(TOPIC, group="g", start="latest")
    assert [d.key for d in consumer.poll(10, timeout=0)] == [b"after-join", b"after-restart"]


def test_records_removed_by_retention_before_reading_are_skipped(open_client: Any) -> None:
    client = open_client()
    client.create_topic(TOPIC, segment_bytes="64KiB", retention="1h")
    for _ in range(6):
        client.append(TOPIC, [{"key": f"k{i}", "value": b"x" * 1024} for i in range(40)])
    consumer = client.subscribe(TOPIC, group="g")  # joined: starts at offset 0
    removed = client.engine.enforce_retention(now=time.time() + 7200)
    assert removed > 0
    first = client.describe_topic(TOPIC).first_offset
    got = consumer.poll(500, timeout=0)
    while not got:
        got = consumer.poll(500, timeout=1)
    assert min(d.offset for d in got) == first
    topic = client.describe_group("g").topics[0]
    assert topic.skipped == first


@pytest.mark.parametrize("ordering", ["key", "topic"])
def test_restart_between_deliveries_keeps_key_order(
    open_client: Any, append_keyed: Any, reopen: Any, ordering: str
) -> None:
    client = open_client()
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"a", b"b", b"a"])
    consumer = client.subscribe(TOPIC, group="g", ordering=ordering)
    got = consumer.poll(1, timeout=0)
    consumer.ack(got)
    client = reopen(client)
    consumer = client.subscribe(TOPIC, group="g", ordering=ordering)
    versions = []
    for _ in range(10):
        got = consumer.poll(10, timeout=0)
        versions.extend((d.key, d.version) for d in got)
        consumer.ack(got)
    assert [v for k, v in versions if k == b"a"] == [2, 3]
