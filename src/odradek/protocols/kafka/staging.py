"""A transaction's staging file: the records produced inside a Kafka transaction, kept
out of their topics until the transaction commits (decision 0016).

Format
------
One file per transaction, ``kafka/transactions/<id hash>.<number>.stage``, written
through the storage seam (:class:`~odradek.storage.disk.Disk`), appended to by each
transactional Produce, one *frame* per partition of a request::

    header (12 bytes): meta length u32, payload length u32, CRC-32C u32 (of meta + payload)
    meta:    JSON {"t": topic, "p": partition, "n": record count}
    payload: the records as an Arrow IPC stream (the columns a Kafka batch decodes to)

Appends are not fsync'd one by one: a transaction that has not committed is aborted by
a restart anyway, so its staged records need not survive one. :meth:`StageFile.sync`
makes the whole file durable (data, then its directory entry) once, before the commit
decision is written. Reading stops at the first frame that is torn or fails its CRC: a
synced file has none, and a file that was never synced is never applied.
"""

from __future__ import annotations

import json
import os
import struct
import threading

import crc32c
import pyarrow as pa

from odradek.errors import StorageError
from odradek.storage.disk import Disk, describe_os_error

_HEADER = struct.Struct(">III")

StagedFrame = tuple[str, int, pa.Table]  # topic, partition, records


def encode_frame(topic: str, partition: int, records: pa.Table) -> bytes:
    meta = json.dumps({"t": topic, "p": partition, "n": records.num_rows}).encode()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, records.schema) as writer:
        writer.write_table(records)
    payload: bytes = sink.getvalue().to_pybytes()
    checksum = crc32c.crc32c(payload, crc32c.crc32c(meta))
    return _HEADER.pack(len(meta), len(payload), checksum) + meta + payload


def decode_frames(data: bytes | memoryview) -> list[StagedFrame]:
    """The whole frames at the start of ``data``, in order (a torn or damaged tail ends it)."""
    frames: list[StagedFrame] = []
    view = memoryview(data)
    position = 0
    while position + _HEADER.size <= len(view):
        meta_length, payload_length, checksum = _HEADER.unpack_from(view, position)
        start = position + _HEADER.size
        end = start + meta_length + payload_length
        if end > len(view):
            break
        meta = bytes(view[start : start + meta_length])
        payload = view[start + meta_length : end]
        if crc32c.crc32c(payload, crc32c.crc32c(meta)) != checksum:
            break
        try:
            fields = json.loads(meta)
            table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
            frames.append((str(fields["t"]), int(fields["p"]), table))
        except (ValueError, KeyError, TypeError, pa.ArrowException):
            break
        position = end
    return frames


class StageFile:
    """One transaction's staging file, open for appending. Thread-safe."""

    def __init__(self, disk: Disk, path: str) -> None:
        self.disk = disk
        self.path = path
        self.bytes = 0
        self._lock = threading.Lock()
        try:
            self._fd: int | None = disk.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
        except OSError as exc:
            raise StorageError(f"could not create {path}: {describe_os_error(exc)}") from exc

    def append(self, frame: bytes) -> None:
        """Add a frame; StorageError if it could not be written whole (then the file is
        cut back to what it held, so nothing of the frame stays)."""
        with self._lock:
            fd = self._open_fd()
            try:
                self.disk.append(fd, frame)
            except OSError as exc:
                try:
                    self.disk.ftruncate(fd, self.bytes)
                except OSError:
                    pass
                raise StorageError(
                    f"could not stage records in {self.path}: {describe_os_error(exc)}"
                ) from exc
            self.bytes += len(frame)

    def sync(self) -> None:
        """Make the file and its name durable."""
        with self._lock:
            fd = self._open_fd()
            try:
                self.disk.fdatasync(fd)
                self.disk.fsync_directory(os.path.dirname(self.path))
            except OSError as exc:
                raise StorageError(f"could not sync {self.path}: {describe_os_error(exc)}") from exc

    def _open_fd(self) -> int:
        if self._fd is None:
            raise StorageError(f"{self.path} is closed")
        return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                try:
                    self.disk.close(fd)
                except OSError:
                    pass

    def remove(self) -> None:
        """Close and delete the file (its absence need not be durable: a file found
        again after a crash is either applied again, idempotently, or aborted)."""
        self.close()
        remove_stage(self.disk, self.path)


def read_stage(disk: Disk, path: str) -> list[StagedFrame]:
    try:
        return decode_frames(disk.read_bytes(path))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"could not read {path}: {describe_os_error(exc)}") from exc


def remove_stage(disk: Disk, path: str) -> None:
    try:
        disk.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"could not remove {path}: {describe_os_error(exc)}") from exc
