"""Reducers: a topic's reducer snapshots each key on the server every ``snapshot_every``
events, in the background, from the key's latest snapshot; its failures are counted and
reported, never raised into appends; bad reducers are refused at creation.

Method: topics created with ``reducer="snapshot_reducers:..."`` (tests/engine/
snapshot_reducers.py, put on ``sys.path``); rounds run by hand with
``Engine.run_reducers()`` (the background thread's round), and once by the thread
itself, waited for with a generous deadline; results read with ``read_key(...,
from_snapshot=True)`` and ``describe_topic``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import odradek
from odradek.errors import InvalidRequest, TopicNotFound

sys.path.insert(0, str(Path(__file__).parent))

TOTAL = "snapshot_reducers:total"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[odradek.EmbeddedClient]:
    c = odradek.open(tmp_path / "data", fsync=False, retention_check_seconds=3600)
    yield c
    c.close()


def _append(client: odradek.EmbeddedClient, topic: str, key: bytes, values: list[bytes]) -> None:
    client.append(topic, [{"key": key, "value": value} for value in values])


def _numbers(start: int, count: int) -> list[bytes]:
    return [b"%d" % i for i in range(start, start + count)]


def test_keys_are_snapshotted_each_time_they_cross_a_multiple(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc", reducer=TOTAL, snapshot_every=10)
    _append(client, "acc", b"a", _numbers(0, 25))
    _append(client, "acc", b"b", _numbers(0, 5))
    assert client.engine.run_reducers() == {"acc": 1}
    table = client.read_key("acc", b"a", from_snapshot=True)
    assert table.to_pylist()[0] == {**table.to_pylist()[0], "snapshot": True, "version": 25}
    assert table.column("value")[0].as_py() == b"%d" % sum(range(25))
    assert client.read_key("acc", b"b", from_snapshot=True).column("snapshot").to_pylist() == [False] * 5
    # Below the next multiple nothing is made; crossing it folds from the snapshot.
    _append(client, "acc", b"a", _numbers(25, 4))
    assert client.engine.run_reducers() == {"acc": 0}
    _append(client, "acc", b"a", _numbers(29, 2))
    assert client.engine.run_reducers() == {"acc": 1}
    table = client.read_key("acc", b"a", from_snapshot=True)
    assert table.num_rows == 1 and table.column("value")[0].as_py() == b"%d" % sum(range(31))
    info = client.describe_topic("acc").snapshots
    assert info is not None
    assert info["reducer"] == TOTAL and info["snapshot_every"] == 10
    assert info["reducer_snapshots"] == 2 and info["reducer_failures"] == 0
    assert info["reducer_position"] == client.describe_topic("acc").next_offset


def test_a_failing_reducer_is_counted_and_never_blocks_appends(client: odradek.EmbeddedClient) -> None:
    client.create_topic("acc", reducer="snapshot_reducers:picky", snapshot_every=3)
    _append(client, "acc", b"broken", [b"1", b"bad", b"2"])
    _append(client, "acc", b"fine", [b"1", b"2", b"3"])
    assert client.engine.run_reducers() == {"acc": 1}
    info = client.describe_topic("acc").snapshots
    assert info is not None and info["reducer_failures"] == 1
    assert "cannot fold 'bad'" in info["reducer_last_error"]
    assert client.read_key("acc", b"fine", from_snapshot=True).column("version").to_pylist() == [3]
    assert client.read_key("acc", b"broken", from_snapshot=True).column("snapshot").to_pylist() == [False] * 3
    _append(client, "acc", b"broken", [b"4"])  # appends go on
    assert client.key_version("acc", b"broken") == 4


ORDER = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "note": {"type": "string"}},
    "required": ["n"],
}


def test_a_reducer_on_a_schemad_topic_gets_the_typed_values(client: odradek.EmbeddedClient) -> None:
    """On a schema'd topic the reducer's ``record["value"]`` is the typed value, a dict as
    ``read_key`` decodes it, and its state is bytes: the snapshot is the sum of ``n``
    folded from the previous snapshot, stored in the ``state`` column."""
    client.create_topic("orders", schema=ORDER, reducer="snapshot_reducers:typed_total", snapshot_every=4)
    client.append("orders", [{"key": b"a", "value": {"n": n, "note": f"#{n}"}} for n in range(6)])
    client.append("orders", [{"key": b"b", "value": '{"n": 7}'}])  # JSON text, stored typed
    assert client.engine.run_reducers() == {"orders": 1}
    table = client.read_key("orders", b"a", from_snapshot=True)
    assert table.column("snapshot").to_pylist() == [True]  # as of the last version folded
    assert (table.column("version")[0].as_py(), table.column("state")[0].as_py()) == (6, b"15")
    assert table.column("value").to_pylist() == [None]
    client.snapshot("orders", b"a", b"100", version=6)  # the same version replaces it
    client.append("orders", [{"key": b"a", "value": {"n": n}} for n in range(6, 8)])
    assert client.engine.run_reducers() == {"orders": 1}  # 8 crossed: folded from the snapshot at 6
    table = client.read_key("orders", b"a", from_snapshot=True)
    assert table.num_rows == 1 and table.column("version").to_pylist() == [8]
    assert table.column("state").to_pylist() == [b"113"]  # 100 + 6 + 7
    info = client.describe_topic("orders").snapshots
    assert info is not None and info["reducer_failures"] == 0, info
    # A reducer written for bytes fails on a dict: counted, the appends go on.
    client.create_topic("raw", schema=ORDER, reducer=TOTAL, snapshot_every=1)
    client.append("raw", [{"key": b"k", "value": {"n": 1}}])
    assert client.engine.run_reducers() == {"orders": 0, "raw": 0}
    info = client.describe_topic("raw").snapshots
    assert info is not None and info["reducer_failures"] == 1 and "dict" in info["reducer_last_error"]


def test_a_reducer_round_spans_two_schema_versions(client: odradek.EmbeddedClient) -> None:
    """One round reads records written under two versions of the topic's schema; the
    reducer gets every one in the newest version's shape (the older ones evolved)."""
    client.create_topic("orders", schema=ORDER, reducer="snapshot_reducers:typed_fields", snapshot_every=4)
    client.append("orders", [{"key": b"a", "value": {"n": n}} for n in range(2)])
    newer = {**ORDER, "properties": {**ORDER["properties"], "gift": {"type": "boolean"}}}
    client.set_schema("orders", newer)
    client.append("orders", [{"key": b"a", "value": {"n": n, "gift": True}} for n in range(2, 4)])
    assert client.engine.run_reducers() == {"orders": 1}
    table = client.read_key("orders", b"a", from_snapshot=True)
    assert table.column("version").to_pylist() == [4]
    folded = json.loads(table.column("state")[0].as_py())
    assert folded == {"total": 6, "fields": [["gift", "n", "note"]] * 4, "gifts": [None, None, True, True]}


@pytest.mark.parametrize("reducer", ["snapshot_reducers:wrong_type", "snapshot_reducers:nothing"])
def test_a_reducer_without_bytes_stores_nothing(client: odradek.EmbeddedClient, reducer: str) -> None:
    client.create_topic("acc", reducer=reducer, snapshot_every=2)
    _append(client, "acc", b"k", [b"1", b"2"])
    assert client.engine.run_reducers() == {"acc": 0}
    assert client.read_key("acc", b"k", from_snapshot=True).column("snapshot").to_pylist() == [False] * 2
    info = client.describe_topic("acc").snapshots
    assert info is not None
    assert info["reducer_failures"] == (1 if "wrong" in reducer else 0)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"reducer": "snapshot_reducers:missing"}, "cannot be loaded"),
        ({"reducer": "no_such_module_here:f"}, "cannot be loaded"),
        ({"reducer": "no-such-entry-point"}, "import path"),
        ({"reducer": "unregistered_entry_point"}, "no entry point"),
        ({"reducer": "snapshot_reducers:not_callable"}, "not callable"),
        ({"reducer": 3}, "import path"),
        ({"reducer": TOTAL, "snapshot_every": 0}, "snapshot_every"),
        ({"reducer": TOTAL, "snapshot_every": True}, "snapshot_every"),
        ({"reducer": TOTAL, "snapshot_every": 10**10}, "snapshot_every"),
    ],
)
def test_bad_reducers_are_refused_and_nothing_is_created(
    client: odradek.EmbeddedClient, options: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=message):
        client.create_topic("acc", **options)  # type: ignore[arg-type]
    with pytest.raises(TopicNotFound):
        client.describe_topic("acc")


def test_the_position_survives_a_reopen(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data", retention_check_seconds=3600) as client:
        client.create_topic("acc", reducer=TOTAL, snapshot_every=5)
        _append(client, "acc", b"k", _numbers(0, 7))
        assert client.engine.run_reducers() == {"acc": 1}
        _append(client, "acc", b"k", _numbers(7, 2))  # not yet at 10
        assert client.engine.run_reducers() == {"acc": 0}
    with odradek.open(tmp_path / "data", retention_check_seconds=3600) as client:
        assert client.engine.run_reducers() == {"acc": 0}  # nothing read twice
        _append(client, "acc", b"k", _numbers(9, 1))
        assert client.engine.run_reducers() == {"acc": 1}
        table = client.read_key("acc", b"k", from_snapshot=True)
        assert table.column("version").to_pylist() == [10]
        assert table.column("value")[0].as_py() == b"%d" % sum(range(10))


def test_the_background_thread_makes_the_snapshots(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "data", fsync=False, retention_check_seconds=0.05) as client:
        client.create_topic("acc", reducer=TOTAL, snapshot_every=4)
        _append(client, "acc", b"k", _numbers(0, 4))
        deadline = time.monotonic() + 60
        while not client.read_key("acc", b"k", from_snapshot=True).column("snapshot")[0].as_py():
            assert time.monotonic() < deadline, "the reducer thread made no snapshot in 60 s"
            time.sleep(0.02)
        assert client.read_key("acc", b"k", from_snapshot=True).column("value")[0].as_py() == b"6"
