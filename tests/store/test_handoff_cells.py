"""A topic handed from one cell to another through the store (decision 0031, step 2).

Goal: two engines on two cells of one store (``cells/a`` and ``cells/b`` under one
prefix, ``ObjectStore.child``): a topic released by A and adopted by B is served by B
whole (records, key versions, producer sequences), by reference (nothing copied: B's
records name A's objects); A no longer lists it; A's restart, whose sweep deletes
unnamed objects, leaves B's data intact; B deleting the topic deletes A's objects and
A's next start drops the spent handoff; a topic moves back to A; a claim held by a live
cell refuses a second adopter, a stale one (its cell restarted since) is taken over; a
store on another backend is refused.

Method: engines on a directory store and on the in-memory store, with real
checkpoints; stops in between are covered in test_handoff.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from stores import moto_store

from odradek.engine.engine import Engine
from odradek.errors import InvalidRequest, TopicNotFound, Unavailable
from odradek.storage import handoff
from odradek.storage import manifest as mf
from odradek.storage.agent import StoreSettings, claim_epoch
from odradek.storage.checkpoint import latest_manifest
from odradek.storage.objects import ObjectStore, list_all, open_store
from odradek.storage.storedisk import StoreDisk

SETTINGS = StoreSettings(flush_seconds=0.002)


@pytest.fixture(params=["file", "memory", "moto"])
def root(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield open_store(f"file://{tmp_path / 'store'}")
    elif request.param == "memory":
        yield open_store(f"memory://cells-{uuid.uuid4().hex}")
    else:  # S3's conditional writes, as a real server answers them
        store = moto_store(request.getfixturevalue("moto_s3"))
        yield open_store(store.url, options=store.options)


def _engine(tmp_path: Path, store: ObjectStore, name: str) -> Engine:
    return Engine(tmp_path / name, store=store, store_settings=SETTINGS, retention_check_seconds=3600)


def _fill(engine: Engine) -> int:
    engine.create_topic("orders", segment_bytes="64KiB", retention=None)
    version = 0
    for batch in range(60):
        records = [{"key": f"k{i % 7}".encode(), "value": f"{batch}:{i}:".encode() * 40} for i in range(10)]
        version = engine.append("orders", records, producer=("p1", batch)).versions[b"k0"]
    return version


def _values(engine: Engine, topic: str = "orders") -> list[bytes]:
    batches = list(engine.read(topic, wait=0))
    if not batches:
        return []
    return pa.concat_tables([pa.Table.from_batches([b]) for b in batches]).column("value").to_pylist()


def _files(store: ObjectStore) -> set[str]:
    return {key for key, _ in list_all(store, mf.FILES)}


def test_a_topic_moves_to_another_cell_by_reference(tmp_path: Path, root: ObjectStore) -> None:
    cell_a, cell_b = root.child("cells/a"), root.child("cells/b")
    with _engine(tmp_path, cell_a, "a") as a:
        version = _fill(a)
        expected = _values(a)
        a.release_topic("orders")
        objects_a = _files(cell_a)
        with _engine(tmp_path, cell_b, "b") as b:
            b.adopt_topic("orders", source=cell_a)
            assert _values(b) == expected
            copied = [key for key in _files(cell_b) if key.startswith("files/topics/")]
            assert not copied, f"the adoption copied objects: {copied[:3]}"
            assert isinstance(b.disk, StoreDisk)
            foreign = {p.key for r in b.disk.checkpointer.records.values() for p in r.pieces}  # type: ignore[union-attr]
            assert any(key.startswith(cell_a.absolute("")) for key in foreign), "B does not name A's objects"
            after = b.append("orders", [{"key": b"k0", "value": b"on b"}], expect={b"k0": version})
            assert after.versions == {b"k0": version + 1}
            assert b.append("orders", [{"key": b"k1", "value": b"dup"}], producer=("p1", 59)).duplicate
            assert a.released_topics() == []  # adopted elsewhere
            with pytest.raises(TopicNotFound):
                a.adopt_topic("orders")
            assert handoff.list_handoffs(cell_a)["orders"].adopted_by == cell_b.absolute("")
    # A restarts: its sweep of unnamed objects spares what B names.
    manifest_b = latest_manifest(cell_b)
    assert manifest_b is not None
    named_by_b = {cell_a.local(key) for key in manifest_b.keys() if key.startswith(cell_a.absolute(""))}
    assert named_by_b and named_by_b <= objects_a
    with _engine(tmp_path, cell_a, "a2") as a:
        assert a.list_topics() == [] and a.released_topics() == []
        assert named_by_b <= _files(cell_a)
    with _engine(tmp_path, cell_b, "b2") as b:  # B from an empty cache: everything there
        assert _values(b) == [*expected, b"on b"]


def test_deleting_a_moved_topic_deletes_the_first_cells_objects(tmp_path: Path, root: ObjectStore) -> None:
    cell_a, cell_b = root.child("cells/a"), root.child("cells/b")
    with _engine(tmp_path, cell_a, "a") as a:
        _fill(a)
        a.release_topic("orders")
    with _engine(tmp_path, cell_b, "b") as b:
        b.adopt_topic("orders", source=cell_a)
        b.delete_topic("orders")
        assert isinstance(b.disk, StoreDisk)
        b.disk.checkpoint()  # its garbage collection deletes what it no longer names
    left = _files(cell_a)
    assert not any(key.startswith("files/topics/orders/") for key in left), sorted(left)[:5]
    with _engine(tmp_path, cell_a, "a2"):
        pass  # the sweep at start finds the adopted handoff spent
    assert handoff.list_handoffs(cell_a) == {}


def test_a_topic_moves_back(tmp_path: Path, root: ObjectStore) -> None:
    cell_a, cell_b = root.child("cells/a"), root.child("cells/b")
    with _engine(tmp_path, cell_a, "a") as a, _engine(tmp_path, cell_b, "b") as b:
        _fill(a)
        a.release_topic("orders")
        b.adopt_topic("orders", source=cell_a)
        b.append("orders", [{"key": b"k0", "value": b"on b"}])
        expected = _values(b)
        b.release_topic("orders")
        a.adopt_topic("orders", source=cell_b)
        assert _values(a) == expected
        a.append("orders", [{"key": b"k0", "value": b"back on a"}])
        assert handoff.list_handoffs(cell_a) == {}, "A's old handoff stayed"
        assert isinstance(a.disk, StoreDisk)
        a.disk.checkpoint()
    with _engine(tmp_path, cell_a, "a2") as a:
        assert _values(a) == [*expected, b"back on a"]


def test_claims(tmp_path: Path, root: ObjectStore) -> None:
    cell_a, cell_b, cell_c = root.child("cells/a"), root.child("cells/b"), root.child("cells/c")
    with _engine(tmp_path, cell_a, "a") as a:
        _fill(a)
        a.release_topic("orders")
        released = handoff.list_handoffs(cell_a)["orders"]
        # C claims it and is alive (its epoch is the latest of its cell).
        live = claim_epoch(cell_c)
        assert handoff.claim(cell_a, released, cell_c.absolute(""), live)
        with _engine(tmp_path, cell_b, "b") as b:
            with pytest.raises(Unavailable, match=f"being adopted by {cell_c.absolute('')}"):
                b.adopt_topic("orders", source=cell_a)
            claim_epoch(cell_c)  # C restarted: its claim is stale
            b.adopt_topic("orders", source=cell_a)
            assert len(_values(b)) == 600


def test_a_store_on_another_backend_is_refused(tmp_path: Path) -> None:
    first, other = open_store("memory://"), open_store("memory://")
    with _engine(tmp_path, first, "a") as a, _engine(tmp_path, other, "b") as b:
        a.create_topic("orders")
        a.release_topic("orders")
        with pytest.raises(InvalidRequest, match="same backend"):
            b.adopt_topic("orders", source=first)
