"""A bounded set of open file descriptors, shared by every file the engine writes.

A data directory may hold tens of thousands of topics and groups; the process may open
only ``RLIMIT_NOFILE`` files (often 1,024), and connections need descriptors too. So no
file keeps its descriptor for its whole life: each :class:`Handle` opens its file on
first use and keeps it in one engine-wide LRU of at most ``capacity`` descriptors; the
least recently used idle handle is closed when another needs room.

Rules
-----
* A descriptor is used only inside ``with handle.fd() as fd:`` (a *pin*): a pinned
  handle is never closed under its user, so a descriptor number is never used after
  it was closed (and perhaps reused by another file).
* A handle holding writes that were not fsync'd yet (``dirty``) is not evicted either:
  an fsync through a new descriptor would flush the same pages on Linux, but a write-back
  error that happened before the new descriptor was opened would not be reported to it.
  The group commit marks a handle clean after its fsync (``synced``).
* When every handle is pinned or dirty the set grows past ``capacity`` rather than
  fail; it shrinks back as handles become idle. ``capacity`` leaves most of the
  process's limit to connections.
"""

from __future__ import annotations

import collections
import logging
import resource
import threading

from odradek import limits
from odradek.storage.disk import Disk

log = logging.getLogger(__name__)


def raise_open_files_limit() -> int:
    """Raise this process's soft limit of open files to its hard limit; return it."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY:
            hard = max(soft, limits.open_files_wanted)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            log.info("raised the open-files limit from %d to %d", soft, hard)
            return hard
        return soft
    except (OSError, ValueError) as exc:
        log.warning("cannot raise the open-files limit: %s", exc)
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def default_capacity() -> int:
    """Descriptors for files: a share of the process's limit, the rest for connections."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        soft = limits.open_files_wanted
    return max(limits.file_handles_min, min(limits.file_handles_max, int(soft * limits.file_handles_share)))


class HandleCache:
    def __init__(self, disk: Disk, capacity: int | None = None) -> None:
        self.disk = disk
        self.capacity = capacity if capacity is not None else default_capacity()
        self._lock = threading.Lock()
        self._open: collections.OrderedDict[Handle, None] = collections.OrderedDict()
        self.evictions = 0

    @property
    def open_count(self) -> int:
        return len(self._open)

    def _opened(self, handle: Handle) -> None:
        """Called under ``handle``'s lock once it holds a descriptor."""
        with self._lock:
            self._open[handle] = None
            over = len(self._open) - self.capacity
            victims = [h for h in self._open if h is not handle and h.evictable()][: max(over, 0)]
        for victim in victims:
            victim.release(evicting=True)

    def _used(self, handle: Handle) -> None:
        with self._lock:
            if handle in self._open:
                self._open.move_to_end(handle)

    def _closed(self, handle: Handle) -> None:
        with self._lock:
            self._open.pop(handle, None)

    def handle(self, path: str, flags: int) -> Handle:
        return Handle(self, path, flags)


class Handle:
    """One file's descriptor, opened on demand (``flags`` must not hold O_CREAT|O_EXCL:
    the handle reopens the same file after an eviction)."""

    def __init__(self, cache: HandleCache, path: str, flags: int) -> None:
        self.cache = cache
        self.path = path
        self.flags = flags
        self._lock = threading.Lock()
        self._fd = -1
        self._pins = 0
        self._writes = 0  # writes made through this handle
        self._synced = 0  # writes an fsync has covered
        self.closed = False

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def fd(self) -> _Pinned:
        """The descriptor, pinned for a ``with`` block (opened if it was not)."""
        return _Pinned(self)

    def _pin(self) -> int:
        opened = False
        with self._lock:
            if self.closed:
                raise OSError(9, "file handle is closed", self.path)
            if self._fd < 0:
                self._fd = self.cache.disk.open(self.path, self.flags)
                opened = True
            self._pins += 1
            fd = self._fd
        if opened:
            self.cache._opened(self)
        else:
            self.cache._used(self)
        return fd

    def _unpin(self) -> None:
        with self._lock:
            self._pins -= 1

    def written(self) -> int:
        """Note a write that no fsync covers yet; returns a token for :meth:`synced`."""
        self._writes += 1
        return self._writes

    @property
    def writes(self) -> int:
        return self._writes

    def synced(self, token: int | None = None) -> None:
        """An fsync covered every write up to ``token`` (all of them if None)."""
        self._synced = max(self._synced, self._writes if token is None else token)

    @property
    def dirty(self) -> bool:
        return self._writes > self._synced

    def evictable(self) -> bool:
        return self._pins == 0 and not self.dirty and self._fd >= 0

    def release(self, *, evicting: bool = False) -> None:
        """Close the descriptor if it is idle (an eviction) or now (``close``)."""
        with self._lock:
            if self._fd < 0 or (evicting and (self._pins or self.dirty)):
                return
            fd, self._fd = self._fd, -1
        self.cache.disk.close(fd)
        self.cache._closed(self)
        if evicting:
            self.cache.evictions += 1

    def close(self) -> None:
        with self._lock:
            self.closed = True
        self.release()


class _Pinned:
    """``with handle.fd() as fd:`` (a class, not a generator: it is on every append)."""

    __slots__ = ("_handle",)

    def __init__(self, handle: Handle) -> None:
        self._handle = handle

    def __enter__(self) -> int:
        return self._handle._pin()

    def __exit__(self, *exc: object) -> None:
        self._handle._unpin()
