"""The key index: for each key of a topic, the offsets of its records, by version.

Theory of operation
-------------------
The index is a small log-structured merge tree made of Arrow tables, so that adding
the entries of a 10,000-record append is a handful of Arrow calls, never a loop over
records (see docs/decisions/0002-key-index-as-arrow-runs.md for why not RocksDB).

* Each append adds one entry per keyed record — ``(key, version, offset)`` — to the
  *memtable*, a list of Arrow tables compacted now and then into one. An append of a
  few records adds its entries to Python lists instead, which join the memtable as one
  table every ``key_index_pending_entries_max`` entries, or when the index is read.
* When the memtable holds ``key_index_memtable_entries_max`` entries (or, holding at
  least ``key_index_spill_entries_min``, is ``key_index_spill_seconds`` old, so that
  a crash leaves little to index again from the log) it is frozen and a background
  thread sorts it by (key, version) and writes it as a *run*: an Arrow IPC file named
  after the offsets it covers, ``run-<start>-<end>.arrow``, fsync'd, then renamed into
  place. Runs are memory-mapped for lookups.
* Runs of similar size are merged ``key_index_merge_fan_in`` at a time. A merge drops
  entries below the retention floor but keeps each key's latest entry, so key heads
  (the current version of every key) can always be recomputed from the index alone.
* A lookup binary-searches every run (runs are sorted by key) and filters the memtable
  with one vectorized comparison: its cost is the key's own entries plus a few
  logarithmic searches, never a scan of the topic.

The index is derived data. Runs cover a contiguous range of offsets ``[start, end)``;
on open, runs that reach past the log's end (written before a crash that then lost the
log's unsynced tail) or that leave a gap are deleted, and the caller re-adds the log's
records from :attr:`KeyIndex.covered_until` on.
"""

from __future__ import annotations

import logging
import os
import re
import struct
import threading
import time
from collections.abc import Callable

import crc32c
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from odradek import limits
from odradek.errors import StorageError
from odradek.storage.disk import LOCAL, Disk, describe_os_error

log = logging.getLogger(__name__)

INDEX_SCHEMA = pa.schema(
    [
        pa.field("key", pa.binary(), nullable=False),
        pa.field("version", pa.int64(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
    ]
)
_RUN_NAME = re.compile(r"^run-(\d{20})-(\d{20})\.arrow$")
_MEMTABLE_CHUNKS_MAX = 64  # compact the memtable's chunks beyond this many


RUN_TRAILER = struct.Struct("<4sI")  # magic "OKR1", CRC-32C of the Arrow file before it
RUN_MAGIC = b"OKR1"


class RunDamaged(ValueError):
    """A run's bytes are not what was written (checksum, schema or order)."""


def encode_run(table: pa.Table) -> bytes:
    """An Arrow IPC file of ``table`` followed by the run trailer."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, INDEX_SCHEMA) as writer:
        writer.write_table(table, max_chunksize=max(table.num_rows, 1))
    body = sink.getvalue()
    return bytes(body.to_pybytes()) + RUN_TRAILER.pack(RUN_MAGIC, crc32c.crc32c(body))


class Run:
    """One sorted, immutable, memory-mapped run of index entries.

    Checked before it is trusted: the trailer's CRC-32C must match the file, and the
    entries must have the index schema, be sorted by (key, version) and point inside
    [start, end). A run written before runs had a trailer passes the last two checks
    only (a merge rewrites it with one)."""

    def __init__(self, disk: Disk, path: str, start: int, end: int) -> None:
        self.path = path
        self.start = start
        self.end = end
        buffer = disk.map(path)
        tail = memoryview(buffer)[-RUN_TRAILER.size :] if buffer.size >= RUN_TRAILER.size else b""
        if bytes(tail[:4]) == RUN_MAGIC:
            body = buffer.slice(0, buffer.size - RUN_TRAILER.size)
            (crc,) = struct.unpack("<I", tail[4:])
            if crc32c.crc32c(memoryview(body)) != crc:
                raise RunDamaged("its checksum does not match its contents")
            self.checksummed = True
        else:
            body = buffer
            self.checksummed = False
        try:
            table = pa.ipc.open_file(body).read_all()
        except (pa.ArrowException, ValueError) as exc:
            raise RunDamaged(f"it is not a readable Arrow file ({exc})") from exc
        table = table.combine_chunks()
        if table.schema != INDEX_SCHEMA:
            raise RunDamaged(f"it has schema {table.schema}")
        self.table = table
        self.rows = table.num_rows
        self._keys = table.column("key").chunk(0) if table.num_rows else pa.array([], pa.binary())
        self._versions = (
            table.column("version").chunk(0).to_numpy() if table.num_rows else np.empty(0, np.int64)
        )
        self._offsets = (
            table.column("offset").chunk(0).to_numpy() if table.num_rows else np.empty(0, np.int64)
        )
        self._check_entries()

    def _check_entries(self) -> None:
        if not self.rows:
            return
        if self._offsets.max() >= self.end or self._offsets.min() < 0 or self._versions.min() < 1:
            raise RunDamaged(f"it has entries outside offsets {self.start}..{self.end - 1} or versions < 1")
        if self.rows > 1:
            keys = self._keys
            order = pc.less_equal(keys[:-1], keys[1:])
            same = pc.equal(keys[:-1], keys[1:]).to_numpy(zero_copy_only=False)
            ascending = self._versions[1:] > self._versions[:-1]
            if not pc.all(order).as_py() or not np.all(ascending | ~same):
                raise RunDamaged("its entries are not sorted by key and version")

    def _bisect(self, key: bytes, right: bool) -> int:
        keys = self._keys
        low, high = 0, len(keys)
        while low < high:
            middle = (low + high) // 2
            probe = keys[middle].as_py()
            if probe < key or (right and probe == key):
                low = middle + 1
            else:
                high = middle
        return low

    def lookup(self, key: bytes) -> tuple[np.ndarray, np.ndarray]:
        """(versions, offsets) of ``key`` in this run, ascending by version."""
        start = self._bisect(key, right=False)
        if start >= self.rows or self._keys[start].as_py() != key:
            return np.empty(0, np.int64), np.empty(0, np.int64)
        end = self._bisect(key, right=True)
        return self._versions[start:end], self._offsets[start:end]


class KeyIndex:
    def __init__(
        self, directory: str, log_next_offset: int, disk: Disk = LOCAL, *, fsync: bool = True
    ) -> None:
        self.directory = directory
        self.disk = disk
        self.fsync = fsync
        if not disk.isdir(directory):
            disk.makedirs(directory)
        self._lock = threading.Lock()  # guards the lists below; never held during I/O
        self._flush_lock = threading.Lock()  # one flush at a time, in offset order
        self._merge_lock = threading.Lock()  # one merge at a time, beside flushes
        self._memtable: list[pa.Table] = []
        self._memtable_rows = 0  # the pending entries included
        self._memtable_since = 0.0  # time.monotonic() of the memtable's first entry
        # Entries added by add_few, not yet in the memtable: keys, versions, offsets.
        self._pending: tuple[list[bytes], list[int], list[int]] = ([], [], [])
        self._frozen: list[tuple[pa.Table, int, int]] = []  # (entries, start, end)
        # Runs found damaged at open: (file name, start, end, what is wrong).
        self.damaged_runs: list[tuple[str, int, int, str]] = []
        self._runs: list[Run] = self._load_runs(log_next_offset)
        self.covered_until = self._runs[-1].end if self._runs else 0
        self._memtable_start = self.covered_until
        self.retention_floor = 0
        # The last failed flush (a full disk...): appends go on into memory until
        # ``key_index_frozen_max`` memtables wait, and the flush is retried meanwhile.
        self.flush_error: BaseException | None = None
        self._failed_at = 0.0
        self._threads: list[threading.Thread] = []
        if _merge_window(self._runs) is not None:  # left unmerged by an earlier session
            self._start_thread(self._merge_in_background)

    # -- opening ----------------------------------------------------------------------

    def _load_runs(self, log_next_offset: int) -> list[Run]:
        found = []
        for name in self.disk.listdir(self.directory):
            match = _RUN_NAME.match(name)
            path = os.path.join(self.directory, name)
            if match:
                found.append((int(match.group(1)), int(match.group(2)), path))
            elif name.endswith(".tmp"):
                self.disk.remove(path)
        found.sort()
        runs: list[Run] = []
        removed = False
        for start, end, path in found:
            # Runs cover [0, covered_until) without a gap: the first starts at 0.
            usable = end <= log_next_offset and start == (runs[-1].end if runs else 0)
            if usable:
                try:
                    runs.append(Run(self.disk, path, start, end))
                    continue
                except (OSError, ValueError, pa.ArrowException) as exc:
                    log.error("key index run %s is damaged (%s); rebuilding from the log", path, exc)
                    self.damaged_runs.append((os.path.basename(path), start, end, str(exc)))
            else:
                log.warning("key index run %s does not match the log; rebuilding from the log", path)
            self.disk.remove(path)
            removed = True
        if removed and self.fsync:
            # The removal must survive a power cut: a run reaching past the log's end
            # that came back after the log grew past it would be trusted.
            self.disk.fsync_directory(self.directory)
        return runs

    # -- adding -----------------------------------------------------------------------

    def add(self, entries: pa.Table, end_offset: int) -> None:
        """Add the entries of one append (keyed records only); ``end_offset`` is the log's
        next offset after it."""
        frozen = None
        with self._lock:
            if entries.num_rows:
                self._settle()
                self._add_table(entries)
                self._count(entries.num_rows)
            if self._due():
                frozen = self._freeze(end_offset)
        if frozen is not None and self.flush_error is None:
            self._start_flush_thread()

    def add_few(self, keys: list[bytes], versions: list[int], offsets: list[int], end_offset: int) -> None:
        """:meth:`add` for an append of a few records, its entries as Python lists: they
        wait beside the memtable (``limits.key_index_pending_entries_max`` at most) and
        join it as one table, so a single-record append builds no Arrow table."""
        frozen = None
        with self._lock:
            if keys:
                pending_keys, pending_versions, pending_offsets = self._pending
                pending_keys.extend(keys)
                pending_versions.extend(versions)
                pending_offsets.extend(offsets)
                self._count(len(keys))
                if len(pending_keys) >= limits.key_index_pending_entries_max:
                    self._settle()
            if self._due():
                frozen = self._freeze(end_offset)
        if frozen is not None and self.flush_error is None:
            self._start_flush_thread()

    def _count(self, added: int) -> None:
        """``added`` entries joined the memtable (the lock is held)."""
        if not self._memtable_rows:
            self._memtable_since = time.monotonic()
        self._memtable_rows += added

    def _due(self) -> bool:
        """Whether the memtable is to be written as a run now (the lock is held): full,
        or past ``key_index_spill_seconds`` with enough entries, while no earlier one
        waits or failed (those are the full-memtable path's, with its bounds)."""
        rows = self._memtable_rows
        if rows >= limits.key_index_memtable_entries_max:
            return True
        return (
            rows >= limits.key_index_spill_entries_min
            and not self._frozen
            and self.flush_error is None
            and time.monotonic() - self._memtable_since >= limits.key_index_spill_seconds
        )

    def _settle(self) -> None:
        """Move the pending entries into the memtable (the lock is held)."""
        keys, versions, offsets = self._pending
        if keys:
            self._pending = ([], [], [])
            self._add_table(
                pa.Table.from_arrays(
                    [
                        pa.array(keys, pa.binary()),
                        pa.array(versions, pa.int64()),
                        pa.array(offsets, pa.int64()),
                    ],
                    schema=INDEX_SCHEMA,
                )
            )

    def _add_table(self, entries: pa.Table) -> None:
        self._memtable.append(entries)
        if len(self._memtable) > _MEMTABLE_CHUNKS_MAX:
            self._memtable = [pa.concat_tables(self._memtable).combine_chunks()]

    def _freeze(self, end_offset: int) -> tuple[pa.Table, int, int]:
        self._settle()
        table = pa.concat_tables(self._memtable) if self._memtable else INDEX_SCHEMA.empty_table()
        frozen = (table, self._memtable_start, end_offset)
        self._frozen.append(frozen)
        self._memtable = []
        self._memtable_rows = 0
        self._memtable_start = end_offset
        return frozen

    def _flush_frozen(self, merge: bool = True) -> None:
        """Write the frozen memtables as runs, oldest first (one thread per freeze; the
        first to get the flush lock writes every one waiting)."""
        with self._flush_lock:
            while True:
                with self._lock:
                    if not self._frozen:
                        break
                    table, start, end = self._frozen[0]
                try:
                    run = self._write_run(table, start, end)
                except Exception as exc:  # noqa: BLE001 - recorded, retried, and refused on append
                    if self.flush_error is None:
                        log.error(
                            "key index flush of %s failed (%s); retrying", self.directory, _describe(exc)
                        )
                    self.flush_error = exc
                    self._failed_at = time.monotonic()
                    return
                with self._lock:
                    self._runs.append(run)
                    self._frozen.pop(0)
                    self.covered_until = end
                if self.flush_error is not None:
                    log.info("key index flush of %s succeeded again", self.directory)
                    self.flush_error = None
        # Merging is slower than flushing: it runs beside the next flushes, so that
        # frozen memtables (which lookups scan linearly) never queue up behind it.
        if merge and self._merge_lock.acquire(blocking=False):
            try:
                self._merge_while_needed()
            except Exception as exc:  # noqa: BLE001 - the runs are intact: the next flush merges again
                log.warning("key index merge of %s failed: %s", self.directory, _describe(exc))
            finally:
                self._merge_lock.release()

    def _write_run(self, table: pa.Table, start: int, end: int, keep_floor: int = 0) -> Run:
        table = table.sort_by([("key", "ascending"), ("version", "ascending")])
        if keep_floor > 0 and table.num_rows:
            keys = table.column("key").combine_chunks()
            last_of_key = np.ones(table.num_rows, dtype=bool)
            if table.num_rows > 1:
                last_of_key[:-1] = pc.not_equal(keys[:-1], keys[1:]).to_numpy(zero_copy_only=False)
            offsets = table.column("offset").to_numpy()
            table = table.filter(pa.array(last_of_key | (offsets >= keep_floor)))
        table = table.combine_chunks()
        path = os.path.join(self.directory, f"run-{start:020d}-{end:020d}.arrow")
        self.disk.write_atomically(path, encode_run(table), sync=self.fsync)
        return Run(self.disk, path, start, end)

    def check_writable(self) -> None:
        """Called before each append: retries a failed flush, and refuses the append
        (StorageError saying why) while too many memtables wait to be written."""
        error = self.flush_error
        if error is None:
            return
        if time.monotonic() - self._failed_at >= limits.key_index_flush_retry_seconds:
            self._failed_at = time.monotonic()
            self._start_flush_thread()
        with self._lock:
            waiting = len(self._frozen)
        if waiting >= limits.key_index_frozen_max:
            raise StorageError(
                f"the key index of {os.path.dirname(self.directory)} cannot be written "
                f"({_describe(error)}); appends resume once it can"
            )

    def _start_flush_thread(self) -> None:
        self._start_thread(self._flush_frozen)

    def _start_thread(self, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name="odradek-key-index", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def _merge_in_background(self) -> None:
        if self._merge_lock.acquire(blocking=False):
            try:
                self._merge_while_needed()
            except Exception as exc:  # noqa: BLE001 - the runs are intact: a later flush merges again
                log.warning("key index merge of %s failed: %s", self.directory, _describe(exc))
            finally:
                self._merge_lock.release()

    def _merge_while_needed(self) -> None:
        """Merge while _merge_window finds runs to merge (size tiers, and a bound)."""
        while True:
            with self._lock:
                window = _merge_window(self._runs)
            if window is None:
                return
            entries = pa.concat_tables([r.table for r in window])
            merged = self._write_run(entries, window[0].start, window[-1].end, self.retention_floor)
            with self._lock:
                # Flushes only append, so the window is still adjacent; find it by identity.
                at = next(i for i, run in enumerate(self._runs) if run is window[0])
                self._runs[at : at + len(window)] = [merged]
            for run in window:
                if run.path != merged.path:
                    self.disk.remove(run.path)

    def flush(self, end_offset: int) -> None:
        """Write everything in memory as runs now (at a clean close); ``end_offset`` is
        the log's next offset, so the next open has nothing to re-read."""
        self.freeze(end_offset)
        self.flush_frozen()

    def freeze(self, end_offset: int) -> None:
        """Set what is in memory aside for :meth:`flush_frozen`, as covering the log up
        to ``end_offset`` (the caller holds the topic's writer lock: nothing is appended
        in between); the next appends go to a new memtable."""
        with self._lock:
            if self._memtable_rows or end_offset > self._memtable_start:
                self._freeze(end_offset)

    def flush_frozen(self) -> None:
        """Write every frozen memtable as runs now; no lock of the topic is needed."""
        while True:
            with self._lock:
                if not self._frozen:
                    break
            self._flush_frozen(merge=False)  # closing: merging can wait for the next open
            if self.flush_error is not None:
                raise self.flush_error

    def wait_idle(self) -> None:
        for thread in list(self._threads):
            thread.join()

    # -- reading ----------------------------------------------------------------------

    def lookup(self, key: bytes, from_version: int = 1, to_version: int | None = None) -> np.ndarray:
        """Offsets of the key's records with from_version <= version <= to_version."""
        with self._lock:
            self._settle()
            runs = list(self._runs)
            memory = [t for t, _, _ in self._frozen] + list(self._memtable)
        versions: list[np.ndarray] = []
        offsets: list[np.ndarray] = []
        for run in runs:
            run_versions, run_offsets = run.lookup(key)
            if len(run_versions):
                versions.append(run_versions)
                offsets.append(run_offsets)
        if memory:
            table = pa.concat_tables(memory)
            if from_version > 1 or to_version is not None:
                # The version bounds first (an int64 compare): the keys are then compared
                # among the entries in range only, not the whole memtable (a replay from a
                # snapshot asks for the last versions of a key).
                in_range = pc.greater_equal(table.column("version"), from_version)
                if to_version is not None:
                    in_range = pc.and_(in_range, pc.less_equal(table.column("version"), to_version))
                table = table.filter(in_range)
            matched = table.filter(pc.equal(table.column("key"), pa.scalar(key, pa.binary())))
            if matched.num_rows:
                versions.append(matched.column("version").to_numpy())
                offsets.append(matched.column("offset").to_numpy())
        if not versions:
            return np.empty(0, np.int64)
        all_versions = np.concatenate(versions)
        all_offsets = np.concatenate(offsets)
        mask = all_versions >= from_version
        if to_version is not None:
            mask &= all_versions <= to_version
        mask &= all_offsets >= self.retention_floor
        return np.sort(all_offsets[mask])

    def heads(self) -> tuple[pa.Array, np.ndarray]:
        """(keys, versions): the current version of every key (computed at open)."""
        with self._lock:
            self._settle()
            tables = [r.table for r in self._runs] + [t for t, _, _ in self._frozen] + self._memtable
        table = pa.concat_tables(tables) if tables else INDEX_SCHEMA.empty_table()
        if table.num_rows == 0:
            return pa.array([], pa.binary()), np.zeros(0, np.int64)
        grouped = table.group_by("key").aggregate([("version", "max")])
        keys = grouped.column("key").combine_chunks()
        return keys, grouped.column("version_max").to_numpy()

    @property
    def run_count(self) -> int:
        return len(self._runs)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "runs": len(self._runs),
                "run_entries": sum(r.rows for r in self._runs),
                "memtable_entries": self._memtable_rows + sum(t.num_rows for t, _, _ in self._frozen),
            }


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return describe_os_error(exc)
    return str(exc) or type(exc).__name__


def _merge_window(runs: list[Run]) -> list[Run] | None:
    """The runs to merge next, if any.

    Size-tiered first: the oldest ``fan_in`` adjacent runs that share a size tier. That
    alone does not bound the count: runs of different tiers can alternate for ever (a
    short session flushes one full memtable, then its clean close writes a small one).
    So past ``key_index_runs_max`` runs, the ``fan_in`` adjacent runs with the fewest
    entries between them are merged, whatever their tiers: a lookup searches every run.
    """
    fan_in = limits.key_index_merge_fan_in
    if len(runs) < fan_in:
        return None
    tiers = [_tier(run.rows) for run in runs]
    for start in range(len(runs) - fan_in + 1):
        if len(set(tiers[start : start + fan_in])) == 1:
            return runs[start : start + fan_in]
    if len(runs) <= limits.key_index_runs_max:
        return None
    sizes = np.array([run.rows for run in runs], dtype=np.int64)
    totals = np.convolve(sizes, np.ones(fan_in, dtype=np.int64), mode="valid")
    start = int(np.argmin(totals))
    return runs[start : start + fan_in]


def _tier(rows: int) -> int:
    base = max(limits.key_index_memtable_entries_max, 1)
    tier = 0
    size = base
    while rows > size:
        size *= limits.key_index_merge_fan_in
        tier += 1
    return tier


def entries_for(
    keys: pa.Array, versions: np.ndarray, offsets: np.ndarray, keyed: np.ndarray | None
) -> pa.Table:
    """Index entries of an append's keyed records (``keyed`` is the non-null mask)."""
    if keyed is not None:
        mask = pa.array(keyed)
        keys = keys.filter(mask)
        versions = versions[keyed]
        offsets = offsets[keyed]
    return pa.Table.from_arrays(
        [keys, pa.array(versions, pa.int64()), pa.array(offsets, pa.int64())], schema=INDEX_SCHEMA
    )
