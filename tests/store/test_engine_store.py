"""Opening an engine on a store: every wrong combination is refused clearly, and
refusing leaves nothing half-done.

Goal: ``Engine(path, store=...)`` refuses ``disk=`` with ``store=``, ``fsync=False``,
``store_settings`` without a store and a wrong URL; a second engine on the same cache
directory is refused by the LOCK before it touches the store or the cache; a data
directory of an engine without a store is refused rather than emptied, and the store is
left untouched; two engines of one process share a named memory store.

Method: embedded engines on directory and memory stores; the store's objects are
listed to check what a refusal wrote.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from stores import read_all

import odradek
from odradek.engine import Engine
from odradek.errors import InvalidRequest, StorageError
from odradek.storage.agent import StoreSettings
from odradek.storage.disk import Disk
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import open_store


def test_wrong_combinations_are_refused(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    with pytest.raises(InvalidRequest, match="either a disk or a store"):
        Engine(tmp_path / "a", store=url, disk=Disk())
    with pytest.raises(InvalidRequest, match="fsync=False"):
        Engine(tmp_path / "a", store=url, fsync=False)
    with pytest.raises(InvalidRequest, match="give the store too"):
        Engine(tmp_path / "a", store_settings=StoreSettings())
    with pytest.raises(InvalidRequest, match="ftp://x"):
        Engine(tmp_path / "a", store="ftp://x")
    assert not (tmp_path / "store").exists()  # nothing reached a store


def test_a_second_engine_on_the_cache_is_refused_before_the_store(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    with odradek.open(tmp_path / "cache", store=url) as first:
        first.create_topic("orders")
        first.append("orders", [{"key": b"a", "value": b"1"}])
        epochs = open_store(url).list("epochs/")
        with pytest.raises(StorageError, match="in use by another Odradek process"):
            odradek.open(tmp_path / "cache", store=url)
        assert open_store(url).list("epochs/") == epochs  # it claimed nothing
        assert read_all(first, "orders").num_rows == 1  # and emptied nothing
        first.append("orders", [{"key": b"a", "value": b"2"}])  # the first is not fenced


def test_a_local_data_directory_is_not_emptied(tmp_path: Path) -> None:
    with odradek.open(tmp_path / "local") as local:
        local.create_topic("orders")
        local.append("orders", [{"key": b"a", "value": b"kept"}])
    url = f"file://{tmp_path / 'store'}"
    with pytest.raises(InvalidRequest, match="holds the data of an engine without a store"):
        odradek.open(tmp_path / "local", store=url)
    assert open_store(url).list("epochs/") == []
    with odradek.open(tmp_path / "local") as local:
        assert read_all(local, "orders").column("value").to_pylist() == [b"kept"]


def test_two_engines_of_one_process_share_a_named_memory_store(tmp_path: Path) -> None:
    name = f"shared-{uuid.uuid4().hex}"
    try:
        with odradek.open(tmp_path / "one", store=f"memory://{name}/prefix") as one:
            one.create_topic("orders")
            one.append("orders", [{"key": b"a", "value": b"1"}], expect={b"a": 0})
        with odradek.open(tmp_path / "two", store=f"memory://{name}/prefix") as two:
            assert read_all(two, "orders").column("value").to_pylist() == [b"1"]
            assert two.key_version("orders", b"a") == 1
        with odradek.open(tmp_path / "three", store=f"memory://{name}/other") as three:
            assert three.list_topics() == []  # another prefix, another store
    finally:
        forget_memory_store(name)


def test_a_cache_restarts_on_its_store(tmp_path: Path) -> None:
    url = f"file://{tmp_path / 'store'}"
    with odradek.open(tmp_path / "cache", store=url) as client:
        client.create_topic("orders")
        client.append("orders", [{"key": b"a", "value": b"1"}])
    with odradek.open(tmp_path / "cache", store=url) as client:  # a cache is not refused
        assert read_all(client, "orders").column("value").to_pylist() == [b"1"]
        assert client.engine.store is not None and client.engine.store.recovery.epoch == 2


def test_segments_on_a_store_are_not_preallocated(tmp_path: Path) -> None:
    """On a file system an active segment keeps zeros written ahead of its frames (its
    fsyncs then commit no new size); on a store they would only fill the journal, so
    the segment holds its frames alone and the journal stays small."""
    url = f"file://{tmp_path / 'store'}"
    with odradek.open(tmp_path / "cache", store=url) as client:
        client.create_topic("orders")
        client.append("orders", [{"key": b"a", "value": b"1"}])
        segments = list((tmp_path / "cache" / "topics" / "orders").glob("*.log"))
        assert segments and all(path.stat().st_size < 64 * 1024 for path in segments)
    journal = sum(path.stat().st_size for path in (tmp_path / "store" / "wal").iterdir())
    assert journal < 256 * 1024, f"{journal} bytes of journal for one small record"
    with odradek.open(tmp_path / "local") as local:  # the file system still preallocates
        local.create_topic("orders")
        local.append("orders", [{"key": b"a", "value": b"1"}])
        segments = list((tmp_path / "local" / "topics" / "orders").glob("*.log"))
        assert any(path.stat().st_size >= 1024 * 1024 for path in segments)
