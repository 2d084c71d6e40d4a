"""What a StoreDisk knows of its data directory's files, for checkpoints.

The StoreDisk tells a :class:`Tree` every change it makes to a file it journals or
checkpoints (under its lock, in the order of the journal); recovery tells it every
journal entry it replays. The tree keeps, per path:

* the file's size (``sizes``), whether it is in the local tree or only in the store
  (``remote``: its record in the last manifest);
* the directories (``dirs``);
* since the last snapshot: the lowest byte of each file that changed (``changed``: 0
  for a file replaced or created), and the renames, in order (``moves``).

A checkpoint takes a :meth:`snapshot` (the StoreDisk's lock held), which hands over
``changed`` and ``moves`` and starts new ones. Paths are relative to the data
directory, '/'-separated.
"""

from __future__ import annotations

import dataclasses
import re

from odradek.storage import journal
from odradek.storage.manifest import Record

# Files the engine rebuilds or checks from the log at open (decision 0007): never
# journaled, uploaded whole by checkpoints so that a restart need not rebuild them.
DERIVED = re.compile(r"(^|/)(head|[^/]*\.index)$|(^|/)keys/|(^|/)producers/")
# Files that stay local: the lock, copies of damaged files, temporary files, the cache.
LOCAL = re.compile(r"(^|/)(LOCK|[^/]*\.damaged|[^/]*\.tmp)$|^cache(/|$)")
SEGMENT_SUFFIX = ".log"
INDEX_SUFFIX = ".index"


def is_derived(path: str) -> bool:
    return DERIVED.search(path) is not None


def sealed_by_index(path: str, sizes: dict[str, int]) -> bool:
    """Whether ``path`` is a segment whose sidecar index exists (it was sealed)."""
    if not path.endswith(SEGMENT_SUFFIX):
        return False
    return path[: -len(SEGMENT_SUFFIX)] + INDEX_SUFFIX in sizes


def under(path: str, top: str) -> bool:
    """``path`` is ``top`` or inside it."""
    return path == top or path.startswith(top + "/")


def parents(path: str) -> list[str]:
    found = []
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        found.append(path)
    return found


@dataclasses.dataclass
class Snapshot:
    """The tree as of a journal position: files, their sizes, what changed since the
    snapshot before, and the renames in between."""

    sizes: dict[str, int]
    dirs: set[str]
    remote: dict[str, Record]
    changed: dict[str, int]
    moves: list[tuple[str, str]]


class Tree:
    """Not thread-safe: its owner (the StoreDisk) calls it under its lock."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.dirs: set[str] = set()
        self.remote: dict[str, Record] = {}
        self.remote_names: dict[str, set[str]] = {}  # directory -> names of its remote files
        self.changed: dict[str, int] = {}
        self.moves: list[tuple[str, str]] = []

    # -- remote files -------------------------------------------------------------------

    def add_remote(self, path: str, record: Record) -> None:
        self.remote[path] = record
        self.sizes[path] = record.size
        directory, _, name = path.rpartition("/")
        self.remote_names.setdefault(directory, set()).add(name)

    def local_now(self, path: str) -> Record | None:
        """Forget that ``path`` is remote (it was fetched into the local tree, or is
        being replaced or removed); its record, if it was."""
        record = self.remote.pop(path, None)
        if record is not None:
            directory, _, name = path.rpartition("/")
            names = self.remote_names.get(directory)
            if names is not None:
                names.discard(name)
                if not names:
                    del self.remote_names[directory]
        return record

    # -- changes --------------------------------------------------------------------------

    def note(self, entry: journal.Entry) -> None:
        """A journaled change (made locally already, or being replayed)."""
        op, path = entry.op, entry.path
        if op == journal.OP_WRITE:
            self.write(path, entry.position, len(entry.data))
        elif op == journal.OP_TRUNCATE:
            self.truncate(path, entry.position)
        elif op == journal.OP_REPLACE:
            self.replace(path, len(entry.data))
        elif op == journal.OP_CREATE:
            self.create(path)
        elif op == journal.OP_MKDIR:
            self.mkdir(path)
        elif op == journal.OP_RENAME:
            self.rename(path, entry.target)
        elif op == journal.OP_REMOVE:
            self.remove(path)
        elif op == journal.OP_RMTREE:
            self.rmtree(path)

    def _changed_from(self, path: str, position: int) -> None:
        previous = self.changed.get(path)
        if previous is None or position < previous:
            self.changed[path] = position

    def write(self, path: str, position: int, length: int) -> None:
        self._mkparents(path)
        self.sizes[path] = max(self.sizes.get(path, 0), position + length)
        self._changed_from(path, position)

    def truncate(self, path: str, size: int) -> None:
        self._mkparents(path)
        before = self.sizes.get(path, 0)
        self.sizes[path] = size
        self._changed_from(path, min(before, size))

    def replace(self, path: str, size: int) -> None:
        self._mkparents(path)
        self.local_now(path)
        self.sizes[path] = size
        self.changed[path] = 0

    def create(self, path: str) -> None:
        self._mkparents(path)
        if path not in self.sizes:
            self.sizes[path] = 0
            self.changed[path] = 0

    def mkdir(self, path: str) -> None:
        self.dirs.add(path)
        self._mkparents(path)

    def _mkparents(self, path: str) -> None:
        for parent in parents(path):
            if parent in self.dirs:
                return
            self.dirs.add(parent)

    def remove(self, path: str) -> None:
        self.local_now(path)
        self.sizes.pop(path, None)
        self.changed.pop(path, None)

    def rmtree(self, path: str) -> None:
        self.dirs = {d for d in self.dirs if not under(d, path)}
        for name in [p for p in self.sizes if under(p, path)]:
            self.remove(name)

    def rename(self, source: str, target: str) -> None:
        """A file or directory moved (onto ``target``, replacing what was there)."""
        if source == target:
            return
        self.rmtree(target)
        self.moves.append((source, target))
        if source in self.dirs or any(under(d, source) for d in self.dirs):
            self.dirs = {moved(d, source, target) for d in self.dirs}
        self._mkparents(target)
        for path in [p for p in self.sizes if under(p, source)]:
            new = moved(path, source, target)
            self.sizes[new] = self.sizes.pop(path)
            if path in self.changed:
                self.changed[new] = self.changed.pop(path)
            record = self.local_now(path)
            if record is not None:
                self.add_remote(new, record)

    # -- checkpoints ----------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The tree now; hands over the changes and renames since the last snapshot."""
        taken = Snapshot(dict(self.sizes), set(self.dirs), dict(self.remote), self.changed, self.moves)
        self.changed = {}
        self.moves = []
        return taken

    def moved_since_snapshot(self, path: str) -> bool:
        """Whether ``path`` or a directory above it was renamed since the last snapshot."""
        return any(under(path, source) for source, _ in self.moves)


def moved(path: str, source: str, target: str) -> str:
    """``path`` after ``source`` was renamed ``target`` (unchanged if not under it)."""
    if path == source:
        return target
    if path.startswith(source + "/"):
        return target + path[len(source) :]
    return path
