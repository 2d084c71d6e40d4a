"""The one seam between Odradek and the file system of a data directory.

Every call that changes a data directory — creating, writing, syncing, renaming and
removing files and directories — goes through a :class:`Disk`. The engine, the
consumer groups and the doors never call ``os`` for those themselves. Two reasons:

* **Durability has one set of rules, written once.** A file that must be all old or
  all new is written whole to a temporary name, fsync'd, renamed over the old one,
  and the directory is fsync'd so that the rename itself survives a power loss
  (:meth:`Disk.write_atomically`). A directory created by :meth:`Disk.makedirs` is
  durable when the call returns. A short write is continued until the whole buffer is
  written or the kernel says why it cannot be (ENOSPC: "no space left on device").
* **Faults can be injected under the engine.** ``odradek.storage.powerloss`` is a Disk
  that remembers what was made durable and can revert the directory to exactly that:
  the crash tests use it to lose everything a power cut would lose.

Reads (memory maps of sealed files, whole small files) go through the Disk too, but
they change nothing, so a fault-injecting Disk passes them through.

Rules for callers
-----------------
* A new file's name is durable only after :meth:`fsync_directory` of its directory
  (``write_atomically`` and ``makedirs`` do it themselves).
* ``remove``/``rename``/``replace`` are durable only after :meth:`fsync_directory` of
  every directory whose entries they changed.
* An error is raised as the ``OSError`` the kernel gave; callers translate it into
  ``StorageError`` with what they were doing (see ``describe_os_error``).
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

Buffer = bytes | bytearray | memoryview | Any  # anything with the buffer protocol


def describe_os_error(exc: OSError) -> str:
    """What an OSError means for the user: the full-disk case is named plainly."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "no space left on device"
    if exc.strerror:
        return exc.strerror.lower() if exc.errno is not None else exc.strerror
    return str(exc)


class Disk:
    """The local file system (the default). Subclasses inject faults."""

    # Whether zeros written ahead of an active segment's frames make its fsyncs cheaper
    # (a file system's fdatasync then has no new size to commit). A store's journal
    # would only carry the zeros (storage/storedisk.py).
    preallocation_pays = True
    # Whether durability comes from a journal of changes (an object store's,
    # storage/storedisk.py) rather than from fsyncs: a group commit then notes where each
    # append's write went in the journal (``sync_position``) and acknowledges it once the
    # journal is durable up to there (``wait_position``), not with rounds of fsyncs of
    # the file (engine/commit.py). A file system's fdatasync covers every write before
    # it, so one round at a time, taking every append that queued meanwhile, costs
    # nothing there.
    journaled = False

    # -- file handles -----------------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        return os.open(path, flags, mode)

    def close(self, fd: int) -> None:
        os.close(fd)

    def dup(self, fd: int) -> int:
        return os.dup(fd)

    def pwritev(self, fd: int, pieces: Sequence[Buffer], position: int, total: int | None = None) -> int:
        """Write all of ``pieces`` at ``position``; return the bytes written (``total``,
        their size, may be given when the caller knows it).

        A short write (the kernel wrote part of the buffer, as it does when the disk
        fills up mid-write) is continued, so the caller either gets everything written
        or the OSError that stopped it (ENOSPC, EIO...).
        """
        written = self._pwritev(fd, pieces, position)
        if total is None:
            total = sum(memoryview(piece).nbytes for piece in pieces)
        if written == total:
            return written
        done = written
        remaining = _skip(list(pieces), written)
        while done < total:
            if written <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written = self._pwritev(fd, remaining, position + done)
            done += max(written, 0)
            remaining = _skip(remaining, max(written, 0))
        return done

    def _pwritev(self, fd: int, pieces: Sequence[Buffer], position: int) -> int:
        return os.pwritev(fd, pieces, position)

    def append(self, fd: int, data: Buffer) -> None:
        """Write all of ``data`` at the end of a file opened with O_APPEND."""
        view = memoryview(data)
        while view:
            written = self._write(fd, view)
            if written <= 0:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            view = view[written:]

    def _write(self, fd: int, data: memoryview) -> int:
        return os.write(fd, data)

    def fdatasync(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def sync_position(self, fd: int) -> int:
        """Where the changes made so far to ``fd``'s file stand in this disk's journal,
        for :meth:`wait_position` (0: this disk keeps no journal, fsync instead)."""
        return 0

    def wait_position(self, position: int) -> int:
        """Return once every change up to journal ``position`` is durable (a disk
        without a journal has none to wait for), with the position durable by then (at
        least ``position``)."""
        return position

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fsize(self, fd: int) -> int:
        return os.fstat(fd).st_size

    # -- names ------------------------------------------------------------------------

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def isfile(self, path: str) -> bool:
        return os.path.isfile(path)

    def getsize(self, path: str) -> int:
        return os.path.getsize(path)

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its missing parents, durably: each parent whose entries
        changed is fsync'd before this returns."""
        path = os.path.abspath(path)
        missing: list[str] = []
        probe = path
        while not self.isdir(probe):
            missing.append(probe)
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        for directory in reversed(missing):
            try:
                self.mkdir(directory)
            except FileExistsError:
                if not self.isdir(directory):
                    raise
                continue
            self.fsync_directory(os.path.dirname(directory))

    def rename(self, source: str, target: str) -> None:
        os.rename(source, target)

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rmtree(self, path: str) -> None:
        """Remove a directory tree; what cannot be removed is left (and logged by no one:
        it is garbage in a directory that is about to be forgotten)."""
        shutil.rmtree(path, ignore_errors=True)

    def fsync_directory(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- whole files ------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        with open(path, "rb") as handle:
            return handle.read()

    def map(self, path: str) -> pa.Buffer:
        """A read-only memory map of a whole file, as an Arrow buffer.

        The file's descriptor is closed before this returns (the mapping lives as long
        as the buffer and anything sliced from it): a mapping must not cost one of the
        process's open files, as Python's ``mmap`` does (it keeps a duplicate).
        """
        source = pa.memory_map(path)
        try:
            return source.read_buffer()
        finally:
            source.close()

    def write_new(self, path: str, data: Buffer, *, sync: bool = True) -> None:
        """Write a file that must not exist yet, fsync'd (its name is not: the caller
        fsyncs the directory, or renames the file into place)."""
        fd = self.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            self.pwritev(fd, [data], 0)
            if sync:
                self.fsync(fd)
        finally:
            self.close(fd)

    def write_atomically(self, path: str, data: Buffer, *, sync: bool = True) -> None:
        """Replace ``path`` by ``data`` so that a crash or a power loss leaves either the
        old or the new file, and a return means the new one is durable.

        ``sync=False`` keeps the atomicity against a crashed process but not against a
        power loss (the engine's ``fsync=False`` mode).
        """
        temporary = path + TEMPORARY_SUFFIX
        try:
            self.remove(temporary)  # a leftover of a crash
        except FileNotFoundError:
            pass
        self.write_new(temporary, data, sync=sync)
        self.replace(temporary, path)
        if sync:
            self.fsync_directory(os.path.dirname(path) or ".")


TEMPORARY_SUFFIX = ".tmp"


def remove_leftovers(disk: Disk, directory: str) -> int:
    """Remove the temporary files (``*.tmp``) a crash left in ``directory``; return how
    many. Every ``*.tmp`` is a write_atomically that never reached its rename."""
    removed = 0
    try:
        names = disk.listdir(directory)
    except FileNotFoundError:
        return 0
    for name in names:
        if name.endswith(TEMPORARY_SUFFIX):
            try:
                disk.remove(os.path.join(directory, name))
                removed += 1
            except (FileNotFoundError, IsADirectoryError):
                pass
    return removed


def _skip(pieces: list[Buffer], count: int) -> list[Buffer]:
    """``pieces`` without their first ``count`` bytes."""
    rest: list[Buffer] = []
    for piece in pieces:
        view = memoryview(piece).cast("B")
        if count >= view.nbytes:
            count -= view.nbytes
            continue
        rest.append(view[count:])
        count = 0
    return rest


LOCAL = Disk()
