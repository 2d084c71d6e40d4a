"""StoreDisk: a data directory whose durability comes from an object store.

The engine runs on a local directory as always; this Disk journals every change it
makes (storage/journal.py) through a JournalWriter into the store, and turns every
durability point into a wait for the journal: ``fdatasync``/``fsync`` of a file wait for
the flush holding that file's last change, a directory fsync and ``write_atomically``
for the flush holding the last change of all. Decision record 0011.

Not journaled, because the engine rebuilds or checks them from the log at open
(decision 0007): key-index runs, segment sidecar indexes, producer snapshots, head
files, ``*.damaged`` copies; nor the LOCK file, the trash of deleted topics (whose
removal is journaled as the rename into it), and the local cache of remote files.

Every local change and its journal entry happen under one lock, so the journal holds
them in the order the local directory saw them.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence

import pyarrow as pa

from odradek.storage import journal
from odradek.storage.disk import Buffer, Disk
from odradek.storage.walwriter import JournalWriter

# Relative paths the journal leaves out (see the module docstring).
_DERIVED = re.compile(
    r"(^|/)(LOCK|head|[^/]*\.index|[^/]*\.damaged|[^/]*\.tmp)$|(^|/)keys/|(^|/)producers/|^cache(/|$)"
)


class StoreDisk(Disk):
    def __init__(self, root: str, writer: JournalWriter) -> None:
        self.root = os.path.abspath(root)
        self.writer = writer
        self._local = Disk()
        self._lock = threading.Lock()
        self._fds: dict[int, str] = {}  # descriptor -> relative path, for journaled files
        self._last: dict[str, int] = {}  # relative path -> flush of its last change
        self._last_any = 0  # flush of the last change of any journaled path

    # -- paths --------------------------------------------------------------------------

    def relative(self, path: str) -> str | None:
        """``path`` relative to the root, '/'-separated; None when outside it or derived."""
        absolute = os.path.abspath(path)
        if absolute == self.root:
            return None
        if not absolute.startswith(self.root + os.sep):
            return None
        relative = absolute[len(self.root) + 1 :].replace(os.sep, "/")
        if _DERIVED.search(relative):
            return None
        return relative

    def _journal(self, entry: journal.Entry) -> None:
        """Add ``entry`` (the lock is held) and remember where it went."""
        number = self.writer.add(entry)
        self._last[entry.path] = number
        if entry.target:
            self._last[entry.target] = number
        self._last_any = number

    # -- descriptors ----------------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        relative = self.relative(path)
        if relative is None:
            return self._local.open(path, flags, mode)
        with self._lock:
            created = bool(flags & os.O_CREAT) and not os.path.exists(path)
            fd = self._local.open(path, flags, mode)
            try:
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
        self._local.close(fd)

    def dup(self, fd: int) -> int:
        with self._lock:
            copy = self._local.dup(fd)
            relative = self._fds.get(fd)
            if relative is not None:
                self._fds[copy] = relative
            return copy

    def _pwritev(self, fd: int, pieces: Sequence[Buffer], position: int) -> int:
        relative = self._fds.get(fd)
        if relative is None:
            return self._local._pwritev(fd, pieces, position)
        data = b"".join(bytes(memoryview(piece)) for piece in pieces)
        with self._lock:
            self.writer._check_writable()
            written = self._local._pwritev(fd, [data], position)
            if written > 0:
                self._journal(journal.Entry(journal.OP_WRITE, relative, position, data[:written]))
            return written

    def _write(self, fd: int, data: memoryview) -> int:
        relative = self._fds.get(fd)
        if relative is None:
            return self._local._write(fd, data)
        with self._lock:
            self.writer._check_writable()
            position = os.fstat(fd).st_size  # O_APPEND: at the end
            written = self._local._write(fd, data)
            if written > 0:
                self._journal(journal.Entry(journal.OP_WRITE, relative, position, bytes(data[:written])))
            return written

    def ftruncate(self, fd: int, size: int) -> None:
        relative = self._fds.get(fd)
        if relative is None:
            self._local.ftruncate(fd, size)
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

    # -- names --------------------------------------------------------------------------

    def mkdir(self, path: str) -> None:
        relative = self.relative(path)
        with self._lock:
            self._local.mkdir(path)
            if relative is not None:
                self._journal(journal.Entry(journal.OP_MKDIR, relative))

    def rename(self, source: str, target: str) -> None:
        self._move(source, target, replace=False)

    def replace(self, source: str, target: str) -> None:
        self._move(source, target, replace=True)

    def _move(self, source: str, target: str, *, replace: bool) -> None:
        source_relative, target_relative = self.relative(source), self.relative(target)
        with self._lock:
            if replace:
                self._local.replace(source, target)
            else:
                self._local.rename(source, target)
            if target_relative is None and source_relative is not None:
                # Moved out of the journaled tree (a deleted topic into the trash): gone.
                self._journal(journal.Entry(journal.OP_RMTREE, source_relative))
            elif target_relative is not None and source_relative is not None:
                self._journal(journal.Entry(journal.OP_RENAME, source_relative, target=target_relative))
            elif target_relative is not None:
                # Into the tree from outside it (a staged topic from the trash): its files.
                self._journal_tree(target, target_relative)

    def _journal_tree(self, path: str, relative: str) -> None:
        """Journal a file or directory that arrived in the tree whole (the lock is held)."""
        if os.path.isdir(path):
            self._journal(journal.Entry(journal.OP_MKDIR, relative))
            for name in sorted(os.listdir(path)):
                child = self.relative(os.path.join(path, name))
                if child is not None:
                    self._journal_tree(os.path.join(path, name), child)
        else:
            with open(path, "rb") as handle:
                self._journal(journal.Entry(journal.OP_REPLACE, relative, 0, handle.read()))

    def remove(self, path: str) -> None:
        relative = self.relative(path)
        with self._lock:
            self._local.remove(path)
            if relative is not None:
                self._journal(journal.Entry(journal.OP_REMOVE, relative))

    def rmtree(self, path: str) -> None:
        relative = self.relative(path)
        with self._lock:
            self._local.rmtree(path)
            if relative is not None and not os.path.exists(path):
                self._journal(journal.Entry(journal.OP_RMTREE, relative))

    def fsync_directory(self, path: str) -> None:
        with self._lock:
            number = self._last_any
        if number:
            self.writer.wait(number)

    # -- whole files --------------------------------------------------------------------

    def write_atomically(self, path: str, data: Buffer, *, sync: bool = True) -> None:
        relative = self.relative(path)
        if relative is None:
            self._local.write_atomically(path, data, sync=False)
            return
        content = bytes(memoryview(data))
        with self._lock:
            self.writer._check_writable()
            self._local.write_atomically(path, content, sync=False)
            self._journal(journal.Entry(journal.OP_REPLACE, relative, 0, content))
            number = self._last_any
        if sync:
            self.writer.wait(number)

    def map(self, path: str) -> pa.Buffer:
        return self._local.map(path)

    # -- the agent's lifetime -------------------------------------------------------------

    def detach(self) -> None:
        """Commit everything journaled so far, then stop the journal (the engine's close)."""
        try:
            if not self.writer.closed:
                self.writer.flush_all()
        finally:
            self.writer.close()
