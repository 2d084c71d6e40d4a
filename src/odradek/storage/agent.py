"""Attaching a data directory to an object store: epoch, fence, recover, then journal.

``attach(root, store)`` is what an engine opened with a store does first (decision
record 0011):

1. claim the next epoch (``epochs/<epoch>``, create-if-absent; a lost race claims the
   next one);
2. fence (see ``fence``): from there on, no agent of an older epoch can complete an
   acknowledgement, and what it writes later is ignored;
3. meanwhile (the two overlap), adopt the latest manifest, by (epoch, number), if any
   (storage/checkpoint.py), and rebuild the local tree (the data directory minus its
   LOCK and cache) from it: directories made, files downloaded, except sealed
   segments, which stay in the store until read (the StoreDisk answers for them, and
   fetches them into the cache);
4. once fenced, read the journal from the slot the manifest names (the first one after
   its position) and replay the valid part after the manifest's position, in (epoch,
   flush) order;
5. write this agent's own manifest at once: a zombie's later manifest, of an older
   epoch, is then never the latest; its garbage collection (the journal this recovery
   replayed and what no manifest names) is left to the checkpoint thread, which does it
   first, once the agent serves;
6. return a StoreDisk journaling into the slots after the fence, with its checkpoints
   running in the background.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Protocol, TypeVar

from odradek import limits
from odradek.errors import InvalidRequest, StorageError
from odradek.storage import journal
from odradek.storage.checkpoint import EPOCHS, Checkpointer, latest_manifest
from odradek.storage.filecache import FileCache, fetch_into
from odradek.storage.manifest import Manifest, Record
from odradek.storage.objects import Listed, list_all
from odradek.storage.storedisk import StoreDisk
from odradek.storage.tree import Tree
from odradek.storage.walwriter import JournalWriter

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")
CACHE_DIRECTORY = "cache"
# What a cluster agent caches of the cells it reads but does not own (engine/replica.py):
# beside a one-cell cluster's cache, so never emptied when the agent takes the cell over.
REPLICAS_DIRECTORY = "replicas"
_KEEP_LOCALLY = {"LOCK", CACHE_DIRECTORY, REPLICAS_DIRECTORY}
_PROGRESS_SECONDS = 5.0  # a long recovery logs how far it got this often


class Store(Protocol):
    """What an agent needs of an object store (storage/objects.py provides it)."""

    def put(self, key: str, data: bytes) -> object: ...

    def put_new(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes | None: ...

    def get_range(self, key: str, start: int, end: int) -> bytes | None: ...

    def list(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> Sequence[Listed]: ...

    def delete(self, key: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    flush_seconds: float = limits.store_flush_seconds_default
    flush_bytes: int = limits.store_flush_bytes_default
    in_flight_max: int = limits.store_flushes_in_flight_max
    backlog_bytes_max: int = limits.store_journal_bytes_max
    wait_seconds: float = limits.store_sync_timeout_seconds
    checkpoint_seconds: float = limits.store_checkpoint_seconds_default
    checkpoint_bytes: int = limits.store_checkpoint_bytes_default
    cache_bytes: int = limits.store_cache_bytes_default

    def __post_init__(self) -> None:
        for name in ("checkpoint_seconds", "checkpoint_bytes", "cache_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:  # NaN too
                raise InvalidRequest(f"StoreSettings.{name} must be a number > 0, got {value!r}")


@dataclasses.dataclass
class Recovery:
    epoch: int
    slots: int  # journal objects read (from the manifest's floor on)
    replayed: int  # of them valid, after the manifest's position, and applied
    entries: int
    seconds: float
    manifest: str = ""  # the manifest adopted ("" if the store had none)
    downloaded: int = 0  # files downloaded into the local tree
    downloaded_bytes: int = 0
    remote: int = 0  # sealed segments left in the store until read


def attach(root: str, store: Store, settings: StoreSettings | None = None) -> tuple[StoreDisk, Recovery]:
    settings = settings or StoreSettings()
    started = time.monotonic()
    epoch = claim_epoch(store)
    # Fencing and the manifest's files overlap: neither needs the other (any manifest
    # read after the claim is one a zombie can no longer collect under it, see
    # checkpoint.py step 6), and a takeover waits for the longer of the two, not both.
    # The journal is listed once both are done: after the fence, so nothing a zombie
    # lands later counts.
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="odradek-fence") as fencing:
        fenced = fencing.submit(fence_slots, store, epoch, settings.in_flight_max)
        adopted = latest_manifest(store)
        _clear_tree(root)
        cache = FileCache(os.path.join(root, CACHE_DIRECTORY), store, settings.cache_bytes)
        tree, downloaded, downloaded_bytes = _rebuild(root, store, adopted)
        first_free, fences = fenced.result()
    floor, in_force, after = (adopted.floor, adopted.in_force, adopted.after) if adopted else (0, 0, (0, 0))
    listed, garbage, read = _read_journal(store, floor, epoch, fences)
    order = [item for item in journal.valid(listed, in_force) if (item.epoch, item.flush) > after]
    entries = 0
    for item in _read_objects(store, order, read):
        if item is None:
            continue
        entries += replay(root, item.entries, tree, store)
    writer = JournalWriter(
        store,
        epoch=epoch,
        first_slot=first_free,
        flush_seconds=settings.flush_seconds,
        flush_bytes=settings.flush_bytes,
        in_flight_max=settings.in_flight_max,
        backlog_bytes_max=settings.backlog_bytes_max,
        wait_seconds=settings.wait_seconds,
    )
    disk = StoreDisk(root, writer, store=store, tree=tree, cache=cache)
    checkpointer = Checkpointer(
        disk,
        store,
        epoch=epoch,
        adopted=adopted,
        floor=first_free,
        journal_garbage=garbage,
        seconds=settings.checkpoint_seconds,
        bytes_=settings.checkpoint_bytes,
    )
    disk.checkpointer = checkpointer
    try:
        # This agent's own manifest, at once; its garbage (the journal just replayed,
        # leftovers) is collected by the checkpoint thread, after serving began.
        checkpointer.checkpoint(sweep=True, collect=False)
    except BaseException:
        writer.close()
        raise
    checkpointer.start()
    recovery = Recovery(
        epoch,
        len(listed),
        len(order),
        entries,
        time.monotonic() - started,
        adopted.key if adopted else "",
        downloaded,
        downloaded_bytes,
        len(tree.remote),
    )
    log.info(
        "attached to the store as epoch %d: manifest %s, %d files downloaded (%d bytes), %d left in the "
        "store; replayed %d of %d journal objects (%d changes) in %.2f s",
        epoch,
        recovery.manifest or "(none)",
        recovery.downloaded,
        recovery.downloaded_bytes,
        recovery.remote,
        recovery.replayed,
        recovery.slots,
        recovery.entries,
        recovery.seconds,
    )
    return disk, recovery


def claim_epoch(store: Store) -> int:
    """The next epoch, claimed with create-if-absent (a lost race takes the next)."""
    taken = [
        int(key.rsplit("/", 1)[-1]) for key, _ in list_all(store, EPOCHS) if key.rsplit("/", 1)[-1].isdigit()
    ]
    epoch = max(taken, default=0) + 1
    while not store.put_new(f"{EPOCHS}{epoch:020d}", _epoch_document(epoch)):
        epoch += 1
    return epoch


def _epoch_document(epoch: int) -> bytes:
    return (
        f'{{"epoch":{epoch},"host":"{os.uname().nodename}","pid":{os.getpid()},"at":{time.time()}}}'.encode()
    )


def fence(store: Store, epoch: int, window: int) -> int:
    """Fence the journal for ``epoch``; return the first slot this agent writes (see
    ``fence_slots``)."""
    return fence_slots(store, epoch, window)[0]


def fence_slots(store: Store, epoch: int, window: int) -> tuple[int, set[int]]:
    """Fence the journal for ``epoch``; return the first slot this agent writes, and the
    slots its own fences took (recovery knows what they hold without reading them).

    A writer keeps at most ``window`` uploads in flight, all within ``window`` slots after
    its last landed one. The fence goes first to a slot 2 x ``window`` past the highest
    one listed, which a writer still running cannot have reached (if it has, list again
    and jump further): every flush it uploads from there on collides with a fence,
    here or in a hole below, and it acknowledges nothing more. Then every empty slot
    between the writer's possible window and that fence is fenced too, so that no
    object it lands there later (after a fence, in slot order) counts. Probing slot by
    slot behind a fast writer could chase its frontier for ever; jumping cannot.
    """
    while True:
        slots = {
            slot for slot in (journal.slot_of(key) for key, _ in list_all(store, "wal/")) if slot is not None
        }
        highest = max(slots, default=-1)
        target = highest + 2 * window + 1
        if store.put_new(journal.slot_key(target), journal.encode_fence(epoch, target)):
            break
    holes = [slot for slot in range(max(0, highest - window + 1), target) if slot not in slots]
    taken = {target}
    if holes:
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(len(holes), limits.store_fence_threads), thread_name_prefix="odradek-fence"
        ) as pool:
            landed = pool.map(
                lambda slot: store.put_new(journal.slot_key(slot), journal.encode_fence(epoch, slot)), holes
            )
            taken.update(slot for slot, fenced in zip(holes, landed, strict=True) if fenced)
    return target + 1, taken


def _read_journal(
    store: Store, floor: int, epoch: int = 0, fences: set[int] | frozenset[int] = frozenset()
) -> tuple[list[journal.Listed], list[int], dict[int, journal.JournalObject | None]]:
    """What the journal holds from slot ``floor`` on: each object's header, the slots of
    garbage, and the objects read whole on the way. ``fences``: the slots this agent
    (of ``epoch``) has just fenced, known without reading them.

    Garbage: damaged objects from the floor on, and every object below it that is not a
    fence (a manifest holds their changes; fences stay, for a zombie may still try those
    slots). When the objects from the floor on are few enough bytes
    (``limits.store_recovery_read_whole_bytes``), each is read whole at once: recovery
    replays nearly all of them (the floor is the first slot after the manifest's
    position), and one GET each halves the requests of a takeover. Past that bound only
    their headers are read here (one small ranged GET each) and the objects to replay
    are fetched later, a bounded number at a time, so memory stays bounded."""
    listed: list[journal.Listed] = []
    garbage: list[int] = []
    wanted: list[int] = []
    wanted_bytes = 0
    for key, size in list_all(store, "wal/"):
        slot = journal.slot_of(key)
        if slot is None:
            continue
        if slot in fences:
            if slot >= floor:
                listed.append(journal.Listed(slot, epoch, 0, journal.KIND_FENCE))
        elif slot >= floor:
            wanted.append(slot)
            wanted_bytes += size
        elif size != journal.HEADER_SIZE:
            garbage.append(slot)
    whole = wanted_bytes <= limits.store_recovery_read_whole_bytes
    read: dict[int, journal.JournalObject | None] = {}

    def fetch(slot: int) -> tuple[int, bytes | None]:
        key = journal.slot_key(slot)
        return slot, store.get(key) if whole else store.get_range(key, 0, journal.HEADER_SIZE)

    for slot, data in _parallel(fetch, wanted, "journal objects" if whole else "journal headers"):
        if data is None:
            continue  # deleted by a checkpoint meanwhile
        try:
            if whole:
                found = journal.decode(data)
                epoch, flush, kind = found.epoch, found.flush, found.kind
                read[slot] = found
            else:
                epoch, flush, _, kind = journal.decode_head(data)
        except journal.JournalDamaged as exc:
            # A torn object can only be a write nobody acknowledged (an upload is
            # acknowledged after the store took it whole): like a torn tail.
            log.warning("journal slot %d is damaged (%s); ignoring it", slot, exc)
            garbage.append(slot)
            continue
        listed.append(journal.Listed(slot, epoch, flush, kind))
        if kind == journal.KIND_JOURNAL:
            garbage.append(slot)  # replayed now, then held by this agent's first manifest
    return listed, garbage, read


def _read_objects(
    store: Store, order: list[journal.Listed], read: dict[int, journal.JournalObject | None]
) -> Iterator[journal.JournalObject | None]:
    """The journal objects of ``order``, in that order (those in ``read`` as they are,
    the others fetched, a bounded number ahead); None for one that turned out damaged
    (logged) or vanished."""

    def fetch(item: journal.Listed) -> journal.JournalObject | None:
        data = store.get(journal.slot_key(item.slot))
        if data is None:
            return None
        try:
            return journal.decode(data)
        except journal.JournalDamaged as exc:
            log.warning("journal slot %d is damaged (%s); ignoring it", item.slot, exc)
            return None

    if all(item.slot in read for item in order):
        for item in order:
            yield read.pop(item.slot)
        return
    for _, found in _parallel(lambda item: (item, fetch(item)), order, "journal objects"):
        yield found


def _parallel(call: Callable[[T], tuple[T, R]], items: Sequence[T], what: str) -> Iterator[tuple[T, R]]:
    """``call`` over ``items`` on a pool, results in order, at most a pool's width ahead;
    logs progress every few seconds."""
    width = limits.store_checkpoint_threads
    if not items:
        return
    logged = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(
        max_workers=width, thread_name_prefix="odradek-recover"
    ) as pool:
        pending: list[concurrent.futures.Future[tuple[T, R]]] = []
        feed = iter(items)
        for item in feed:
            pending.append(pool.submit(call, item))
            if len(pending) >= width:
                break
        done = 0
        while pending:
            result = pending.pop(0).result()
            done += 1
            for item in feed:
                pending.append(pool.submit(call, item))
                break
            if time.monotonic() - logged >= _PROGRESS_SECONDS:
                logged = time.monotonic()
                log.info("recovery: %d of %d %s read", done, len(items), what)
            yield result


def _rebuild(root: str, store: Store, manifest: Manifest | None) -> tuple[Tree, int, int]:
    """The local tree as ``manifest`` lists it (sealed segments left remote); the Tree,
    and how many files and bytes were downloaded."""
    tree = Tree()
    if manifest is None:
        return tree, 0, 0
    for directory in sorted(manifest.dirs):
        os.makedirs(os.path.join(root, *directory.split("/")), exist_ok=True)
        tree.mkdir(directory)
    wanted = []
    for path, record in sorted(manifest.files.items()):
        _ensure_parent(os.path.join(root, *path.split("/")))
        if "/" in path:
            tree.mkdir(path.rsplit("/", 1)[0])
        if record.sealed:
            tree.add_remote(path, record)
        else:
            tree.sizes[path] = record.size
            wanted.append((path, record))

    def download(item: tuple[str, Record]) -> tuple[tuple[str, Record], int]:
        path, record = item
        return item, fetch_into(store, record, os.path.join(root, *path.split("/")), path)

    downloaded = 0
    for _, size in _parallel(download, wanted, "files"):
        downloaded += size
    tree.changed = {}
    return tree, len(wanted), downloaded


def _clear_tree(root: str) -> None:
    """Empty the local tree (it is rebuilt from the store), keeping the LOCK and cache."""
    os.makedirs(root, exist_ok=True)
    for name in os.listdir(root):
        if name in _KEEP_LOCALLY:
            continue
        path = os.path.join(root, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def apply(root: str, entries: tuple[journal.Entry, ...]) -> int:
    """Apply journal entries to the local tree under ``root``; return how many."""
    return replay(root, entries, None, None)


def replay(root: str, entries: Iterable[journal.Entry], tree: Tree | None, store: Store | None) -> int:
    """Apply journal entries to the local tree under ``root`` and note them in ``tree``;
    a remote file an entry writes to is fetched first. Returns how many were applied."""
    count = 0
    for entry in entries:
        path = os.path.join(root, *entry.path.split("/"))
        try:
            if tree is not None and entry.path in tree.remote:
                _replay_on_remote(entry, path, root, tree, store)
            else:
                _apply(entry, path, root)
        except OSError as exc:
            raise StorageError(f"cannot rebuild {path} from the store's journal: {exc}") from exc
        if tree is not None:
            tree.note(entry)
        count += 1
    return count


def _replay_on_remote(entry: journal.Entry, path: str, root: str, tree: Tree, store: Store | None) -> None:
    """Apply ``entry`` to a file that is still only in the store."""
    if entry.op in (journal.OP_WRITE, journal.OP_TRUNCATE, journal.OP_CREATE):
        record = tree.remote[entry.path]
        if store is None:
            raise StorageError(f"{entry.path} is in the store and there is no store to fetch it from")
        fetch_into(store, record, path, entry.path)
        tree.local_now(entry.path)
        _apply(entry, path, root)
    elif entry.op == journal.OP_RENAME:
        target = os.path.join(root, *entry.target.split("/"))
        if os.path.isfile(target):
            os.remove(target)  # the remote file takes its place (the tree moves its record)
        _ensure_parent(target)
    elif entry.op == journal.OP_REPLACE:
        _apply(entry, path, root)
    # REMOVE, RMTREE, MKDIR of a remote file: only the tree changes


def _apply(entry: journal.Entry, path: str, root: str) -> None:
    op = entry.op
    if op == journal.OP_WRITE:
        _ensure_parent(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, entry.data, entry.position)
        finally:
            os.close(fd)
    elif op == journal.OP_TRUNCATE:
        _ensure_parent(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, entry.position)
        finally:
            os.close(fd)
    elif op == journal.OP_REPLACE:
        _ensure_parent(path)
        with open(path, "wb") as handle:
            handle.write(entry.data)
    elif op == journal.OP_CREATE:
        _ensure_parent(path)
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o644))
    elif op == journal.OP_MKDIR:
        os.makedirs(path, exist_ok=True)
    elif op == journal.OP_RENAME:
        target = os.path.join(root, *entry.target.split("/"))
        if os.path.exists(path):
            _ensure_parent(target)
            if os.path.isdir(target) and os.path.isdir(path):
                shutil.rmtree(target)
            os.replace(path, target)
    elif op == journal.OP_REMOVE:
        if os.path.isfile(path):
            os.remove(path)
    elif op == journal.OP_RMTREE:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def _ensure_parent(path: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
