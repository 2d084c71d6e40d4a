"""Releasing a topic to the object store and adopting it (decision 0030, step 1).

Goal: ``Engine.release_topic`` lets go of one topic while the engine runs and
``Engine.adopt_topic`` takes it up again, on the same engine or on another one attached
to the same store later, with nothing lost or changed: records and values, key versions
(``expect=`` continues), the schema, the configuration, the idempotent producer's
sequence (a retry is not written twice), sealed segments left in the store. While it is
released the topic is not listed, calls on it fail with ``NotOwner``, its name cannot be
created anew, and garbage collection (checkpoints, a restart's sweep) keeps its files.
A release or adoption cut short by a stop is finished or undone at the next start,
from what the store holds; a failed adoption leaves the topic released.

Method: engines on a directory store (file://) and on the in-memory store, real
checkpoints; the cut-short states are made by stopping at each step (a step made to
fail, or the store's objects written as the step would have left them).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from odradek.engine.engine import Engine
from odradek.errors import NotOwner, StorageError, TopicExists, TopicNotFound, Unavailable
from odradek.storage import handoff
from odradek.storage import manifest as mf
from odradek.storage.agent import StoreSettings
from odradek.storage.checkpoint import latest_manifest
from odradek.storage.objects import ObjectStore, list_all, open_store
from odradek.storage.storedisk import StoreDisk

SETTINGS = StoreSettings(flush_seconds=0.002)
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.fixture(params=["file", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    if request.param == "file":
        yield open_store(f"file://{tmp_path / 'store'}")
    else:
        yield open_store("memory://")


def _engine(tmp_path: Path, store: ObjectStore, name: str) -> Engine:
    return Engine(tmp_path / name, store=store, store_settings=SETTINGS, retention_check_seconds=3600)


BATCHES = 60


def _fill(engine: Engine) -> int:
    """Two topics: ``orders`` (several sealed segments, keys, a producer) and ``other``;
    returns the version of key k0 in ``orders``."""
    engine.create_topic("orders", segment_bytes="64KiB", retention=None)
    engine.create_topic("other")
    version = 0
    for batch in range(BATCHES):
        records = [{"key": f"k{i % 7}".encode(), "value": f"{batch}:{i}:".encode() * 40} for i in range(10)]
        version = engine.append("orders", records, producer=("p1", batch)).versions[b"k0"]
    engine.append("other", [{"key": b"x", "value": b"1"}])
    return version


def _values(engine: Engine, topic: str) -> list[bytes]:
    batches = list(engine.read(topic, wait=0))
    if not batches:
        return []
    return pa.concat_tables([pa.Table.from_batches([b]) for b in batches]).column("value").to_pylist()


def _state(engine: Engine) -> tuple[list[bytes], dict[str, object]]:
    info = engine.describe_topic("orders")
    return _values(engine, "orders"), {
        "next_offset": info.next_offset,
        "keys": info.keys,
        "segments": info.segments,
        "incarnation": info.incarnation,
        "config": info.config,
    }


def _released_is_not_served(engine: Engine) -> None:
    assert "orders" not in engine.list_topics()
    assert engine.released_topics() == ["orders"]
    with pytest.raises(NotOwner, match="released"):
        engine.append("orders", [{"key": b"k0", "value": b"no"}])
    with pytest.raises(NotOwner):
        engine.describe_topic("orders")
    with pytest.raises(TopicExists, match="released"):
        engine.create_topic("orders")
    assert _values(engine, "other") == [b"1"]  # the other topic is untouched


def test_release_then_adopt_on_the_same_engine(tmp_path: Path, store: ObjectStore) -> None:
    with _engine(tmp_path, store, "a") as engine:
        version = _fill(engine)
        before = _state(engine)
        engine.release_topic("orders")
        _released_is_not_served(engine)
        assert handoff.list_handoffs(store).keys() == {"orders"}
        engine.adopt_topic("orders")
        assert _state(engine) == before
        assert engine.released_topics() == []
        assert handoff.list_handoffs(store) == {}
        # Key versions and the producer's sequence continue across the handoff.
        after = engine.append("orders", [{"key": b"k0", "value": b"next"}], expect={b"k0": version})
        assert after.versions == {b"k0": version + 1}
        retry = engine.append("orders", [{"key": b"k1", "value": b"again"}], producer=("p1", BATCHES - 1))
        assert retry.duplicate


def test_a_released_topic_is_adopted_by_the_next_engine_with_an_empty_cache(
    tmp_path: Path, store: ObjectStore
) -> None:
    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        engine.create_topic("payments", schema=SCHEMA)
        engine.append("payments", [{"key": b"p", "value": {"n": 1}}])
        before = _state(engine)
        engine.release_topic("orders")
        engine.release_topic("payments")
        for _ in range(3):  # garbage collection keeps what the handoffs name
            engine.append("other", [{"key": b"x", "value": b"2"}])
            assert isinstance(engine.disk, StoreDisk)
            engine.disk.checkpoint()
    with _engine(tmp_path, store, "b") as engine:  # a new agent: claims, fences, sweeps
        assert engine.released_topics() == ["orders", "payments"]
        assert sorted(engine.list_topics()) == ["other"]
        engine.adopt_topic("orders")
        info = engine.adopt_topic("payments")
        assert info.schema is not None and info.schema["version"] == 1
        assert _state(engine) == before
        engine.append("orders", [{"key": b"k3", "value": b"after"}])
        engine.append("payments", [{"key": b"p", "value": {"n": 2}}])
    with _engine(tmp_path, store, "c") as engine:  # adopted for good: served at start
        assert engine.released_topics() == []
        assert sorted(engine.list_topics()) == ["orders", "other", "payments"]
        assert _values(engine, "orders")[-1] == b"after"
        assert engine.describe_topic("orders").next_offset == before[1]["next_offset"] + 1  # type: ignore[operator]
        assert handoff.list_handoffs(store) == {}


def test_sealed_segments_stay_in_the_store_until_read(tmp_path: Path, store: ObjectStore) -> None:
    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        expected = _values(engine, "orders")
        engine.release_topic("orders")
    with _engine(tmp_path, store, "b") as engine:
        engine.adopt_topic("orders")
        assert isinstance(engine.disk, StoreDisk)
        remote = [path for path in engine.disk.tree.remote if path.startswith("topics/orders/")]
        assert any(path.endswith(".log") for path in remote), "nothing was left in the store"
        assert _values(engine, "orders") == expected


def test_deleting_a_released_topic_deletes_its_objects(tmp_path: Path, store: ObjectStore) -> None:
    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        engine.release_topic("orders")
        named = handoff.list_handoffs(store)["orders"].keys()
        engine.delete_topic("orders")
        assert engine.released_topics() == []
        assert handoff.list_handoffs(store) == {}
        left = {key for key, _ in list_all(store, mf.FILES)}
        assert not named & left
        with pytest.raises(TopicNotFound):
            engine.adopt_topic("orders")
        engine.create_topic("orders")  # the name is free again
        assert _values(engine, "orders") == []


def test_adopting_what_nobody_released_is_refused(tmp_path: Path, store: ObjectStore) -> None:
    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        with pytest.raises(TopicNotFound, match="no released topic"):
            engine.adopt_topic("nothing")
        with pytest.raises(TopicNotFound):
            engine.release_topic("nothing")
        engine.release_topic("orders")
        engine.adopt_topic("orders")
        stray = _handoff_of(engine, "orders")  # a handoff of a topic served here
        handoff.write(store, stray)
        with pytest.raises(Unavailable, match="not ready"):
            engine.adopt_topic("orders")
        handoff.mark_ready(store, stray)
        with pytest.raises(TopicExists, match="served here"):
            engine.adopt_topic("orders")


def _handoff_of(engine: Engine, topic: str) -> handoff.Handoff:
    assert engine.store is not None
    manifest = latest_manifest(engine.store.store)
    assert manifest is not None
    return handoff.of_manifest(manifest, topic, engine.describe_topic(topic).incarnation)


def test_an_engine_without_a_store_cannot_release(tmp_path: Path) -> None:
    from odradek.errors import InvalidRequest

    with Engine(tmp_path / "local") as engine:
        engine.create_topic("orders")
        with pytest.raises(InvalidRequest, match="object store"):
            engine.release_topic("orders")
        with pytest.raises(InvalidRequest, match="object store"):
            engine.adopt_topic("orders")


# -- stops in between ------------------------------------------------------------------------


def test_a_release_cut_short_before_the_local_copy_went_is_finished_at_start(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def stop(self: Engine, directory: str) -> None:
        raise StorageError("stopped")

    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        before = _state(engine)
        with monkeypatch.context() as patch:  # the agent stops once the handoff is written
            patch.setattr(Engine, "_drop_local_copy", stop)
            with pytest.raises(StorageError, match="stopped"):
                engine.release_topic("orders")
        assert isinstance(engine.disk, StoreDisk)
        engine.disk.checkpoint()  # its last manifest names the topic's files still
    manifest = latest_manifest(store)
    assert manifest is not None and "topics/orders" in manifest.dirs
    with _engine(tmp_path, store, "b") as engine:  # the handoff wins
        assert engine.released_topics() == ["orders"]
        _released_is_not_served(engine)
        engine.adopt_topic("orders")
        assert _state(engine) == before


def test_an_adoption_cut_short_before_its_checkpoint_leaves_the_topic_released(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from odradek.engine.attachment import StoreAttachment

    def stopped(**_: object) -> None:
        raise StorageError("stopped")

    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        before = _state(engine)
        engine.release_topic("orders")
        disk = engine.disk
        assert isinstance(disk, StoreDisk) and disk.checkpointer is not None
        # The agent stops after the claim, the marker and the import, before any
        # checkpoint names the files (not even the one a close takes).
        monkeypatch.setattr(StoreAttachment, "_undo", lambda *a, **k: None)
        monkeypatch.setattr(disk.checkpointer, "checkpoint", stopped)
        with pytest.raises(StorageError, match="stopped"):
            engine.adopt_topic("orders")
        claimed = handoff.list_handoffs(store)["orders"].claim
        assert engine.store is not None
        assert claimed is not None and claimed.cell == engine.store.cell
    with _engine(tmp_path, store, "b") as engine:
        found = handoff.list_handoffs(store)["orders"]
        assert found.claim is None, "the claim of an adoption undone at start stayed"
        assert engine.released_topics() == ["orders"]
        assert not (tmp_path / "b" / "adoptions" / "orders").exists()
        engine.adopt_topic("orders")
        assert _state(engine) == before


def test_an_adoption_that_stopped_before_deleting_its_handoff_is_finished_at_start(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from odradek.engine.attachment import StoreAttachment

    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        before = _state(engine)
        engine.release_topic("orders")
        with monkeypatch.context() as patch:
            patch.setattr(StoreAttachment, "finish", lambda self, released, source: None)
            engine.adopt_topic("orders")
        assert handoff.list_handoffs(store)["orders"].claim is not None
    with _engine(tmp_path, store, "b") as engine:
        assert engine.released_topics() == []
        assert handoff.list_handoffs(store) == {}
        assert _state(engine) == before


def test_a_failed_adoption_leaves_the_topic_released(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _engine(tmp_path, store, "a") as engine:
        _fill(engine)
        before = _state(engine)
        engine.release_topic("orders")
        disk = engine.disk
        assert isinstance(disk, StoreDisk) and disk.checkpointer is not None

        def failing(**_: object) -> None:
            raise StorageError("the store refused the manifest")

        with monkeypatch.context() as patch:
            patch.setattr(disk.checkpointer, "checkpoint", failing)
            with pytest.raises(StorageError, match="refused"):
                engine.adopt_topic("orders")
        assert not any(path.startswith("topics/orders") for path in disk.tree.sizes)
        assert handoff.list_handoffs(store)["orders"].claim is None
        _released_is_not_served(engine)
        engine.adopt_topic("orders")
        assert _state(engine) == before


# -- several topics at once, and failed writes ----------------------------------------------


def _three(engine: Engine) -> dict[str, list[bytes]]:
    for name in ("t1", "t2", "t3"):
        engine.create_topic(name)
        engine.append(name, [{"key": b"k", "value": name.encode() * i} for i in range(1, 4)])
    return {name: _values(engine, name) for name in ("t1", "t2", "t3")}


def test_several_topics_are_released_with_two_checkpoints(tmp_path: Path, store: ObjectStore) -> None:
    with _engine(tmp_path, store, "a") as engine:
        expected = _three(engine)
        assert isinstance(engine.disk, StoreDisk) and engine.disk.checkpointer is not None
        before = engine.disk.checkpointer.stats.checkpoints
        engine.release_topics(["t1", "t2", "t3"])
        assert engine.disk.checkpointer.stats.checkpoints == before + 2
        assert engine.released_topics() == ["t1", "t2", "t3"]
        assert all(found.ready for found in handoff.list_handoffs(store).values())
    with _engine(tmp_path, store, "b") as engine:
        assert isinstance(engine.disk, StoreDisk) and engine.disk.checkpointer is not None
        before = engine.disk.checkpointer.stats.checkpoints
        engine.adopt_topics(["t1", "t2", "t3"])
        assert engine.disk.checkpointer.stats.checkpoints == before + 1
        for name, values in expected.items():
            assert _values(engine, name) == values


def test_adopting_several_adopts_none_if_one_is_missing(tmp_path: Path, store: ObjectStore) -> None:
    with _engine(tmp_path, store, "a") as engine:
        _three(engine)
        engine.release_topics(["t1", "t2"])
        with pytest.raises(TopicNotFound, match="t3"):
            engine.adopt_topics(["t1", "t3"])
        assert engine.released_topics() == ["t1", "t2"]
        assert all(found.claim is None for found in handoff.list_handoffs(store).values())


def test_a_failed_handoff_write_leaves_the_topics_after_it_served(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = handoff.write

    def failing(target: ObjectStore, released: handoff.Handoff) -> None:
        if released.topic == "t2":
            raise StorageError("the store refused it")
        real(target, released)

    with _engine(tmp_path, store, "a") as engine:
        expected = _three(engine)
        monkeypatch.setattr(handoff, "write", failing)
        with pytest.raises(StorageError, match="refused"):
            engine.release_topics(["t1", "t2", "t3"])
        assert engine.released_topics() == ["t1"]
        assert engine.list_topics() == ["t2", "t3"]
        engine.append("t2", [{"key": b"k", "value": b"more"}])
        assert _values(engine, "t3") == expected["t3"]
    with _engine(tmp_path, store, "b") as engine:
        assert engine.list_topics() == ["t2", "t3"] and engine.released_topics() == ["t1"]
        assert _values(engine, "t2") == [*expected["t2"], b"more"]


def test_a_handoff_write_whose_outcome_is_unknown_makes_the_topic_unavailable_until_start(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(target: ObjectStore, released: handoff.Handoff) -> None:
        raise StorageError("timed out")

    def unreachable(*_: object, **__: object) -> None:
        raise StorageError("the store does not answer")

    with _engine(tmp_path, store, "a") as engine:
        expected = _three(engine)
        with monkeypatch.context() as patch:
            patch.setattr(handoff, "write", lost)
            patch.setattr(handoff, "read", unreachable)
            with pytest.raises(StorageError, match="timed out"):
                engine.release_topics(["t1"])
        assert "t1" in engine.unavailable_topics()
        assert "outcome is unknown" in engine.unavailable_topics()["t1"]
    with _engine(tmp_path, store, "b") as engine:  # it did not land: served again
        assert engine.list_topics() == ["t1", "t2", "t3"]
        assert _values(engine, "t1") == expected["t1"]


def test_a_handoff_write_that_landed_though_it_failed_counts_as_written(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = handoff.write

    def landed_then_failed(target: ObjectStore, released: handoff.Handoff) -> None:
        real(target, released)
        raise StorageError("the answer was lost")

    with _engine(tmp_path, store, "a") as engine:
        expected = _three(engine)
        with monkeypatch.context() as patch:
            patch.setattr(handoff, "write", landed_then_failed)
            with pytest.raises(StorageError, match="lost"):
                engine.release_topics(["t1", "t2"])
        assert engine.released_topics() == ["t1"]
        assert engine.list_topics() == ["t2", "t3"]
        engine.adopt_topic("t1")
        assert _values(engine, "t1") == expected["t1"]
