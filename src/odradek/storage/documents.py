"""Small JSON documents with a checksum, kept in two copies.

Topic metadata, schema ids, the Schema Registry's subjects and the Kafka door's state
are small JSON documents that cannot be rebuilt from the log. Each is stored as::

    <JSON text>
    #odradek generation=<n> crc32c=<8 hex digits>

The CRC-32C covers the JSON text and the generation, so a flipped bit anywhere is
caught instead of being parsed into a wrong number. A file without the trailer (written
before checksums existed) is read as generation 0 when it parses.

Two copies, ``NAME`` and ``NAME.copy``, so that one damaged file loses nothing:

* ``mirror`` (the default): every save writes both copies, one after the other, each
  atomically (temporary file, fsync, rename, directory fsync). A crash between the two
  leaves one copy a generation ahead; loading takes the newest valid copy.
* ``alternate``: a save writes only the copy holding the older generation, so it costs
  one atomic write, and a damaged newest copy falls back to the previous version. For
  documents whose previous version is a safe answer (committed consumer offsets: the
  consumer re-reads a little).

Loading reports a damaged or missing copy (a warning naming the file) and, if no copy
is valid although one exists, raises :class:`DocumentDamaged` naming every file and
what is wrong with it, so that nothing disappears silently.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import crc32c

from odradek.errors import DataDamaged
from odradek.storage.disk import Disk, describe_os_error

log = logging.getLogger(__name__)

COPY_SUFFIX = ".copy"
_TRAILER = re.compile(rb"\n#odradek generation=(\d+) crc32c=([0-9a-f]{8})\n\Z")


class DocumentDamaged(DataDamaged):
    """Every copy of a document is damaged: it cannot be read."""

    def __init__(self, message: str, path: str, problems: list[str]) -> None:
        super().__init__(message)
        self.path = path
        self.problems = problems


def encode(data: Any, generation: int) -> bytes:
    text = json.dumps(data, separators=(",", ":")).encode()
    crc = crc32c.crc32c(b"%s\n%d" % (text, generation))
    return b"%s\n#odradek generation=%d crc32c=%08x\n" % (text, generation, crc)


def decode(raw: bytes) -> tuple[Any, int]:
    """(data, generation) of a document's bytes; raises ValueError saying what is wrong."""
    match = _TRAILER.search(raw)
    if match is None:
        if b"\n#odradek " in raw:
            raise ValueError("its checksum line is damaged")
        try:
            return json.loads(raw), 0  # written before documents had a checksum
        except (ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"it is not valid JSON and has no checksum line ({exc})") from None
    text = raw[: match.start()]
    generation = int(match.group(1))
    if crc32c.crc32c(b"%s\n%d" % (text, generation)) != int(match.group(2), 16):
        raise ValueError("its checksum does not match its contents")
    try:
        return json.loads(text), generation
    except (ValueError, UnicodeDecodeError) as exc:  # a checksum match makes this a bug
        raise ValueError(f"it is not valid JSON ({exc})") from None


class Document:
    """One document at ``path`` (and ``path + ".copy"``). Not thread-safe: callers
    serialize saves of one document."""

    def __init__(self, disk: Disk, path: str, *, mode: str = "mirror", sync: bool = True) -> None:
        if mode not in ("mirror", "alternate"):
            raise ValueError(f"mode is mirror or alternate, not {mode!r}")
        self.disk = disk
        self.path = path
        self.mode = mode
        self.sync = sync
        self._generations = [-1, -1]  # of the two copies, as last loaded or saved (-1: none)

    @property
    def paths(self) -> tuple[str, str]:
        return self.path, self.path + COPY_SUFFIX

    def exists(self) -> bool:
        return any(self.disk.exists(path) for path in self.paths)

    def load(self) -> Any | None:
        """The newest valid copy's data; None if neither copy exists.

        Raises DocumentDamaged if copies exist and none is valid.
        """
        found: list[tuple[int, Any]] = []
        problems: list[str] = []
        missing = 0
        for number, path in enumerate(self.paths):
            self._generations[number] = -1
            try:
                raw = self.disk.read_bytes(path)
            except FileNotFoundError:
                missing += 1
                continue
            except OSError as exc:
                problems.append(f"{path}: cannot be read ({describe_os_error(exc)})")
                continue
            try:
                data, generation = decode(raw)
            except ValueError as exc:
                problems.append(f"{path}: {exc}")
                continue
            self._generations[number] = generation
            found.append((generation, data))
        if not found:
            if problems:
                raise DocumentDamaged(
                    f"{self.path} is damaged and so is its copy: " + "; ".join(problems), self.path, problems
                )
            return None
        found.sort(key=lambda item: item[0])
        if problems:
            log.warning("using the valid copy of %s; %s", self.path, "; ".join(problems))
        elif missing and self._generations[0] > 0:
            # A legacy document has no copy (generation 0); a newer one lost its copy.
            log.warning("%s has lost its copy; the next save writes it again", self.path)
        return found[-1][1]

    def save(self, data: Any) -> None:
        """Make ``data`` the document's content, durably (with ``sync``)."""
        generation = max(*self._generations, 0) + 1
        raw = encode(data, generation)
        if self.mode == "mirror":
            targets = [0, 1]
        else:
            targets = [0 if self._generations[0] <= self._generations[1] else 1]
        for number in targets:
            self.disk.write_atomically(self.paths[number], raw, sync=self.sync)
            self._generations[number] = generation

    def delete(self) -> None:
        for path in self.paths:
            try:
                self.disk.remove(path)
            except FileNotFoundError:
                pass
        if self.sync:
            self.disk.fsync_directory(os.path.dirname(self.path) or ".")
        self._generations = [-1, -1]


def load_document(disk: Disk, path: str) -> Any | None:
    """One-shot load of a document (see Document.load)."""
    return Document(disk, path).load()
