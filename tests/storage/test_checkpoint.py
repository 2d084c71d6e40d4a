"""Checkpoints, garbage collection and the cache of remote files of an object-store agent.

Goal: (1) after checkpoints and their garbage collection, an agent started on an empty
data directory rebuilds every journaled file byte for byte, replaying only the journal
after the last checkpoint; (2) a crash between any two requests of a checkpoint (file
uploads, the manifest, the deletion of older manifests, of the journal, of file
objects) loses nothing; (3) a replaced (zombie) agent's checkpoint deletes nothing;
(4) retention removing a segment removes its objects at the next checkpoint; (5)
sealed segments stay in the store until read, the engine's open does not fetch them,
and the cache stays within its bound and fetches an evicted file again; (6) the rule
that makes a checkpoint consistent while the engine writes: replaying the journal after
F onto a file read at any moment after F (even mid-write) gives the file's final state.

Method: a real Engine on the StoreDisk that ``attach`` returns, against memory://, a
file:// directory and moto's S3 server; a "crash" stops an agent's checkpoints and
journal without a last checkpoint; the files of every journaled path are compared
with what a second agent rebuilt. Crashes inside a checkpoint come from a store
wrapper that fails every write from its k-th on. Hypothesis drives the replay rule over
random writes, truncations and replacements of one file. Conditions are awaited with
generous deadlines; nothing is timed.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from object_servers import unique_prefix

from odradek.engine.engine import Engine
from odradek.errors import Fenced, StorageError
from odradek.storage import journal
from odradek.storage import manifest as mf
from odradek.storage.agent import Recovery, StoreSettings, apply, attach
from odradek.storage.manifest import Piece, Record
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import Listed, ObjectStore, open_store
from odradek.storage.storedisk import StoreDisk
from odradek.storage.tree import is_derived

WINDOW = 4  # journal uploads in flight, and the window a new agent fences
SETTINGS = StoreSettings(flush_seconds=0.002, checkpoint_seconds=3600.0, in_flight_max=WINDOW)
ENGINE = {"retention_check_seconds": 3600.0}
SMALL_SEGMENTS = "64KiB"


def open_backend(request: pytest.FixtureRequest, backend: str, directory: Path) -> ObjectStore:
    """A fresh store on ``backend`` under its own prefix (as conftest's ``object_store``)."""
    if backend == "memory":
        name = f"checkpoint-{uuid.uuid4().hex}"
        request.addfinalizer(lambda: forget_memory_store(name))
        return open_store(f"memory://{name}/{unique_prefix()}")
    if backend == "file":
        return open_store(f"file://{directory / 'store'}")
    server = request.getfixturevalue("moto_s3")
    return server.open(unique_prefix())  # type: ignore[no-any-return]


@pytest.fixture(params=["memory", "file", "moto"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return open_backend(request, request.param, tmp_path)


@pytest.fixture
def memory_store(request: pytest.FixtureRequest, tmp_path: Path) -> ObjectStore:
    return open_backend(request, "memory", tmp_path)


def _records(count: int, salt: int) -> list[dict[str, bytes]]:
    return [
        {"key": f"k{(salt + n) % 13}".encode(), "value": os.urandom(60) + bytes([n % 256])}
        for n in range(count)
    ]


def _load(engine: Engine, rounds: int, salt: int = 0) -> None:
    for number in range(rounds):
        engine.append("t", _records(40, salt + number))
        if number % 3 == 0:
            engine.append("u", _records(3, salt + number))


def _journaled(disk: StoreDisk) -> dict[str, bytes | None]:
    """Every journaled file's bytes (remote ones fetched) and every directory (None)."""
    with disk._lock:
        files = [path for path in disk.tree.sizes if not is_derived(path)]
        directories = set(disk.tree.dirs)
    found: dict[str, bytes | None] = {path: None for path in directories}
    for path in files:
        found[path] = disk.read_bytes(disk.local_path(path))
    return found


def _crash(disk: StoreDisk) -> None:
    """The agent dies: no more checkpoints, nothing more journaled, no last checkpoint."""
    assert disk.checkpointer is not None
    disk.checkpointer.stop()
    disk.writer.close()


def _attach(root: Path, store: ObjectStore, **options: object) -> tuple[StoreDisk, Recovery]:
    defaults = {"flush_seconds": 0.002, "checkpoint_seconds": 3600.0, "in_flight_max": WINDOW}
    settings = StoreSettings(**{**defaults, **options})  # type: ignore[arg-type]
    return attach(str(root), store, settings)


def _journal_objects(store: ObjectStore) -> list[tuple[int, int, int]]:
    """(slot, epoch, flush) of every journal object (not fences) in the store."""
    found = []
    for key, _ in store.list("wal/"):
        data = store.get(key)
        slot = journal.slot_of(key)
        if data is not None and slot is not None:
            epoch, flush, _, kind = journal.decode_head(data)
            if kind == journal.KIND_JOURNAL:
                found.append((slot, epoch, flush))
    return found


def _latest(store: ObjectStore) -> mf.Manifest:
    keys = sorted(key for key, _ in store.list("manifests/"))
    assert keys, "no manifest in the store"
    data = store.get(keys[-1])
    assert data is not None
    return mf.decode(data)


def test_checkpoints_collect_the_journal_and_a_restart_rebuilds_every_file(
    store: ObjectStore, tmp_path: Path
) -> None:
    disk, first = _attach(tmp_path / "a", store)
    assert first.epoch == 1 and first.manifest == ""
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS)
    engine.create_topic("u")
    engine.create_topic("gone")
    _load(engine, 12)
    disk.checkpoint()
    engine.delete_topic("gone")
    _load(engine, 12, salt=100)
    disk.checkpoint()
    manifest = _latest(store)
    # The journal up to the checkpoint is gone, but for the last fence window's worth
    # (kept until the journal moves on: a new agent fences the holes there).
    objects = _journal_objects(store)
    highest = max(slot for slot, _, _ in objects)
    collected = [slot for slot, epoch, flush in objects if (epoch, flush) <= manifest.after]
    assert all(slot > highest - WINDOW for slot in collected)
    assert len(objects) < disk.writer.committed - WINDOW
    _load(engine, 5, salt=200)  # after the last checkpoint: only in the journal
    engine.close()
    disk.writer.flush_all()  # the close's last changes (trimmed tails) are committed
    expected = _journaled(disk)
    committed = disk.writer.committed
    _crash(disk)

    second, recovery = _attach(tmp_path / "b", store)
    assert recovery.manifest == manifest.key
    assert recovery.replayed == committed - manifest.after[1] > 0  # the journal after F only
    assert recovery.remote > 0, "sealed segments stay in the store"
    assert _journaled(second) == expected
    reopened = Engine(tmp_path / "b", disk=second, **ENGINE)  # type: ignore[arg-type]
    assert sum(batch.num_rows for batch in reopened.read("t", wait=0)) == 29 * 40
    assert "gone" not in reopened.list_topics()
    reopened.close()
    second.detach()


def test_a_restart_after_a_clean_detach_replays_nothing(memory_store: ObjectStore, tmp_path: Path) -> None:
    disk, _ = _attach(tmp_path / "a", memory_store)
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS)
    engine.create_topic("u")
    _load(engine, 8)
    engine.close()
    disk.writer.flush_all()  # the close's last changes (trimmed tails) are committed
    expected = _journaled(disk)
    disk.detach()  # the last checkpoint
    assert len(_journal_objects(memory_store)) <= WINDOW
    second, recovery = _attach(tmp_path / "b", memory_store)
    assert recovery.replayed == 0
    assert second.checkpointer is not None
    second.checkpointer.collect_pending()  # what its thread does first, after serving began
    assert _journal_objects(memory_store) == []  # collected once the first manifest held them
    assert _journaled(second) == expected
    second.detach()


def test_a_file_growing_at_every_checkpoint_stays_a_few_pieces(
    memory_store: ObjectStore, tmp_path: Path
) -> None:
    """An active segment grows a little between checkpoints (every second on a cluster
    agent): its record merges its last pieces into each new extent (a binary carry), so
    it holds about log2(checkpoints) pieces, not one per checkpoint, and a new agent
    downloads it in that many GETs, byte for byte."""
    disk, _ = _attach(tmp_path / "a", memory_store)
    assert disk.checkpointer is not None
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t")
    engine.create_topic("u")
    for number in range(64):
        engine.append("t", _records(5, number))
        manifest = disk.checkpointer.checkpoint()
    segments = [
        record
        for path, record in manifest.files.items()
        if path.startswith("topics/t/") and path.endswith(".log")
    ]
    assert segments and max(len(record.pieces) for record in segments) <= 8  # log2(64) + 1 + the base
    engine.close()
    disk.writer.flush_all()
    expected = _journaled(disk)
    disk.detach()
    second, _ = _attach(tmp_path / "b", memory_store)
    assert _journaled(second) == expected
    second.detach()


def test_lag_counts_the_journal_landed_since_the_latest_checkpoint_began(
    memory_store: ObjectStore, tmp_path: Path
) -> None:
    disk, _ = _attach(tmp_path / "a", memory_store)
    assert disk.checkpointer is not None
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t")
    engine.create_topic("u")
    first = disk.checkpointer.lag()
    assert first["checkpoints"] == 1 and str(first["manifest"]).startswith("manifests/")
    _load(engine, 6)
    disk.writer.flush_all()
    grown = disk.checkpointer.lag()
    assert int(grown["journal_objects"]) >= 6 and int(grown["journal_bytes"]) > 6 * 40 * 60
    disk.checkpointer.checkpoint()
    after = disk.checkpointer.lag()
    assert after["checkpoints"] == 2 and after["manifest"] != first["manifest"]
    assert int(after["journal_objects"]) < int(grown["journal_objects"])
    engine.close()
    disk.detach()


def test_a_manifest_names_the_first_slot_after_it_and_recovery_reads_from_there(
    memory_store: ObjectStore, tmp_path: Path
) -> None:
    """Goal: a takeover reads only the journal after the last checkpoint, even when the
    dead owner's garbage collection never ran. Method: load, checkpoint without
    collecting, load more, crash; the manifest's floor lies past every slot it covers,
    and the next agent reads only the objects from that floor on (an older floor, the
    agent's first slot, would have read every one) and still rebuilds every file."""
    disk, first = _attach(tmp_path / "a", memory_store)
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS)
    engine.create_topic("u")
    _load(engine, 20)
    assert disk.checkpointer is not None
    manifest = disk.checkpointer.checkpoint(collect=False)  # as if killed before collecting
    covered = [slot for slot, epoch, flush in _journal_objects(memory_store) if flush <= manifest.after[1]]
    after = [slot for slot, epoch, flush in _journal_objects(memory_store) if flush > manifest.after[1]]
    assert len(covered) > 2 * WINDOW, "the load made more journal than the window keeps"
    assert manifest.floor > max(covered) - WINDOW > first.epoch  # past all but the window's own
    assert all(slot >= manifest.floor for slot in after)
    _load(engine, 5, salt=100)
    disk.writer.flush_all()
    expected = _journaled(disk)
    _crash(disk)
    listed = [slot for slot, _, _ in _journal_objects(memory_store) if slot >= manifest.floor]
    second, recovery = _attach(tmp_path / "b", memory_store)
    assert recovery.slots <= len(listed) + 3 * WINDOW + 1  # from the floor on, its fences included
    assert recovery.slots < len(covered)
    assert recovery.replayed > 0
    assert _journaled(second) == expected
    second.detach()


def test_sealed_segments_stay_remote_until_read_and_the_engine_opens_without_them(
    store: ObjectStore, tmp_path: Path
) -> None:
    disk, _ = _attach(tmp_path / "a", store)
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS)
    engine.create_topic("u")
    _load(engine, 40)
    engine.close()
    disk.detach()

    root = tmp_path / "b"
    second, recovery = _attach(root, store)
    remote = sorted(second.tree.remote)
    assert recovery.remote == len(remote) >= 2
    for path in remote:
        local = second.local_path(path)
        assert not os.path.exists(local), f"{path} was downloaded at start"
        assert second.exists(local) and second.isfile(local)
        assert second.getsize(local) == second.tree.remote[path].size
        assert os.path.basename(local) in second.listdir(os.path.dirname(local))
    assert second.cache is not None
    reopened = Engine(root, disk=second, **ENGINE)  # type: ignore[arg-type]
    assert second.cache.fetches == 0, "opening the engine fetched sealed segments"
    assert reopened.key_version("t", b"k1") > 0
    assert sum(batch.num_rows for batch in reopened.read("t", wait=0)) == 40 * 40
    assert second.cache.fetches == len([path for path in remote if path.startswith("topics/t/")])
    reopened.close()
    second.detach()


def test_the_cache_stays_within_its_bound_and_fetches_an_evicted_file_again(
    memory_store: ObjectStore, tmp_path: Path
) -> None:
    disk, _ = _attach(tmp_path / "a", memory_store)
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS)
    engine.create_topic("u")
    _load(engine, 80)
    engine.close()
    disk.writer.flush_all()  # the close's last changes (trimmed tails) are committed
    expected = _journaled(disk)
    disk.detach()

    second, _ = _attach(tmp_path / "b", memory_store, cache_bytes=150 * 1024)
    cache = second.cache
    assert cache is not None
    remote = sorted(second.tree.remote)
    assert len(remote) >= 5
    for path in remote:
        buffer = second.map(second.local_path(path))
        assert buffer.to_pybytes() == expected[path]
        assert cache.bytes <= cache.bytes_max
    assert cache.evictions > 0
    assert len(os.listdir(cache.directory)) < len(remote)
    fetched = cache.fetches
    assert second.read_bytes(second.local_path(remote[0])) == expected[remote[0]]  # evicted: fetched again
    assert cache.fetches == fetched + 1
    assert cache.bytes <= cache.bytes_max
    second.detach()


def test_retention_removes_a_segments_objects_at_the_next_checkpoint(
    store: ObjectStore, tmp_path: Path
) -> None:
    disk, _ = _attach(tmp_path / "a", store)
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS, retention_bytes="150KiB")
    engine.create_topic("u")
    _load(engine, 60)
    disk.checkpoint()
    first_segment = "topics/t/00000000000000000000.log"
    prefix = f"files/{mf.escape_path(first_segment)}/"
    assert store.list(prefix), "the sealed segment was uploaded"
    assert engine.enforce_retention() > 0
    assert not disk.exists(disk.local_path(first_segment))
    assert store.list(prefix), "objects go at the next checkpoint, not before"
    disk.checkpoint()
    assert store.list(prefix) == []
    named = _latest(store).keys()
    assert {key for key, _ in store.list("files/")} == named, "every file object left is named"
    engine.close()
    disk.detach()


def test_a_zombie_agent_deletes_nothing_the_new_one_needs(memory_store: ObjectStore, tmp_path: Path) -> None:
    old, _ = _attach(tmp_path / "a", memory_store)
    engine = Engine(tmp_path / "a", disk=old, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS)
    engine.create_topic("u")
    _load(engine, 10)
    old.checkpoint()
    _load(engine, 5, salt=50)
    acknowledged = _journaled(old)

    new, recovery = _attach(tmp_path / "b", memory_store)  # fences the old agent
    assert recovery.epoch == 2
    assert _journaled(new) == acknowledged
    assert new.checkpointer is not None
    new.checkpointer.collect_pending()  # the new agent's own collection, done
    before = {key for key, _ in memory_store.list("")}
    # The zombie takes a checkpoint of its own (nothing new journaled: its writer has
    # not met the fence yet). Its manifest lands, but it deletes nothing.
    zombie = old.checkpointer
    assert zombie is not None
    zombie.checkpoint()
    assert zombie.fenced
    after = {key for key, _ in memory_store.list("")}
    assert before <= after, f"the zombie deleted {sorted(before - after)}"
    with pytest.raises(Fenced):
        engine.append("t", _records(1, 0))
    with pytest.raises(StorageError):
        old.checkpoint()  # a fenced journal takes no more checkpoints

    _load_new = Engine(tmp_path / "b", disk=new, **ENGINE)  # type: ignore[arg-type]
    _load_new.append("t", _records(4, 7))
    _load_new.close()
    new.writer.flush_all()
    expected = _journaled(new)
    new.checkpoint()
    _crash(new)
    third, recovery = _attach(tmp_path / "c", memory_store)
    assert recovery.manifest.startswith("manifests/00000000000000000002-"), (
        "the zombie's manifest is never adopted"
    )
    assert _journaled(third) == expected
    with contextlib.suppress(Fenced):
        engine.close()  # the zombie's engine: its journal refuses the close's last changes
    _crash(old)
    third.detach()


class CrashingStore:
    """A store whose writes (PUT, DELETE) fail from the ``crash_at``-th one on, as if
    the agent died there; reads pass. ``writes`` counts the writes attempted."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.crash_at: int | None = None
        self.writes = 0
        self._lock = threading.Lock()

    def _write(self) -> None:
        with self._lock:
            self.writes += 1
            if self.crash_at is not None and self.writes >= self.crash_at:
                raise StorageError(f"the agent died at its write number {self.crash_at}")

    def put(self, key: str, data: bytes) -> object:
        self._write()
        return self.inner.put(key, data)

    def put_new(self, key: str, data: bytes) -> bool:
        self._write()
        return self.inner.put_new(key, data)

    def delete(self, key: str) -> None:
        self._write()
        self.inner.delete(key)

    def get(self, key: str) -> bytes | None:
        return self.inner.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes | None:
        return self.inner.get_range(key, start, end)

    def list(self, prefix: str, *, after: str | None = None, limit: int | None = None) -> list[Listed]:
        return list(self.inner.list(prefix, after=after, limit=limit))


def _crash_scenario(
    request: pytest.FixtureRequest, backend: str, directory: Path, crash_at: int | None
) -> tuple[ObjectStore, dict[str, bytes | None], int]:
    """An agent writes, checkpoints, writes more (a segment retention removes, a topic
    deleted) and dies during its next checkpoint at write ``crash_at`` (None: it does
    not die). Returns the store, the journaled files at the crash, and the writes the
    checkpoint made."""
    inner = open_backend(request, backend, directory)
    store = CrashingStore(inner)
    disk, _ = attach(str(directory / "a"), store, SETTINGS)  # type: ignore[arg-type]
    engine = Engine(directory / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS, retention_bytes="100KiB")
    engine.create_topic("u")
    engine.create_topic("gone")
    _load(engine, 30)
    disk.checkpoint()
    _load(engine, 15, salt=70)
    engine.delete_topic("gone")
    assert engine.enforce_retention() > 0
    engine.close()
    disk.writer.flush_all()
    expected = _journaled(disk)
    writes = store.writes
    store.crash_at = None if crash_at is None else writes + crash_at
    try:
        disk.checkpoint()
    except StorageError:
        pass
    made = store.writes - writes
    _crash(disk)
    return inner, expected, made


def test_a_crash_at_any_step_of_a_checkpoint_loses_nothing(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _, _, steps = _crash_scenario(request, "memory", tmp_path / "count", None)
    assert steps >= 6  # uploads, the manifest, and deletions of manifests, journal and files
    for step in range(1, steps + 1):
        directory = tmp_path / f"crash-{step}"
        inner, expected, _ = _crash_scenario(request, "memory", directory, step)
        second, _ = attach(str(directory / "b"), inner, SETTINGS)
        assert _journaled(second) == expected, f"a crash at write {step} of {steps} lost something"
        engine = Engine(directory / "b", disk=second, **ENGINE)  # type: ignore[arg-type]
        assert sum(batch.num_rows for batch in engine.read("u", wait=0)) == 15 * 3
        engine.close()
        second.detach()


def test_a_crash_inside_a_checkpoint_on_a_directory_store_loses_nothing(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _, _, steps = _crash_scenario(request, "file", tmp_path / "count", None)
    for step in (1, steps // 2, steps):
        directory = tmp_path / f"crash-{step}"
        inner, expected, _ = _crash_scenario(request, "file", directory, step)
        second, _ = attach(str(directory / "b"), inner, SETTINGS)
        assert _journaled(second) == expected
        second.detach()


def test_checkpoints_taken_while_the_engine_writes_recover_exactly(
    store: ObjectStore, tmp_path: Path
) -> None:
    disk, _ = _attach(tmp_path / "a", store)
    engine = Engine(tmp_path / "a", disk=disk, **ENGINE)  # type: ignore[arg-type]
    engine.create_topic("t", segment_bytes=SMALL_SEGMENTS)
    engine.create_topic("u")
    stop = threading.Event()
    failures: list[BaseException] = []

    def write(thread: int) -> None:
        number = 0
        try:
            while not stop.is_set():
                engine.append("t", _records(20, number))
                if number % 5 == 0:
                    name = f"side{thread}-{number}"
                    engine.create_topic(name)  # renames a staged directory into place
                    engine.append(name, _records(2, number))
                    if number % 10 == 0:
                        engine.delete_topic(name)  # renames it into the trash
                number += 1
        except Exception as exc:  # noqa: BLE001 (any failure of the writers is reported below)
            failures.append(exc)

    writers = [threading.Thread(target=write, args=(thread,)) for thread in range(2)]
    for thread in writers:
        thread.start()
    taken = 0
    for _ in range(40):
        try:
            disk.checkpoint()
            taken += 1
        except StorageError as exc:  # abandoned: a rename raced the reads
            assert "renamed" in exc.message
        if taken >= 5:
            break
    stop.set()
    for thread in writers:
        thread.join(timeout=120)
    assert not failures, failures
    assert taken >= 5
    engine.close()
    disk.writer.flush_all()  # the close's last changes (trimmed tails) are committed
    expected = _journaled(disk)
    _crash(disk)
    second, _ = _attach(tmp_path / "b", store)
    assert _journaled(second) == expected
    second.detach()


# -- the replay rule, on one file ----------------------------------------------------------

OPS = st.one_of(
    st.tuples(st.just(journal.OP_WRITE), st.integers(0, 40), st.binary(min_size=1, max_size=12)),
    st.tuples(st.just(journal.OP_TRUNCATE), st.integers(0, 48), st.just(b"")),
    st.tuples(st.just(journal.OP_REPLACE), st.just(0), st.binary(max_size=30)),
)


def _entries(ops: list[tuple[int, int, bytes]]) -> tuple[journal.Entry, ...]:
    return tuple(journal.Entry(op, "f", position, data) for op, position, data in ops)


def _state(root: str) -> bytes:
    with open(os.path.join(root, "f"), "rb") as handle:
        return handle.read()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    before=st.lists(OPS, max_size=6),
    after=st.lists(OPS, max_size=8),
    seen=st.integers(0, 8),
    torn=st.integers(0, 60),
)
def test_replaying_the_journal_after_f_onto_a_file_read_later_gives_its_final_state(
    before: list[tuple[int, int, bytes]], after: list[tuple[int, int, bytes]], seen: int, torn: int
) -> None:
    """The file at F, then ``after`` (the journal after F). The checkpoint reads the file
    once ``seen`` of those entries happened, possibly mid-way into the next one (its
    first ``torn`` bytes of the read come from after that entry): the content it reads
    plus the replay of everything after F is the file's final state."""
    with tempfile.TemporaryDirectory() as truth, tempfile.TemporaryDirectory() as rebuilt:
        apply(truth, (journal.Entry(journal.OP_CREATE, "f"), *_entries(before)))
        seen = min(seen, len(after))
        apply(truth, _entries(after[:seen]))
        read = _state(truth)
        if seen < len(after):
            apply(truth, _entries(after[seen : seen + 1]))
            later = _state(truth)
            read = later[:torn] + read[torn:] if len(later) >= len(read) else read
            apply(truth, _entries(after[seen + 1 :]))
        final = _state(truth)
        with open(os.path.join(rebuilt, "f"), "wb") as handle:
            handle.write(read)
        apply(rebuilt, _entries(after))
        assert _state(rebuilt) == final


def test_records_cut_and_extend_their_pieces() -> None:
    whole = Record(10, (Piece("a", 0, 10),))
    grown = whole.extended(Piece("b", 8, 6), sealed=False)  # bytes from 8 rewritten, 4 more
    assert grown.size == 14 and grown.pieces == (Piece("a", 0, 8), Piece("b", 8, 6))
    again = grown.extended(Piece("c", 3, 2), sealed=True)  # cut back to 3, then 2 bytes
    assert again == Record(5, (Piece("a", 0, 3), Piece("c", 3, 2)), True)
    assert grown.cut(0) == ()
    manifest = mf.Manifest(3, 4, (3, 9), 17, 3, {"d"}, {"d/f": again})
    assert mf.decode(mf.encode(manifest)) == manifest
    with pytest.raises(mf.ManifestDamaged):
        mf.decode(mf.encode(manifest)[:-1] + b"x")


def test_file_keys_never_collide_with_paths() -> None:
    assert mf.file_key("topics/a b/x", 2, 3) == "files/topics/a%20b/x/2-3"
    assert mf.file_key("d/1-2", 1, 1, 100) == "files/d/%31-2/1-1.100"  # never a name of d's objects
    assert mf.file_key_epoch(mf.file_key("d/1-2", 7, 1, 100)) == 7
    assert mf.manifest_of(mf.manifest_key(5, 6)) == (5, 6)
