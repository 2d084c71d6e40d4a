"""Attaching a data directory to an object store: epoch, fence, recover, then journal.

``attach(root, store)`` is what an engine opened with a store does first (decision
record 0011):

1. claim the next epoch (``epochs/<epoch>``, create-if-absent; a lost race claims the
   next one);
2. fence (see ``fence``): from there on, no agent of an older epoch can complete an
   acknowledgement, and what it writes later is ignored;
3. recover: rebuild the local tree (the data directory minus its LOCK and cache) from
   the latest checkpoint, if any, and the valid journal after it, in (epoch, flush)
   order;
4. return a StoreDisk journaling into the slots after the fence.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import shutil
import time
from typing import Protocol

from odradek import limits
from odradek.errors import StorageError
from odradek.storage import journal
from odradek.storage.storedisk import StoreDisk
from odradek.storage.walwriter import JournalWriter

log = logging.getLogger(__name__)

EPOCHS = "epochs/"
_KEEP_LOCALLY = {"LOCK", "cache"}


class Store(Protocol):
    def put_new(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes | None: ...

    def list(self, prefix: str) -> list[tuple[str, int]]: ...


@dataclasses.dataclass(frozen=True)
class StoreSettings:
    flush_seconds: float = limits.store_flush_seconds_default
    flush_bytes: int = limits.store_flush_bytes_default
    in_flight_max: int = limits.store_flushes_in_flight_max
    backlog_bytes_max: int = limits.store_journal_bytes_max
    wait_seconds: float = limits.store_sync_timeout_seconds


@dataclasses.dataclass
class Recovery:
    epoch: int
    slots: int  # journal objects read
    replayed: int  # of them valid and applied
    entries: int
    seconds: float


def attach(root: str, store: Store, settings: StoreSettings | None = None) -> tuple[StoreDisk, Recovery]:
    settings = settings or StoreSettings()
    started = time.monotonic()
    epoch = claim_epoch(store)
    first_free = fence(store, epoch, settings.in_flight_max)
    listed, objects = _read_journal(store)
    order = journal.valid(listed)
    _clear_tree(root)
    entries = 0
    for item in order:
        entries += apply(root, objects[item.slot].entries)
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
    recovery = Recovery(epoch, len(listed), len(order), entries, time.monotonic() - started)
    log.info(
        "attached to the store as epoch %d: replayed %d of %d journal objects (%d changes) in %.2f s",
        epoch,
        recovery.replayed,
        recovery.slots,
        recovery.entries,
        recovery.seconds,
    )
    return StoreDisk(root, writer), recovery


def claim_epoch(store: Store) -> int:
    """The next epoch, claimed with create-if-absent (a lost race takes the next)."""
    taken = [int(key.rsplit("/", 1)[-1]) for key, _ in store.list(EPOCHS) if key.rsplit("/", 1)[-1].isdigit()]
    epoch = max(taken, default=0) + 1
    while not store.put_new(f"{EPOCHS}{epoch:020d}", _epoch_document(epoch)):
        epoch += 1
    return epoch


def _epoch_document(epoch: int) -> bytes:
    return (
        f'{{"epoch":{epoch},"host":"{os.uname().nodename}","pid":{os.getpid()},"at":{time.time()}}}'.encode()
    )


def fence(store: Store, epoch: int, window: int) -> int:
    """Fence the journal for ``epoch``; return the first slot this agent writes.

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
        slots = {slot for slot in (journal.slot_of(key) for key, _ in store.list("wal/")) if slot is not None}
        highest = max(slots, default=-1)
        target = highest + 2 * window + 1
        if store.put_new(journal.slot_key(target), journal.encode_fence(epoch, target)):
            break
    holes = [slot for slot in range(max(0, highest - window + 1), target) if slot not in slots]
    if holes:
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=min(len(holes), limits.store_fence_threads), thread_name_prefix="odradek-fence"
        ) as pool:
            list(
                pool.map(
                    lambda slot: store.put_new(journal.slot_key(slot), journal.encode_fence(epoch, slot)),
                    holes,
                )
            )
    return target + 1


def _read_journal(store: Store) -> tuple[list[journal.Listed], dict[int, journal.JournalObject]]:
    listed: list[journal.Listed] = []
    objects: dict[int, journal.JournalObject] = {}
    for key, _ in store.list("wal/"):
        slot = journal.slot_of(key)
        if slot is None:
            continue
        data = store.get(key)
        if data is None:
            continue  # deleted by a checkpoint meanwhile
        try:
            item = journal.decode(data)
        except journal.JournalDamaged as exc:
            # A torn object can only be a write nobody acknowledged (an upload is
            # acknowledged after the store took it whole): like a torn tail.
            log.warning("journal slot %d is damaged (%s); ignoring it", slot, exc)
            continue
        listed.append(journal.Listed(slot, item.epoch, item.flush, item.kind))
        objects[slot] = item
    return listed, objects


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
    for entry in entries:
        path = os.path.join(root, *entry.path.split("/"))
        try:
            _apply(entry, path, root)
        except OSError as exc:
            raise StorageError(f"cannot rebuild {path} from the store's journal: {exc}") from exc
    return len(entries)


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
