"""The journal writer and fencing: acknowledged means in the store, and two agents never
both acknowledge.

Goal: (1) a flush is committed only once it and every earlier flush are in the store,
whatever order the uploads finish in; (2) an agent that attaches to a store while
another writes fences it: every change the first one had acknowledged is in the
second one's recovery, nothing the first one writes afterwards is, and the first one's
waits fail with Fenced; (3) a rebuilt tree equals the tree that was journaled.

Method: a small in-memory store with per-PUT delays and a switch to hold uploads, the
JournalWriter and attach() directly, many threads; no timing assertions (conditions
are awaited with generous deadlines).
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from odradek.storage import journal
from odradek.storage.agent import StoreSettings, apply, attach, fence
from odradek.storage.objects import Listed
from odradek.storage.walwriter import Fenced, JournalWriter


class SlowStore:
    """A dict behind locks, with a random delay per PUT and a gate to hold PUTs."""

    def __init__(self, delay: float = 0.0, seed: int = 7) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def put_new(self, key: str, data: bytes) -> bool:
        self.gate.wait(30)
        with self._lock:
            pause = self._random.uniform(0, self.delay)
        time.sleep(pause)
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = bytes(data)
            return True

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self.objects.get(key)

    def get_range(self, key: str, start: int, end: int) -> bytes | None:
        data = self.get(key)
        return None if data is None else data[start:end]

    def delete(self, key: str) -> None:
        with self._lock:
            self.objects.pop(key, None)

    def list(self, prefix: str, *, after: str | None = None, limit: int | None = None) -> list[Listed]:
        with self._lock:
            found = sorted(
                Listed(key, len(value))
                for key, value in self.objects.items()
                if key.startswith(prefix) and (after is None or key > after)
            )
        return found if limit is None else found[:limit]


def _writer(store: SlowStore, epoch: int, first_slot: int, **options: object) -> JournalWriter:
    settings = {
        "flush_seconds": 0.005,
        "flush_bytes": 1 << 20,
        "in_flight_max": 8,
        "backlog_bytes_max": 64 << 20,
        "wait_seconds": 30.0,
        **options,
    }
    return JournalWriter(store, epoch=epoch, first_slot=first_slot, **settings)  # type: ignore[arg-type]


def _entries_in_store(store: SlowStore) -> list[journal.Entry]:
    objects = {}
    for key, _ in store.list("wal/"):
        slot = journal.slot_of(key)
        data = store.get(key)
        if slot is not None and data is not None:
            objects[slot] = journal.decode(data)
    listed = [journal.Listed(slot, item.epoch, item.flush, item.kind) for slot, item in objects.items()]
    return [entry for item in journal.valid(listed) for entry in objects[item.slot].entries]


def test_commits_follow_flush_order_whatever_order_uploads_finish_in() -> None:
    store = SlowStore(delay=0.02)
    writer = _writer(store, epoch=1, first_slot=0)
    numbers: list[int] = []
    for index in range(200):
        numbers.append(writer.add(journal.Entry(journal.OP_WRITE, "f", index, b"x")))
        if index % 7 == 0:
            writer.wait(numbers[-1])
            # Committed means in the store, and everything before it too.
            positions = [entry.position for entry in _entries_in_store(store)]
            assert positions[: index + 1] == list(range(index + 1))
    writer.flush_all()
    assert [entry.position for entry in _entries_in_store(store)] == list(range(200))
    assert writer.flushes >= 2
    writer.close()


def test_a_waiter_alone_does_not_wait_out_the_flush_window() -> None:
    store = SlowStore()
    writer = _writer(store, epoch=1, first_slot=0, flush_seconds=60.0)
    number = writer.add(journal.Entry(journal.OP_CREATE, "a"))
    writer.wait(number)  # a 60 s window: returns at once because nothing else is uploading
    writer.close()


def test_a_second_agent_fences_the_first_and_recovers_all_it_acknowledged(tmp_path: Path) -> None:
    store = SlowStore(delay=0.01)
    first = _writer(store, epoch=1, first_slot=0)
    acknowledged: list[int] = []
    refused: list[BaseException] = []

    def append_forever(thread: int) -> None:
        for index in range(100_000):
            value = thread * 1_000_000 + index
            try:
                number = first.add(journal.Entry(journal.OP_WRITE, f"t{thread}", index, b"v"))
                first.wait(number)
            except Fenced as exc:
                refused.append(exc)
                return
            acknowledged.append(value)

    threads = [threading.Thread(target=append_forever, args=(thread,)) for thread in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.01)
    # The second agent claims epoch 2 and fences while the first one writes.
    start = fence(store, 2, 8)
    for thread in threads:
        thread.join(timeout=60)
    assert len(refused) == 4, "every writer thread of the replaced agent was refused"
    recovered = {(entry.path, entry.position) for entry in _entries_in_store(store)}
    for value in acknowledged:
        thread, index = divmod(value, 1_000_000)
        assert (f"t{thread}", index) in recovered, f"acknowledged change {value} lost"
    # The second agent writes after its fence, and its writes are valid.
    second = _writer(store, epoch=2, first_slot=start)
    second.wait(second.add(journal.Entry(journal.OP_CREATE, "after")))
    assert ("after", 0) in {(entry.path, entry.position) for entry in _entries_in_store(store)}
    with pytest.raises(Fenced):
        first.add(journal.Entry(journal.OP_CREATE, "zombie"))
    first.close()
    second.close()


def test_a_slot_taken_by_a_leftover_moves_the_flush() -> None:
    store = SlowStore()
    store.objects[journal.slot_key(5)] = journal.encode(1, 9, 5, [journal.Entry(journal.OP_CREATE, "old")])
    writer = _writer(store, epoch=2, first_slot=5)
    writer.wait(writer.add(journal.Entry(journal.OP_CREATE, "new")))
    assert journal.decode(store.objects[journal.slot_key(6)]).entries[0].path == "new"
    writer.close()


def test_attach_rebuilds_the_tree_that_was_journaled(tmp_path: Path) -> None:
    store = SlowStore()
    root = tmp_path / "data"
    disk, recovery = attach(str(root), store, StoreSettings(flush_seconds=0.001))
    assert recovery.epoch == 1
    disk.makedirs(str(root / "topics" / "a"))
    fd = disk.open(str(root / "topics" / "a" / "0.log"), os.O_RDWR | os.O_CREAT)
    disk.pwritev(fd, [b"hello ", b"world"], 0)
    disk.pwritev(fd, [b"!"], 11)
    disk.ftruncate(fd, 11)
    disk.fdatasync(fd)
    disk.close(fd)
    disk.write_atomically(str(root / "topics" / "a" / "topic.json"), b'{"name": "a"}')
    disk.makedirs(str(root / "trash" / "x"))
    disk.rename(str(root / "trash" / "x"), str(root / "topics" / "b"))
    disk.write_atomically(str(root / "topics" / "b" / "keys.index"), b"derived")  # not journaled
    disk.fsync_directory(str(root / "topics"))
    disk.writer.close()
    expected = _tree(root)
    disk2, recovery2 = attach(str(root), store)
    assert recovery2.epoch == 2
    rebuilt = _tree(root)
    assert rebuilt == {path: content for path, content in expected.items() if not path.endswith(".index")}
    disk2.writer.close()


def _tree(root: Path) -> dict[str, bytes | None]:
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        found[relative] = path.read_bytes() if path.is_file() else None
    return found


def test_apply_is_the_inverse_of_journaling(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    apply(
        str(root),
        (
            journal.Entry(journal.OP_MKDIR, "d"),
            journal.Entry(journal.OP_WRITE, "d/f", 3, b"abc"),
            journal.Entry(journal.OP_RENAME, "d", target="e"),
            journal.Entry(journal.OP_REPLACE, "e/g", 0, b"new"),
            journal.Entry(journal.OP_CREATE, "e/h"),
            journal.Entry(journal.OP_REMOVE, "e/h"),
        ),
    )
    assert _tree(root) == {"e": None, "e/f": b"\0\0\0abc", "e/g": b"new"}


class RecordingStore(SlowStore):
    """SlowStore that numbers what happens: fences landed, files read, journal listings."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(delay)
        self.events: list[tuple[str, str]] = []
        self._events_lock = threading.Lock()

    def _note(self, what: str, key: str) -> None:
        with self._events_lock:
            self.events.append((what, key))

    def put_new(self, key: str, data: bytes) -> bool:
        landed = super().put_new(key, data)
        self._note("put_new", key)
        return landed

    def get(self, key: str) -> bytes | None:
        self._note("get", key)
        return super().get(key)

    def list(self, prefix: str, *, after: str | None = None, limit: int | None = None) -> list[Listed]:
        self._note("list", prefix)
        return super().list(prefix, after=after, limit=limit)


def test_attach_reads_the_journal_after_its_fences_and_the_files_meanwhile(tmp_path: Path) -> None:
    """An attach fences (slow PUTs here) while it reads the manifest and downloads its
    files, and lists the journal to replay only once every fence landed: what a zombie
    lands after that listing is never replayed, and a takeover waits for the longer of
    fencing and downloading, not both."""
    store = RecordingStore()
    root = tmp_path / "data"
    disk, _ = attach(str(root), store, StoreSettings(flush_seconds=0.001, in_flight_max=8))
    disk.makedirs(str(root / "topics" / "a"))
    for number in range(4):
        disk.write_atomically(str(root / "topics" / "a" / f"file-{number}"), b"x" * 100)
    disk.fsync_directory(str(root / "topics" / "a"))
    disk.checkpointer.checkpoint(sweep=False, collect=False)  # type: ignore[union-attr]
    disk.writer.close()
    store.delay = 0.2  # the next agent's fences are slow
    store.events.clear()
    disk2, recovery = attach(str(tmp_path / "data2"), store, StoreSettings(in_flight_max=8))
    events = store.events
    fences = [i for i, (what, key) in enumerate(events) if what == "put_new" and key.startswith("wal/")]
    files = [i for i, (what, key) in enumerate(events) if what == "get" and key.startswith("files/")]
    listings = [i for i, (what, key) in enumerate(events) if what == "list" and key == "wal/"]
    assert len(fences) > 8 and files and recovery.downloaded == len(files)
    assert min(files) < max(fences), "the files are downloaded while the fences land"
    assert listings[-1] > max(fences), "the journal is listed for replay after every fence"
    assert (tmp_path / "data2" / "topics" / "a" / "file-3").read_bytes() == b"x" * 100
    disk2.writer.close()
