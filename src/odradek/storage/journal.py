"""Journal objects: the changes an engine makes to its files, as one object per flush.

Sans-IO: this module encodes and decodes journal objects and decides which of them are
valid; the writer (storage/walwriter.py) and the StoreDisk do the IO. Decision record
0011 explains the design.

Layout of one object (little-endian)::

    magic "OJR1" | crc32c u32 of what follows | epoch u64 | flush u64 | slot u64 |
    kind u8 (1 journal, 2 fence) | entry count u32 | entries

    entry: op u8 | path length u16 | path (UTF-8) | then by op:
        WRITE    position u64 | length u32 | bytes
        TRUNCATE size u64
        REPLACE  length u32 | bytes
        CREATE, MKDIR, REMOVE, RMTREE   (nothing)
        RENAME   target length u16 | target (UTF-8)

Paths are relative to the data directory, '/'-separated. The CRC covers the whole
object after itself, so a torn or damaged object is refused as a whole.

Validity (fencing): read slot by slot, a fence raises the epoch in force; an object of
an epoch older than the one in force was written by an agent that had been replaced
(a zombie) and is ignored. Valid objects are applied in (epoch, flush) order.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Iterable, Iterator

import crc32c

MAGIC = b"OJR1"
_HEAD = struct.Struct("<4sIQQQBI")  # magic, crc, epoch, flush, slot, kind, entries
HEADER_SIZE = _HEAD.size
_CRC_FROM = 8
KIND_JOURNAL = 1
KIND_FENCE = 2

OP_WRITE = 1
OP_TRUNCATE = 2
OP_REPLACE = 3
OP_CREATE = 4
OP_MKDIR = 5
OP_RENAME = 6
OP_REMOVE = 7
OP_RMTREE = 8
_OPS = {OP_WRITE, OP_TRUNCATE, OP_REPLACE, OP_CREATE, OP_MKDIR, OP_RENAME, OP_REMOVE, OP_RMTREE}
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ENTRY_HEAD = struct.Struct("<BH")


class JournalDamaged(ValueError):
    """A journal object that fails its checksum or does not parse."""


@dataclasses.dataclass(frozen=True)
class Entry:
    op: int
    path: str
    position: int = 0  # WRITE: where; TRUNCATE: the new size
    data: bytes | memoryview = b""  # WRITE and REPLACE
    target: str = ""  # RENAME

    @property
    def size(self) -> int:
        """Bytes this entry takes in an object."""
        base = _ENTRY_HEAD.size + len(self.path.encode())
        if self.op == OP_WRITE:
            return base + 12 + len(self.data)
        if self.op == OP_TRUNCATE:
            return base + 8
        if self.op == OP_REPLACE:
            return base + 4 + len(self.data)
        if self.op == OP_RENAME:
            return base + 2 + len(self.target.encode())
        return base


@dataclasses.dataclass(frozen=True)
class JournalObject:
    epoch: int
    flush: int
    slot: int
    kind: int
    entries: tuple[Entry, ...] = ()

    @property
    def is_fence(self) -> bool:
        return self.kind == KIND_FENCE


def encode(epoch: int, flush: int, slot: int, entries: Iterable[Entry], kind: int = KIND_JOURNAL) -> bytes:
    """One journal object (a fence when ``kind`` is KIND_FENCE, with no entries)."""
    pieces: list[bytes | memoryview] = []
    count = 0
    for entry in entries:
        count += 1
        path = entry.path.encode()
        pieces.append(_ENTRY_HEAD.pack(entry.op, len(path)))
        pieces.append(path)
        if entry.op == OP_WRITE:
            pieces.append(struct.pack("<QI", entry.position, len(entry.data)))
            pieces.append(entry.data)
        elif entry.op == OP_TRUNCATE:
            pieces.append(_U64.pack(entry.position))
        elif entry.op == OP_REPLACE:
            pieces.append(_U32.pack(len(entry.data)))
            pieces.append(entry.data)
        elif entry.op == OP_RENAME:
            target = entry.target.encode()
            pieces.append(_U16.pack(len(target)))
            pieces.append(target)
        elif entry.op not in _OPS:
            raise ValueError(f"unknown journal op {entry.op}")
    head = _HEAD.pack(MAGIC, 0, epoch, flush, slot, kind, count)
    body = b"".join(pieces)
    crc = crc32c.crc32c(body, crc32c.crc32c(head[_CRC_FROM:]))
    return head[:4] + _U32.pack(crc) + head[_CRC_FROM:] + body


def encode_fence(epoch: int, slot: int) -> bytes:
    return encode(epoch, 0, slot, (), KIND_FENCE)


def decode_head(data: bytes | memoryview) -> tuple[int, int, int, int]:
    """(epoch, flush, slot, kind) of an object, checking only its header's shape."""
    if len(data) < _HEAD.size:
        raise JournalDamaged("shorter than a journal header")
    magic, _, epoch, flush, slot, kind, _ = _HEAD.unpack_from(data)
    if magic != MAGIC or kind not in (KIND_JOURNAL, KIND_FENCE):
        raise JournalDamaged("not a journal object (bad magic or kind)")
    return epoch, flush, slot, kind


def decode(data: bytes | memoryview) -> JournalObject:
    """A whole journal object, checked (JournalDamaged if damaged or malformed)."""
    view = memoryview(data)
    epoch, flush, slot, kind = decode_head(view)
    crc = _U32.unpack_from(view, 4)[0]
    if crc32c.crc32c(view[_CRC_FROM:]) != crc:
        raise JournalDamaged(f"journal object of slot {slot} fails its checksum")
    count = _HEAD.unpack_from(view)[6]
    entries = tuple(_entries(view, _HEAD.size, count))
    return JournalObject(epoch, flush, slot, kind, entries)


def _entries(view: memoryview, position: int, count: int) -> Iterator[Entry]:
    size = len(view)
    try:
        for _ in range(count):
            op, path_length = _ENTRY_HEAD.unpack_from(view, position)
            position += _ENTRY_HEAD.size
            path = bytes(view[position : position + path_length]).decode()
            position += path_length
            if op == OP_WRITE:
                where, length = struct.unpack_from("<QI", view, position)
                position += 12
                yield Entry(op, path, where, view[position : position + length])
                position += length
            elif op == OP_TRUNCATE:
                yield Entry(op, path, _U64.unpack_from(view, position)[0])
                position += 8
            elif op == OP_REPLACE:
                (length,) = _U32.unpack_from(view, position)
                position += 4
                yield Entry(op, path, 0, view[position : position + length])
                position += length
            elif op == OP_RENAME:
                (length,) = _U16.unpack_from(view, position)
                position += 2
                yield Entry(op, path, target=bytes(view[position : position + length]).decode())
                position += length
            elif op in _OPS:
                yield Entry(op, path)
            else:
                raise JournalDamaged(f"unknown journal op {op}")
            if position > size:
                raise JournalDamaged("a journal entry runs past the object's end")
    except (struct.error, UnicodeDecodeError) as exc:
        raise JournalDamaged(f"a journal entry does not parse: {exc}") from exc
    if position != size:
        raise JournalDamaged("bytes after the journal's last entry")


@dataclasses.dataclass(frozen=True)
class Listed:
    """What a listing of ``wal/`` says of one slot (its header, read separately)."""

    slot: int
    epoch: int
    flush: int
    kind: int


def valid(objects: Iterable[Listed], in_force: int = 0) -> list[Listed]:
    """The journal objects to replay, in replay order (epoch, then flush).

    Read slot by slot: a fence raises the epoch in force; an object of an older epoch
    than the one in force is a replaced agent's and is left out. ``in_force`` is the
    epoch in force before the first slot given (a checkpoint's, when recovery reads the
    journal from the slot its manifest names).
    """
    kept: list[Listed] = []
    for listed in sorted(objects, key=lambda item: item.slot):
        if listed.kind == KIND_FENCE:
            in_force = max(in_force, listed.epoch)
        elif listed.epoch >= in_force:
            in_force = listed.epoch
            kept.append(listed)
    return sorted(kept, key=lambda item: (item.epoch, item.flush))


def slot_key(slot: int) -> str:
    return f"wal/{slot:020d}"


def slot_of(key: str) -> int | None:
    name = key.rsplit("/", 1)[-1]
    return int(name) if name.isdigit() else None
