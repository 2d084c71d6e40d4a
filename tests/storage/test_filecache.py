"""The cache of remote files bounds a long-running agent's sealed segments too.

Goal: an object-store agent that keeps appending well past ``store_cache_bytes`` keeps
its sealed segments on local disk within that bound (once a checkpoint's manifest names
a sealed segment, the local file is handed over to the LRU cache, which may evict it),
and every record still reads back with its value, from the cache or fetched again from
the store, before and after a restart on the same data directory and on an empty one.

Method: a real Engine on the StoreDisk that ``attach`` returns, over memory://, with
64 KiB segments and a 128 KiB cache; checkpoints are taken by hand between appends, and
after each one the sealed segments outside the cache and the cache's files are summed
from the local directory itself. Values are compared with what was appended.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from object_servers import unique_prefix

from odradek.engine.engine import Engine
from odradek.storage.agent import CACHE_DIRECTORY, StoreSettings, attach
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import ObjectStore, open_store
from odradek.storage.storedisk import StoreDisk

CACHE_BYTES = 128 * 1024
SEGMENT_BYTES = 64 * 1024
ENGINE = {"retention_check_seconds": 3600.0}


@pytest.fixture
def memory_store(request: pytest.FixtureRequest) -> ObjectStore:
    name = f"filecache-{uuid.uuid4().hex}"
    request.addfinalizer(lambda: forget_memory_store(name))
    return open_store(f"memory://{name}/{unique_prefix()}")


def _attach(root: Path, store: ObjectStore) -> StoreDisk:
    settings = StoreSettings(flush_seconds=0.002, checkpoint_seconds=3600.0, cache_bytes=CACHE_BYTES)
    disk, _ = attach(str(root), store, settings)
    return disk


def _local_bytes(root: Path) -> tuple[int, int, int]:
    """(bytes of sealed segments outside the cache, of the cache's files, of all
    segments outside the cache), from the directory itself."""
    sealed = segments = cached = 0
    for directory, _, files in os.walk(root):
        for name in files:
            size = os.path.getsize(os.path.join(directory, name))
            if os.path.relpath(directory, root).split(os.sep)[0] == CACHE_DIRECTORY:
                cached += size
            elif name.endswith(".log"):
                segments += size
                if os.path.exists(os.path.join(directory, name[: -len(".log")] + ".index")):
                    sealed += size
    return sealed, cached, segments


def _values(engine: Engine) -> list[bytes]:
    return [value for batch in engine.read("t", wait=0) for value in batch.column("value").to_pylist()]


def _of(key: bytes, keys: list[bytes], values: list[bytes]) -> list[bytes]:
    return [value for k, value in zip(keys, values, strict=True) if k == key]


def test_a_long_running_agent_keeps_its_sealed_segments_within_the_cache_bound(
    memory_store: ObjectStore, tmp_path: Path
) -> None:
    root = tmp_path / "agent"
    disk = _attach(root, memory_store)
    engine = Engine(root, disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=f"{SEGMENT_BYTES // 1024}KiB")
    written: list[bytes] = []
    keys: list[bytes] = []
    for number in range(300):
        values = [os.urandom(60) + number.to_bytes(4, "big") + bytes([n]) for n in range(40)]
        batch_keys = [b"k%d" % (n % 13) for n in range(len(values))]
        engine.append(
            "t", [{"key": key, "value": value} for key, value in zip(batch_keys, values, strict=True)]
        )
        written.extend(values)
        keys.extend(batch_keys)
        if number % 25 == 24:
            disk.checkpoint()
            sealed, cached, _ = _local_bytes(root)
            assert sealed == 0, f"{sealed} bytes of sealed segments outside the cache after a checkpoint"
            assert cached <= CACHE_BYTES
    assert len(written) * 60 > 5 * CACHE_BYTES  # well past the bound
    assert disk.cache is not None and disk.cache.evictions > 0
    assert disk.checkpointer is not None and disk.checkpointer.stats.handed_over > 0
    assert _values(engine) == written  # evicted segments are fetched again
    sealed, cached, segments = _local_bytes(root)
    assert sealed == 0 and cached <= CACHE_BYTES
    assert segments <= 2 * SEGMENT_BYTES  # the active segment (and one sealed since)
    assert engine.read_key("t", b"k3").column("value").to_pylist() == _of(b"k3", keys, written)
    engine.close()
    disk.detach()

    for restarted_root in (root, tmp_path / "empty"):  # the same cache, then none
        again = _attach(restarted_root, memory_store)
        reopened = Engine(restarted_root, disk=again, **ENGINE)  # type: ignore[arg-type]
        assert _values(reopened) == written
        assert reopened.read_key("t", b"k5").column("value").to_pylist() == _of(b"k5", keys, written)
        sealed, cached, _ = _local_bytes(restarted_root)
        assert sealed == 0 and cached <= CACHE_BYTES
        reopened.close()
        again.detach()
