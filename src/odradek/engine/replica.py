"""Reads of a cell's sealed segments from the store, by an agent that does not own it.

Decision 0042 (decision 0030 §5, "reads from any agent"). A cluster's cell is owned by
one agent, which writes every append to it; every second it checkpoints the cell into
the store (storage/checkpoint.py): a manifest naming each file's objects. Any other
agent can read a topic's **sealed** segments from there, with the engine's own readers
(the topic's metadata document, sidecar indexes, segment frames) running on a read-only
Disk over the manifest (storage/manifestdisk.py), fetched into a bounded cache:

* what it answers is a prefix of the owner's log: a sealed segment holds frames the
  owner made durable before it rolled the segment, and a manifest names only what the
  store's journal had committed (checkpoint.py, step 3);
* the active segment, the *owner's tail*, is not read here: it changes with every
  append, and the owner serves it from memory and its page cache. A fetch at or past
  the first offset not in a sealed segment is answered by the owner;
* anything out of the ordinary is the owner's to answer, never guessed at here: an
  offset below the first sealed segment the manifest holds (retention, deleted
  records), a topic the manifest does not hold (new, moved, deleted), a topic with
  damage (recorded or accepted), a segment whose frames do not chain. ``fetch``
  returns None and the caller asks the owner.

The manifest is read again at most every ``refresh_seconds`` (one LIST and one GET),
and only when a fetch comes. The topic's files in one manifest are read once: their
descriptions (metadata, frames of each sealed segment from its index) are kept for
as long as that manifest is the newest, and a sealed segment's frames for as long as
its record is unchanged (its objects are immutable).

Staleness: a sealed segment reaches the store at the owner's next checkpoint after it
rolls (a second on a cluster agent), and this reader sees it within
``refresh_seconds`` more. A topic deleted and created again within that time reads as
the old one until the next manifest shows the new one (documented in decision 0042).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.config import TopicConfig
from odradek.engine import segment as seg
from odradek.engine.log import (
    Segment,
    frames_at,
    gather,
    locate,
    read_compacted_until,
    schemaless_stored_schema,
)
from odradek.engine.topic import present_stored
from odradek.engine.topic_schema import TopicSchema
from odradek.engine.topicfiles import incarnation_of, meta_document
from odradek.errors import OdradekError, StorageError
from odradek.names import compile_pattern
from odradek.storage.checkpoint import latest_manifest
from odradek.storage.filecache import FileCache
from odradek.storage.handoff import TOPICS, Store, topic_directory
from odradek.storage.manifest import Manifest
from odradek.storage.manifestdisk import ManifestDisk

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TopicFiles:
    """What one manifest holds of a topic that a reader may serve."""

    name: str
    incarnation: str
    schema: TopicSchema | None
    segments: list[Segment]  # contiguous, oldest first; may be empty
    first_offset: int  # the first offset served here
    end_offset: int  # the first offset not served here (the owner's tail starts there)
    # Whether first_offset is where the topic began as the checkpoint holds it (its first
    # segment on, from the log start of deleted records): a read from "earliest" may
    # start here only then, not after a segment left to the owner (damage).
    whole: bool

    def stored_schema_at(self, offset: int) -> pa.Schema:
        return schemaless_stored_schema(offset) if self.schema is None else self.schema.stored_at(offset)


@dataclasses.dataclass
class ReplicaStats:
    fetches: int = 0  # fetches answered here
    records: int = 0  # records they returned
    declined: int = 0  # fetches left to the owner
    manifests: int = 0  # manifests read


class CellReplica:
    """The sealed segments of one cell's topics, read from the cell's store (see the
    module docstring). Thread-safe."""

    def __init__(
        self,
        store: Store,
        cache_directory: str,
        *,
        cell: str = "",
        cache_bytes: int = limits.replica_cache_bytes_default,
        refresh_seconds: float = limits.replica_refresh_seconds,
    ) -> None:
        self.store = store
        self.cell = cell  # the cell whose store it reads (a name for callers)
        self.refresh_seconds = refresh_seconds
        self.cache = FileCache(cache_directory, store, cache_bytes)
        self.stats = ReplicaStats()
        self._lock = threading.Lock()  # guards the fields below
        self._refreshing = threading.Lock()  # one manifest read at a time
        self._manifest: Manifest | None = None
        self._disk: ManifestDisk | None = None
        self._read_at = -float("inf")  # monotonic time of the last manifest read
        self._topics: dict[str, TopicFiles | None] = {}  # of the current manifest
        # Sealed segments described, by the cache name of their record: kept across
        # manifests (a record's objects never change), the most recent few.
        self._sealed: OrderedDict[str, Segment] = OrderedDict()

    # -- reading ---------------------------------------------------------------------------

    def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int,
        max_bytes: int,
        value_format: str = "typed",
        incarnation: str | None = None,
    ) -> list[pa.RecordBatch] | None:
        """Records of ``topic`` from ``offset`` on, as the owner's ``Engine.fetch``
        returns them (at most ``max_records``, about ``max_bytes``), but only from its
        sealed segments in the store: fewer than the owner would give when the read
        reaches the owner's tail. None when this reader cannot answer (see the module
        docstring): the caller asks the owner. ``incarnation``: None too when the
        topic the store holds is another one of that name."""
        for attempt in range(2):
            try:
                files = self.topic(topic, fresh=attempt > 0)
                if files is None or not files.first_offset <= offset < files.end_offset:
                    break
                if incarnation is not None and files.incarnation != incarnation:
                    break
                batches = _read(files, offset, max_records, max_bytes)
            except (OSError, StorageError) as exc:
                # A newer checkpoint's garbage collection deleted what this manifest
                # names: read the newest manifest and try once more.
                log.debug("reading %s from the store failed (%s); reading the newest manifest", topic, exc)
                continue
            if not batches:
                break
            if files.schema is not None:
                batches = [present_stored(batch, files.schema, value_format) for batch in batches]
            with self._lock:
                self.stats.fetches += 1
                self.stats.records += sum(batch.num_rows for batch in batches)
            return batches
        with self._lock:
            self.stats.declined += 1
        return None

    def topics(self, pattern: str) -> list[str]:
        """The names of the topics the newest manifest holds matching ``pattern`` (a
        topic pattern, names.py), sorted; none when the store cannot be read."""
        disk = self._current(False)
        if disk is None or not disk.isdir(TOPICS):
            return []
        matches = compile_pattern(pattern)
        return sorted(name for name in disk.listdir(TOPICS) if matches(name))

    def topic(self, name: str, *, fresh: bool = False) -> TopicFiles | None:
        """What the newest manifest (read at most ``refresh_seconds`` ago, or now with
        ``fresh``) holds of topic ``name`` that may be served here; None if nothing.
        Raises OSError or StorageError when its files cannot be read (a later
        checkpoint collected them): nothing is remembered then."""
        disk = self._current(fresh)
        if disk is None:
            return None
        with self._lock:
            if disk is self._disk and name in self._topics:
                return self._topics[name]
        try:
            files = self._describe(disk, name)
        except (OSError, StorageError):
            raise  # unreadable now: the caller may read the newest manifest
        except (OdradekError, ValueError, KeyError, TypeError) as exc:
            log.debug("topic %s cannot be read from the store's checkpoint: %s", name, exc)
            files = None  # a document this reader does not take: the owner answers
        with self._lock:
            if disk is self._disk:
                if len(self._topics) >= limits.replica_topics_max:
                    self._topics.pop(next(iter(self._topics)))
                self._topics[name] = files
        return files

    def _current(self, fresh: bool) -> ManifestDisk | None:
        """The newest manifest's disk, read again when older than ``refresh_seconds``."""
        with self._lock:
            if not fresh and time.monotonic() - self._read_at < self.refresh_seconds:
                return self._disk
        with self._refreshing:
            with self._lock:  # another thread may have read it meanwhile
                if not fresh and time.monotonic() - self._read_at < self.refresh_seconds:
                    return self._disk
            started = time.monotonic()
            try:
                manifest = latest_manifest(self.store)
            except (OSError, OdradekError) as exc:
                log.debug("cannot read the cell's newest manifest: %s", exc)
                return None  # the store is unwell: the owner answers meanwhile
            with self._lock:
                self._read_at = started
                self.stats.manifests += 1
                if manifest is None:
                    self._manifest = self._disk = None
                    self._topics = {}
                elif self._manifest is None or manifest.key != self._manifest.key:
                    self._manifest = manifest
                    self._disk = ManifestDisk(manifest, self.cache)
                    self._topics = {}
                return self._disk

    def _describe(self, disk: ManifestDisk, name: str) -> TopicFiles | None:
        directory = topic_directory(name)
        if not disk.isdir(directory):
            return None
        meta = meta_document(disk, directory).load()
        if meta is None or meta.get("name") != name or meta.get("accepted_damage"):
            return None  # missing, or damage an operator accepted: the owner knows
        schema = TopicSchema.from_json(meta["schema"]) if "schema" in meta else None
        TopicConfig.from_json(meta["config"])  # a document this version reads
        compacted_until = read_compacted_until(disk, directory)
        records = disk.manifest.files
        bases = list(seg.iter_segment_bases(disk, directory))
        segments: list[Segment] = []
        for number, base in enumerate(bases):
            path = f"{directory}/{seg.segment_name(base)}"
            if not records[path].sealed or number + 1 == len(bases):
                break  # the active segment and what follows: the owner's tail
            sealed = self._sealed_segment(disk, directory, base, bases[number + 1], compacted_until)
            if sealed is None or (segments and not _follows(segments[-1], sealed, compacted_until)):
                segments = []  # only what chains up to the owner's tail is served
                if sealed is None:
                    continue
            segments.append(sealed)
        if not segments:
            return None
        log_start = int(meta.get("log_start", 0))
        first = max(segments[0].base_offset, log_start)
        whole = segments[0].base_offset == bases[0]
        return TopicFiles(
            name, incarnation_of(meta), schema, segments, first, segments[-1].next_offset, whole
        )

    def _sealed_segment(
        self, disk: ManifestDisk, directory: str, base: int, following: int, compacted_until: int
    ) -> Segment | None:
        """A sealed segment's frames (from its sidecar index, else a scan), or None if
        they show damage or do not reach the next segment."""
        path = f"{directory}/{seg.segment_name(base)}"
        record = disk.record(path)
        key = f"{path}\n{FileCache.name_of(record)}"
        with self._lock:
            found = self._sealed.get(key)
            if found is not None:
                self._sealed.move_to_end(key)
                return found
        file = seg.SegmentFile(disk, directory, base, create=False)
        index = seg.read_index(disk, directory, base, file.size)
        if index is not None:
            frames, damages = index.frames, index.damages
        else:
            scan = file.scan(gaps=base < compacted_until)
            frames, damages = scan.frames, scan.damages
            if scan.tail < file.size:
                return None
        if damages or (not frames and base >= compacted_until):  # compaction may empty one
            return None
        sealed = Segment(
            file,
            frames,
            [frame.base_offset for frame in frames],
            max((f.max_timestamp for f in frames), default=0),
            0.0,
            tail=file.size,
        )
        end = sealed.next_offset
        if end != following and not (end < following <= compacted_until):
            return None
        with self._lock:
            self._sealed[key] = sealed
            while len(self._sealed) > limits.replica_segments_max:
                self._sealed.popitem(last=False)
        return sealed

    def status(self) -> dict[str, Any]:
        with self._lock:
            manifest = self._manifest
            return {
                **dataclasses.asdict(self.stats),
                "manifest": manifest.key if manifest is not None else None,
                "cache_bytes": self.cache.bytes,
            }


def _follows(before: Segment, after: Segment, compacted_until: int) -> bool:
    end = before.next_offset
    return end == after.base_offset or end < after.base_offset <= compacted_until


def _read(files: TopicFiles, offset: int, max_records: int, max_bytes: int) -> list[pa.RecordBatch]:
    """Like the owner's ``Topic._fetch_stored``, over ``files``' sealed segments."""
    frames = frames_at(files.segments, locate(files.segments, offset), files.end_offset)
    return gather(
        (
            (frame, segment.file.read_batch(frame, True, files.stored_schema_at(frame.base_offset)))
            for segment, frame in frames
        ),
        offset,
        max_records,
        max_bytes,
    )


def read_stored_topics(
    replica: CellReplica,
    pattern: str,
    start: object,
    max_records: int,
    max_bytes: int,
    starts: dict[str, tuple[int, str]],
    stopped: Callable[[], bool],
) -> Iterator[pa.RecordBatch]:
    """A wildcard read's batches of the topics of ``replica``'s cell matching
    ``pattern``, as far as the cell's sealed segments in the store hold them, from
    ``start`` (``earliest`` or an offset; nothing for another start, which only the
    owner resolves): batches as ``Engine.read`` gives them for a pattern (a ``topic``
    column, a schema'd topic's values as JSON text), the topics in turn. ``starts``
    gets where the read of each topic read here goes on, ``(offset, incarnation)``, for
    the cell's owner to continue from (Engine.read's ``starts``); at most
    ``read_starts_max`` topics are read here, the rest are the owner's whole."""
    if start != "earliest" and (isinstance(start, bool) or not isinstance(start, int)):
        return
    positions: dict[str, tuple[int, str]] = {}
    for name in replica.topics(pattern):
        if len(positions) >= limits.read_starts_max:
            break
        try:
            files = replica.topic(name)
        except (OSError, StorageError):
            continue  # its files are gone from under this manifest: the owner reads it
        if files is None or (start == "earliest" and not files.whole):
            continue
        positions[name] = (files.first_offset if start == "earliest" else int(start), files.incarnation)
    while positions and not stopped():
        for name, (offset, incarnation) in list(positions.items()):
            answered = replica.fetch(
                name,
                offset,
                max_records=max_records,
                max_bytes=max_bytes,
                value_format="json",
                incarnation=incarnation,
            )
            if not answered:
                del positions[name]  # the rest is the owner's
                continue
            for batch in answered:
                offset = int(batch.column("offset")[-1].as_py()) + 1
                starts[name] = (offset, incarnation)
                yield batch.append_column("topic", pc.fill_null(pa.nulls(batch.num_rows, pa.utf8()), name))
            positions[name] = (offset, incarnation)


class Replicas:
    """An agent's readers of the cells it does not own, one per cell, made on first use
    from ``store_of(cell)`` with a cache under ``directory``. Thread-safe."""

    def __init__(
        self,
        store_of: Callable[[str], Store],
        directory: str,
        *,
        cache_bytes: int = limits.replica_cache_bytes_default,
        refresh_seconds: float = limits.replica_refresh_seconds,
    ) -> None:
        self._store_of = store_of
        self.directory = directory
        self.cache_bytes = cache_bytes
        self.refresh_seconds = refresh_seconds
        self._lock = threading.Lock()
        self._cells: dict[str, CellReplica] = {}

    def of(self, cell: str) -> CellReplica:
        with self._lock:
            replica = self._cells.get(cell)
            if replica is None:
                replica = self._cells[cell] = CellReplica(
                    self._store_of(cell),
                    os.path.join(self.directory, cell),
                    cell=cell,
                    cache_bytes=self.cache_bytes,
                    refresh_seconds=self.refresh_seconds,
                )
            return replica

    def status(self) -> dict[str, dict[str, Any]]:
        """Each cell's reader's figures (cluster status, metrics)."""
        with self._lock:
            cells = dict(self._cells)
        return {cell: replica.status() for cell, replica in sorted(cells.items())}
