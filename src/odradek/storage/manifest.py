"""Manifests: a checkpoint of the data directory's file tree in the object store.

Sans-IO: this module names the objects a checkpoint writes, and encodes and decodes the
manifest that lists them; storage/checkpoint.py does the IO. Decision record 0011,
"Checkpoints and compaction".

Objects (keys under the store's prefix)::

    files/<path>/<epoch>-<n>           a file's content, uploaded whole by checkpoint n
    files/<path>/<epoch>-<n>.<start>   an extent: the file's bytes from <start> on
    manifests/<epoch:020d>-<n:020d>    checkpoint n of the agent of <epoch>

``<path>`` is the file's path in the data directory, each segment escaped (anything but
letters, digits and ``!_.*'()=+,@~-`` as ``%XX``, and a segment that could be taken for
an object's name, ``<digits>-<digits>...``, with its first digit escaped), so that no
file's objects are ever named like another file's path.

A file's *record* is its size and its pieces: ``(key, start, length)`` each, applied in
order as ``content = content[:start] + object[:length]``. A file uploaded whole is one
piece from 0; an append-only file grows a piece per checkpoint, and a piece that starts
below the end of the ones before it (bytes rewritten, such as preallocated zeros turned
into frames) cuts them there. ``sealed`` marks a segment whose sidecar index existed:
with an empty cache it is left in the store until it is read.

Layout of a manifest: magic ``OMF1`` | crc32c u32 of what follows | zlib-compressed
JSON::

    {"format": 1, "epoch": E, "number": n,
     "after": [epoch, flush],        # the journal up to this flush is in the files
     "floor": slot,                  # journal objects at lower slots are all "after" or older
     "in_force": epoch,              # the epoch in force at that slot (its fence)
     "dirs": [path, ...],
     "files": {path: [size, sealed, [[key, start, length], ...]]}}
"""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import zlib
from typing import Any

import crc32c

MAGIC = b"OMF1"
FORMAT = 1
_HEAD = struct.Struct("<4sI")
FILES = "files/"
MANIFESTS = "manifests/"

_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!_.*'()=+,@~-")
_OBJECT_NAME = re.compile(r"^[0-9]+-[0-9]+")
_MANIFEST_NAME = re.compile(r"^([0-9]{20})-([0-9]{20})$")
_FILE_OBJECT = re.compile(r"/([0-9]+)-([0-9]+)(?:\.([0-9]+))?$")


class ManifestDamaged(ValueError):
    """A manifest that fails its checksum or does not parse."""


@dataclasses.dataclass(frozen=True)
class Piece:
    key: str
    start: int
    length: int


@dataclasses.dataclass(frozen=True)
class Record:
    """Where a file's content is in the store."""

    size: int
    pieces: tuple[Piece, ...]
    sealed: bool = False

    def cut(self, start: int) -> tuple[Piece, ...]:
        """The pieces that make the file's first ``start`` bytes."""
        kept: list[Piece] = []
        for piece in self.pieces:
            if piece.start >= start:
                continue  # it changes only bytes from ``start`` on
            kept = [p for p in kept if p.start < piece.start]
            kept.append(Piece(piece.key, piece.start, min(piece.length, start - piece.start)))
        return tuple(kept)

    def extended(self, piece: Piece, sealed: bool) -> Record:
        """This record with ``piece`` written over it from ``piece.start`` on."""
        return Record(piece.start + piece.length, (*self.cut(piece.start), piece), sealed)

    def keys(self) -> set[str]:
        return {piece.key for piece in self.pieces}


@dataclasses.dataclass
class Manifest:
    epoch: int
    number: int
    after: tuple[int, int]  # (epoch, flush): the journal up to here is in the files
    floor: int  # the lowest journal slot recovery needs to read
    in_force: int  # the epoch in force at ``floor``
    dirs: set[str]
    files: dict[str, Record]

    @property
    def key(self) -> str:
        return manifest_key(self.epoch, self.number)

    def keys(self) -> set[str]:
        """Every file object this manifest names."""
        named: set[str] = set()
        for record in self.files.values():
            named.update(piece.key for piece in record.pieces)
        return named


def encode(manifest: Manifest) -> bytes:
    document = {
        "format": FORMAT,
        "epoch": manifest.epoch,
        "number": manifest.number,
        "after": list(manifest.after),
        "floor": manifest.floor,
        "in_force": manifest.in_force,
        "dirs": sorted(manifest.dirs),
        "files": {
            path: [record.size, record.sealed, [[p.key, p.start, p.length] for p in record.pieces]]
            for path, record in sorted(manifest.files.items())
        },
    }
    body = zlib.compress(json.dumps(document, separators=(",", ":")).encode(), 1)
    return _HEAD.pack(MAGIC, crc32c.crc32c(body)) + body


def decode(data: bytes | memoryview) -> Manifest:
    view = memoryview(data)
    if len(view) < _HEAD.size:
        raise ManifestDamaged("shorter than a manifest header")
    magic, crc = _HEAD.unpack_from(view)
    if magic != MAGIC:
        raise ManifestDamaged("not a manifest (bad magic)")
    body = view[_HEAD.size :]
    if crc32c.crc32c(body) != crc:
        raise ManifestDamaged("the manifest fails its checksum")
    try:
        document: dict[str, Any] = json.loads(zlib.decompress(body))
        if document["format"] != FORMAT:
            raise ManifestDamaged(f"manifest format {document['format']} is not {FORMAT}")
        files = {
            str(path): Record(
                int(size), tuple(Piece(str(k), int(s), int(n)) for k, s, n in pieces), bool(sealed)
            )
            for path, (size, sealed, pieces) in document["files"].items()
        }
        after = document["after"]
        return Manifest(
            int(document["epoch"]),
            int(document["number"]),
            (int(after[0]), int(after[1])),
            int(document["floor"]),
            int(document["in_force"]),
            {str(path) for path in document["dirs"]},
            files,
        )
    except (ValueError, KeyError, TypeError, zlib.error) as exc:
        if isinstance(exc, ManifestDamaged):
            raise
        raise ManifestDamaged(f"the manifest does not parse: {exc}") from exc


# -- names ------------------------------------------------------------------------------


def escape_path(path: str) -> str:
    """A data-directory path as a key's segments (see the module docstring)."""
    return "/".join(_escape_segment(segment) for segment in path.split("/"))


def _escape_segment(segment: str) -> str:
    escaped = "".join(chr(byte) if byte in _SAFE else f"%{byte:02X}" for byte in segment.encode())
    if _OBJECT_NAME.match(escaped):
        escaped = f"%{ord(escaped[0]):02X}{escaped[1:]}"
    return escaped


def file_key(path: str, epoch: int, number: int, start: int | None = None) -> str:
    """The key of a file's content (``start`` None) or extent uploaded by checkpoint
    ``number`` of ``epoch``."""
    name = f"{epoch}-{number}" if start is None else f"{epoch}-{number}.{start}"
    return f"{FILES}{escape_path(path)}/{name}"


def file_key_epoch(key: str) -> int | None:
    """The epoch that uploaded a file object, from its key (None: not a file object)."""
    match = _FILE_OBJECT.search(key)
    return int(match.group(1)) if match and key.startswith(FILES) else None


def manifest_key(epoch: int, number: int) -> str:
    return f"{MANIFESTS}{epoch:020d}-{number:020d}"


def manifest_of(key: str) -> tuple[int, int] | None:
    """(epoch, number) of a manifest's key, or None."""
    match = _MANIFEST_NAME.match(key.rsplit("/", 1)[-1])
    return (int(match.group(1)), int(match.group(2))) if match else None
