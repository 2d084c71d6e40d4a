"""The durable progress of a consumer group: an append-only file of CRC'd frames.

Theory of operation (decision record 0004)
-----------------------------------------
A group's progress in a topic is a *committed watermark* (every offset below it is
settled: acknowledged or dead-lettered) plus the settled offsets above it, kept as
ranges ``[start, end)``. The file ``groups/<group>.state`` in the data directory holds
frames, each::

    magic "OGS1" | crc32c u32 | body length u32 | kind u8 | body

The CRC covers the length, the kind and the body. Kinds:

* ``META``  (JSON): the group's pattern, options and since when they hold;
* ``START`` (JSON): topic, its creation time and an offset: everything below the
  offset is settled (a new group's start, or a skip past records retention removed);
* ``DONE``  (binary): topic, then run starts and run ends as little-endian int64:
  these offsets are settled;
* ``FORGET`` (JSON): the topic's progress is dropped (the topic was deleted or
  re-created).

Replay merges the runs of each topic and moves its watermark over the runs that touch
it. A torn tail (a crash in the middle of a write) ends the replay at the last whole
frame and is truncated away. Once the file grows past ``group_state_log_bytes_max``
the group rewrites it as a snapshot (META, then one START and one DONE per topic) in
a temporary file that is fsync'd and renamed over the old one.

Durability: an ack returns only after its DONE frame is on disk. Writers append under
``_write_lock``; :meth:`ProgressStore.sync` is a group commit: the first caller takes
``_sync_lock``, notes the last frame written and fsyncs, and callers whose frames that
fsync covered return without an fsync of their own.

Lock order: a group's lock → ``_sync_lock`` → ``_write_lock``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
import threading
from typing import Any

import crc32c
import numpy as np
import numpy.typing as npt

from odradek import limits
from odradek.engine.topicfiles import incarnation_of
from odradek.errors import StorageError
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.handles import Handle, HandleCache

log = logging.getLogger(__name__)

I64 = npt.NDArray[np.int64]

MAGIC = b"OGS1"
_HEADER = struct.Struct("<4sIIB")  # magic, crc, body length, kind
_CRC_FROM = 8  # the CRC covers the header from the length on, then the body
_BODY_BYTES_MAX = limits.group_state_frame_bytes_max  # a larger declared body is damage

KIND_META = 1
KIND_START = 2
KIND_DONE = 3
KIND_FORGET = 4


@dataclasses.dataclass
class TopicProgress:
    """What the file says about one topic: settled below ``committed`` and in the runs."""

    incarnation: str  # the topic's; files of older versions held its created_at
    committed: int
    starts: I64
    ends: I64


@dataclasses.dataclass
class GroupState:
    meta: dict[str, Any] | None
    topics: dict[str, TopicProgress]


def merge_runs(starts: I64, ends: I64, floor: int) -> tuple[int, I64, I64]:
    """Merge overlapping or touching runs, drop what lies below ``floor`` and move the
    floor over a run that reaches it. Returns (watermark, starts, ends)."""
    keep = ends > floor
    starts, ends = np.maximum(starts[keep], floor), ends[keep]
    if len(starts) == 0:
        return floor, starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new_run = np.empty(len(starts), dtype=bool)
    new_run[0] = True
    new_run[1:] = starts[1:] > reach[:-1]
    firsts = np.flatnonzero(new_run)
    lasts = np.append(firsts[1:], len(starts)) - 1
    starts, ends = starts[firsts], reach[lasts]
    if starts[0] <= floor:
        floor = int(ends[0])
        starts, ends = starts[1:], ends[1:]
    return floor, starts, ends


def runs_of(offsets: I64) -> tuple[I64, I64]:
    """Sorted unique offsets → runs [start, end) of consecutive offsets."""
    if len(offsets) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    breaks = np.flatnonzero(np.diff(offsets) != 1) + 1
    starts = offsets[np.concatenate(([0], breaks))]
    ends = offsets[np.concatenate((breaks - 1, [len(offsets) - 1]))] + 1
    return starts.astype(np.int64), ends.astype(np.int64)


def encode_frame(kind: int, body: bytes) -> bytes:
    if len(body) > _BODY_BYTES_MAX:
        raise StorageError(f"a group progress frame of {len(body)} bytes is over {_BODY_BYTES_MAX}")
    header = _HEADER.pack(MAGIC, 0, len(body), kind)
    crc = crc32c.crc32c(header[_CRC_FROM:] + body)
    return _HEADER.pack(MAGIC, crc, len(body), kind) + body


def encode_done(topic: str, starts: I64, ends: I64) -> bytes:
    name = topic.encode()
    head = struct.pack("<HI", len(name), len(starts)) + name
    return head + starts.astype("<i8").tobytes() + ends.astype("<i8").tobytes()


def decode_done(body: bytes) -> tuple[str, I64, I64]:
    name_length, count = struct.unpack_from("<HI", body)
    offset = 6 + name_length
    if len(body) != offset + 16 * count:
        raise ValueError("DONE frame length does not match its run count")
    topic = body[6:offset].decode()
    runs = np.frombuffer(body, dtype="<i8", count=2 * count, offset=offset).astype(np.int64)
    return topic, runs[:count], runs[count:]


def _frame_at(data: bytes, position: int) -> tuple[int, bytes, int] | None:
    """(kind, body, end) of the valid frame at ``position``, or None."""
    if position + _HEADER.size > len(data):
        return None
    magic, crc, length, kind = _HEADER.unpack_from(data, position)
    end = position + _HEADER.size + length
    if magic != MAGIC or length > _BODY_BYTES_MAX or end > len(data):
        return None
    if crc32c.crc32c(data[position + _CRC_FROM : end]) != crc:
        return None
    return kind, data[position + _HEADER.size : end], end


def _resync(data: bytes, start: int) -> int | None:
    """The position of the first valid frame at or after ``start``, or None."""
    candidate = start
    while (candidate := data.find(MAGIC, candidate)) >= 0:
        if _frame_at(data, candidate) is not None:
            return candidate
        candidate += 1
    return None


def _json(kind: int, data: dict[str, Any]) -> bytes:
    return encode_frame(kind, json.dumps(data, separators=(",", ":")).encode())


class ProgressStore:
    """The progress file of one group. Thread-safe."""

    def __init__(
        self, path: str, *, fsync: bool, disk: Disk = LOCAL, handles: HandleCache | None = None
    ) -> None:
        self.path = path
        self.fsync = fsync
        self.disk = disk
        self._handles = handles or HandleCache(disk, capacity=1)
        self._handle: Handle | None = None  # the file's descriptor, from the bounded set
        self._write_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._size = 0
        self._written = 0  # frames written (a ticket is this count after a write)
        self._durable = 0  # frames known to be on disk
        self.damaged: list[tuple[int, int]] = []  # byte ranges skipped by the last load

    # -- opening ----------------------------------------------------------------------

    def load(self) -> GroupState | None:
        """Replay the file (None if there is none) and open it for appending.

        A torn tail (a partial frame after the last whole one) is truncated. Bytes that
        hold no valid frame *before* valid frames are damage: the frames after them are
        kept, the damage is reported, the damaged file is kept beside as
        ``<name>.damaged`` for an operator, and the group's progress is rewritten as a
        fresh snapshot. Acks recorded only in the damaged bytes are lost: those records
        are delivered again (at least once, never skipped).
        """
        try:
            data = self.disk.read_bytes(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StorageError(f"cannot read group progress {self.path}: {describe_os_error(exc)}") from exc
        state, good, damaged = self._replay(data)
        self.damaged = damaged
        if damaged:
            for start, end in damaged:
                log.error(
                    "group progress %s: bytes %d..%d are damaged; the frames after them are kept, and "
                    "acks recorded only there will be delivered again",
                    self.path,
                    start,
                    end,
                )
            self._set_aside(data)
            self._open(0)
            self.rewrite(snapshot_frames(state.meta, state.topics))
            return state
        if good < len(data):
            log.warning(
                "group progress %s: %d bytes after offset %d are a torn tail; truncating",
                self.path,
                len(data) - good,
                good,
            )
            try:
                fd = self.disk.open(self.path, os.O_WRONLY)
                try:
                    self.disk.ftruncate(fd, good)
                finally:
                    self.disk.close(fd)
            except OSError as exc:
                raise StorageError(
                    f"cannot truncate group progress {self.path}: {describe_os_error(exc)}"
                ) from exc
        self._open(good)
        return state

    def _set_aside(self, data: bytes) -> None:
        """Keep a damaged file's bytes for an operator (best effort)."""
        try:
            self.disk.write_atomically(self.path + ".damaged", data, sync=self.fsync)
        except OSError as exc:
            log.warning("cannot keep a copy of damaged %s: %s", self.path, describe_os_error(exc))

    def _replay(self, data: bytes) -> tuple[GroupState, int, list[tuple[int, int]]]:
        """(state, end of the last valid frame, damaged byte ranges before valid frames)."""
        meta: dict[str, Any] | None = None
        topics: dict[str, TopicProgress] = {}
        pending: dict[str, tuple[list[I64], list[I64]]] = {}
        damaged: list[tuple[int, int]] = []
        position = 0
        good = 0
        while position + _HEADER.size <= len(data):
            frame = _frame_at(data, position)
            if frame is None:
                following = _resync(data, position + 1)
                if following is None:
                    break
                damaged.append((position, following))
                position = following
                continue
            kind, body, end = frame
            try:
                meta = self._apply(kind, body, meta, topics, pending)
            except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError) as exc:
                # The CRC matched: a frame this version cannot apply is a bug or a newer
                # format, not damage; stop here rather than guess.
                log.warning("group progress %s: bad frame at %d: %s", self.path, position, exc)
                break
            position = good = end
        for topic, (starts, ends) in pending.items():
            progress = topics.get(topic)
            if progress is None or not starts:
                continue
            merged = merge_runs(
                np.concatenate([progress.starts, *starts]),
                np.concatenate([progress.ends, *ends]),
                progress.committed,
            )
            progress.committed, progress.starts, progress.ends = merged
        return GroupState(meta, topics), good, damaged

    @staticmethod
    def _apply(
        kind: int,
        body: bytes,
        meta: dict[str, Any] | None,
        topics: dict[str, TopicProgress],
        pending: dict[str, tuple[list[I64], list[I64]]],
    ) -> dict[str, Any] | None:
        empty = np.zeros(0, dtype=np.int64)
        if kind == KIND_META:
            return dict(json.loads(body))
        if kind == KIND_START:
            data = json.loads(body)
            topic, incarnation, offset = str(data["topic"]), incarnation_of(data), int(data["offset"])
            progress = topics.get(topic)
            if progress is None or progress.incarnation != incarnation:
                topics[topic] = TopicProgress(incarnation, offset, empty, empty)
                pending.pop(topic, None)
            else:
                progress.committed = max(progress.committed, offset)
        elif kind == KIND_DONE:
            topic, starts, ends = decode_done(body)
            if topic in topics:
                lists = pending.setdefault(topic, ([], []))
                lists[0].append(starts)
                lists[1].append(ends)
                if len(lists[0]) >= 1024:  # keep replay memory bounded
                    progress = topics[topic]
                    progress.committed, progress.starts, progress.ends = merge_runs(
                        np.concatenate([progress.starts, *lists[0]]),
                        np.concatenate([progress.ends, *lists[1]]),
                        progress.committed,
                    )
                    lists[0].clear()
                    lists[1].clear()
        elif kind == KIND_FORGET:
            topic = str(json.loads(body)["topic"])
            topics.pop(topic, None)
            pending.pop(topic, None)
        else:
            raise ValueError(f"unknown frame kind {kind}")
        return meta

    def _open(self, size: int) -> None:
        try:
            self.disk.close(self.disk.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT))
        except OSError as exc:
            raise StorageError(f"cannot open group progress {self.path}: {describe_os_error(exc)}") from exc
        self._use_new_handle()
        self._size = size

    def _use_new_handle(self) -> None:
        if self._handle is not None:
            self._handle.close()
        self._handle = self._handles.handle(self.path, os.O_WRONLY | os.O_APPEND)

    def create(self) -> None:
        """Start an empty file for a new group."""
        self._open(0)
        if self.fsync:
            try:
                self.disk.fsync_directory(os.path.dirname(self.path))
            except OSError as exc:
                raise StorageError(
                    f"cannot create group progress {self.path}: {describe_os_error(exc)}"
                ) from exc

    # -- writing ----------------------------------------------------------------------

    def write_meta(self, meta: dict[str, Any]) -> int:
        return self._write(_json(KIND_META, meta))

    def write_start(self, topic: str, incarnation: str, offset: int) -> int:
        return self._write(_json(KIND_START, {"topic": topic, "incarnation": incarnation, "offset": offset}))

    def write_done(self, topic: str, starts: I64, ends: I64) -> int:
        return self._write(encode_frame(KIND_DONE, encode_done(topic, starts, ends)))

    def write_forget(self, topic: str) -> int:
        return self._write(_json(KIND_FORGET, {"topic": topic}))

    def _write(self, frame: bytes) -> int:
        with self._write_lock:
            handle = self._handle
            if handle is None:
                raise StorageError(f"group progress {self.path} is closed")
            try:
                with handle.fd() as fd:
                    if self.fsync:  # without fsync nothing waits to be synced
                        handle.written()
                    self.disk.append(fd, frame)
            except OSError as exc:
                self._undo_partial_write()
                raise StorageError(
                    f"cannot write group progress {self.path}: {describe_os_error(exc)}"
                ) from exc
            self._size += len(frame)
            self._written += 1
            return self._written

    def _undo_partial_write(self) -> None:
        try:
            assert self._handle is not None
            with self._handle.fd() as fd:
                self.disk.ftruncate(fd, self._size)
        except OSError:
            log.exception("group progress %s: cannot truncate a partial write", self.path)

    @property
    def size(self) -> int:
        return self._size

    def sync(self, ticket: int) -> None:
        """Return once the frame with ``ticket`` (and all before it) is on disk."""
        if ticket <= self._durable:
            return
        with self._sync_lock:
            if ticket <= self._durable:
                return
            with self._write_lock:
                goal, handle = self._written, self._handle
                token = handle.writes if handle is not None else 0
            if handle is None:
                raise StorageError(f"group progress {self.path} is closed")
            try:
                with handle.fd() as fd:
                    if self.fsync:
                        self.disk.fdatasync(fd)
            except OSError as exc:
                raise StorageError(
                    f"cannot fsync group progress {self.path}: {describe_os_error(exc)}"
                ) from exc
            handle.synced(token)
            self._durable = max(self._durable, goal)

    def rewrite(self, frames: list[bytes]) -> None:
        """Replace the file by ``frames`` (a snapshot) atomically; everything written
        so far is then durable."""
        with self._sync_lock, self._write_lock:
            try:
                self.disk.write_atomically(self.path, b"".join(frames), sync=self.fsync)
            except OSError as exc:
                raise StorageError(
                    f"cannot rewrite group progress {self.path}: {describe_os_error(exc)}"
                ) from exc
            self._use_new_handle()
            self._size = sum(len(frame) for frame in frames)
            self._durable = self._written

    def close(self) -> None:
        with self._sync_lock, self._write_lock:
            handle, self._handle = self._handle, None
            if handle is not None:
                try:
                    if self.fsync and handle.dirty:
                        with handle.fd() as fd:
                            self.disk.fdatasync(fd)
                except OSError as exc:
                    log.warning("group progress %s: fsync at close failed: %s", self.path, exc)
                handle.close()

    def delete(self) -> None:
        self.close()
        try:
            self.disk.remove(self.path)
            if self.fsync:
                self.disk.fsync_directory(os.path.dirname(self.path))
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StorageError(f"cannot delete group progress {self.path}: {describe_os_error(exc)}") from exc


def snapshot_frames(meta: dict[str, Any] | None, topics: dict[str, TopicProgress]) -> list[bytes]:
    frames = [_json(KIND_META, meta)] if meta is not None else []
    for topic, progress in topics.items():
        frames.append(
            _json(
                KIND_START,
                {"topic": topic, "incarnation": progress.incarnation, "offset": progress.committed},
            )
        )
        if len(progress.starts):
            frames.append(encode_frame(KIND_DONE, encode_done(topic, progress.starts, progress.ends)))
    return frames


def needs_rewrite(size: int) -> bool:
    return size > limits.group_state_log_bytes_max
