"""An engine whose durability comes from an object store (``Engine(path, store=URL)``,
``odradek serve --store URL``; decision record 0011).

Opening, in this order (the engine calls :func:`attach_engine` once it holds the local
``LOCK``, so two engines on one local directory still refuse each other):

1. the local directory must be fit to be a cache: empty, or a cache of a store already
   (the mark in its LOCK file). A data directory of a local engine is refused: attaching
   empties the local tree and rebuilds it from the store, which would lose its data;
2. the store is opened (``open_store``) unless an ObjectStore was given;
3. ``attach``: claim an epoch, fence older agents, rebuild the local tree from the
   store's journal; the engine then opens the tree as it opens any data directory.

Any failure is an OdradekError naming the store's URL (never a credential: URLs carry
none) and leaves the store's data as it was (an epoch claimed and a fence written are
harmless: every start makes them).

While the engine runs, two failures of the store change how it serves:

* **Fenced** (another agent took over the prefix): every write is refused with
  ``errors.Fenced`` (the journal writer said so once in the log, at error level);
  reads keep being served from the topics as they are, and a topic whose fsync failed
  is never reopened (reopening writes).
* **StoreUnavailable** at an fsync (the store did not take the journal within
  ``StoreSettings.wait_seconds``): the append fails, retryable, its outcome unknown, and
  its topic's group commit is poisoned. The engine reopens such a topic from the cache
  only once everything journaled before is committed in the store (:class:`Settler`),
  so a reopened topic never shows a record the store does not hold as durable. Until
  then reads are served (up to the last acknowledged offset) and appends fail with the
  same retryable error.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING

from odradek import limits
from odradek.errors import Fenced, InvalidRequest, OdradekError, StorageError, Unavailable
from odradek.storage import handoff
from odradek.storage.agent import Recovery, StoreSettings, attach
from odradek.storage.checkpoint import highest_epoch
from odradek.storage.handoff import Handoff
from odradek.storage.objects import ObjectStore, open_store
from odradek.storage.storedisk import StoreDisk

if TYPE_CHECKING:
    from odradek.engine.topic import Topic
    from odradek.storage.checkpoint import Checkpointer

log = logging.getLogger(__name__)

# What the LOCK file of a store's cache holds: the mark that the local tree may be
# emptied and rebuilt from the store.
CACHE_MARK = b"odradek: the cache of an object store; its data lives in the store\n"
_KEPT = ("LOCK", "cache", "replicas")  # what attach keeps of the local tree (storage/agent.py)


class StoreAttachment:
    """The store an engine runs on: its disk, its recovery figures, its failures."""

    def __init__(self, store: ObjectStore, disk: StoreDisk, recovery: Recovery) -> None:
        self.store = store
        self.url = store.url
        self.disk = disk
        self.recovery = recovery
        self._settler = Settler(disk)

    @property
    def fenced(self) -> bool:
        return self.disk.writer.fenced is not None

    def may_reopen(self, topic: Topic) -> bool:
        """Whether the engine may reopen ``topic``, whose group commit failed, now."""
        if self.fenced:
            return False
        return self._settler.settled(topic)

    def describe(self) -> dict[str, object]:
        """The store and the recovery figures, for the ready line and the log."""
        return {
            "store": self.url,
            "epoch": self.recovery.epoch,
            "journal_objects": self.recovery.slots,
            "replayed": self.recovery.replayed,
            "changes": self.recovery.entries,
            "manifest": self.recovery.manifest or "none",
            "downloaded_files": self.recovery.downloaded,
            "remote_segments": self.recovery.remote,
            "recovery_seconds": round(self.recovery.seconds, 3),
        }

    # -- handoffs (storage/handoff.py, decisions 0030 and 0031) ---------------------------

    @property
    def cell(self) -> str:
        """This cell's bucket-absolute prefix: its name in claims and marks."""
        return self.store.absolute("")

    def handoffs(self) -> dict[str, Handoff]:
        """The handoffs of topics this cell released, by name."""
        return handoff.list_handoffs(self.store)

    def source(self, source: ObjectStore | None) -> ObjectStore:
        """The store to adopt from: this cell's, or another cell's on the same backend."""
        if source is None:
            return self.store
        if not isinstance(source, ObjectStore) or source.backend is not self.store.backend:
            raise InvalidRequest(
                "a topic is adopted from a cell on the same backend as this one's store: open both "
                "from one store with ObjectStore.child (decision 0031)"
            )
        return self.store if source.absolute("") == self.cell else source

    def release(self, topics: list[tuple[str, str]]) -> tuple[list[Handoff], list[str], Exception | None]:
        """Checkpoint (the topics are closed: the manifest names their files as they are
        for good) and write each topic's handoff, pending; the caller then drops their
        local copies and calls ``ready``. ``topics``: (name, incarnation) pairs. Returns
        the handoffs written, the topics whose handoff may or may not exist (a write
        whose outcome is unknown and could not be checked), and the first failure (the
        remaining topics were not released)."""
        manifest = self._checkpointer().checkpoint()
        written: list[Handoff] = []
        unknown: list[str] = []
        for name, incarnation in topics:
            released = handoff.of_manifest(manifest, name, incarnation)
            try:
                handoff.write(self.store, released)
            except (OdradekError, OSError) as exc:
                try:  # did it land after all (an answer lost)?
                    landed = handoff.read(self.store, released.key)
                except (OdradekError, OSError):
                    unknown.append(name)
                else:
                    if landed is not None and landed.manifest.keys() == released.keys():
                        written.append(released)
                return written, unknown, exc
            written.append(released)
        return written, unknown, None

    def ready(self, released: list[Handoff]) -> list[Handoff]:
        """Once the local copies are dropped: take a checkpoint, whose manifest no longer
        names the topics' files (an adopter in another cell may delete some of them
        later, and a restart of this cell must not need them), then mark the handoffs
        ready."""
        self._checkpointer().checkpoint()
        ready = [handoff.mark_ready(self.store, one) for one in released]
        for one in ready:
            log.info(
                "topic %s released to the store: %d files (handoff %s)",
                one.topic,
                len(one.manifest.files),
                one.key,
            )
        return ready

    def adopt(self, released: list[Handoff], source: ObjectStore) -> None:
        """Take ``released`` (from ``source``) into the tree: claim each, journal their
        markers, let their files in as remote files, take one checkpoint (its manifest
        names them), finish each. On a failure before the checkpoint, every one's files
        leave the tree again, its marker and claim go, and the topics stay released."""
        checkpointer = self._checkpointer()
        claimed: list[Handoff] = []
        imported: list[Handoff] = []
        try:
            for one in released:
                self._claim(one, source)
                claimed.append(one)
            if released:
                self.disk.makedirs(self.disk.local_path(handoff.ADOPTIONS))
            for one in released:
                document = {"source": source.absolute(""), "handoff": one.key}
                self.disk.write_atomically(self._marker(one.topic), json.dumps(document).encode())
            for one in released:
                self.disk.import_remote(one.manifest.dirs, handoff.records_for(one, source, self.store))
                imported.append(one)
            checkpointer.checkpoint()
        except BaseException:
            for one in claimed:
                self._undo(one, source, self._marker(one.topic), imported=one in imported)
            raise
        for one in released:
            self.finish(one, source)

    def _marker(self, topic: str) -> str:
        return self.disk.local_path(handoff.marker_path(topic))

    def _claim(self, released: Handoff, source: ObjectStore) -> None:
        epoch = self.recovery.epoch
        if handoff.claim(source, released, self.cell, epoch):
            return
        current = handoff.read(source, released.key)
        claim = None if current is None else current.claim
        if claim is not None and highest_epoch(source.at(claim.cell)) > claim.epoch:
            log.warning(
                "topic %s: the claim of %s (epoch %d) is stale: that cell restarted since; taking it over",
                released.topic,
                claim.cell or "/",
                claim.epoch,
            )
            if handoff.take_over_claim(source, released, self.cell, epoch):
                return
        raise Unavailable(
            f"topic {released.topic!r} is being adopted by {claim.cell if claim else 'another cell'}"
        )

    def _undo(self, released: Handoff, source: ObjectStore, marker: str, *, imported: bool) -> None:
        try:
            if imported:
                self.disk.rmtree(self.disk.local_path(released.directory))
            if self.disk.exists(marker):
                self.disk.remove(marker)
            handoff.unclaim(source, released)
        except (OSError, StorageError) as exc:
            log.warning(
                "topic %s: could not undo a failed adoption (the next start does): %s", released.topic, exc
            )

    def finish(self, released: Handoff, source: ObjectStore) -> None:
        """An adoption's checkpoint named the files: mark the handoff adopted (or delete
        it, when this cell released it), then drop the marker. A failure is logged: the
        next start finishes it."""
        try:
            if source.absolute("") == self.cell:
                handoff.remove(source, released)
            else:
                handoff.mark_adopted(source, released, self.cell)
                # Moved back here: this cell's own handoff of the topic, adopted by
                # another since, protects nothing any more (a manifest here names them).
                old = handoff.read(self.store, released.key)
                if old is not None and old.adopted_by is not None:
                    handoff.remove(self.store, old)
            marker = self._marker(released.topic)
            if self.disk.exists(marker):
                self.disk.remove(marker)
        except (OSError, StorageError) as exc:
            log.warning(
                "topic %s: adopted; finishing %s waits for the next start: %s",
                released.topic,
                released.key,
                exc,
            )
        else:
            log.info("topic %s adopted from %s (handoff %s)", released.topic, source.url, released.key)

    def resolve_marker(self, topic: str, here: bool) -> None:
        """An adoption of ``topic`` was under way when this cell stopped: finish it if its
        checkpoint named the topic (``here``), else undo it."""
        marker = self._marker(topic)
        try:
            document = json.loads(self.disk.read_bytes(marker))
            source = self.store.at(str(document["source"]))
            found = handoff.read(source, str(document["handoff"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise StorageError(f"the adoption marker {marker} is not valid ({exc})") from exc
        if found is None:  # finished already, the marker's removal was cut short
            self.disk.remove(marker)
        elif here:
            self.finish(found, source)
        else:
            if found.claim is not None and found.claim.cell == self.cell:
                handoff.unclaim(source, found)
            self.disk.remove(marker)
            log.info("topic %s: an adoption cut short before its checkpoint was undone", topic)

    def discard(self, released: Handoff) -> None:
        """Delete a released topic for good: its handoff, then the file objects it named
        (no manifest names them: they left the tree when it was released)."""
        current = handoff.read(self.store, released.key)
        if current is not None and current.claim is not None:
            raise Unavailable(
                f"topic {released.topic!r} is being adopted by {current.claim.cell}: not deleted"
            )
        handoff.remove(self.store, released)
        for key in sorted(released.keys()):
            self.store.delete(key)

    def remove_handoff(self, released: Handoff) -> None:
        handoff.remove(self.store, released)

    def _checkpointer(self) -> Checkpointer:
        checkpointer = self.disk.checkpointer
        if checkpointer is None:
            raise StorageError("this store's disk takes no checkpoints")
        return checkpointer

    def detach(self) -> None:
        """Commit what is journaled and stop the journal; failures are logged, not raised
        (the engine is closing: what was not committed was never acknowledged)."""
        self._settler.stop()
        try:
            self.disk.detach()
        except Fenced:
            log.warning("closed without committing the journal: this agent was fenced (%s)", self.url)
        except StorageError as exc:
            log.error(
                "closed without committing the journal to %s: %s (those writes were never acknowledged)",
                self.url,
                exc.message,
            )


def attach_engine(
    path: str, lock_fd: int, store: str | ObjectStore, settings: StoreSettings | None
) -> StoreAttachment:
    """Check the cache, open the store, attach (see the module docstring)."""
    if settings is not None and not isinstance(settings, StoreSettings):
        raise InvalidRequest(f"store_settings must be a StoreSettings, got {type(settings).__name__}")
    if isinstance(store, str):
        opened = open_store(store)  # InvalidRequest naming the URL if it is wrong
    elif isinstance(store, ObjectStore):
        opened = store
    else:
        raise InvalidRequest(f"store must be a URL or an ObjectStore, got {type(store).__name__}")
    _claim_cache(path, lock_fd, opened.url)
    try:
        disk, recovery = attach(path, opened, settings)
    except OdradekError as exc:
        error = StorageError(f"cannot attach to the object store {opened.url}: {exc.message}")
        error.retryable = exc.retryable  # a refusal (403, no bucket) stays one
        raise error from exc
    except OSError as exc:
        raise StorageError(f"cannot attach to the object store {opened.url}: {exc}") from exc
    return StoreAttachment(opened, disk, recovery)


def _claim_cache(path: str, lock_fd: int, url: str) -> None:
    """Refuse a local directory that holds a local engine's data; mark it a cache."""
    try:
        if os.pread(lock_fd, len(CACHE_MARK), 0) == CACHE_MARK:
            return
        if _holds_files(path):
            raise InvalidRequest(
                f"data directory {path} holds the data of an engine without a store: attaching "
                f"it to {url} would replace it with the store's. Give the store an empty "
                "directory as its cache (or move this one away)"
            )
        os.pwrite(lock_fd, CACHE_MARK, 0)
        os.fsync(lock_fd)
    except OSError as exc:
        raise StorageError(f"cannot use data directory {path} as a cache: {exc.strerror or exc}") from exc


def _holds_files(path: str) -> bool:
    for directory, subdirectories, files in os.walk(path):
        if directory == path:
            subdirectories[:] = [name for name in subdirectories if name not in _KEPT]
            files = [name for name in files if name not in _KEPT]
        if files:
            return True
    return False


class Settler:
    """Tells when a topic whose fsync failed may be reopened: once every change journaled
    before its failure was seen is committed in the store.

    A topic is stamped with a generation when first seen broken; one background thread
    waits for the whole journal (``fsync_directory`` of the StoreDisk waits for the last
    change of all) and then marks every generation stamped before the wait began as
    settled. The wait fails after the writer's timeout while the store is down; the
    thread then waits again, until the store comes back, the writer is fenced or the
    engine closes. A failed wait is retried after ``store_settle_retry_seconds`` (a wait
    fails at once while the store is stuck, storage/walwriter.py), and the failure is
    logged once until it changes.
    """

    def __init__(self, disk: StoreDisk) -> None:
        self._disk = disk
        self._lock = threading.Lock()
        self._stamps: weakref.WeakKeyDictionary[Topic, int] = weakref.WeakKeyDictionary()
        self._generation = 0  # the last stamp handed out
        self._settled = 0  # every stamp up to this one is settled
        self._thread: threading.Thread | None = None
        self._stopped = False
        self._stop_event = threading.Event()

    def settled(self, topic: Topic) -> bool:
        with self._lock:
            stamp = self._stamps.get(topic)
            if stamp is None:
                self._generation += 1
                stamp = self._stamps[topic] = self._generation
            if stamp <= self._settled:
                return True
            if self._thread is None and not self._stopped:
                self._thread = threading.Thread(target=self._run, name="odradek-store-settle", daemon=True)
                self._thread.start()
            return False

    def _run(self) -> None:
        said = ""
        while True:
            with self._lock:
                if self._stopped or self._generation <= self._settled:
                    self._thread = None
                    return
                target = self._generation
            try:
                self._disk.fsync_directory(self._disk.root)
            except Fenced:
                with self._lock:
                    self._thread = None
                return
            except StorageError as exc:
                if exc.message != said:
                    said = exc.message
                    log.warning("the object store still does not take the journal: %s", exc.message)
                self._stop_event.wait(limits.store_settle_retry_seconds)
                continue
            with self._lock:
                self._settled = max(self._settled, target)

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
        self._stop_event.set()
