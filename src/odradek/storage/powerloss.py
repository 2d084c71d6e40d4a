"""A Disk that can lose power: it remembers what was made durable and nothing else.

A process killed with SIGKILL loses nothing that reached the kernel: the page cache
survives it, so a kill -9 test cannot catch a missing fsync. A power cut loses every
write that was not fsync'd and every directory entry (a created, renamed or removed
name) whose directory was not fsync'd. :class:`PowerLossDisk` records exactly what
a power cut would keep, so that a test can kill a process at any moment and then
:func:`restore` the data directory to what survives the cut.

Model (the strictest a POSIX file system allows; ext4 usually keeps more)
---------------------------------------------------------------------------
* A file's durable content is its content at its last fsync/fdatasync; a file never
  synced is empty.
* A directory's durable entries are its entries at its last fsync (names mapped to
  files or directories by identity, so a renamed file keeps its durable content);
  a directory never synced has no entries. Once a directory is synced with an entry
  that was renamed in from another directory, the entry is gone from the other one
  (a rename is one journal transaction).
* The data directory's own state when the disk is created is durable.

The record lives beside the data directory (``<data dir>.powerloss/``): ``tree.json``
(the durable directories, replaced atomically on every directory fsync) and one
``blobs/<id>`` file per file identity (its durable bytes, updated on every file
fsync). The record itself is written with plain writes: a SIGKILL keeps them. A kill in
the middle of updating a blob is a kill in the middle of an fsync, after which any mix
of old and new bytes is what a real disk may hold too.

Every change to the data directory must go through this Disk: a file it finds that
it did not create (something wrote around the seam) makes the next directory fsync
raise, so a missed call site fails loudly instead of escaping the test.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Sequence
from typing import Any

from odradek.storage.disk import Buffer, Disk

_FILE = "f"
_DIRECTORY = "d"


class UntrackedFile(RuntimeError):
    """A file in the data directory was created around the Disk seam."""


class PowerLossDisk(Disk):
    def __init__(self, root: str, record: str | None = None, *, sync_for_real: bool = False) -> None:
        self.root = os.path.abspath(root)
        self.record = os.path.abspath(record or self.root.rstrip("/") + ".powerloss")
        self.sync_for_real = sync_for_real  # skip real fsyncs: the record is the durability
        self._lock = threading.RLock()
        self._next_id = 1
        self._ids: dict[str, int] = {}  # volatile namespace: absolute path -> identity
        self._kinds: dict[int, str] = {}
        self._fds: dict[int, int] = {}  # fd -> identity
        self._dirty: dict[int, int] = {}  # identity -> lowest position changed since its sync
        self._tree: dict[int, dict[str, int]] = {}  # durable entries of each directory
        shutil.rmtree(self.record, ignore_errors=True)
        os.makedirs(os.path.join(self.record, "blobs"))
        os.makedirs(self.root, exist_ok=True)
        self._root_id = self._track(self.root, _DIRECTORY)
        self._adopt(self.root)
        self._save_tree()

    # -- the record -------------------------------------------------------------------

    def _track(self, path: str, kind: str) -> int:
        identity = self._next_id
        self._next_id += 1
        self._ids[path] = identity
        self._kinds[identity] = kind
        return identity

    def _adopt(self, directory: str) -> None:
        """Everything already under ``directory`` is durable as it is."""
        parent = self._ids[directory]
        entries: dict[str, int] = {}
        for name in sorted(os.listdir(directory)):
            path = os.path.join(directory, name)
            if os.path.isdir(path) and not os.path.islink(path):
                entries[name] = self._track(path, _DIRECTORY)
                self._adopt(path)
            else:
                identity = self._track(path, _FILE)
                entries[name] = identity
                shutil.copyfile(path, self._blob(identity))
        self._tree[parent] = entries

    def _blob(self, identity: int) -> str:
        return os.path.join(self.record, "blobs", str(identity))

    def _save_tree(self) -> None:
        document = {
            "root": self._root_id,
            "kinds": {str(i): k for i, k in self._kinds.items()},
            "tree": {str(d): entries for d, entries in self._tree.items()},
        }
        temporary = os.path.join(self.record, "tree.json.tmp")
        with open(temporary, "w") as handle:
            json.dump(document, handle)
        os.replace(temporary, os.path.join(self.record, "tree.json"))

    def _identity(self, path: str) -> int:
        identity = self._ids.get(os.path.abspath(path))
        if identity is None:
            raise UntrackedFile(f"{path} was not created through the Disk")
        return identity

    def _inside(self, path: str) -> bool:
        path = os.path.abspath(path)
        return path == self.root or path.startswith(self.root + os.sep)

    # -- file handles -----------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        path = os.path.abspath(path)
        with self._lock:
            existed = os.path.exists(path)
            fd = os.open(path, flags, mode)
            if not self._inside(path):
                return fd
            identity = self._ids.get(path)
            if not existed or identity is None:
                identity = self._track(path, _FILE)
                self._dirty[identity] = 0
            if flags & os.O_TRUNC:
                self._dirty[identity] = 0
            self._fds[fd] = identity
            return fd

    def close(self, fd: int) -> None:
        with self._lock:
            self._fds.pop(fd, None)
            os.close(fd)

    def dup(self, fd: int) -> int:
        with self._lock:
            copy = os.dup(fd)
            if fd in self._fds:
                self._fds[copy] = self._fds[fd]
            return copy

    def _changed(self, fd: int, position: int) -> None:
        identity = self._fds.get(fd)
        if identity is not None:
            self._dirty[identity] = min(self._dirty.get(identity, position), position)

    def _pwritev(self, fd: int, pieces: Sequence[Buffer], position: int) -> int:
        with self._lock:
            self._changed(fd, position)
            return os.pwritev(fd, pieces, position)

    def _write(self, fd: int, data: memoryview) -> int:
        with self._lock:
            self._changed(fd, os.fstat(fd).st_size)  # O_APPEND: at the end
            return os.write(fd, data)

    def ftruncate(self, fd: int, size: int) -> None:
        with self._lock:
            self._changed(fd, size)
            os.ftruncate(fd, size)

    def fdatasync(self, fd: int) -> None:
        self.fsync(fd)

    def fsync(self, fd: int) -> None:
        if self.sync_for_real:
            os.fsync(fd)
        with self._lock:
            identity = self._fds.get(fd)
            if identity is None:
                return
            start = self._dirty.pop(identity, None)
            if start is None:
                return
            # Read back through a descriptor of our own: the caller's may be write-only.
            reader = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY)
            try:
                self._copy_synced(reader, identity, start)
            finally:
                os.close(reader)

    def _copy_synced(self, reader: int, identity: int, start: int) -> None:
        size = os.fstat(reader).st_size
        blob = self._blob(identity)
        with open(blob, "r+b" if os.path.exists(blob) else "wb") as handle:
            handle.truncate(size)
            position = min(start, size)
            handle.seek(position)
            while position < size:
                chunk = os.pread(reader, min(1 << 20, size - position), position)
                if not chunk:
                    break
                handle.write(chunk)
                position += len(chunk)

    # -- names ------------------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        path = os.path.abspath(path)
        with self._lock:
            os.mkdir(path)
            if self._inside(path):
                self._track(path, _DIRECTORY)
                self._tree[self._ids[path]] = {}

    def _move(self, source: str, target: str) -> None:
        source, target = os.path.abspath(source), os.path.abspath(target)
        moved = {
            path: identity
            for path, identity in self._ids.items()
            if path == source or path.startswith(source + os.sep)
        }
        for path in moved:
            del self._ids[path]
        self._forget(target)
        for path, identity in moved.items():
            self._ids[target + path[len(source) :]] = identity

    def _forget(self, path: str) -> None:
        path = os.path.abspath(path)
        for known in [p for p in self._ids if p == path or p.startswith(path + os.sep)]:
            del self._ids[known]

    def rename(self, source: str, target: str) -> None:
        with self._lock:
            os.rename(source, target)
            self._move(source, target)

    def replace(self, source: str, target: str) -> None:
        with self._lock:
            os.replace(source, target)
            self._move(source, target)

    def remove(self, path: str) -> None:
        with self._lock:
            os.remove(path)
            self._forget(path)

    def rmtree(self, path: str) -> None:
        with self._lock:
            shutil.rmtree(path, ignore_errors=True)
            if not os.path.exists(path):
                self._forget(path)

    def fsync_directory(self, path: str) -> None:
        path = os.path.abspath(path)
        if self.sync_for_real:
            super().fsync_directory(path)
        with self._lock:
            if not self._inside(path):
                return
            directory = self._identity(path)
            entries = {name: self._identity(os.path.join(path, name)) for name in os.listdir(path)}
            arrived = set(entries.values()) - set(self._tree.get(directory, {}).values())
            for other, others in self._tree.items():
                if other != directory and arrived & set(others.values()):
                    self._tree[other] = {n: i for n, i in others.items() if i not in arrived}
            self._tree[directory] = entries
            self._save_tree()


def restore(root: str, record: str | None = None) -> dict[str, Any]:
    """Replace ``root`` by what a power cut would have left of it; return counts.

    Call it after the process that used a PowerLossDisk on ``root`` is dead.
    """
    root = os.path.abspath(root)
    record = os.path.abspath(record or root.rstrip("/") + ".powerloss")
    with open(os.path.join(record, "tree.json")) as handle:
        document = json.load(handle)
    tree: dict[str, dict[str, int]] = document["tree"]
    kinds: dict[str, str] = document["kinds"]
    rebuilt = root.rstrip("/") + ".restoring"
    shutil.rmtree(rebuilt, ignore_errors=True)
    counts = {"files": 0, "directories": 0, "bytes": 0}
    seen: set[int] = set()

    def build(identity: int, path: str) -> None:
        os.mkdir(path)
        counts["directories"] += 1
        for name, child in tree.get(str(identity), {}).items():
            if child in seen:  # never place one identity twice
                continue
            seen.add(child)
            target = os.path.join(path, name)
            if kinds[str(child)] == _DIRECTORY:
                build(child, target)
                continue
            blob = os.path.join(record, "blobs", str(child))
            if os.path.exists(blob):
                shutil.copyfile(blob, target)
                counts["bytes"] += os.path.getsize(target)
            else:
                open(target, "wb").close()  # created, never synced: empty
            counts["files"] += 1

    build(int(document["root"]), rebuilt)
    shutil.rmtree(root)
    os.rename(rebuilt, root)
    return counts
