"""A transactional id's staging files: the records produced inside a Kafka transaction,
kept out of their topics until it commits, and the commit's decision (decision 0016).

Format
------
Each transactional id has two staging files, ``kafka/transactions/<id hash>.<slot>.stage``
(slot 0 and 1), written through the storage seam (:class:`~odradek.storage.disk.Disk`).
A transaction takes the slot that does *not* hold the id's latest committed decision,
empties it and appends *frames*::

    header (12 bytes): meta length u32, payload length u32, CRC-32C u32 (of meta + payload)
    meta:    JSON, one of
             {"begin": n}                      first frame: the transaction's number
             {"t": topic, "p": partition, "n": records, "k": 1}   payload: the record
                                               batches of a Produce, as the client sent them
             {"t": topic, "p": partition, "n": records}   payload: an Arrow IPC stream
                                               (written before the Kafka form; still read)
             {"decision": {...}}               the commit's decision (last but one)
             {"applied": true} / {"aborted": true}  notes, not synced (a hint only), but
                                               an abort after a decision whose sync failed
                                               (synced: a restart leaves that decision)

Appends are not synced one by one: a transaction without a decision is aborted by a
restart anyway. While a transaction's records fit the coordinator's memory budget, their
frames are not even written before the commit: it appends them and its decision in one
write and syncs the file once (one fdatasync: the file's name was made durable when it
was created); that makes it durable. The
other slot keeps the previous committed decision until the next transaction after
this one commits, so the latest decision (and the sequences it carries) always
survives. Reading stops at the first frame that is torn or fails its CRC.
"""

from __future__ import annotations

import dataclasses
import json
import os
import struct
import threading
from typing import Any

import crc32c
import pyarrow as pa

from odradek.errors import StorageError
from odradek.protocols.kafka.codec.records import decode_batches
from odradek.records import INPUT_SCHEMA
from odradek.storage.disk import Disk, describe_os_error

_HEADER = struct.Struct(">III")

StagedFrame = tuple[str, int, pa.Table]  # topic, partition, records


def _frame(meta: dict[str, Any], payload: bytes = b"") -> bytes:
    encoded = json.dumps(meta, separators=(",", ":")).encode()
    checksum = crc32c.crc32c(payload, crc32c.crc32c(encoded))
    return _HEADER.pack(len(encoded), len(payload), checksum) + encoded + payload


def batches_frame(topic: str, partition: int, batches: bytes, count: int) -> bytes:
    """The frame of a transactional Produce's ``count`` records of one partition: its
    record batches as the client sent them (checked before the Produce was answered,
    decoded after: records.check_batches), so that staging re-encodes nothing."""
    return _frame({"t": topic, "p": partition, "n": count, "k": 1}, batches)


def batches_records(batches: bytes | memoryview) -> pa.Table:
    """The records of a ``batches_frame`` payload, decoded (DecodeError if they do not
    decode)."""
    decoded = [batch.records for batch in decode_batches(bytes(batches)) if not batch.header.control]
    return pa.Table.from_batches(decoded, schema=INPUT_SCHEMA)


@dataclasses.dataclass
class Stage:
    """What a staging file holds."""

    number: int
    frames: list[StagedFrame]
    decision: dict[str, Any] | None
    applied: bool
    aborted: bool


def decode_stage(data: bytes | memoryview) -> Stage | None:
    """The whole frames at the start of ``data`` (a torn or damaged tail ends it);
    None if it does not begin with a transaction's number."""
    view = memoryview(data)
    position = 0
    stage: Stage | None = None
    while position + _HEADER.size <= len(view):
        meta_length, payload_length, checksum = _HEADER.unpack_from(view, position)
        start = position + _HEADER.size
        end = start + meta_length + payload_length
        if end > len(view):
            break
        meta_bytes = bytes(view[start : start + meta_length])
        payload = view[start + meta_length : end]
        if crc32c.crc32c(payload, crc32c.crc32c(meta_bytes)) != checksum:
            break
        try:
            meta = json.loads(meta_bytes)
            if stage is None:
                stage = Stage(int(meta["begin"]), [], None, False, False)
            elif "decision" in meta:
                stage.decision = dict(meta["decision"])
            elif "applied" in meta:
                stage.applied = True
            elif "aborted" in meta:
                stage.aborted = True
            elif meta.get("k"):
                stage.frames.append((str(meta["t"]), int(meta["p"]), batches_records(payload)))
            else:
                table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
                stage.frames.append((str(meta["t"]), int(meta["p"]), table))
        except (ValueError, KeyError, TypeError, pa.ArrowException):  # DecodeError: a ValueError
            break
        position = end
    return stage


def read_stage(disk: Disk, path: str) -> Stage | None:
    try:
        return decode_stage(disk.read_bytes(path))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StorageError(f"could not read {path}: {describe_os_error(exc)}") from exc


class StageFile:
    """A staging file opened for a new transaction (emptied, its number written first).
    Thread-safe."""

    def __init__(
        self, disk: Disk, path: str, number: int | None, *, sync: bool = True, empty: bool = False
    ) -> None:
        """Open ``path`` for transaction ``number`` (emptied first); with None, as it is,
        to append a note to it, or, with ``empty``, emptied for a transaction that
        begins later (``begin``): the emptying, an ftruncate that frees the previous
        transaction's blocks, is then off the path of the request that opens it."""
        self.disk = disk
        self.path = path
        self.sync_enabled = sync
        self._lock = threading.Lock()
        created = not disk.exists(path)
        emptied = number is not None or empty
        flags = os.O_WRONLY | os.O_APPEND | (os.O_CREAT if emptied else 0)
        try:
            self._fd: int | None = disk.open(path, flags)
        except OSError as exc:
            raise StorageError(f"could not open {path}: {describe_os_error(exc)}") from exc
        try:
            if not emptied:
                self.bytes = disk.fsize(self._fd)
                return
            disk.ftruncate(self._fd, 0)
            self.bytes = 0
            if created and sync:
                disk.fsync_directory(os.path.dirname(path))  # the name, once for good
        except OSError as exc:
            self.close()
            raise StorageError(f"could not prepare {path}: {describe_os_error(exc)}") from exc
        if number is not None:
            self.begin(number)

    def begin(self, number: int) -> None:
        """Write the transaction's number, the first frame (the file is empty)."""
        if self.bytes:
            raise StorageError(f"{self.path} holds a transaction already")
        try:
            self.append(_frame({"begin": number}))
        except StorageError:
            self.close()
            raise

    def append(self, frame: bytes, sync: bool = False) -> None:
        """Add a frame (durable with ``sync``); StorageError if it could not be written
        whole (then the file is cut back to what it held, so nothing of the frame
        stays)."""
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
        if sync:
            self._sync()

    def decide(self, decision: dict[str, Any], frames: bytes = b"") -> None:
        """Append ``frames`` (staged records not written yet) and the commit's decision,
        in one write, and make the file durable: the commit point."""
        self.append(frames + _frame({"decision": decision}))
        self._sync()

    def note(self, what: str, sync: bool = False) -> None:
        """Append an ``applied`` or ``aborted`` note and close the file. Not synced (a
        hint for a restart, which is right without it), except with ``sync``: an abort
        after a decision whose sync failed, which a restart must see; then a failure
        raises StorageError and the file stays open."""
        if sync:
            self.append(_frame({what: True}))
            self._sync()
        else:
            try:
                self.append(_frame({what: True}))
            except StorageError:
                pass
        self.close()

    def _sync(self) -> None:
        """Make what was appended durable (one fdatasync: the file's name is already)."""
        with self._lock:
            fd = self._open_fd()
            if not self.sync_enabled:
                return
            try:
                self.disk.fdatasync(fd)
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


def remove_stage(disk: Disk, path: str) -> None:
    try:
        disk.remove(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise StorageError(f"could not remove {path}: {describe_os_error(exc)}") from exc
