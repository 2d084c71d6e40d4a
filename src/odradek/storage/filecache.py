"""The cache of remote files: copies of files that live in the object store only.

A sealed segment that a checkpoint uploaded is not downloaded when an agent starts
with an empty data directory (decision record 0011, "Recovery and the cache"): the
StoreDisk answers for it from the manifest, and the first read fetches its pieces into
``<data dir>/cache/``. The cache is a least-recently-used set bounded by
``store_cache_bytes``: fetching past the bound evicts the files used longest ago.

Rules
-----
* A cached copy is named after its record's pieces (a hash of their keys, starts and
  lengths). Objects are immutable, so a name always means the same bytes: copies left
  by an earlier run are adopted at start, never checked against the store.
* Evicting removes the copy's name. A mapping of it stays valid (the kernel keeps the
  file until its last mapping goes), so readers holding batches are never cut off.
* A file is fetched once however many threads want it at the same moment; the others
  wait for that fetch. Downloads happen outside the cache's lock; mapping a copy happens
  under it, so a copy is never evicted between being found and being mapped.
* The bound holds between fetches; one file larger than the whole bound is still
  fetched (it must be read) and is the next to go.
* A long-running agent's own sealed segments join the cache too: once a checkpoint's
  manifest names a sealed segment's objects, the StoreDisk hands the local file over
  (:meth:`FileCache.adopt` renames it under its cached name), so the LRU bounds every
  sealed segment on local disk, written here or fetched.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from typing import Protocol, TypeVar

import pyarrow as pa

from odradek.errors import StorageError
from odradek.storage.manifest import Record

log = logging.getLogger(__name__)

T = TypeVar("T")
_PARTIAL = ".part"


class Store(Protocol):
    def get(self, key: str) -> bytes | None: ...


def fetch_into(store: Store, record: Record, path: str, what: str) -> int:
    """Write the content ``record`` describes to a new file ``path``; return its size.

    ``what`` names the file in errors. A piece missing from the store is damage (a
    manifest names only objects that exist until a later manifest drops them).
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for piece in record.pieces:
            data = store.get(piece.key)
            if data is None:
                raise StorageError(f"{what}: its object {piece.key} is missing from the store")
            if len(data) < piece.length:
                raise StorageError(
                    f"{what}: its object {piece.key} holds {len(data)} bytes, fewer than the "
                    f"{piece.length} its manifest names"
                )
            os.ftruncate(fd, piece.start)
            os.pwrite(fd, memoryview(data)[: piece.length], piece.start)
        size = os.fstat(fd).st_size
    finally:
        os.close(fd)
    if size != record.size:
        raise StorageError(f"{what}: its pieces make {size} bytes, not the {record.size} of its manifest")
    return size


class FileCache:
    def __init__(self, directory: str, store: Store, bytes_max: int) -> None:
        self.directory = directory
        self.store = store
        self.bytes_max = bytes_max
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[str, int] = collections.OrderedDict()  # name -> size
        self._fetching: dict[str, threading.Event] = {}
        self.bytes = 0
        self.fetches = 0
        self.hits = 0
        self.evictions = 0
        self.adopted = 0  # local files handed over by checkpoints (StoreDisk.hand_over)
        os.makedirs(directory, exist_ok=True)
        self._adopt()

    def _adopt(self) -> None:
        """Take over the copies an earlier run left (oldest use first)."""
        found = []
        for name in os.listdir(self.directory):
            path = os.path.join(self.directory, name)
            if name.endswith(_PARTIAL) or not os.path.isfile(path):
                _remove_quietly(path)
                continue
            status = os.stat(path)
            found.append((status.st_mtime, name, status.st_size))
        for _, name, size in sorted(found):
            self._entries[name] = size
            self.bytes += size
        with self._lock:
            self._evict(keep=None)

    @staticmethod
    def name_of(record: Record) -> str:
        described = "\n".join(f"{p.key} {p.start} {p.length}" for p in record.pieces)
        return hashlib.sha256(f"{record.size}\n{described}".encode()).hexdigest()[:40]

    def path_of(self, record: Record) -> str:
        return os.path.join(self.directory, self.name_of(record))

    def cached(self, record: Record) -> bool:
        with self._lock:
            return self.name_of(record) in self._entries

    # -- reading ------------------------------------------------------------------------

    def map(self, record: Record, what: str) -> pa.Buffer:
        """A read-only mapping of the file (fetched first if it is not cached)."""
        return self._use(record, what, _map)

    def read(self, record: Record, what: str) -> bytes:
        return self._use(record, what, _read)

    def _use(self, record: Record, what: str, reader: Callable[[str], T]) -> T:
        name = self.name_of(record)
        path = os.path.join(self.directory, name)
        while True:
            with self._lock:
                if name in self._entries:
                    self._entries.move_to_end(name)
                    self.hits += 1
                    return reader(path)
                event = self._fetching.get(name)
                mine = event is None
                if event is None:
                    event = self._fetching[name] = threading.Event()
            if not mine:
                event.wait()
                continue  # fetched (or failed: then this thread tries itself)
            try:
                partial = path + _PARTIAL
                try:
                    size = fetch_into(self.store, record, partial, what)
                    os.replace(partial, path)
                except BaseException:
                    _remove_quietly(partial)
                    raise
                with self._lock:
                    self._entries[name] = size
                    self.bytes += size
                    self.fetches += 1
                    self._evict(keep=name)
                log.debug("fetched %s (%d bytes) into the cache", what, size)
            finally:
                with self._lock:
                    self._fetching.pop(name, None)
                event.set()

    # -- handing over ----------------------------------------------------------------------

    def adopt(self, record: Record, source: str) -> None:
        """Take the local file ``source``, whose bytes are exactly ``record``'s, into the
        cache: renamed under its cached name (a mapping of it stays valid), counted, the
        most recently used; the least recently used copies past the bound are evicted,
        this one too if it alone exceeds the bound (a later read fetches it again)."""
        name = self.name_of(record)
        path = os.path.join(self.directory, name)
        with self._lock:
            if name in self._entries or name in self._fetching:
                _remove_quietly(source)  # the same bytes are (being) cached already
                return
            size = os.path.getsize(source)
            os.replace(source, path)
            os.utime(path)  # an adopting restart orders copies by last use
            self._entries[name] = size
            self.bytes += size
            self.adopted += 1
            self._evict(keep=None)

    # -- dropping -------------------------------------------------------------------------

    def forget(self, record: Record) -> None:
        """Remove the cached copy of ``record`` (its file was removed)."""
        name = self.name_of(record)
        with self._lock:
            size = self._entries.pop(name, None)
            if size is not None:
                self.bytes -= size
                _remove_quietly(os.path.join(self.directory, name))

    def _evict(self, keep: str | None) -> None:
        """Remove the least recently used copies past the bound (the lock is held)."""
        for name in list(self._entries):
            if self.bytes <= self.bytes_max:
                return
            if name == keep:
                continue
            self.bytes -= self._entries.pop(name)
            self.evictions += 1
            _remove_quietly(os.path.join(self.directory, name))


def _map(path: str) -> pa.Buffer:
    source = pa.memory_map(path)
    try:
        return source.read_buffer()
    finally:
        source.close()


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
