"""Checkpoints: the data directory's files in the object store, so the journal can go.

Decision record 0011, "Checkpoints and compaction". Every ``checkpoint_seconds``, or
once ``checkpoint_bytes`` of journal were uploaded since the last one, a background
thread owned by the StoreDisk:

1. takes a *snapshot* under the StoreDisk's lock: the tree (every file's size, the
   directories), what changed since the last snapshot, and the journal position F —
   the open flush is cut there, so every change made so far is in a flush up to F and
   none after it is; then waits until F is committed;
2. uploads what changed: a file replaced, created or rewritten from its start whole
   (``files/<path>/<epoch>-<n>``), the new bytes of a file that grew, from the lowest
   byte that changed, as an extent (``files/<path>/<epoch>-<n>.<start>``), and derived
   files (key-index runs, sidecar indexes, producer snapshots, head files) whole, so a
   restart does not rebuild them from the log. Files that did not change keep the
   objects the last manifest named;
3. waits until everything journaled while it read the files is committed;
4. writes ``manifests/<epoch>-<n>`` (create-if-absent): every path, its size and its
   pieces, the directories, and F;
5. hands the local copies of the sealed segments the manifest names over to the cache
   of remote files (StoreDisk.hand_over), so the LRU bounds them: a long-running
   agent's local disk holds its active segments, small and derived files, and at most
   ``store_cache_bytes`` of sealed segments;
6. collects garbage, only while its epoch is still the highest in ``epochs/`` (a
   fenced agent deletes nothing): older manifests, the journal objects up to F, and
   the file objects that the new manifest no longer names (this is how retention
   deletes a segment's objects).

Why "as of F" holds while the engine keeps writing
--------------------------------------------------
The files are read after F, while the engine changes them, so a file's content C may
hold changes made after F (even half of one: a read racing a write). Recovery is C
plus the journal after F, replayed in order. That equals the true tree because every
journal entry sets bytes absolutely (WRITE: these bytes at this position; TRUNCATE:
this size; REPLACE: this content) and the file's identity is unchanged since F:

* a byte that some entry after F writes, truncates away or replaces ends with what the
  last such entry says, whatever C held there;
* a byte that no entry after F touches was not changed after F, so C holds its value
  at F (the read saw the file as it is, except where entries after F changed it);
* the size: with a TRUNCATE or REPLACE after F, the last of them and the writes after
  it set it; with writes only, the file only grew after F, so C's size lies between
  its size at F and its final size, and the replayed writes end at the final size.

Extents extend this to a file uploaded piecewise: an extent starts at the lowest byte
changed between the snapshot before and F, so every byte below it that the last
manifest holds was not changed in between; the induction is the same argument.

Identity: the content read must be the file that was at that path at F. A rename of
the path (or of a directory above it) after F moves that file elsewhere, and recovery
would replay the rename onto what now lies at the old path. The StoreDisk records
renames since the snapshot; a checkpoint that read a path renamed meanwhile is
abandoned and tried again later (renames are rare: a topic created or deleted). A
file removed after F reads as missing (empty): the journal after F removes it.

Everything read is committed in the journal before the manifest is written (step 3),
so no manifest holds a change the store's journal might lose (which recovery would
otherwise resurrect), and derived files never describe more log than recovery restores.

A crash anywhere loses nothing: before step 4 the store holds the last manifest and
the journal after its F (objects uploaded by an unfinished checkpoint are named by no
manifest and collected later); after it, the new manifest and its journal. Garbage
collection deletes only what the newest manifest does not need.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from odradek import limits
from odradek.errors import Fenced, StorageError
from odradek.storage import handoff, journal
from odradek.storage import manifest as mf
from odradek.storage.handoff import Store
from odradek.storage.manifest import Manifest, Piece, Record
from odradek.storage.objects import list_all
from odradek.storage.tree import Snapshot, is_derived, moved, sealed_by_index, under

if TYPE_CHECKING:
    from odradek.storage.storedisk import StoreDisk

log = logging.getLogger(__name__)

EPOCHS = "epochs/"


class Abandoned(StorageError):
    """A checkpoint read a file that was renamed meanwhile: it is tried again later."""


@dataclasses.dataclass
class Stats:
    checkpoints: int = 0
    failures: int = 0
    uploaded_objects: int = 0
    uploaded_bytes: int = 0
    deleted_objects: int = 0
    handed_over: int = 0  # sealed local files handed over to the cache
    last_manifest: str = ""


def latest_manifest(store: Store) -> Manifest | None:
    """The manifest with the highest (epoch, number), or None if there is none."""
    named = [(numbers, key) for key, _ in list_all(store, mf.MANIFESTS) if (numbers := mf.manifest_of(key))]
    if not named:
        return None
    _, key = max(named)
    data = store.get(key)
    if data is None:
        raise StorageError(f"manifest {key} vanished while being read: another agent is collecting it")
    try:
        return mf.decode(data)
    except mf.ManifestDamaged as exc:
        # Written whole by one PUT: damage is the store's, and an older manifest may
        # need journal objects that are gone. An operator must look.
        raise StorageError(
            f"manifest {key} is damaged ({exc}); the store cannot be recovered from it"
        ) from exc


def epochs(store: Store) -> dict[int, str]:
    """Every claimed epoch in ``epochs/`` and its key."""
    return {
        int(name): key for key, _ in list_all(store, EPOCHS) if (name := key.rsplit("/", 1)[-1]).isdigit()
    }


def highest_epoch(store: Store) -> int:
    return max(epochs(store), default=0)


class _Budget:
    """Bytes read and not yet uploaded, bounded (one item larger than the bound runs alone)."""

    def __init__(self, bytes_max: int) -> None:
        self.bytes_max = bytes_max
        self._used = 0
        self._condition = threading.Condition()

    def take(self, size: int) -> None:
        with self._condition:
            while self._used and self._used + size > self.bytes_max:
                self._condition.wait()
            self._used += size

    def give(self, size: int) -> None:
        with self._condition:
            self._used -= size
            self._condition.notify_all()


@dataclasses.dataclass(frozen=True)
class _Upload:
    path: str
    start: int  # 0: the whole file
    end: int | None  # None: up to its end (derived files)
    previous: Record | None
    sealed: bool


class Checkpointer:
    def __init__(
        self,
        disk: StoreDisk,
        store: Store,
        *,
        epoch: int,
        adopted: Manifest | None,
        floor: int,
        journal_garbage: Iterable[int] = (),
        seconds: float = limits.store_checkpoint_seconds_default,
        bytes_: int = limits.store_checkpoint_bytes_default,
        threads: int = limits.store_checkpoint_threads,
        bytes_in_flight_max: int = limits.store_checkpoint_bytes_in_flight_max,
    ) -> None:
        self.disk = disk
        self.store = store
        self.epoch = epoch
        self.floor = floor
        self.seconds = seconds
        self.bytes = bytes_
        self.records: dict[str, Record] = dict(adopted.files) if adopted else {}
        self.previous: str | None = adopted.key if adopted else None
        self.number = 0
        self.stats = Stats()
        self._journal_garbage = set(journal_garbage)  # slots, all before the first manifest's F
        self._handoffs: dict[str, set[str]] = {}  # handoff key -> the file objects it names
        self._carried: tuple[dict[str, int], list[tuple[str, str]]] = ({}, [])
        self._threads = threads
        self._budget = _Budget(bytes_in_flight_max)
        self._lock = threading.Lock()  # one checkpoint at a time
        self._stats_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fenced = False
        # A checkpoint's garbage left for later: (manifest, previous records, flush, sweep).
        self._pending: tuple[Manifest, dict[str, Record], int, bool] | None = None
        # Where the latest manifest stands: when its checkpoint began, and the journal's
        # counters then (what a takeover would replay is what was journaled since).
        self._last_started = time.monotonic()
        self._last_flushes = disk.writer.flushes
        self._last_bytes = disk.writer.bytes

    # -- one checkpoint -------------------------------------------------------------------

    def checkpoint(self, *, sweep: bool = False, collect: bool = True) -> Manifest:
        """Take a checkpoint now (see the module docstring); raises StorageError if it
        failed (what it did is harmless: the next one starts over). ``sweep`` also
        deletes every file object no manifest names (at attach: leftovers of
        checkpoints a crash cut short). Without ``collect`` the garbage is collected
        later, by the background thread as it starts (or by the next checkpoint): an
        agent taking over serves once its manifest is written, not once the previous
        owner's journal is deleted."""
        with self._lock:
            self._collect_pending()  # the previous checkpoint's garbage, if left for later
            writer = self.disk.writer
            started, flushes, journaled = time.monotonic(), writer.flushes, writer.bytes
            snapshot, flush = self.disk.snapshot()
            changed, moves = self._merge_carried(snapshot)
            try:
                writer.wait(flush)
                self.number += 1
                files = self._upload(snapshot, changed, moves)
                writer.wait(writer.cut())  # everything the reads may have seen is committed
                # Recovery reads the journal from the first slot a flush after this one
                # may be in; the epoch in force there is this one (its fence is below).
                floor = max(self.floor, writer.floor_after(flush))
                manifest = Manifest(
                    self.epoch, self.number, (self.epoch, flush), floor, self.epoch, snapshot.dirs, files
                )
                if not self.store.put_new(manifest.key, mf.encode(manifest)):
                    raise StorageError(
                        f"manifest {manifest.key} exists already: another agent claimed this epoch"
                    )
            except BaseException:
                self._carried = (changed, moves)
                self.stats.failures += 1
                raise
            previous, self.records = self.records, files
            self._carried = ({}, [])
            self._last_started, self._last_flushes, self._last_bytes = started, flushes, journaled
            self.stats.checkpoints += 1
            self.stats.last_manifest = manifest.key
            log.info(
                "checkpoint %s: %d files as of journal flush %d (%d objects, %d bytes uploaded so far)",
                manifest.key,
                len(files),
                flush,
                self.stats.uploaded_objects,
                self.stats.uploaded_bytes,
            )
            handed = self.disk.hand_over(files)
            if handed:
                self.stats.handed_over += handed
                log.info("checkpoint %s: %d sealed files handed over to the cache", manifest.key, handed)
            if collect:
                self._collect(manifest, previous, flush, sweep=sweep)
            else:
                self._pending = (manifest, previous, flush, sweep)
            self.previous = manifest.key
            return manifest

    def lag(self) -> dict[str, float | int | str]:
        """How far the latest manifest lags behind the journal: its age (from the start of
        its checkpoint), the journal objects and bytes landed since (about what a new
        owner would replay), and the counters of checkpoints taken and failed."""
        writer = self.disk.writer
        return {
            "manifest": self.stats.last_manifest or (self.previous or ""),
            "seconds": round(time.monotonic() - self._last_started, 3),
            "journal_objects": writer.flushes - self._last_flushes,
            "journal_bytes": writer.bytes - self._last_bytes,
            "checkpoints": self.stats.checkpoints,
            "failures": self.stats.failures,
            "interval_seconds": self.seconds,
        }

    def collect_pending(self) -> None:
        """Collect now the garbage a checkpoint left for later, if any."""
        with self._lock:
            self._collect_pending()

    def _collect_pending(self) -> None:
        """Collect the garbage a checkpoint left for later (the lock is held)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            manifest, previous, flush, sweep = pending
            self._collect(manifest, previous, flush, sweep=sweep)

    def _merge_carried(self, snapshot: Snapshot) -> tuple[dict[str, int], list[tuple[str, str]]]:
        """The changes and renames since the last *successful* checkpoint."""
        carried_changed, carried_moves = self._carried
        if not carried_changed and not carried_moves:
            return snapshot.changed, snapshot.moves
        changed: dict[str, int] = {}
        for path, low in carried_changed.items():
            for source, target in snapshot.moves:
                path = moved(path, source, target)
            changed[path] = low
        for path, low in snapshot.changed.items():
            changed[path] = min(low, changed.get(path, low))
        return changed, [*carried_moves, *snapshot.moves]

    def _upload(
        self, snapshot: Snapshot, changed: dict[str, int], moves: list[tuple[str, str]]
    ) -> dict[str, Record]:
        records = self.records
        for source, target in moves:  # a rename replaces what was at its target
            records = {
                moved(path, source, target): record
                for path, record in records.items()
                if not under(path, target) or under(path, source)
            }
        files: dict[str, Record] = {}
        uploads: list[_Upload] = []
        for path, size in snapshot.sizes.items():
            sealed = sealed_by_index(path, snapshot.sizes)
            remote = snapshot.remote.get(path)
            if remote is not None:
                files[path] = dataclasses.replace(remote, sealed=sealed)
                continue
            previous = records.get(path)
            low = changed.get(path)
            if previous is not None and low is None and previous.size == size:
                files[path] = (
                    previous if previous.sealed == sealed else dataclasses.replace(previous, sealed=sealed)
                )
                continue
            if is_derived(path):
                uploads.append(_Upload(path, 0, None, None, sealed))
                continue
            start = 0
            if previous is not None:
                start = min(previous.size, size, previous.size if low is None else low)
            if start == size:  # cut, nothing new: no object
                files[path] = Record(size, previous.cut(start) if previous else (), sealed)
                continue
            if previous is not None and start:
                start = _merged_start(previous.cut(start), start, size)
            uploads.append(_Upload(path, start, size, previous if start else None, sealed))
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix="odradek-checkpoint"
        ) as pool:
            for path, record in pool.map(self._upload_one, uploads):
                if record is not None:
                    files[path] = record
        moved_meanwhile = self.disk.moved_since_snapshot([u.path for u in uploads if not is_derived(u.path)])
        if moved_meanwhile:
            raise Abandoned(
                f"checkpoint abandoned: {moved_meanwhile} was renamed while it was read; trying later"
            )
        return files

    def _upload_one(self, upload: _Upload) -> tuple[str, Record | None]:
        local = self.disk.local_path(upload.path)
        if upload.end is None:  # a derived file, read whole: its size now, for the budget
            try:
                expected = os.path.getsize(local)
            except OSError:
                expected = 0
        else:
            expected = upload.end - upload.start
        self._budget.take(expected)
        try:
            data = _read(local, upload.start, upload.end)
            if data is None:
                if upload.end is None:
                    return upload.path, None  # a derived file removed meanwhile: not needed
                data = b""  # removed after the snapshot: the journal after F removes it too
            if upload.start and not data and upload.previous is not None:
                return upload.path, Record(upload.start, upload.previous.cut(upload.start), upload.sealed)
            key = mf.file_key(upload.path, self.epoch, self.number, upload.start or None)
            self.store.put(key, data)
            with self._stats_lock:
                self.stats.uploaded_objects += 1
                self.stats.uploaded_bytes += len(data)
        finally:
            self._budget.give(expected)
        piece = Piece(key, upload.start, len(data))
        if upload.previous is not None:
            return upload.path, upload.previous.extended(piece, upload.sealed)
        return upload.path, Record(len(data), (piece,), upload.sealed)

    # -- garbage ----------------------------------------------------------------------------

    def _collect(self, manifest: Manifest, previous: dict[str, Record], flush: int, *, sweep: bool) -> None:
        """Delete what ``manifest`` made useless, if this agent still owns the store."""
        try:
            claimed = epochs(self.store)
            if max(claimed, default=0) > self.epoch:
                log.warning("not collecting garbage: a newer agent took over the store")
                self.fenced = True
                return
            # Older epochs' claims: only the highest is ever read (the next agent claims
            # the one after it; a fenced agent compares its own with it), and this one,
            # the highest, stays. Fences stay (decision record 0011, addendum).
            doomed = [key for epoch, key in sorted(claimed.items()) if epoch < self.epoch] if sweep else []
            doomed += [
                key
                for key, _ in list_all(self.store, mf.MANIFESTS)
                if (numbers := mf.manifest_of(key)) is not None
                and numbers < (manifest.epoch, manifest.number)
            ]
            slots = self._journal_garbage | set(self.disk.writer.take_landed(flush))
            doomed += [journal.slot_key(slot) for slot in sorted(slots)]
            named = manifest.keys()
            protected = self._protected()  # a released topic's files wait for their adopter
            unnamed = {piece.key for record in previous.values() for piece in record.pieces} - named
            doomed += sorted(
                key for key in unnamed if (mf.file_key_epoch(key) or 0) <= self.epoch and key not in protected
            )
            if sweep:
                existing = {key for key, _ in list_all(self.store, mf.FILES)}
                doomed += [
                    key
                    for key in sorted(existing)
                    if key not in named
                    and key not in unnamed
                    and key not in protected
                    and (mf.file_key_epoch(key) or 0) < self.epoch
                ]
                self._spent_handoffs(existing)
            self._delete(doomed)
            self._journal_garbage = set()
        except StorageError as exc:  # garbage stays garbage: the next checkpoint tries again
            log.warning("garbage collection after %s stopped: %s", manifest.key, exc)

    def _protected(self) -> set[str]:
        """The file objects the store's handoffs name (storage/handoff.py), listed now:
        a handoff is written before its topic leaves the tree, and deleted only after a
        manifest names its files again, so a collection that lists after its manifest
        was written never misses one. Handoffs already read are not read again."""
        listed = [key for key, _ in list_all(self.store, handoff.HANDOFFS) if not key.endswith(handoff.MARKS)]
        known = {key: self._handoffs[key] for key in listed if key in self._handoffs}
        for key in listed:
            if key not in known:
                found = handoff.read(self.store, key, set())
                if found is not None:
                    known[key] = found.keys()
        self._handoffs = known
        return set().union(*known.values()) if known else set()

    def _spent_handoffs(self, existing: set[str]) -> None:
        """Delete the handoffs another cell adopted once none of this store's objects
        they name is left (the adopter deleted them all): nothing is protected by them
        any more."""
        for found in handoff.list_handoffs(self.store).values():
            if found.adopted_by is None:
                continue
            own = {key for key in found.keys() if not key.startswith("/")}
            if not own & existing:
                handoff.remove(self.store, found)
                self._handoffs.pop(found.key, None)
                log.info(
                    "handoff %s: adopted by %s, its objects are gone; deleted", found.key, found.adopted_by
                )

    def _delete(self, keys: list[str]) -> None:
        if not keys:
            return
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix="odradek-collect"
        ) as pool:
            list(pool.map(self.store.delete, keys))
        self.stats.deleted_objects += len(keys)

    # -- the background thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="odradek-checkpoint", daemon=True)
        self._thread.start()

    def stop(self, *, join: bool = True) -> None:
        """Stop the background thread; with ``join``, wait until it ended."""
        self._stop.set()
        if join and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        self.collect_pending()
        writer = self.disk.writer
        last_time = time.monotonic()
        last_bytes = writer.bytes
        delay = min(self.seconds, _RETRY_SECONDS_MAX)
        while not self._stop.wait(min(_TICK_SECONDS, self.seconds / 4)):
            if writer.closed:
                return
            grown = writer.bytes - last_bytes
            if not grown:
                last_time = time.monotonic()  # nothing journaled: nothing to checkpoint
                continue
            if grown < self.bytes and time.monotonic() - last_time < self.seconds:
                continue
            bytes_before, started = writer.bytes, time.monotonic()
            try:
                self.checkpoint()
            except Fenced:
                self.fenced = True
                return
            except Abandoned as exc:
                log.info("%s", exc)
                last_time = time.monotonic() - self.seconds + delay
                continue
            except (StorageError, OSError) as exc:
                log.warning("checkpoint failed (%s); trying again in %.0f s", exc, delay)
                last_time = time.monotonic() - self.seconds + delay
                continue
            # The interval runs from a checkpoint's start (its journal position), so the
            # journal after the latest manifest spans about ``seconds``, however long
            # the uploads took.
            last_time, last_bytes = started, bytes_before
            if self.fenced:
                return


def _merged_start(kept: tuple[Piece, ...], start: int, size: int) -> int:
    """Where a file's new extent starts once the pieces it may take in are merged into
    it: the last piece kept goes into the extent while it is no longer than the extent
    (a binary counter's carry), or while the record would hold more than
    ``store_record_pieces_max`` pieces.

    A file that grows a little at every checkpoint (an active segment, every second on a
    cluster agent) would otherwise be a record of thousands of extents, which a new
    owner downloads one GET at a time (a chaos run's takeovers grew from 1 s to 9 s in
    ten minutes). With the carry a record holds about log2(extents) pieces, each byte
    uploaded again about log2(extents) times over the file's life."""
    pieces = list(kept)
    while pieces and (pieces[-1].length <= size - start or len(pieces) + 1 > limits.store_record_pieces_max):
        start = pieces.pop().start
    return start


_TICK_SECONDS = 1.0  # how often the thread looks at the journal's growth
_RETRY_SECONDS_MAX = 5.0  # a failed checkpoint is tried again this soon (or at the interval)


def _read(path: str, start: int, end: int | None) -> bytes | None:
    """Bytes [start, end) of a file (to its end if ``end`` is None; fewer if it is
    shorter now), or None if it does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None
    try:
        if end is None:
            end = os.fstat(fd).st_size
        pieces: list[bytes] = []
        position = start
        while position < end:
            chunk = os.pread(fd, min(end - position, _READ_CHUNK), position)
            if not chunk:
                break
            pieces.append(chunk)
            position += len(chunk)
        return b"".join(pieces)
    finally:
        os.close(fd)


_READ_CHUNK = 64 * 1024 * 1024
