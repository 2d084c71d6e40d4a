"""A topic's small files beside its log: ``topic.json`` and ``head``.

``topic.json`` (and ``topic.json.copy``) hold the topic's name, incarnation id,
settings, creation time, schema history and the damage an operator accepted: a
checksummed document in two copies (storage/documents.py), because it cannot be rebuilt
from the log — a schema'd topic's frames cannot even be decoded without it.

``head`` holds a lower bound of the offsets the topic acknowledged::

    magic "OHD1" | offset u64 | crc32c u32 of the first 12 bytes

It is rewritten in place after every group commit (16 bytes, no fsync of its own: it
must never run ahead of the log, and it does not, because it is written after the
log's fsync). At open, a log that ends before the head lost acknowledged records: that
is damage (a truncated or deleted segment), not a torn tail, and the offsets below the
head are never handed out again. A head that fails its checksum is ignored with a
warning (it is only a hint; a power loss can leave an older one).
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import uuid
from typing import Any

import crc32c

from odradek.storage.disk import Disk
from odradek.storage.documents import Document
from odradek.storage.handles import HandleCache

log = logging.getLogger(__name__)

META_NAME = "topic.json"
HEAD_NAME = "head"
_HEAD = struct.Struct("<4sQI")
_HEAD_MAGIC = b"OHD1"


# Topics created before incarnation ids existed get one derived from their name and
# creation time: the Kafka door's topic id of the time, so Kafka clients see no change.
_LEGACY_NAMESPACE = uuid.UUID("5b4f6c1e-9a43-4d0e-8f65-0d7a6b3e2c11")


def new_incarnation() -> str:
    """A new topic's identity: 32 hex digits, never reused (a random UUID).

    A topic deleted and created again under the same name is a new incarnation, so
    state kept elsewhere about the old one (group progress, Kafka partition counts) is
    recognized as stale by comparing incarnations, never wall-clock times, which can
    repeat or go backwards.
    """
    return uuid.uuid4().hex


def legacy_incarnation(name: str, created_at: float) -> str:
    """The incarnation of a topic (or of state about one) saved with only its creation time."""
    return uuid.uuid5(_LEGACY_NAMESPACE, f"{name}\x00{created_at!r}").hex


def incarnation_of(meta: dict[str, Any]) -> str:
    """The incarnation that ``meta`` (topic.json, or a record naming a topic) holds."""
    value = meta.get("incarnation")
    if value is None:
        name = meta["name"] if "name" in meta else meta["topic"]
        return legacy_incarnation(str(name), float(meta["created_at"]))
    if not isinstance(value, str) or len(value) != 32 or any(c not in "0123456789abcdef" for c in value):
        raise ValueError(f"incarnation must be 32 lowercase hex digits, got {value!r}")
    return value


def meta_document(disk: Disk, directory: str, *, sync: bool = True) -> Document:
    return Document(disk, os.path.join(directory, META_NAME), sync=sync)


def save_topic_meta(disk: Disk, directory: str, meta: dict[str, Any], *, sync: bool = True) -> None:
    document = meta_document(disk, directory, sync=sync)
    try:
        document.load()  # learn the copies' generations
    except OSError:
        pass  # both copies damaged: the save replaces them
    document.save(meta)


def encode_head(offset: int) -> bytes:
    head = _HEAD_MAGIC + struct.pack("<Q", offset)
    return head + struct.pack("<I", crc32c.crc32c(head))


def decode_head(raw: bytes) -> int | None:
    if len(raw) != _HEAD.size:
        return None
    magic, offset, crc = _HEAD.unpack(raw)
    if magic != _HEAD_MAGIC or crc32c.crc32c(raw[:12]) != crc:
        return None
    return int(offset)


class HeadFile:
    """The ``head`` file of one topic. Thread-safe."""

    def __init__(self, disk: Disk, directory: str, handles: HandleCache) -> None:
        self.disk = disk
        self.path = os.path.join(directory, HEAD_NAME)
        self._lock = threading.Lock()
        # Never marked dirty: the head is a hint, so it is never fsync'd on its own and
        # its descriptor may be closed whenever the handle set needs room.
        self._handle = handles.handle(self.path, os.O_RDWR | os.O_CREAT)
        self._written = -1
        self.failed = False

    def read(self) -> int:
        """The acknowledged lower bound (0 if there is no usable head)."""
        try:
            raw = self.disk.read_bytes(self.path)
        except FileNotFoundError:
            return 0
        except OSError as exc:
            log.warning("cannot read %s (%s); recovering without it", self.path, exc)
            return 0
        if not raw:
            return 0  # created and never written back before a power loss
        offset = decode_head(raw)
        if offset is None:
            log.warning("%s is damaged; recovering without it", self.path)
            return 0
        return offset

    def write(self, offset: int) -> None:
        """Record that offsets below ``offset`` are durable (never moves back)."""
        with self._lock:
            if offset <= self._written:
                return
            try:
                with self._handle.fd() as fd:
                    self.disk.pwritev(fd, [encode_head(offset)], 0)
                self._written = offset
            except OSError as exc:
                # Only a hint is lost: recovery then trusts the log's own end.
                if not self.failed:
                    log.warning("cannot write %s: %s", self.path, exc)
                self.failed = True

    def close(self) -> None:
        with self._lock:
            self._handle.close()
