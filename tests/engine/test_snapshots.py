"""Key snapshots: a snapshot is stored for a key as of one of its versions, read back as
the first row of ``read_key(from_snapshot=True)`` before the later events, refused
clearly when its version is impossible or stale, invisible as a topic, and kept across
a reopen; only the latest snapshot of a key stays once its log is compacted.

Method: topics filled through the embedded client; snapshots written with
``client.snapshot``; reads compared with the events appended (and with a fold of the
whole stream, for a reducer). Hypothesis draws the appends and the versions
snapshotted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator

import hypothesis.strategies as st
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings

import odradek
from odradek import limits
from odradek.engine.snapshots import DIRECTORY
from odradek.errors import ConflictError, InvalidRequest, RequestTooLarge, StorageError, TopicNotFound
from odradek.storage.faults import FaultyDisk


@pytest.fixture
def client(tmp_path: str) -> Iterator[odradek.EmbeddedClient]:
    c = odradek.open(str(tmp_path), fsync=False)
    yield c
    c.close()


def _fill(client: odradek.EmbeddedClient, topic: str, key: bytes, count: int, start: int = 0) -> None:
    client.append(topic, [{"key": key, "value": str(start + i).encode()} for i in range(count)])


def _fold(rows: list[dict[str, object]]) -> int:
    """A reducer: the sum of the values (a snapshot's state is the sum so far)."""
    total = 0
    for row in rows:
        value = row["value"]
        assert isinstance(value, bytes)
        total = int(value) if row.get("snapshot") else total + int(value)
    return total


def test_read_from_snapshot_is_the_snapshot_then_the_later_events(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc")
    _fill(client, "acc", b"k", 10)
    client.append("acc", [{"key": b"other", "value": b"5"}])
    client.snapshot("acc", b"k", str(sum(range(6))).encode(), version=6)
    table = client.read_key("acc", b"k", from_snapshot=True)
    assert table.column_names == ["offset", "timestamp", "key", "value", "headers", "version", "snapshot"]
    assert table.column("snapshot").to_pylist() == [True, False, False, False, False]
    assert table.column("version").to_pylist() == [6, 7, 8, 9, 10]
    assert table.column("value").to_pylist() == [b"15", b"6", b"7", b"8", b"9"]
    assert table.column("offset").to_pylist() == [5, 6, 7, 8, 9]  # the snapshot: version 6's offset
    assert table.column("headers").to_pylist()[0] == []
    assert _fold(table.to_pylist()) == sum(range(10))
    # Without from_snapshot nothing changed for the caller: no snapshot column.
    plain = client.read_key("acc", b"k")
    assert "snapshot" not in plain.column_names
    assert plain.column("version").to_pylist() == list(range(1, 11))


def test_a_key_without_a_snapshot_reads_its_whole_stream_flagged(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc")
    _fill(client, "acc", b"k", 3)
    table = client.read_key("acc", b"k", from_snapshot=True)
    assert table.column("snapshot").to_pylist() == [False, False, False]
    assert table.column("version").to_pylist() == [1, 2, 3]
    empty = client.read_key("acc", b"none", from_snapshot=True)
    assert empty.num_rows == 0 and "snapshot" in empty.column_names


def test_a_snapshot_of_the_current_version_leaves_no_events(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc")
    _fill(client, "acc", b"k", 4)
    client.snapshot("acc", "k", b"6", version=4)  # a str key is its UTF-8
    table = client.read_key("acc", b"k", from_snapshot=True)
    assert table.to_pylist()[0]["snapshot"] and table.num_rows == 1
    _fill(client, "acc", b"k", 2, start=4)
    assert client.read_key("acc", b"k", from_snapshot=True).column("version").to_pylist() == [4, 5, 6]


def test_the_latest_snapshot_wins_and_the_same_version_replaces(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc")
    _fill(client, "acc", b"k", 10)
    client.snapshot("acc", b"k", b"first", version=3)
    client.snapshot("acc", b"k", b"second", version=7)
    client.snapshot("acc", b"k", b"third", version=7)
    table = client.read_key("acc", b"k", from_snapshot=True)
    assert table.to_pylist()[0]["value"] == b"third"
    assert table.column("version").to_pylist() == [7, 8, 9, 10]


def test_impossible_or_stale_versions_are_refused_and_change_nothing(
    client: odradek.EmbeddedClient, tmp_path: str
) -> None:
    client.create_topic("acc")
    _fill(client, "acc", b"k", 5)
    with pytest.raises(InvalidRequest, match="at version 5: a snapshot as of version 6"):
        client.snapshot("acc", b"k", b"s", version=6)
    with pytest.raises(InvalidRequest, match="at version 0"):
        client.snapshot("acc", b"never", b"s", version=1)
    for bad in (0, -1, True, "3", 2.0, None):
        with pytest.raises(InvalidRequest, match="version must be an int >= 1"):
            client.snapshot("acc", b"k", b"s", version=bad)  # type: ignore[arg-type]
    for state in ("text", None, 3, [b"a"]):
        with pytest.raises(InvalidRequest, match="state must be bytes"):
            client.snapshot("acc", b"k", state, version=2)  # type: ignore[arg-type]
    with pytest.raises(RequestTooLarge, match="snapshot_state_bytes_max"):
        client.snapshot("acc", b"k", b"x" * (limits.snapshot_state_bytes_max + 1), version=2)
    with pytest.raises(InvalidRequest, match="a key must be bytes or str"):
        client.snapshot("acc", 7, b"s", version=2)  # type: ignore[arg-type]
    with pytest.raises(TopicNotFound):
        client.snapshot("missing", b"k", b"s", version=1)
    # Refused before anything was written: the snapshot log was not even created.
    assert not os.path.exists(os.path.join(str(tmp_path), "topics", "acc", DIRECTORY))
    client.snapshot("acc", b"k", b"at4", version=4)
    with pytest.raises(ConflictError, match="snapshot as of version 4") as refused:
        client.snapshot("acc", b"k", b"at2", version=2)
    assert (refused.value.key, refused.value.expected, refused.value.actual) == (b"k", 2, 4)
    table = client.read_key("acc", b"k", from_snapshot=True)
    assert table.to_pylist()[0]["value"] == b"at4"
    assert table.column("version").to_pylist() == [4, 5]


def test_read_key_options_are_checked(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc")
    _fill(client, "acc", b"k", 3)
    with pytest.raises(InvalidRequest, match="leave from_version and to_version out"):
        client.read_key("acc", b"k", 2, from_snapshot=True)
    with pytest.raises(InvalidRequest, match="leave from_version and to_version out"):
        client.read_key("acc", b"k", to_version=2, from_snapshot=True)
    with pytest.raises(InvalidRequest, match="from_snapshot must be True or False"):
        client.read_key("acc", b"k", from_snapshot=1)  # type: ignore[arg-type]


SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def test_a_schemad_topic_reads_its_snapshot_state_beside_its_typed_events(
    client: odradek.EmbeddedClient,
) -> None:
    """On a schema'd topic the state stays bytes: it comes in a ``state`` column of the
    snapshot row (whose typed ``value`` is null), and the later events come as a plain
    ``read_key`` returns them, typed, with a null ``state``."""
    client.create_topic("typed", schema=SCHEMA)
    client.append("typed", [{"key": b"k", "value": {"n": n}} for n in range(5)])
    client.snapshot("typed", b"k", b"state-at-3", version=3)
    table = client.read_key("typed", b"k", from_snapshot=True)
    plain = client.read_key("typed", b"k", from_version=4)
    assert table.column_names == [*plain.column_names, "snapshot", "state"]
    assert table.schema.field("value").type == plain.schema.field("value").type
    assert table.column("snapshot").to_pylist() == [True, False, False]
    assert table.column("state").to_pylist() == [b"state-at-3", None, None]
    assert table.column("value").to_pylist() == [None, *plain.column("value").to_pylist()]
    assert table.column("version").to_pylist() == [3, 4, 5]
    assert table.column("offset").to_pylist() == [2, 3, 4]
    unsnapshotted = client.read_key("typed", b"other", from_snapshot=True)
    assert unsnapshotted.num_rows == 0 and unsnapshotted.column_names == table.column_names
    client.snapshot("typed", b"k", b"state-at-5", version=5)
    latest = client.read_key("typed", b"k", from_snapshot=True)
    assert latest.num_rows == 1 and latest.column("state").to_pylist() == [b"state-at-5"]
    with pytest.raises(InvalidRequest, match="must be bytes"):
        client.snapshot("typed", b"k", {"n": 1}, version=5)  # type: ignore[arg-type]


def test_snapshot_cleanup_reducers_and_schemas_combine(client: odradek.EmbeddedClient) -> None:
    """A schema'd topic can have ``cleanup="snapshot"`` and a reducer from its creation,
    by ``alter_topic``, or by ``set_schema`` on an empty topic that has them."""
    info = client.create_topic("typed", schema=SCHEMA, cleanup="snapshot")
    assert info.config["cleanup"] == "snapshot" and info.schema is not None
    client.create_topic("altered", schema=SCHEMA)
    assert client.alter_topic("altered", cleanup="snapshot").config["cleanup"] == "snapshot"
    client.create_topic("accounts", cleanup="snapshot")
    client.set_schema("accounts", SCHEMA)
    client.create_topic("reduced", reducer="odradek.views.reducers:latest")
    client.set_schema("reduced", SCHEMA)
    client.create_topic("both", schema=SCHEMA, reducer="odradek.views.reducers:latest")
    for name in ("accounts", "reduced", "both"):
        assert client.describe_topic(name).schema is not None
    client.append("accounts", [{"key": b"k", "value": {"n": 1}}])
    client.snapshot("accounts", b"k", b"s", version=1)
    assert client.read_key("accounts", b"k", from_snapshot=True).column("state").to_pylist() == [b"s"]


def test_the_snapshot_log_is_no_topic_and_goes_with_its_topic(
    client: odradek.EmbeddedClient, tmp_path: str
) -> None:
    client.create_topic("orders.eu")
    _fill(client, "orders.eu", b"k", 3)
    client.snapshot("orders.eu", b"k", b"s", version=2)
    assert client.list_topics() == ["orders.eu"]
    assert client.list_topics("orders.>") == ["orders.eu"]
    assert client.list_topics(">") == ["orders.eu"]
    rows = sum(batch.num_rows for batch in client.read("orders.>", wait=0))
    assert rows == 3  # a wildcard read sees the events only
    assert client.describe_topic("orders.eu").next_offset == 3
    client.delete_topic("orders.eu")
    assert not os.path.exists(os.path.join(str(tmp_path), "topics", "orders.eu"))
    client.create_topic("orders.eu")
    _fill(client, "orders.eu", b"k", 3)
    assert client.read_key("orders.eu", b"k", from_snapshot=True).column("snapshot").to_pylist() == [
        False,
        False,
        False,
    ]


def test_snapshots_survive_a_reopen_and_compaction_keeps_the_latest(tmp_path: str) -> None:
    with odradek.open(str(tmp_path)) as client:
        client.create_topic("acc")
        for key in (b"a", b"b"):
            _fill(client, "acc", key, 50)
            for version in range(1, 51):
                client.snapshot("acc", key, str(version).encode(), version=version)
    with odradek.open(str(tmp_path)) as client:
        companion = client.engine._topic("acc").snapshots.companion()
        assert companion is not None
        assert companion.durable_offset == 100
        client.engine._topic("acc").snapshots.compact(None, force=True, throttle=None)
        for key in (b"a", b"b"):
            table = client.read_key("acc", key, from_snapshot=True)
            assert table.to_pylist()[0]["value"] == b"50" and table.num_rows == 1
        kept = sum(batch.num_rows for batch in companion.fetch(companion.first_offset, 1000, 1 << 30))
        assert kept <= 100  # compaction may leave the active segment's rows
        with pytest.raises(ConflictError):
            client.snapshot("acc", b"a", b"old", version=49)


def test_compaction_of_the_snapshot_log_keeps_only_the_latest(tmp_path: str) -> None:
    with odradek.open(str(tmp_path), fsync=False) as client:
        client.create_topic("acc")
        _fill(client, "acc", b"k", 3000)
        topic = client.engine._topic("acc")
        companion = topic.snapshots.companion(create=True)
        assert companion is not None
        small = dataclasses.replace(companion.config, segment_bytes=64 * 1024)
        companion.config = companion.log.config = small  # many sealed segments to compact
        for version in range(1, 3001, 3):
            client.snapshot("acc", b"k", b"state-%d" % version + b"." * 200, version=version)
        assert len(companion.log.segments) > 2
        client.engine.compact(force=True)
        rows = pa.Table.from_batches(companion.fetch(companion.first_offset, 10_000, 1 << 30))
        assert rows.num_rows < 1000 / 4, "compaction kept old snapshots"
        assert client.read_key("acc", b"k", from_snapshot=True).to_pylist()[0]["version"] == 2998


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    appends=st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.integers(1, 30)), max_size=12),
    picks=st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.floats(0, 1)), max_size=6),
)
def test_folding_from_the_snapshot_equals_folding_the_whole_stream(
    tmp_path_factory: pytest.TempPathFactory,
    appends: list[tuple[bytes, int]],
    picks: list[tuple[bytes, float]],
) -> None:
    """Property: for a reducer (a sum), whatever versions are snapshotted (each with the
    fold of the events up to it, never going back), fold(read_key(from_snapshot=True))
    is fold(read_key()) on every key."""
    with odradek.open(str(tmp_path_factory.mktemp("fold")), fsync=False) as client:
        client.create_topic("t")
        counter = 0
        for key, count in appends:
            _fill(client, "t", key, count, start=counter)
            counter += count
        _check_folds(client, picks, _fold)


def _check_folds(
    client: odradek.EmbeddedClient,
    picks: list[tuple[bytes, float]],
    fold: Callable[[list[dict[str, object]]], int],
    *,
    typed: bool = False,
) -> None:
    """Snapshot topic ``t``'s keys at the versions ``picks`` say (each with the fold of
    the events up to it, never going back), then check that fold(read_key(from_snapshot=
    True)) is fold(read_key()) on every key, and the rows a snapshot starts."""
    taken: dict[bytes, int] = {}
    for key, share in picks:
        current = client.key_version("t", key)
        if current == 0:
            continue
        version = max(taken.get(key, 1), round(share * current) or 1)
        prefix = client.read_key("t", key, to_version=version).to_pylist()
        client.snapshot("t", key, str(fold(prefix)).encode(), version=version)
        taken[key] = version
    for key in (b"a", b"b", b"c"):
        full = client.read_key("t", key).to_pylist()
        from_snapshot = client.read_key("t", key, from_snapshot=True).to_pylist()
        assert fold(from_snapshot) == fold(full)
        if key in taken:
            assert from_snapshot[0]["snapshot"] and from_snapshot[0]["version"] == taken[key]
            assert len(from_snapshot) == len(full) - taken[key] + 1
            if typed:
                assert from_snapshot[1:] == [
                    {**row, "snapshot": False, "state": None} for row in full[taken[key] :]
                ]


def _fold_typed(rows: list[dict[str, object]]) -> int:
    """``_fold`` for a schema'd topic: the state in ``state``, the events' ``n`` typed."""
    total = 0
    for row in rows:
        if row.get("snapshot"):
            state = row["state"]
            assert isinstance(state, bytes) and row["value"] is None
            total = int(state)
        else:
            value = row["value"]
            assert isinstance(value, dict)
            total += value["n"]
    return total


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    appends=st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.integers(1, 30)), max_size=12),
    picks=st.lists(st.tuples(st.sampled_from([b"a", b"b", b"c"]), st.floats(0, 1)), max_size=6),
)
def test_folding_a_schemad_key_from_the_snapshot_equals_folding_the_whole_stream(
    tmp_path_factory: pytest.TempPathFactory,
    appends: list[tuple[bytes, int]],
    picks: list[tuple[bytes, float]],
) -> None:
    """Property: as for untyped topics, on a schema'd topic whatever versions are
    snapshotted (each with the fold of the typed events up to it, as bytes),
    fold(read_key(from_snapshot=True)) is fold(read_key()) on every key."""
    with odradek.open(str(tmp_path_factory.mktemp("fold")), fsync=False) as client:
        client.create_topic("t", schema=SCHEMA)
        counter = 0
        for key, count in appends:
            client.append("t", [{"key": key, "value": {"n": counter + i}} for i in range(count)])
            counter += count
        _check_folds(client, picks, _fold_typed, typed=True)


def test_a_snapshot_waits_for_its_events_to_be_durable(tmp_path: str) -> None:
    """Goal: a snapshot never outlives the events it covers. Method: the fsync of the
    topic's segments fails; an append is written (not yet durable) and a snapshot of its
    version is asked: the snapshot must wait for that fsync, so it fails with it and
    nothing is stored (else a crash could keep the snapshot and lose the event)."""
    disk = FaultyDisk()
    with odradek.open(str(tmp_path), disk=disk) as client:
        client.create_topic("acc")
        _fill(client, "acc", b"k", 1)
        disk.fail_syncs(paths=os.path.join("acc", "0000"))  # the topic's segments, not its snapshots
        pending = client.engine.submit_append("acc", [{"key": b"k", "value": b"1"}])
        with pytest.raises(StorageError):
            client.snapshot("acc", b"k", b"state", version=2)
        with pytest.raises(StorageError):
            pending.wait()
        disk.heal()
        assert client.engine._topic("acc").snapshots.companion() is None  # nothing stored
        assert client.read_key("acc", b"k", from_snapshot=True).column("snapshot").to_pylist()[0] is False


def test_a_snapshot_read_bounded_by_events_max_is_a_prefix_of_the_whole(
    client: odradek.EmbeddedClient,
) -> None:
    """``KeySnapshots.read_key(events_max=N)`` (what a paging door asks): the snapshot
    row and the first N events after it, as the unbounded read gives them."""
    client.create_topic("acc")
    _fill(client, "acc", b"k", 10)
    snapshots = client.engine._topic("acc").snapshots
    unsnapshotted = snapshots.read_key(b"k", events_max=3)
    assert unsnapshotted.column("version").to_pylist() == [1, 2, 3]
    assert unsnapshotted.column("snapshot").to_pylist() == [False, False, False]
    client.snapshot("acc", b"k", b"at4", version=4)
    whole = client.read_key("acc", b"k", from_snapshot=True)
    for events_max in (1, 2, 6, 50):
        bounded = snapshots.read_key(b"k", events_max=events_max)
        assert bounded.to_pylist() == whole.slice(0, 1 + events_max).to_pylist()
    for bad in (0, -1, True, 2.0):
        with pytest.raises(InvalidRequest, match="events_max"):
            snapshots.read_key(b"k", events_max=bad)  # type: ignore[arg-type]
