"""A Disk whose writes and syncs fail on demand, as a full or failing disk does.

Tests give one to ``odradek.open(path, disk=...)`` (or ``Engine``) and switch faults on
and off while the engine runs::

    disk = FaultyDisk()
    disk.fail_writes(errno.ENOSPC, paths="keys/")    # key-index runs hit a full disk
    disk.fail_writes(errno.ENOSPC, partial=40)        # write 40 bytes, then ENOSPC
    disk.fail_syncs(errno.EIO)                        # fsyncs fail
    disk.heal()                                       # space was freed

``paths`` is a substring the file's path must contain for the fault to apply.
"""

from __future__ import annotations

import errno as errno_codes
import os
import threading
from collections.abc import Sequence

from odradek.storage.disk import Buffer, Disk


class FaultyDisk(Disk):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._paths: dict[int, str] = {}  # fd -> path
        self._write_fault: tuple[int, int | None, str] | None = None  # errno, partial, paths
        self._sync_fault: tuple[int, str] | None = None
        self.writes_failed = 0
        self.syncs_failed = 0

    def fail_writes(
        self, error: int = errno_codes.ENOSPC, *, partial: int | None = None, paths: str = ""
    ) -> None:
        """Writes (and new files) fail with ``error``; with ``partial``, a write first
        writes that many bytes (a short write, as on a disk that fills up mid-write)."""
        self._write_fault = (error, partial, paths)

    def fail_syncs(self, error: int = errno_codes.EIO, *, paths: str = "") -> None:
        self._sync_fault = (error, paths)

    def heal(self) -> None:
        self._write_fault = None
        self._sync_fault = None

    def _path(self, fd: int) -> str:
        with self._lock:
            return self._paths.get(fd, "")

    def open(self, path: str, flags: int, mode: int = 0o644) -> int:
        fault = self._write_fault
        if fault is not None and flags & os.O_CREAT and fault[2] in path and not os.path.exists(path):
            self.writes_failed += 1
            raise OSError(fault[0], os.strerror(fault[0]), path)
        fd = super().open(path, flags, mode)
        with self._lock:
            self._paths[fd] = path
        return fd

    def dup(self, fd: int) -> int:
        copy = super().dup(fd)
        with self._lock:
            self._paths[copy] = self._paths.get(fd, "")
        return copy

    def close(self, fd: int) -> None:
        with self._lock:
            self._paths.pop(fd, None)
        super().close(fd)

    def _pwritev(self, fd: int, pieces: Sequence[Buffer], position: int) -> int:
        fault = self._write_fault
        if fault is not None and fault[2] in self._path(fd):
            error, partial, _ = fault
            if partial:
                data = b"".join(bytes(memoryview(piece)) for piece in pieces)[:partial]
                self._write_fault = (error, None, fault[2])  # then the rest fails outright
                return os.pwrite(fd, data, position)
            self.writes_failed += 1
            raise OSError(error, os.strerror(error))
        return super()._pwritev(fd, pieces, position)

    def _write(self, fd: int, data: memoryview) -> int:
        fault = self._write_fault
        if fault is not None and fault[2] in self._path(fd):
            error, partial, _ = fault
            if partial:
                self._write_fault = (error, None, fault[2])
                return os.write(fd, data[:partial])
            self.writes_failed += 1
            raise OSError(error, os.strerror(error))
        return super()._write(fd, data)

    def fdatasync(self, fd: int) -> None:
        self._check_sync(fd)
        super().fdatasync(fd)

    def fsync(self, fd: int) -> None:
        self._check_sync(fd)
        super().fsync(fd)

    def _check_sync(self, fd: int) -> None:
        fault = self._sync_fault
        if fault is not None and fault[1] in self._path(fd):
            self.syncs_failed += 1
            raise OSError(fault[0], os.strerror(fault[0]))
