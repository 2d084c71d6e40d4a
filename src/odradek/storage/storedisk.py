"""StoreDisk: a data directory whose durability comes from an object store.

The engine runs on a local directory as always; this Disk journals every change it
makes (storage/journal.py) through a JournalWriter into the store, and turns every
durability point into a wait for the journal: ``fdatasync``/``fsync`` of a file wait for
the flush holding that file's last change, a directory fsync and ``write_atomically``
for the flush holding the last change of all. Decision record 0011.

Three kinds of paths (storage/tree.py):

* **journaled**: every change is a journal entry;
* **derived**, because the engine rebuilds or checks them from the log at open
  (decision 0007): key-index runs, segment sidecar indexes, producer snapshots, head
  files. Not journaled; checkpoints upload them whole;
* **local**: the LOCK file, ``*.damaged`` copies, temporary files and the cache of
  remote files.

Every local change, its journal entry and its note in the :class:`Tree` happen under
one lock, so the journal holds them in the order the local directory saw them, and a
checkpoint's snapshot (storage/checkpoint.py) sees the tree exactly as of a journal
position.

**Remote files.** A sealed segment that a checkpoint uploaded is not downloaded when
an agent starts (agent.py): it is *remote*. ``exists``, ``isfile``, ``getsize`` and
``listdir`` answer for it from the manifest's record; ``map`` and ``read_bytes``
fetch it into the cache (storage/filecache.py, an LRU bounded by
``store_cache_bytes``); removing or renaming it changes only names; opening it (to
write, which the engine does not do to a sealed segment) first fetches it into the
local tree. A sealed segment written here becomes remote too once a checkpoint's
manifest names it: ``hand_over`` moves its local file into the cache, so the cache's
bound holds for every sealed segment on local disk.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

import pyarrow as pa

from odradek.errors import StorageError
from odradek.storage import journal
from odradek.storage.disk import Buffer, Disk
from odradek.storage.filecache import FileCache, fetch_into
from odradek.storage.manifest import Record
from odradek.storage.tree import DERIVED, LOCAL, Snapshot, Tree, under
from odradek.storage.walwriter import JournalWriter, StoreUnavailable

T = TypeVar("T")

if TYPE_CHECKING:
    from odradek.storage.checkpoint import Checkpointer

log = logging.getLogger(__name__)

JOURNALED, DERIVED_FILE, LOCAL_FILE = "journaled", "derived", "local"


class Store(Protocol):
    def get(self, key: str) -> bytes | None: ...


class StoreDisk(Disk):
    preallocation_pays = False  # zeros ahead of the frames would only fill the journal
    journaled = True  # an fsync waits for the journal flush holding the file's last change

    def __init__(
        self,
        root: str,
        writer: JournalWriter,
        *,
        store: Store | None = None,
        tree: Tree | None = None,
        cache: FileCache | None = None,
    ) -> None:
        self.root = os.path.abspath(root)
        self.writer = writer
        self.store = store
        self.cache = cache
        self.tree = tree if tree is not None else scan_tree(self.root)
        self.checkpointer: Checkpointer | None = None
        self._local = Disk()
        self._lock = threading.Lock()
        self._fds: dict[int, str] = {}  # descriptor -> relative path, for journaled files
        self._derived_fds: dict[int, str] = {}  # descriptor -> relative path, for derived files
        self._last: dict[str, int] = {}  # relative path -> flush of its last change
        self._last_any = 0  # flush of the last change of any journaled path

    # -- paths --------------------------------------------------------------------------

    def _inside(self, path: str) -> str | None:
        """``path`` relative to the root, '/'-separated; None when outside it or the root."""
        absolute = os.path.abspath(path)
        if not absolute.startswith(self.root + os.sep):
            return None
        return absolute[len(self.root) + 1 :].replace(os.sep, "/")

    def classify(self, path: str) -> tuple[str | None, str]:
        """(relative path, kind): journaled, derived or local (None: outside the tree)."""
        relative = self._inside(path)
        if relative is None or LOCAL.search(relative):
            return relative, LOCAL_FILE
        if DERIVED.search(relative):
            return relative, DERIVED_FILE
        return relative, JOURNALED

    def relative(self, path: str) -> str | None:
        """``path`` relative to the root, '/'-separated, if it is journaled; else None."""
        relative, kind = self.classify(path)
        return relative if kind == JOURNALED else None

    def local_path(self, relative: str) -> str:
        return os.path.join(self.root, *relative.split("/"))

    def _journal(self, entry: journal.Entry) -> None:
        """Add ``entry`` (the lock is held) and remember where it went."""
        number = self.writer.add(entry)
        self.tree.note(entry)
        self._last[entry.path] = number
        if entry.target:
            self._last[entry.target] = number
        self._last_any = number

    # -- remote files -----------------------------------------------------------------------

    def _materialize(self, relative: str) -> None:
        """Bring a remote file into the local tree (the lock is held): it is about to be
        opened, and writes go to local files."""
        record = self.tree.remote.get(relative)
        if record is None:
            return
        path = self.local_path(relative)
        partial = path + ".tmp"
        if self.cache is not None and self.cache.cached(record):
            shutil.copyfile(self.cache.path_of(record), partial)
        elif self.store is not None:
            fetch_into(self.store, record, partial, relative)
        else:
            raise StorageError(
                f"{relative} is in the object store and this disk has no store to fetch it from"
            )
        os.replace(partial, path)
        self.tree.local_now(relative)
        log.info("fetched %s from the store to write to it", relative)

    def hand_over(self, records: dict[str, Record]) -> int:
        """Hand the local copies of sealed files that a manifest just written names to the
        cache (the checkpointer calls it once the manifest is in the store); return how
        many. A file is handed over only if its local bytes are exactly its record's: not
        changed nor renamed since the checkpoint's snapshot (the record plus the journal
        after the snapshot is the file, and that journal holds nothing of it), of the
        record's size, and with no descriptor open on it. It is then remote: ``map``
        reads the cached copy, and once the LRU evicted it, fetches it again."""
        if self.cache is None:
            return 0
        handed = 0
        with self._lock:
            open_paths = set(self._fds.values())
            for relative, record in records.items():
                if (
                    not record.sealed
                    or relative in self.tree.remote
                    or relative in self.tree.changed
                    or relative in open_paths
                    or self.tree.sizes.get(relative) != record.size
                    or self.tree.moved_since_snapshot(relative)
                ):
                    continue
                local = self.local_path(relative)
                try:
                    if os.path.getsize(local) != record.size:
                        continue
                    self.cache.adopt(record, local)
                except OSError as exc:
                    log.warning("cannot hand %s over to the cache: %s", relative, exc)
                    continue
                self.tree.add_remote(relative, record)
                handed += 1
        return handed

    def import_remote(self, dirs: Iterable[str], records: dict[str, Record]) -> None:
        """Let files that are in the store enter the tree as remote files, with their
        directories (a handoff adopted, storage/handoff.py): nothing is downloaded and
        nothing journaled; the next checkpoint names them. Every path must be free."""
        with self._lock:
            self.writer._check_writable()
            taken = [path for path in [*dirs, *records] if path in self.tree.sizes]
            if taken:
                raise StorageError(f"cannot import {taken[0]}: the data directory holds it already")
            for directory in sorted(dirs):
                os.makedirs(self.local_path(directory), exist_ok=True)
                self.tree.mkdir(directory)
            for path, record in records.items():
                os.makedirs(os.path.dirname(self.local_path(path)), exist_ok=True)
                if "/" in path:
                    self.tree.mkdir(path.rsplit("/", 1)[0])
                self.tree.add_remote(path, record)

    def _forget_remote(self, relatives: Iterable[str]) -> None:
        """Drop the cached copies of remote files that were removed (the lock is held)."""
        for relative in relatives:
            record = self.tree.remote.get(relative)
            if record is not None and self.cache is not None:
                self.cache.forget(record)

    # -- descriptors ----------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        relative, kind = self.classify(path)
        if relative is None or kind == LOCAL_FILE:
            return self._local.open(path, flags, mode)
        with self._lock:
            self._materialize(relative)
            created = bool(flags & os.O_CREAT) and not os.path.exists(path)
            fd = self._local.open(path, flags, mode)
            try:
                if kind == DERIVED_FILE:
                    if created:
                        self.tree.create(relative)
                    elif flags & os.O_TRUNC:
                        self.tree.truncate(relative, 0)
                    self._derived_fds[fd] = relative
                    return fd
                if created:
                    self._journal(journal.Entry(journal.OP_CREATE, relative))
                if flags & os.O_TRUNC and not created:
                    self._journal(journal.Entry(journal.OP_TRUNCATE, relative, 0))
            except BaseException:
                self._local.close(fd)
                raise
            self._fds[fd] = relative
            return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
            self._derived_fds.pop(fd, None)
        self._local.close(fd)

    def dup(self, fd: int) -> int:
        with self._lock:
            copy = self._local.dup(fd)
            for table in (self._fds, self._derived_fds):
                relative = table.get(fd)
                if relative is not None:
                    table[copy] = relative
            return copy

    def _pwritev(self, fd: int, pieces: Sequence[Buffer], position: int) -> int:
        relative = self._fds.get(fd)
        if relative is None:
            derived = self._derived_fds.get(fd)
            if derived is None:
                return self._local._pwritev(fd, pieces, position)
            with self._lock:
                written = self._local._pwritev(fd, pieces, position)
                if written > 0:
                    self.tree.write(derived, position, written)
                return written
        data = b"".join(bytes(memoryview(piece)) for piece in pieces)
        with self._lock:
            self.writer._check_writable()
            written = self._local._pwritev(fd, [data], position)
            if written > 0:
                self._journal(self._write_entry(relative, position, data[:written]))
            return written

    def _write_entry(self, relative: str, position: int, data: bytes) -> journal.Entry:
        """The entry of a write (the lock is held): zeros written at or past the file's end
        (an active segment's preallocation) are journaled as the size they extend the
        file to, which a replay's ftruncate fills with the same zeros, not as bytes."""
        if data[:1] == b"\0" and position >= self.tree.sizes.get(relative, 0) and not data.strip(b"\0"):
            return journal.Entry(journal.OP_TRUNCATE, relative, position + len(data))
        return journal.Entry(journal.OP_WRITE, relative, position, data)

    def _write(self, fd: int, data: memoryview) -> int:
        relative = self._fds.get(fd)
        if relative is None:
            derived = self._derived_fds.get(fd)
            if derived is None:
                return self._local._write(fd, data)
            with self._lock:
                position = os.fstat(fd).st_size
                written = self._local._write(fd, data)
                if written > 0:
                    self.tree.write(derived, position, written)
                return written
        with self._lock:
            self.writer._check_writable()
            position = os.fstat(fd).st_size  # O_APPEND: at the end
            written = self._local._write(fd, data)
            if written > 0:
                self._journal(self._write_entry(relative, position, bytes(data[:written])))
            return written

    def ftruncate(self, fd: int, size: int) -> None:
        relative = self._fds.get(fd)
        if relative is None:
            derived = self._derived_fds.get(fd)
            if derived is None:
                self._local.ftruncate(fd, size)
                return
            with self._lock:
                self._local.ftruncate(fd, size)
                self.tree.truncate(derived, size)
            return
        with self._lock:
            self._local.ftruncate(fd, size)
            self._journal(journal.Entry(journal.OP_TRUNCATE, relative, size))

    def fdatasync(self, fd: int) -> None:
        self.fsync(fd)

    def fsync(self, fd: int) -> None:
        relative = self._fds.get(fd)
        if relative is None:
            return  # not journaled: the local cache needs no fsync
        with self._lock:
            number = self._last.get(relative, 0)
        if number:
            self.writer.wait(number)

    def sync_position(self, fd: int) -> int:
        """The journal flush holding the last change of ``fd``'s file so far (0: none
        since this agent started, or not journaled). The caller keeps the file from
        changing meanwhile (a topic's writer lock), so that is the flush of its own write."""
        relative = self._fds.get(fd)
        return 0 if relative is None else self._last.get(relative, 0)

    def wait_position(self, position: int) -> int:
        """Return once journal flush ``position`` and every one before it is committed
        (StoreUnavailable after the journal's wait timeout, Fenced once replaced), with
        the last flush committed by then."""
        if position:
            self.writer.wait(position)
        return max(position, self.writer.committed)

    # -- names --------------------------------------------------------------------------

    # A file moves between the local tree and the cache under the lock (a remote file
    # fetched to be written; a sealed one handed over): the local file appears before
    # the record goes, and goes before the record appears. So asking the local tree,
    # then the records (under the lock), then the local tree again, never misses one.

    def listdir(self, path: str) -> list[str]:
        relative = self._inside(path)
        if relative is None:
            return self._local.listdir(path)
        with self._lock:
            names = self._local.listdir(path)
            remote = self.tree.remote_names.get(relative)
            if remote:
                names = [*names, *sorted(remote.difference(names))]
        return names

    def exists(self, path: str) -> bool:
        return self._local.exists(path) or self._remote_record(path) is not None or self._local.exists(path)

    def isfile(self, path: str) -> bool:
        return self._local.isfile(path) or self._remote_record(path) is not None or self._local.isfile(path)

    def getsize(self, path: str) -> int:
        found = self._local_or_remote(path, self._local.getsize)
        return found[1].size if isinstance(found, tuple) else found

    def mkdir(self, path: str) -> None:
        relative, kind = self.classify(path)
        with self._lock:
            self._local.mkdir(path)
            if relative is not None and kind == JOURNALED:
                self._journal(journal.Entry(journal.OP_MKDIR, relative))
            elif relative is not None and kind == DERIVED_FILE:
                self.tree.mkdir(relative)

    def rename(self, source: str, target: str) -> None:
        self._move(source, target, replace=False)

    def replace(self, source: str, target: str) -> None:
        self._move(source, target, replace=True)

    def _move(self, source: str, target: str, *, replace: bool) -> None:
        source_relative, source_kind = self.classify(source)
        target_relative, target_kind = self.classify(target)
        source_tracked = source_relative is not None and source_kind != LOCAL_FILE
        target_tracked = target_relative is not None and target_kind != LOCAL_FILE
        with self._lock:
            remote = source_relative is not None and source_relative in self.tree.remote
            if remote and target_tracked:
                if os.path.isfile(target):
                    os.remove(target)  # the remote file takes its place
            elif remote:
                self._materialize(source_relative)  # type: ignore[arg-type]
                remote = False
            if not remote:
                if replace:
                    self._local.replace(source, target)
                else:
                    self._local.rename(source, target)
            if source_tracked and target_tracked:
                assert source_relative is not None and target_relative is not None
                if source_kind == JOURNALED and target_kind == JOURNALED:
                    self._journal(journal.Entry(journal.OP_RENAME, source_relative, target=target_relative))
                elif source_kind == DERIVED_FILE and target_kind == DERIVED_FILE:
                    self.tree.rename(source_relative, target_relative)
                else:
                    self._gone(source_relative, source_kind)
                    self._arrived(target, target_relative)
            elif source_tracked:
                # Moved out of the tree (into a directory nothing journals): gone.
                assert source_relative is not None
                self._gone(source_relative, source_kind)
            elif target_tracked:
                # Into the tree from outside it (a staged topic from elsewhere): its files.
                assert target_relative is not None
                self._arrived(target, target_relative)

    def _gone(self, relative: str, kind: str) -> None:
        """``relative`` left the tree (the lock is held)."""
        if kind == JOURNALED:
            self._journal(journal.Entry(journal.OP_RMTREE, relative))
        else:
            self.tree.rmtree(relative)

    def _arrived(self, path: str, relative: str) -> None:
        """A file or directory arrived in the tree whole (the lock is held): journal it."""
        _, kind = self.classify(path)
        if os.path.isdir(path):
            if kind == JOURNALED:
                self._journal(journal.Entry(journal.OP_MKDIR, relative))
            else:
                self.tree.mkdir(relative)
            for name in sorted(os.listdir(path)):
                child, child_kind = self.classify(os.path.join(path, name))
                if child is not None and child_kind != LOCAL_FILE:
                    self._arrived(os.path.join(path, name), child)
        elif kind == JOURNALED:
            with open(path, "rb") as handle:
                self._journal(journal.Entry(journal.OP_REPLACE, relative, 0, handle.read()))
        else:
            self.tree.replace(relative, os.path.getsize(path))

    def remove(self, path: str) -> None:
        relative, kind = self.classify(path)
        with self._lock:
            if relative is not None and relative in self.tree.remote:
                self._forget_remote([relative])
            else:
                self._local.remove(path)
            if relative is not None and kind == JOURNALED:
                self._journal(journal.Entry(journal.OP_REMOVE, relative))
            elif relative is not None and kind == DERIVED_FILE:
                self.tree.remove(relative)

    def rmtree(self, path: str) -> None:
        relative, kind = self.classify(path)
        with self._lock:
            self._local.rmtree(path)
            if relative is None or kind == LOCAL_FILE or os.path.exists(path):
                return
            self._forget_remote([p for p in self.tree.remote if under(p, relative)])
            if kind == JOURNALED:
                self._journal(journal.Entry(journal.OP_RMTREE, relative))
            else:
                self.tree.rmtree(relative)

    def fsync_directory(self, path: str) -> None:
        with self._lock:
            number = self._last_any
        if number:
            self.writer.wait(number)

    # -- whole files --------------------------------------------------------------------

    def write_atomically(self, path: str, data: Buffer, *, sync: bool = True) -> None:
        relative, kind = self.classify(path)
        if relative is None or kind == LOCAL_FILE:
            self._local.write_atomically(path, data, sync=False)
            return
        if kind == DERIVED_FILE:
            with self._lock:
                self._local.write_atomically(path, data, sync=False)
                self.tree.replace(relative, memoryview(data).nbytes)
            return
        content = bytes(memoryview(data))
        with self._lock:
            self.writer._check_writable()
            self.tree.local_now(relative)
            self._local.write_atomically(path, content, sync=False)
            self._journal(journal.Entry(journal.OP_REPLACE, relative, 0, content))
            number = self._last_any
        if sync:
            self.writer.wait(number)

    def map(self, path: str) -> pa.Buffer:
        found = self._local_or_remote(path, self._local.map)
        if not isinstance(found, tuple):
            return found
        relative, record = found
        if record.size == 0:
            return pa.py_buffer(b"")
        try:
            return self._cache().map(record, relative)
        except StorageError:
            if self._remote_record(path) is None and not self._local.exists(path):
                raise FileNotFoundError(2, "removed while it was fetched", path) from None
            raise

    def read_bytes(self, path: str) -> bytes:
        found = self._local_or_remote(path, self._local.read_bytes)
        if not isinstance(found, tuple):
            return found
        relative, record = found
        return self._cache().read(record, relative)

    def _local_or_remote(self, path: str, read: Callable[[str], T]) -> T | tuple[str, Record]:
        """The store's record of ``path`` (relative path and record) if the file is remote,
        else ``read(path)`` of the local file; a file handed over to the cache while it was
        read locally is found remote then (only a file in neither place is missing)."""
        found = self._remote_record(path)
        while found is None:
            try:
                return read(path)
            except FileNotFoundError:
                found = self._remote_record(path)  # handed over to the cache meanwhile?
                if found is None:
                    raise
        return found

    def _remote_record(self, path: str) -> tuple[str, Record] | None:
        relative = self._inside(path)
        if relative is None:
            return None
        with self._lock:
            record = self.tree.remote.get(relative)
        return None if record is None else (relative, record)

    def _cache(self) -> FileCache:
        if self.cache is None:
            raise StorageError("this disk has remote files but no cache to fetch them into")
        return self.cache

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot(self) -> tuple[Snapshot, int]:
        """The tree now and the journal position it is at (see storage/checkpoint.py)."""
        with self._lock:
            self.writer._check_writable()  # a closed or fenced journal takes no checkpoint
            return self.tree.snapshot(), self.writer.cut()

    def moved_since_snapshot(self, paths: Iterable[str]) -> str | None:
        """The first of ``paths`` that was renamed (or a directory above it) since the
        last snapshot, or None."""
        with self._lock:
            if not self.tree.moves:
                return None
            for path in paths:
                if self.tree.moved_since_snapshot(path):
                    return path
        return None

    def uncommitted(self) -> list[str]:
        """The journaled paths whose last change the store has not committed yet."""
        committed = self.writer.committed
        with self._lock:
            return sorted(path for path, number in self._last.items() if number > committed)

    def checkpoint(self) -> None:
        """Take a checkpoint now (tests, tools); raises StorageError if it failed."""
        if self.checkpointer is None:
            raise StorageError("this disk has no checkpointer (it was not attached to a store)")
        self.checkpointer.checkpoint()

    # -- the agent's lifetime -------------------------------------------------------------

    def detach(self) -> None:
        """Stop checkpoints, commit everything journaled so far, write a last checkpoint
        (so the next start replays nothing), then stop the journal (the engine's close).
        A failed last checkpoint is logged: the journal holds everything anyway.

        While the store is stuck (a wait timed out and nothing committed since, as when
        the engine's topics closed during an outage) it does not wait again: it raises
        StoreUnavailable at once, having closed the journal; what was not committed was
        never acknowledged. Either way it returns within about one wait timeout."""
        checkpointer = self.checkpointer
        if checkpointer is not None:
            checkpointer.stop(join=False)  # a checkpoint under way ends at the latest when the journal closes
        try:
            if not self.writer.closed:
                if self.writer.stuck:
                    raise StoreUnavailable(
                        f"the object store took no journal for {self.writer.wait_seconds:g} s "
                        f"({self.writer.failure or 'uploads are slow'}); closing without waiting again"
                    )
                self.writer.flush_all()
                if checkpointer is not None:
                    checkpointer.stop()
                if checkpointer is not None and self.writer.fenced is None and not checkpointer.fenced:
                    try:
                        checkpointer.checkpoint()
                    except (StorageError, OSError) as exc:
                        log.warning("no last checkpoint at close (the journal holds everything): %s", exc)
        finally:
            self.writer.close()
            if checkpointer is not None:
                checkpointer.stop()


def scan_tree(root: str) -> Tree:
    """A Tree of what ``root`` holds now (a StoreDisk made without one)."""
    tree = Tree()
    if not os.path.isdir(root):
        return tree
    for directory, subdirectories, files in os.walk(root):
        relative_directory = os.path.relpath(directory, root).replace(os.sep, "/")
        prefix = "" if relative_directory == "." else relative_directory + "/"
        subdirectories[:] = [name for name in subdirectories if not LOCAL.search(prefix + name)]
        for name in subdirectories:
            tree.dirs.add(prefix + name)
        for name in files:
            relative = prefix + name
            if not LOCAL.search(relative):
                tree.sizes[relative] = os.path.getsize(os.path.join(directory, name))
    tree.changed = dict.fromkeys(tree.sizes, 0)
    return tree
