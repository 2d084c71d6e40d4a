"""A read-only view of a checkpoint: the tree one manifest names, read from the store.

What lets an agent that does not own a cell read the cell's sealed segments (decision
0042): the engine's own readers (``Document``, ``read_index``, ``SegmentFile``) run on
this Disk, which answers names and sizes from the manifest and contents through a
bounded cache of remote files (storage/filecache.py). Objects are immutable, so what a
manifest names reads the same for as long as the store keeps it; a later checkpoint's
garbage collection may delete it (reading it then fails with StorageError: the caller
reads the newer manifest). Every write is refused: a reader must never change a cell
it does not own.

Paths are relative to the data directory, as the manifest names them
(``topics/orders/00000000000000000000.log``). An object that is gone or shorter than
the manifest says reads as an unreadable file (OSError, EIO), as the engine's readers
expect of a damaged local file.
"""

from __future__ import annotations

import errno
import posixpath
from collections.abc import Sequence
from typing import NoReturn

import pyarrow as pa

from odradek.errors import StorageError
from odradek.storage.disk import Buffer, Disk
from odradek.storage.filecache import FileCache
from odradek.storage.manifest import Manifest, Record


class ManifestDisk(Disk):
    """The files of ``manifest``, read through ``cache`` (see the module docstring)."""

    def __init__(self, manifest: Manifest, cache: FileCache) -> None:
        self.manifest = manifest
        self.cache = cache
        children: dict[str, set[str]] = {}
        for path in (*manifest.files, *manifest.dirs):
            parent, name = posixpath.split(path)
            children.setdefault(parent, set()).add(name)
        self._children = {parent: sorted(names) for parent, names in children.items()}

    def record(self, path: str) -> Record:
        found = self.manifest.files.get(_normal(path))
        if found is None:
            raise FileNotFoundError(2, "not in the checkpoint", path)
        return found

    # -- names ------------------------------------------------------------------------

    def listdir(self, path: str) -> list[str]:
        normal = _normal(path)
        if normal not in self._children and normal not in self.manifest.dirs:
            raise FileNotFoundError(2, "not in the checkpoint", path)
        return list(self._children.get(normal, ()))

    def exists(self, path: str) -> bool:
        normal = _normal(path)
        return normal in self.manifest.files or normal in self.manifest.dirs or normal in self._children

    def isdir(self, path: str) -> bool:
        normal = _normal(path)
        return normal in self.manifest.dirs or normal in self._children

    def isfile(self, path: str) -> bool:
        return _normal(path) in self.manifest.files

    def getsize(self, path: str) -> int:
        return self.record(path).size

    # -- contents -----------------------------------------------------------------------

    def read_bytes(self, path: str) -> bytes:
        record = self.record(path)
        if record.size == 0:
            return b""
        try:
            return self.cache.read(record, path)
        except StorageError as exc:  # an object gone or short: to the readers, an unreadable file
            raise OSError(errno.EIO, exc.message, path) from exc

    def map(self, path: str) -> pa.Buffer:
        record = self.record(path)
        if record.size == 0:
            return pa.py_buffer(b"")
        try:
            return self.cache.map(record, path)
        except StorageError as exc:
            raise OSError(errno.EIO, exc.message, path) from exc

    # -- every change is refused --------------------------------------------------------

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        _refuse(path)

    def pwritev(self, fd: int, pieces: Sequence[Buffer], position: int, total: int | None = None) -> int:
        _refuse(f"descriptor {fd}")

    def append(self, fd: int, data: Buffer) -> None:
        _refuse(f"descriptor {fd}")

    def ftruncate(self, fd: int, size: int) -> None:
        _refuse(f"descriptor {fd}")

    def mkdir(self, path: str) -> None:
        _refuse(path)

    def makedirs(self, path: str) -> None:
        _refuse(path)

    def rename(self, source: str, target: str) -> None:
        _refuse(source)

    def replace(self, source: str, target: str) -> None:
        _refuse(source)

    def remove(self, path: str) -> None:
        _refuse(path)

    def rmtree(self, path: str) -> None:
        _refuse(path)

    def write_new(self, path: str, data: Buffer, *, sync: bool = True) -> None:
        _refuse(path)

    def write_atomically(self, path: str, data: Buffer, *, sync: bool = True) -> None:
        _refuse(path)


def _normal(path: str) -> str:
    normal = posixpath.normpath(path)
    return "" if normal == "." else normal


def _refuse(what: str) -> NoReturn:
    raise StorageError(f"{what}: a checkpoint read from the store is read-only")
