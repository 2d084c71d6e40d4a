"""Reads of a cell's sealed segments from the store by an agent that does not own it
(engine/replica.py, decision 0042): what it answers is exactly what the owner's engine
answers, cut at the owner's tail; whatever it cannot answer for sure it leaves to the
owner (None), never a record the owner does not hold at that offset."""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.engine.engine import Engine
from odradek.engine.replica import CellReplica, read_stored_topics
from odradek.errors import StorageError
from odradek.storage.agent import StoreSettings, attach
from odradek.storage.checkpoint import latest_manifest
from odradek.storage.filecache import FileCache
from odradek.storage.manifestdisk import ManifestDisk
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import ObjectStore, open_store
from odradek.storage.storedisk import StoreDisk

SEGMENT = "64KiB"
ENGINE = {"retention_check_seconds": 3600.0}
ORDER = pa.schema([("id", pa.int64()), ("item", pa.string())])


class Owner:
    """An engine attached to a store, checkpointed when the test says."""

    def __init__(self, root: Path, store: ObjectStore) -> None:
        settings = StoreSettings(flush_seconds=0.002, checkpoint_seconds=3600.0)
        self.disk: StoreDisk = attach(str(root), store, settings)[0]
        self.engine = Engine(root, disk=self.disk, **ENGINE)  # type: ignore[arg-type]

    def checkpoint(self) -> None:
        self.disk.checkpoint()

    def close(self) -> None:
        self.engine.close()
        self.disk.detach()


@pytest.fixture
def store(request: pytest.FixtureRequest) -> ObjectStore:
    name = f"replica-{uuid.uuid4().hex}"
    request.addfinalizer(lambda: forget_memory_store(name))
    return open_store(f"memory://{name}/cell")


@pytest.fixture
def owner(store: ObjectStore, tmp_path: Path) -> Iterator[Owner]:
    made = Owner(tmp_path / "owner", store)
    yield made
    made.close()


def _replica(store: ObjectStore, tmp_path: Path, **options: float) -> CellReplica:
    return CellReplica(store, str(tmp_path / f"replica-{uuid.uuid4().hex[:6]}"), **options)  # type: ignore[arg-type]


def _fill(engine: Engine, topic: str, appends: int, per_append: int, seed: int = 7) -> None:
    chance = random.Random(seed)
    for number in range(appends):
        engine.append(
            topic,
            [
                {"key": b"k%d" % chance.randrange(40), "value": os.urandom(chance.randrange(20, 200))}
                for _ in range(per_append)
            ],
        )
        if number == appends // 2:
            engine.append(topic, [{"key": b"tombstone", "value": None}])


def _rows(batches: list[pa.RecordBatch] | None) -> list[dict[str, object]]:
    assert batches is not None
    return [row for batch in batches for row in batch.to_pylist()]


def _sealed_end(engine: Engine, topic: str) -> int:
    return engine._topic(topic).log.active.base_offset


def _agrees(replica: CellReplica, engine: Engine, topic: str, offset: int, records: int, size: int) -> None:
    """The replica's answer is the owner's, cut at the owner's tail; or it declines at
    or after the tail."""
    end = _sealed_end(engine, topic)
    got = replica.fetch(topic, offset, max_records=records, max_bytes=size)
    if offset >= end:
        assert got is None
        return
    wanted = [row for row in _rows(engine.fetch(topic, offset, max_records=records, max_bytes=size))]
    assert _rows(got) == [row for row in wanted if int(row["offset"]) < end]  # type: ignore[call-overload]


def test_the_replica_answers_what_the_owner_answers_up_to_its_tail(
    owner: Owner, store: ObjectStore, tmp_path: Path
) -> None:
    owner.engine.create_topic("t", segment_bytes=SEGMENT)
    _fill(owner.engine, "t", 120, 30)
    owner.checkpoint()
    end = _sealed_end(owner.engine, "t")
    assert end > 1000, "the test needs several sealed segments"
    replica = _replica(store, tmp_path)
    files = replica.topic("t")
    assert files is not None and files.first_offset == 0 and files.end_offset == end
    assert len(files.segments) >= 3
    for offset in (0, 1, 29, 30, end // 2, end - 1, end, end + 5):
        for records, size in ((1, 1), (100, 1 << 20), (5000, 10_000), (100_000, 64 << 20)):
            _agrees(replica, owner.engine, "t", offset, records, size)
    # A long read from 0 walks every sealed segment and stops at the tail.
    everything = _rows(replica.fetch("t", 0, max_records=1_000_000, max_bytes=1 << 30))
    assert [row["offset"] for row in everything] == list(range(end))
    assert replica.stats.fetches > 0 and replica.stats.declined > 0


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_fetch_agrees_with_the_owner(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject
) -> None:
    root = tmp_path_factory.mktemp("prop")
    name = f"replica-prop-{uuid.uuid4().hex}"
    store = open_store(f"memory://{name}/cell")
    made = Owner(root / "owner", store)
    try:
        made.engine.create_topic("t", segment_bytes=SEGMENT)
        _fill(
            made.engine,
            "t",
            data.draw(st.integers(10, 60), "appends"),
            25,
            seed=data.draw(st.integers(0, 99)),
        )
        made.checkpoint()
        replica = _replica(store, root)
        top = made.engine.describe_topic("t").next_offset
        for _ in range(5):
            offset = data.draw(st.integers(0, top + 2), "offset")
            records = data.draw(st.integers(1, 3000), "records")
            size = data.draw(st.integers(1, 1 << 20), "bytes")
            _agrees(replica, made.engine, "t", offset, records, size)
    finally:
        made.close()
        forget_memory_store(name)


def test_a_schemad_topic_reads_in_each_value_format(owner: Owner, store: ObjectStore, tmp_path: Path) -> None:
    owner.engine.create_topic("orders", schema=ORDER, segment_bytes=SEGMENT)
    for number in range(150):
        owner.engine.append(
            "orders",
            [
                {"key": b"o%d" % n, "value": {"id": n, "item": "x" * (n % 50)}}
                for n in range(40 * number, 40 * number + 40)
            ],
        )
    owner.checkpoint()
    replica = _replica(store, tmp_path)
    for value_format in ("typed", "json", "wire"):
        got = replica.fetch("orders", 10, max_records=500, max_bytes=1 << 20, value_format=value_format)
        wanted = owner.engine.fetch(
            "orders", 10, max_records=500, max_bytes=1 << 20, value_format=value_format
        )
        assert _rows(got) == _rows(wanted)
        assert got is not None and got[0].schema == wanted[0].schema


def test_what_the_replica_cannot_vouch_for_is_left_to_the_owner(
    owner: Owner, store: ObjectStore, tmp_path: Path
) -> None:
    replica = _replica(store, tmp_path, refresh_seconds=0.0)
    assert replica.fetch("t", 0, max_records=10, max_bytes=1 << 20) is None  # no manifest yet
    owner.engine.create_topic("t", segment_bytes=SEGMENT)
    owner.engine.create_topic("young", segment_bytes=SEGMENT)
    owner.engine.append("young", [{"value": b"only the tail"}])
    _fill(owner.engine, "t", 80, 30)
    owner.checkpoint()
    assert replica.fetch("young", 0, max_records=10, max_bytes=1 << 20) is None  # no sealed segment
    assert replica.fetch("absent", 0, max_records=10, max_bytes=1 << 20) is None
    assert replica.fetch("t", 0, max_records=10, max_bytes=1 << 20) is not None

    # Records deleted before an offset: the replica reads the log start from the
    # checkpoint and serves nothing below it.
    owner.engine.delete_records("t", 100)
    owner.checkpoint()
    assert replica.fetch("t", 99, max_records=10, max_bytes=1 << 20) is None
    _agrees(replica, owner.engine, "t", 100, 10, 1 << 20)

    # A topic deleted and created again: the new incarnation, once checkpointed.
    owner.engine.delete_topic("t")
    owner.checkpoint()
    assert replica.fetch("t", 200, max_records=10, max_bytes=1 << 20) is None
    owner.engine.create_topic("t", segment_bytes=SEGMENT)
    _fill(owner.engine, "t", 80, 30, seed=11)
    owner.checkpoint()
    files = replica.topic("t")
    assert files is not None and files.incarnation == owner.engine._topic("t").incarnation
    _agrees(replica, owner.engine, "t", 200, 300, 1 << 20)


def test_segments_collected_under_a_reader_are_read_again_from_the_newest_checkpoint(
    owner: Owner, store: ObjectStore, tmp_path: Path
) -> None:
    owner.engine.create_topic("c", cleanup="compact", segment_bytes=SEGMENT)
    _fill(owner.engine, "c", 60, 25)
    owner.checkpoint()
    replica = _replica(store, tmp_path, refresh_seconds=3600.0)  # it keeps its manifest
    before = replica.topic("c")
    assert before is not None and before.first_offset == 0
    assert owner.engine.compact(force=True)["c"].segments_rewritten > 0
    owner.checkpoint()  # the rewritten segments' old objects are collected
    owner.checkpoint()
    # The manifest the replica holds names objects that are gone: the read fails, the
    # replica reads the newest manifest and answers from it.
    for offset in (0, 500, before.end_offset - 1):
        _agrees(replica, owner.engine, "c", offset, 100, 1 << 20)
    assert replica.stats.manifests >= 2


def test_a_damaged_segment_is_never_served(owner: Owner, store: ObjectStore, tmp_path: Path) -> None:
    owner.engine.create_topic("t", segment_bytes=SEGMENT)
    _fill(owner.engine, "t", 80, 30)
    owner.checkpoint()
    manifest = latest_manifest(store)
    assert manifest is not None
    path = sorted(
        p for p, r in manifest.files.items() if p.startswith("topics/t/") and p.endswith(".log") and r.sealed
    )[0]
    piece = manifest.files[path].pieces[0]
    data = bytearray(store.get(piece.key) or b"")
    data[200] ^= 0xFF  # a bit flipped inside the first frame's body
    store.put(piece.key, bytes(data))
    replica = _replica(store, tmp_path)
    assert replica.fetch("t", 0, max_records=10, max_bytes=1 << 20) is None  # left to the owner
    assert replica.stats.declined == 1
    # The segments after it are served.
    files = replica.topic("t")
    assert files is not None and files.whole
    _agrees(replica, owner.engine, "t", files.segments[1].base_offset, 50, 1 << 20)

    # Its index damaged too: the scan finds the damage, and only the segments after it
    # are described; the topic's beginning is the owner's to say ("earliest").
    index = manifest.files[path[: -len(".log")] + ".index"].pieces[0]
    store.put(index.key, b"not an index")
    again = _replica(store, tmp_path)
    files = again.topic("t")
    assert files is not None and not files.whole and files.first_offset > 0
    assert again.fetch("t", 0, max_records=10, max_bytes=1 << 20) is None
    _agrees(again, owner.engine, "t", files.first_offset, 50, 1 << 20)


def test_a_compacted_topic_reads_with_its_gaps(owner: Owner, store: ObjectStore, tmp_path: Path) -> None:
    owner.engine.create_topic("c", cleanup="compact", segment_bytes=SEGMENT)
    _fill(owner.engine, "c", 60, 25)
    owner.engine.append("c", [{"key": b"last", "value": b"v"}])
    results = owner.engine.compact(force=True)
    assert results["c"].records_removed > 0
    owner.checkpoint()
    replica = _replica(store, tmp_path)
    for offset in (0, 7, 300, 900):
        _agrees(replica, owner.engine, "c", offset, 200, 1 << 20)


def test_a_checkpoint_read_from_the_store_refuses_every_write(
    store: ObjectStore, owner: Owner, tmp_path: Path
) -> None:
    owner.engine.create_topic("t", segment_bytes=SEGMENT)
    owner.checkpoint()
    manifest = latest_manifest(store)
    assert manifest is not None
    disk = ManifestDisk(manifest, FileCache(str(tmp_path / "cache"), store, 1 << 20))
    assert disk.isdir("topics/t") and disk.isfile("topics/t/topic.json")
    assert "topic.json" in disk.listdir("topics/t")
    with pytest.raises(FileNotFoundError):
        disk.read_bytes("topics/t/nothing")
    for write in (
        lambda: disk.open("topics/t/x", os.O_RDWR),
        lambda: disk.write_atomically("topics/t/topic.json", b"{}"),
        lambda: disk.remove("topics/t/topic.json"),
        lambda: disk.rename("topics/t", "topics/u"),
        lambda: disk.makedirs("topics/v"),
    ):
        with pytest.raises(StorageError, match="read-only"):
            write()


def _wildcard_rows(batches: Iterator[pa.RecordBatch]) -> dict[str, list[dict[str, object]]]:
    by_topic: dict[str, list[dict[str, object]]] = {}
    for batch in batches:
        for row in batch.to_pylist():
            by_topic.setdefault(str(row.pop("topic")), []).append(row)
    return by_topic


def test_a_wildcard_read_of_the_store_then_the_owner_is_the_owners_read(
    owner: Owner, store: ObjectStore, tmp_path: Path
) -> None:
    """A wildcard read's part of another cell (server.py ``_cell_part``): the store's
    part of every matching topic, then the owner's read continuing each where the store
    stopped, is exactly the owner's own read, in each topic's order, every record once;
    a schema'd topic's values as JSON text in both parts."""
    engine = owner.engine
    engine.create_topic("orders.a", segment_bytes=SEGMENT)
    engine.create_topic("orders.b", segment_bytes=SEGMENT, schema=ORDER)
    engine.create_topic("orders.c", segment_bytes=SEGMENT)  # only in its active segment
    engine.create_topic("other", segment_bytes=SEGMENT)
    _fill(engine, "orders.a", 80, 30)
    _fill(engine, "other", 80, 30)
    for start in range(0, 6000, 200):
        engine.append("orders.b", [{"value": {"id": n, "item": "x" * 40}} for n in range(start, start + 200)])
    engine.append("orders.c", [{"value": b"tail only"}])
    owner.checkpoint()
    engine.append("orders.a", [{"value": b"after the checkpoint"}])
    replica = _replica(store, tmp_path)
    assert replica.topics("orders.*") == ["orders.a", "orders.b", "orders.c"]

    starts: dict[str, tuple[int, str]] = {}
    stored = _wildcard_rows(
        read_stored_topics(replica, "orders.*", "earliest", 700, 1 << 20, starts, lambda: False)
    )
    assert sorted(stored) == ["orders.a", "orders.b"]  # orders.c has no sealed segment
    for name in stored:
        assert starts[name] == (_sealed_end(engine, name), engine.describe_topic(name).incarnation)
    rest = _wildcard_rows(engine.read("orders.*", wait=0, starts=starts))
    whole = _wildcard_rows(engine.read("orders.*", wait=0))
    assert sorted(whole) == ["orders.a", "orders.b", "orders.c"]
    for name, rows in whole.items():
        assert stored.get(name, []) + rest[name] == rows, name
    assert isinstance(stored["orders.b"][0]["value"], bytes)  # JSON text, as the owner's part

    # From an offset: where the store holds it; a topic it does not (orders.c) is the owner's.
    starts = {}
    stored = _wildcard_rows(read_stored_topics(replica, "orders.*", 1, 700, 1 << 20, starts, lambda: False))
    assert sorted(stored) == ["orders.a", "orders.b"] and stored["orders.a"][0]["offset"] == 1
    # Latest and times are the owner's to resolve: nothing from the store.
    assert list(read_stored_topics(replica, "orders.*", "latest", 700, 1 << 20, {}, lambda: False)) == []
    # A stopped read stops.
    assert list(read_stored_topics(replica, "orders.*", "earliest", 700, 1 << 20, {}, lambda: True)) == []


def test_an_owner_continues_where_the_store_stopped_only_for_the_same_topic(owner: Owner) -> None:
    """Engine.read's ``starts``: a topic deleted and created again since the store's
    part was read starts at its earliest; a start below what retention left starts at
    the first offset held; names the pattern does not match change nothing."""
    engine = owner.engine
    engine.create_topic("orders.a")
    engine.append("orders.a", [{"value": b"%d" % n} for n in range(10)])
    incarnation = engine.describe_topic("orders.a").incarnation

    def offsets(starts: dict[str, tuple[int, str]]) -> list[int]:
        return [
            row["offset"]
            for batch in engine.read("orders.*", wait=0, starts=starts)
            for row in batch.to_pylist()
        ]

    assert offsets({"orders.a": (4, incarnation)}) == list(range(4, 10))
    assert offsets({"orders.a": (4, "another")}) == list(range(10))
    assert offsets({"other": (4, incarnation)}) == list(range(10))
    engine.delete_records("orders.a", 6)
    assert offsets({"orders.a": (4, incarnation)}) == list(range(6, 10))
    engine.delete_topic("orders.a")
    engine.create_topic("orders.a")
    engine.append("orders.a", [{"value": b"new"}])
    assert offsets({"orders.a": (4, incarnation)}) == [0]
