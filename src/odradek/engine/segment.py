"""Segment files: the on-disk format of a topic's log.

Theory of operation
-------------------
A topic's log is a sequence of segment files named after the first offset they hold
(``00000000000000000000.log``). A segment is a sequence of *frames*; one frame is one
append: a fixed header, a small JSON metadata block and the Arrow IPC message of the
stored record batch (columns of :data:`odradek.records.STORED_SCHEMA`).

    offset  size  field
    0       4     magic b"ODR1"
    4       4     CRC-32C of bytes 8.. of the header, the metadata and the body
    8       4     length of metadata + body
    12      8     base offset (first record's offset)
    20      4     record count
    24      8     max timestamp (µs since the epoch)
    32      2     metadata length
    34      ...   metadata (JSON), then body (Arrow IPC message, 8-byte aligned)

The CRC covers the length, so a torn length is caught as surely as a torn body. A
frame is valid when its magic and CRC match and its base offset continues the previous
frame (in a compacted segment, engine/compaction.py: follows it, with gaps where records
were compacted away); recovery keeps the longest valid prefix of the last segment and truncates the
rest (a torn tail left by a crash mid-write). Closed segments were fsync'd before the
next one was opened, so only the active segment needs scanning; a sidecar ``.index``
file, written when a segment is closed, lets a restart skip even reading their headers.

Nothing here knows about topics, keys or threads: it reads and writes bytes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import struct
from collections.abc import Callable, Iterator
from typing import Any

import crc32c
import numpy as np
import pyarrow as pa

from odradek import limits
from odradek.errors import StorageError
from odradek.records import STORED_SCHEMA
from odradek.storage.disk import Disk, describe_os_error
from odradek.storage.handles import HandleCache

MAGIC = b"ODR1"
HEADER = struct.Struct("<4sIIqIqH")
HEADER_SIZE = HEADER.size  # 34
CRC_START = 8  # the CRC covers the header from here on
LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
INDEX_ENTRY = struct.Struct("<qqIqI")  # base offset, position, count, max timestamp, frame size
FRAME_BYTES_MAX = limits.segment_frame_bytes_max  # a larger declared length is damage
# Frames start and bodies start at multiples of this (Arrow's minimum buffer alignment).
BODY_ALIGNMENT = 8


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}{LOG_SUFFIX}"


@dataclasses.dataclass(frozen=True)
class FrameInfo:
    """Where one frame lives and what it holds."""

    base_offset: int
    position: int
    count: int
    max_timestamp: int
    size: int  # header + metadata + body
    meta: dict[str, Any] | None = None

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.count


def encode_frame(
    batch: pa.RecordBatch, base_offset: int, max_timestamp: int, meta: dict[str, Any] | None
) -> tuple[list[Any], int]:
    """The pieces of one frame (for ``os.writev``) and its total size."""
    meta_bytes = json.dumps(meta, separators=(",", ":")).encode() if meta else b""
    # Pad the metadata with spaces so that the body starts 8-byte aligned: Arrow reads
    # the body zero-copy from the mapping and its buffers must be aligned.
    meta_bytes += b" " * (-(HEADER_SIZE + len(meta_bytes)) % BODY_ALIGNMENT)
    body = batch.serialize()
    if body.size % BODY_ALIGNMENT:
        raise ValueError("Arrow IPC message size is not a multiple of 8")
    length = len(meta_bytes) + body.size
    head = HEADER.pack(MAGIC, 0, length, base_offset, batch.num_rows, max_timestamp, len(meta_bytes))
    crc = crc32c.crc32c(head[CRC_START:])
    if meta_bytes:
        crc = crc32c.crc32c(meta_bytes, crc)
    crc = crc32c.crc32c(body, crc)
    head = head[:4] + struct.pack("<I", crc) + head[CRC_START:]
    return [head, meta_bytes, body], HEADER_SIZE + length


def decode_body(body: pa.Buffer, schema: pa.Schema = STORED_SCHEMA) -> pa.RecordBatch:
    """A frame's record batch; ``schema`` is the stored schema it was written with (a
    schema'd topic's frames have a typed ``value``: see engine/topic_schema.py)."""
    return pa.ipc.read_record_batch(body, schema)


def parse_header(data: bytes | memoryview) -> tuple[int, int, int, int, int, int]:
    """(crc, length, base_offset, count, max_timestamp, meta_length); raises ValueError."""
    magic, crc, length, base, count, max_ts, meta_len = HEADER.unpack(data)
    if magic != MAGIC:
        raise ValueError("bad magic")
    if length > FRAME_BYTES_MAX or meta_len > length:
        raise ValueError("implausible length")
    return crc, length, base, count, max_ts, meta_len


def frame_crc(view: memoryview, position: int, length: int) -> int:
    return int(crc32c.crc32c(view[position + CRC_START : position + HEADER_SIZE + length]))


def _frame_at(
    view: memoryview, position: int, expected_base: int | None, verify: bool, gaps: bool = False
) -> FrameInfo | None:
    """The valid frame starting at ``position``, or None (torn, bad magic or CRC,
    unreadable metadata, or offsets that do not continue ``expected_base``; with
    ``gaps``, a compacted segment's, offsets that go back before it)."""
    size = len(view)
    if position + HEADER_SIZE > size:
        return None
    try:
        crc, length, base, count, max_ts, meta_len = parse_header(view[position : position + HEADER_SIZE])
    except (ValueError, struct.error):
        return None
    end = position + HEADER_SIZE + length
    if end > size or count == 0:
        return None
    if expected_base is not None and (base < expected_base if gaps else base != expected_base):
        return None
    if verify and frame_crc(view, position, length) != crc:
        return None
    meta = None
    meta_raw = bytes(view[position + HEADER_SIZE : position + HEADER_SIZE + meta_len]).strip()
    if meta_raw:
        try:
            meta = json.loads(meta_raw)
        except ValueError:
            return None
        if not isinstance(meta, dict):
            return None
    return FrameInfo(base, position, count, max_ts, end - position, meta)


def scan_frames(
    view: memoryview, expected_base: int | None, verify: bool = True
) -> tuple[list[FrameInfo], int]:
    """Walk the frames of a segment's bytes; return the valid prefix and its length.

    Stops at the first frame that is torn (short), has a bad magic or CRC, or does not
    continue the offsets of the one before it. :func:`scan_segment` goes on past it.
    """
    frames: list[FrameInfo] = []
    position = 0
    next_base = expected_base
    while (frame := _frame_at(view, position, next_base, verify)) is not None:
        frames.append(frame)
        next_base = frame.next_offset
        position += frame.size
    return frames, position


@dataclasses.dataclass(frozen=True)
class Damage:
    """Bytes of a segment that hold no valid frame although valid frames follow them
    (or, for a sealed segment, although the log goes on after them): corruption, not a
    torn tail. ``first_offset``..``end_offset`` (exclusive) are the offsets lost."""

    segment: str  # file name
    position: int
    end_position: int
    first_offset: int
    end_offset: int
    reason: str

    def describe(self, topic: str) -> str:
        return (
            f"topic {topic}: offsets {self.first_offset}..{self.end_offset - 1} are damaged "
            f"(segment {self.segment}, bytes {self.position}..{self.end_position}: {self.reason})"
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Damage:
        return cls(
            str(data["segment"]),
            int(data["position"]),
            int(data["end_position"]),
            int(data["first_offset"]),
            int(data["end_offset"]),
            str(data["reason"]),
        )


@dataclasses.dataclass
class SegmentScan:
    """What a full scan of one segment found."""

    frames: list[FrameInfo]
    damages: list[Damage]
    tail: int  # position after the last valid frame; bytes from here on hold no frame


def scan_segment(
    data: Any, name: str, base_offset: int, end: int | None = None, *, gaps: bool = False
) -> SegmentScan:
    """Every valid frame of a segment, going on past damage.

    A frame that is not valid where one should start is *damage* when a valid frame
    with a later offset starts further on: the scan resynchronizes on it (frames start
    at multiples of 8 and open with the magic; the candidate's CRC must match and its
    base offset must not go back) and reports the bytes and offsets in between. What
    lies after the last valid frame is returned as ``tail``: the caller decides whether
    that is a torn tail (the active segment after a crash) or damage (a sealed one).
    ``data`` is the segment's bytes (anything with the buffer protocol); only its
    first ``end`` bytes are scanned when ``end`` is given. ``gaps``: the segment was
    compacted, so a frame may start past the offset after the one before it.
    """
    view = memoryview(data)
    if end is not None:
        view = view[:end]
    size = len(view)
    frames: list[FrameInfo] = []
    damages: list[Damage] = []
    position = 0
    next_base = base_offset
    while position < size:
        frame = _frame_at(view, position, next_base, verify=True, gaps=gaps)
        if frame is not None:
            frames.append(frame)
            next_base = frame.next_offset
            position += frame.size
            continue
        found = _resync(view, position, next_base)
        if found is None:
            break
        damages.append(
            Damage(
                name,
                position,
                found.position,
                next_base,
                found.base_offset,
                "bytes that hold no valid frame (bad checksum, header or length) before valid frames",
            )
        )
        frames.append(found)
        next_base = found.next_offset
        position = found.position + found.size
    return SegmentScan(frames, damages, position)


def _resync(view: memoryview, position: int, next_base: int) -> FrameInfo | None:
    """The first valid frame at or after ``position`` whose offsets do not go back."""
    candidate = position
    while True:
        candidate = _find(view, MAGIC, candidate)
        if candidate < 0:
            return None
        if candidate % BODY_ALIGNMENT == 0:
            frame = _frame_at(view, candidate, None, verify=True)
            if frame is not None and frame.base_offset >= next_base:
                return frame
        candidate += 1


_FIND_CHUNK_BYTES = 1 << 20  # resync searches a mapped segment this much at a time
_ZEROS = bytes(1 << 20)  # what preallocation writes, a chunk at a time


def _find(view: memoryview, needle: bytes, start: int) -> int:
    """``bytes.find`` over a memoryview, without copying more than a chunk at a time."""
    size = len(view)
    while start < size:
        stop = min(start + _FIND_CHUNK_BYTES + len(needle) - 1, size)
        found = bytes(view[start:stop]).find(needle)
        if found >= 0:
            return start + found
        start = stop - len(needle) + 1 if stop < size else size
    return -1


class SegmentFile:
    """One segment: an append-only file plus a read-only mapping that grows on demand.

    The file's descriptor comes from the engine's bounded set of handles
    (storage/handles.py): it is opened on the first write and may be closed while the
    segment is idle, so that any number of topics fits the open-files limit.
    """

    def __init__(
        self,
        disk: Disk,
        directory: str,
        base_offset: int,
        *,
        create: bool,
        handles: HandleCache | None = None,
        preallocate: int = 0,
    ) -> None:
        """``preallocate``: keep this many zeroed bytes written ahead of the frames (0 for
        none), so that an append's fdatasync flushes data only, not the file's size."""
        self.disk = disk
        self.base_offset = base_offset
        self.name = segment_name(base_offset)
        self.path = os.path.join(directory, self.name)
        self.preallocate = preallocate
        try:
            if create:
                disk.close(disk.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL))
                self.size = 0
            else:
                self.size = disk.getsize(self.path)
        except OSError as exc:
            raise StorageError(f"cannot open segment {self.path}: {describe_os_error(exc)}") from exc
        self.allocated = self.size  # bytes the file holds: the frames, then zeros
        self.handle = (handles or HandleCache(disk, capacity=1)).handle(self.path, os.O_RDWR)
        self._map: pa.Buffer | None = None
        self._mapped = 0
        self.closed = False

    # -- writing ----------------------------------------------------------------------

    def append(self, pieces: list[Any], frame_size: int) -> int:
        """Write one frame at the end; return its position. On failure nothing remains."""
        position = self.size
        try:
            with self.handle.fd() as fd:
                self.handle.written()
                if self.preallocate and position + frame_size > self.allocated:
                    self._extend(position + frame_size)
                self.disk.pwritev(fd, pieces, position, frame_size)
        except OSError as exc:
            self.truncate(position)
            raise StorageError(
                f"write to {self.path} failed ({describe_os_error(exc)}); nothing was written"
            ) from exc
        self.size = position + frame_size
        return position

    def _extend(self, needed: int) -> None:
        """Write zeros from the end of the file past ``needed``, a chunk at a time.

        An append that stays inside the file's size needs no metadata in its fdatasync
        (ext4 measured: p50 0.12 instead of 0.17 ms). Zeros, not fallocate: writing into a
        fallocated (unwritten) extent changes metadata too. Zeros after the last frame are
        a torn tail to recovery, which trims them. A failure here (a full disk) only stops
        the preallocation: the append itself then succeeds or fails on its own.
        """
        chunk = self.preallocate
        target = -(-(needed + chunk) // chunk) * chunk
        try:
            with self.handle.fd() as fd:
                position = self.allocated
                while position < target:
                    length = min(len(_ZEROS), target - position)
                    self.disk.pwritev(fd, [memoryview(_ZEROS)[:length]], position, length)
                    position += length
        except OSError:
            self.preallocate = 0
            return
        self.allocated = target

    def trim(self) -> None:
        """Cut the preallocated zeros after the last frame (when the segment is sealed or
        closed): a sealed segment ends with its last frame."""
        if self.allocated > self.size:
            with self.handle.fd() as fd:
                self.handle.written()
                self.disk.ftruncate(fd, self.size)
            self.allocated = self.size

    def truncate(self, size: int) -> None:
        try:
            with self.handle.fd() as fd:
                self.handle.written()
                self.disk.ftruncate(fd, size)
        except OSError:
            pass  # the caller reports the original failure; recovery trims the tail anyway
        self.size = size
        self.allocated = size

    def sync(self) -> None:
        with self.handle.fd() as fd:
            token = self.handle.writes
            self.disk.fdatasync(fd)
        self.handle.synced(token)

    def sync_handle(self) -> tuple[int, int]:
        """(a duplicate of the descriptor, a token for ``handle.synced``), for a group
        commit that fsyncs outside the writer lock."""
        with self.handle.fd() as fd:
            return self.disk.dup(fd), self.handle.writes

    def journal_mark(self) -> tuple[int, Callable[[], None]]:
        """(the journal position of this file's writes so far, what marks the handle clean
        once they are durable), on a journaled disk; see :meth:`Disk.sync_position`."""
        with self.handle.fd() as fd:
            return self.disk.sync_position(fd), functools.partial(self.handle.synced, self.handle.writes)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.handle.close()  # the mapping stays valid for readers still using it

    # -- reading ----------------------------------------------------------------------

    def view(self, end: int) -> memoryview:
        """A memoryview of the file's bytes [0, end); remaps when the file has grown.

        Old mappings stay alive for as long as batches built on them are referenced.
        """
        if end > self._mapped or self._map is None:
            if end == 0:
                return memoryview(b"")
            try:
                self._map = self.disk.map(self.path)
            except FileNotFoundError:
                raise  # retention removed it: the caller knows those offsets are gone
            except (OSError, ValueError) as exc:
                raise StorageError(f"cannot read segment {self.path}: {exc}") from exc
            self._mapped = self._map.size
            if end > self._mapped:
                raise StorageError(
                    f"segment {self.path} is {self._mapped} bytes long, shorter than the "
                    f"{end} bytes its frames need: it was truncated"
                )
        assert self._map is not None
        return memoryview(self._map)[:end]

    def mapping(self) -> memoryview:
        """The whole file's bytes (mapped), for scans."""
        return self.view(self.size)

    def frame_problem(self, frame: FrameInfo, verify: bool) -> str | None:
        """Why ``frame`` cannot be read as the index says, or None if it can."""
        try:
            view = self.view(frame.position + frame.size)
        except StorageError as exc:
            return str(exc)
        header = view[frame.position : frame.position + HEADER_SIZE]
        try:
            crc, length, base, count, _, _ = parse_header(header)
        except (ValueError, struct.error) as exc:
            return f"bad frame header at byte {frame.position}: {exc}"
        if base != frame.base_offset or count != frame.count or HEADER_SIZE + length != frame.size:
            return f"the frame at byte {frame.position} does not match the segment's index"
        if verify and frame_crc(view, frame.position, length) != crc:
            return f"checksum mismatch in the frame at byte {frame.position}"
        return None

    def read_batch(self, frame: FrameInfo, verify: bool, schema: pa.Schema = STORED_SCHEMA) -> pa.RecordBatch:
        """Decode one frame's record batch (zero-copy from the mapping).

        Raises :class:`FrameDamaged` when the frame's bytes do not match its index entry
        or, with ``verify``, its checksum.
        """
        problem = self.frame_problem(frame, verify)
        if problem is not None:
            raise FrameDamaged(f"segment {self.path}: {problem}", self.name, frame)
        view = self.view(frame.position + frame.size)
        meta_len = HEADER.unpack(view[frame.position : frame.position + HEADER_SIZE])[6]
        start = frame.position + HEADER_SIZE + meta_len
        body = pa.py_buffer(view[start : frame.position + frame.size])
        try:
            return decode_body(body, schema)
        except (pa.ArrowException, ValueError) as exc:
            raise FrameDamaged(
                f"segment {self.path}: the frame at byte {frame.position} does not decode: {exc}",
                self.name,
                frame,
            ) from exc

    def frame_meta(self, frame: FrameInfo) -> dict[str, Any] | None:
        """A frame's metadata block, read from its header (a sidecar index keeps none):
        no body is read or checked. None if the frame has none or it is unreadable
        (reading the frame's records then reports the damage)."""
        if frame.meta is not None:
            return frame.meta
        try:
            view = self.view(frame.position + frame.size)
            meta_length = HEADER.unpack(view[frame.position : frame.position + HEADER_SIZE])[6]
        except (OSError, StorageError, struct.error):  # gone (retention) or unreadable
            return None
        if meta_length == 0 or meta_length > frame.size - HEADER_SIZE:
            return None
        start = frame.position + HEADER_SIZE
        raw = bytes(view[start : start + meta_length]).strip()
        try:
            meta = json.loads(raw) if raw else None
        except ValueError:
            return None
        return meta if isinstance(meta, dict) else None

    def scan(self, *, gaps: bool = False) -> SegmentScan:
        if self.size == 0:
            return SegmentScan([], [], 0)
        return scan_segment(self.mapping(), self.name, self.base_offset, gaps=gaps)


class FrameDamaged(StorageError):
    """A frame's bytes are not what was written (checksum, header or index mismatch)."""

    def __init__(self, message: str, segment: str, frame: FrameInfo) -> None:
        super().__init__(message)
        self.segment = segment
        self.frame = frame


# -- the sidecar index of a sealed segment ------------------------------------------------
#
# Version 2 (written since damage is recorded):
#     magic "ODX2" | crc32c u32 of what follows | segment size u64 | frame count u32 |
#     damage length u32 | frame entries (INDEX_ENTRY each) | damages (JSON list)
# Version 1 (read only): crc32c u32 of the entries | frame entries.

INDEX_MAGIC = b"ODX2"
_INDEX_HEAD = struct.Struct("<4sIQII")


@dataclasses.dataclass
class SegmentIndex:
    frames: list[FrameInfo]
    damages: list[Damage]


def index_name(base_offset: int) -> str:
    return f"{base_offset:020d}{INDEX_SUFFIX}"


def write_index(
    disk: Disk,
    directory: str,
    base_offset: int,
    frames: list[FrameInfo],
    segment_size: int,
    damages: list[Damage] | None = None,
    *,
    sync: bool = True,
) -> None:
    """Write the sidecar index of a sealed segment (atomically: temp file + rename)."""
    entries = b"".join(
        INDEX_ENTRY.pack(f.base_offset, f.position, f.count, f.max_timestamp, f.size) for f in frames
    )
    damage = json.dumps([d.to_json() for d in damages or []], separators=(",", ":")).encode()
    rest = struct.pack("<QII", segment_size, len(frames), len(damage)) + entries + damage
    head = INDEX_MAGIC + struct.pack("<I", crc32c.crc32c(rest))
    disk.write_atomically(os.path.join(directory, index_name(base_offset)), head + rest, sync=sync)


def read_index(disk: Disk, directory: str, base_offset: int, segment_size: int) -> SegmentIndex | None:
    """The frames (and damage) of a sealed segment from its sidecar index, or None if it
    is absent, fails its checksum or does not fit the segment."""
    try:
        raw = disk.read_bytes(os.path.join(directory, index_name(base_offset)))
    except OSError:
        return None
    if raw[:4] == INDEX_MAGIC:
        parsed = _parse_index_v2(raw, segment_size)
    else:
        parsed = _parse_index_v1(raw, segment_size)
    if parsed is None or not _plausible(parsed.frames, base_offset, segment_size):
        return None
    return parsed


def _parse_index_v2(raw: bytes, segment_size: int) -> SegmentIndex | None:
    if len(raw) < _INDEX_HEAD.size:
        return None
    _, crc, size, count, damage_length = _INDEX_HEAD.unpack_from(raw)
    rest = raw[8:]
    if crc32c.crc32c(rest) != crc or size != segment_size:
        return None
    entries_end = _INDEX_HEAD.size + count * INDEX_ENTRY.size
    if entries_end + damage_length != len(raw):
        return None
    frames = [FrameInfo(*entry) for entry in INDEX_ENTRY.iter_unpack(raw[_INDEX_HEAD.size : entries_end])]
    try:
        damages = [Damage.from_json(d) for d in json.loads(raw[entries_end:])]
    except (ValueError, KeyError, TypeError):
        return None
    return SegmentIndex(frames, damages)


def _parse_index_v1(raw: bytes, segment_size: int) -> SegmentIndex | None:
    if len(raw) < 4 or (len(raw) - 4) % INDEX_ENTRY.size:
        return None
    data = raw[4:]
    if struct.unpack("<I", raw[:4])[0] != crc32c.crc32c(data):
        return None
    frames = [FrameInfo(*entry) for entry in INDEX_ENTRY.iter_unpack(data)]
    if frames and frames[-1].position + frames[-1].size != segment_size:
        return None
    return SegmentIndex(frames, [])


def _plausible(frames: list[FrameInfo], base_offset: int, segment_size: int) -> bool:
    """Frames in file order, not overlapping, inside the file, with increasing offsets
    from the segment's base on: what any index of this segment must satisfy."""
    if not frames:
        return True
    table = np.array([(f.base_offset, f.position, f.count, f.size) for f in frames], dtype=np.int64).reshape(
        -1, 4
    )
    bases, positions, counts, sizes = table.T
    ends = positions + sizes
    return bool(
        bases[0] >= base_offset
        and positions[0] >= 0
        and np.all(counts > 0)
        and np.all(sizes >= HEADER_SIZE)
        and ends[-1] <= segment_size
        and np.all(positions[1:] >= ends[:-1])
        and np.all(bases[1:] >= bases[:-1] + counts[:-1])
    )


def iter_segment_bases(disk: Disk, directory: str) -> Iterator[int]:
    for name in sorted(disk.listdir(directory)):
        if name.endswith(LOG_SUFFIX) and name[: -len(LOG_SUFFIX)].isdigit():
            yield int(name[: -len(LOG_SUFFIX)])
