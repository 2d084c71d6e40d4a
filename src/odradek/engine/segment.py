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
frame; recovery keeps the longest valid prefix of the last segment and truncates the
rest (a torn tail left by a crash mid-write). Closed segments were fsync'd before the
next one was opened, so only the active segment needs scanning; a sidecar ``.index``
file, written when a segment is closed, lets a restart skip even reading their headers.

Nothing here knows about topics, keys or threads: it reads and writes bytes.
"""

from __future__ import annotations

import dataclasses
import json
import mmap
import os
import struct
from collections.abc import Iterator
from typing import Any

import crc32c
import pyarrow as pa

from odradek.errors import StorageError
from odradek.files import replace_atomically
from odradek.records import STORED_SCHEMA

MAGIC = b"ODR1"
HEADER = struct.Struct("<4sIIqIqH")
HEADER_SIZE = HEADER.size  # 34
CRC_START = 8  # the CRC covers the header from here on
LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
INDEX_ENTRY = struct.Struct("<qqIqI")  # base offset, position, count, max timestamp, frame size
# Any one frame is bounded by the append size limit; this guards recovery against a
# corrupt length field that would otherwise make it read gigabytes.
FRAME_BYTES_MAX = 1024 * 1024 * 1024
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


def scan_frames(
    view: memoryview, expected_base: int | None, verify: bool = True
) -> tuple[list[FrameInfo], int]:
    """Walk the frames of a segment's bytes; return the valid ones and the valid length.

    Stops at the first frame that is torn (short), has a bad magic or CRC, or does not
    continue the offsets of the one before it.
    """
    frames: list[FrameInfo] = []
    position = 0
    size = len(view)
    next_base = expected_base
    while position + HEADER_SIZE <= size:
        try:
            crc, length, base, count, max_ts, meta_len = parse_header(view[position : position + HEADER_SIZE])
        except (ValueError, struct.error):
            break
        end = position + HEADER_SIZE + length
        if end > size or count == 0:
            break
        if next_base is not None and base != next_base:
            break
        if verify and frame_crc(view, position, length) != crc:
            break
        meta = None
        meta_raw = bytes(view[position + HEADER_SIZE : position + HEADER_SIZE + meta_len]).strip()
        if meta_raw:
            try:
                meta = json.loads(meta_raw)
            except ValueError:
                break
        frames.append(FrameInfo(base, position, count, max_ts, end - position, meta))
        next_base = base + count
        position = end
    return frames, position


class SegmentFile:
    """One segment: an append-only file plus a read-only mapping that grows on demand."""

    def __init__(self, directory: str, base_offset: int, *, create: bool) -> None:
        self.base_offset = base_offset
        self.path = os.path.join(directory, segment_name(base_offset))
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise StorageError(f"cannot open segment {self.path}: {exc}") from exc
        self.size = os.fstat(self.fd).st_size
        self._map: mmap.mmap | None = None
        self._mapped = 0
        self.closed = False

    # -- writing ----------------------------------------------------------------------

    def append(self, pieces: list[Any], frame_size: int) -> int:
        """Write one frame at the end; return its position. On failure nothing remains."""
        position = self.size
        try:
            written = os.pwritev(self.fd, pieces, position)
            if written != frame_size:
                raise OSError(f"short write ({written} of {frame_size} bytes)")
        except OSError as exc:
            self.truncate(position)
            raise StorageError(f"write to {self.path} failed, nothing was written: {exc}") from exc
        self.size = position + frame_size
        return position

    def truncate(self, size: int) -> None:
        try:
            os.ftruncate(self.fd, size)
        except OSError:
            pass  # the caller reports the original failure; recovery trims the tail anyway
        self.size = size

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)  # the mapping stays valid for readers still using it

    # -- reading ----------------------------------------------------------------------

    def view(self, end: int) -> memoryview:
        """A memoryview of the file's bytes [0, end); remaps when the file has grown.

        Old mappings stay alive for as long as batches built on them are referenced.
        """
        if end > self._mapped or self._map is None:
            if self.closed:
                fd = os.open(self.path, os.O_RDONLY)
                try:
                    self._map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
                finally:
                    os.close(fd)
            else:
                self._map = mmap.mmap(self.fd, self.size, access=mmap.ACCESS_READ)
            self._mapped = len(self._map)
            if end > self._mapped:
                raise StorageError(f"segment {self.path} is shorter than expected")
        return memoryview(self._map)[:end]

    def read_batch(self, frame: FrameInfo, verify: bool, schema: pa.Schema = STORED_SCHEMA) -> pa.RecordBatch:
        """Decode one frame's record batch (zero-copy from the mapping)."""
        view = self.view(frame.position + frame.size)
        header = view[frame.position : frame.position + HEADER_SIZE]
        try:
            crc, length, base, count, _, meta_len = parse_header(header)
        except (ValueError, struct.error) as exc:
            raise StorageError(f"corrupt frame at {self.path}:{frame.position}: {exc}") from exc
        if base != frame.base_offset or count != frame.count:
            raise StorageError(f"frame at {self.path}:{frame.position} does not match its index")
        if verify and frame_crc(view, frame.position, length) != crc:
            raise StorageError(f"checksum mismatch in {self.path} at position {frame.position}")
        start = frame.position + HEADER_SIZE + meta_len
        body = pa.py_buffer(view[start : frame.position + HEADER_SIZE + length])
        return decode_body(body, schema)

    def scan(self, expected_base: int) -> tuple[list[FrameInfo], int]:
        if self.size == 0:
            return [], 0
        return scan_frames(self.view(self.size), expected_base)


def write_index(directory: str, base_offset: int, frames: list[FrameInfo]) -> None:
    """Write the sidecar index of a closed segment (atomically: temp file + rename)."""
    path = os.path.join(directory, f"{base_offset:020d}{INDEX_SUFFIX}")
    data = b"".join(
        INDEX_ENTRY.pack(f.base_offset, f.position, f.count, f.max_timestamp, f.size) for f in frames
    )
    replace_atomically(path, struct.pack("<I", crc32c.crc32c(data)) + data)


def read_index(directory: str, base_offset: int, segment_size: int) -> list[FrameInfo] | None:
    """The frames of a closed segment from its sidecar index, or None if absent or bad."""
    path = os.path.join(directory, f"{base_offset:020d}{INDEX_SUFFIX}")
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    if len(raw) < 4 or (len(raw) - 4) % INDEX_ENTRY.size:
        return None
    data = raw[4:]
    if struct.unpack("<I", raw[:4])[0] != crc32c.crc32c(data):
        return None
    frames = [FrameInfo(*entry) for entry in INDEX_ENTRY.iter_unpack(data)]
    if frames and frames[-1].position + frames[-1].size != segment_size:
        return None
    return frames


def iter_segment_bases(directory: str) -> Iterator[int]:
    for name in sorted(os.listdir(directory)):
        if name.endswith(LOG_SUFFIX) and name[: -len(LOG_SUFFIX)].isdigit():
            yield int(name[: -len(LOG_SUFFIX)])
