"""Handoffs: a topic released by the cell that held it, waiting in the store to be adopted.

Decisions 0030 and 0031. An engine on an object store (a *cell*: its journal, manifests
and files under one prefix) can let go of one topic while it runs
(``Engine.release_topic``) and take one up (``Engine.adopt_topic``), from its own store
or from another cell's on the same backend (``ObjectStore.child``), without a restart.
The topic's files stay where they are in the store; what travels is a *handoff*, a
manifest (manifest.py's layout) of the topic's files alone, in the releasing cell's
store::

    handoffs/<escaped topic>/<incarnation>            the handoff: the files' records, keys
                                                      as the releasing cell names them
    handoffs/<escaped topic>/<incarnation>.ready      the release is complete: adoptable
    handoffs/<escaped topic>/<incarnation>.claimed    an adopter's claim: {"cell", "epoch"}
    handoffs/<escaped topic>/<incarnation>.adopted    a manifest of the adopter names the
                                                      files now: {"cell"}

**Releasing** (engine.py): the topic is closed, a checkpoint writes a manifest naming
every file of the topic as closed for good, the handoff is written (*pending*), the
local directory is dropped (journaled, as a deletion) and the journal holds the drop,
then ``.ready`` is written. While a handoff exists, the releasing cell's garbage
collection never deletes an object it names. Only a ready handoff is adopted, so the
releasing cell never finds the topic in its tree once another may hold it.

**Adopting**: the adopter claims the handoff (create-if-absent of ``.claimed``; a claim
of a cell that restarted since, at a newer epoch, may be taken over), journals a marker
``adoptions/<topic>`` in its own data directory, lets the handoff's files enter its tree
as *remote* files named by bucket-absolute keys when they are another cell's
(``ObjectStore.absolute``; nothing is copied or downloaded: each file is fetched when
first read or written), and takes a checkpoint, which names them. Then ``.adopted`` is
written, or, when the adopter is the releasing cell itself, the handoff is deleted; the
marker goes. From then on the adopter is responsible for those objects: its garbage
collection deletes one when its manifest stops naming it, wherever it lies. The
releasing cell keeps an adopted handoff so that the sweep of unnamed objects it makes at
start spares the objects the adopter names, and deletes it once none of them is left.

**A stop in between** is resolved by each cell when it starts (engine.py):

* a marker in its data directory: with the topic's directory there too, the adoption's
  checkpoint named the files: it is finished (``.adopted``, or the handoff deleted);
  without it, the adoption is undone (the claim dropped);
* a handoff of its own without ``.ready``: the release stopped before it was complete:
  a local copy left is dropped, then ``.ready`` is written;
* a ready handoff of its own whose topic is in its tree without a marker cannot come
  from these steps; the local copy is dropped (logged): the handoff's owner decides.

Sans-IO naming and encoding here, with the few store calls the engine makes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import urllib.parse
from collections.abc import Sequence
from typing import Protocol

from odradek.errors import StorageError
from odradek.storage import manifest as mf
from odradek.storage.manifest import Manifest, Piece, Record
from odradek.storage.objects import Listed, list_all
from odradek.storage.tree import under

log = logging.getLogger(__name__)

HANDOFFS = "handoffs/"
ADOPTIONS = "adoptions"  # the data directory's markers of adoptions under way
READY, CLAIMED, ADOPTED = ".ready", ".claimed", ".adopted"
MARKS = (READY, CLAIMED, ADOPTED)


class Store(Protocol):
    """What handoffs and checkpoints need of an object store (objects.py provides it)."""

    def put(self, key: str, data: bytes) -> object: ...

    def put_new(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes | None: ...

    def list(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> Sequence[Listed]: ...

    def delete(self, key: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class Claim:
    cell: str  # the adopter's bucket-absolute prefix
    epoch: int  # the adopter's epoch in its own store when it claimed


@dataclasses.dataclass(frozen=True)
class Handoff:
    """A released topic: its name, incarnation, its files' records (paths relative to
    the data directory, keys as the releasing cell names them) and its marks."""

    topic: str
    incarnation: str
    manifest: Manifest
    ready: bool = False
    claim: Claim | None = None
    adopted_by: str | None = None

    @property
    def key(self) -> str:
        return handoff_key(self.topic, self.incarnation)

    @property
    def directory(self) -> str:
        return topic_directory(self.topic)

    def keys(self) -> set[str]:
        return self.manifest.keys()


# Where the topics' directories are, relative to the data directory.
TOPICS = "topics"


def topic_directory(topic: str) -> str:
    """The topic's directory, relative to the data directory."""
    return f"{TOPICS}/{topic}"


def marker_path(topic: str) -> str:
    """The adoption marker of ``topic``, relative to the data directory."""
    return f"{ADOPTIONS}/{topic}"


def handoff_key(topic: str, incarnation: str) -> str:
    return f"{HANDOFFS}{mf.escape_path(topic)}/{mf.escape_path(incarnation)}"


def of_manifest(manifest: Manifest, topic: str, incarnation: str) -> Handoff:
    """The handoff of ``topic`` from a manifest naming its files (and others')."""
    top = topic_directory(topic)
    files: dict[str, Record] = {path: record for path, record in manifest.files.items() if under(path, top)}
    dirs = {directory for directory in manifest.dirs if under(directory, top)}
    if top not in dirs:
        raise StorageError(f"the checkpoint {manifest.key} does not hold topic {topic!r}'s directory")
    part = Manifest(
        manifest.epoch, manifest.number, manifest.after, manifest.floor, manifest.in_force, dirs, files
    )
    return Handoff(topic, incarnation, part)


# -- the store's objects ----------------------------------------------------------------------


def write(store: Store, handoff: Handoff) -> None:
    """Write ``handoff``, pending (create-if-absent: a topic has one handoff at a time).
    An earlier handoff of the topic that another cell adopted is obsolete (the topic is
    here again to be released: its objects are named here) and goes first; marks left by
    an earlier one (a removal cut short between the handoff and its marks) too."""
    earlier = read(store, handoff.key)
    if earlier is not None:
        if earlier.adopted_by is None:
            raise StorageError(
                f"the handoff {handoff.key} exists already: topic {handoff.topic!r} is released"
            )
        remove(store, earlier)
    for mark in MARKS:
        store.delete(handoff.key + mark)
    if not store.put_new(handoff.key, mf.encode(handoff.manifest)):
        raise StorageError(f"the handoff {handoff.key} exists already: topic {handoff.topic!r} is released")


def mark_ready(store: Store, handoff: Handoff) -> Handoff:
    store.put_new(handoff.key + READY, b"ready\n")
    return dataclasses.replace(handoff, ready=True)


def claim(store: Store, handoff: Handoff, cell: str, epoch: int) -> bool:
    """Claim ``handoff`` for the cell ``cell`` at ``epoch``; False if another holds it."""
    document = json.dumps({"cell": cell, "epoch": epoch}).encode()
    return store.put_new(handoff.key + CLAIMED, document)


def take_over_claim(store: Store, handoff: Handoff, cell: str, epoch: int) -> bool:
    """Replace a stale claim (its cell restarted since); False if another took it first."""
    store.delete(handoff.key + CLAIMED)
    return claim(store, handoff, cell, epoch)


def unclaim(store: Store, handoff: Handoff) -> None:
    store.delete(handoff.key + CLAIMED)


def mark_adopted(store: Store, handoff: Handoff, cell: str) -> None:
    store.put(handoff.key + ADOPTED, json.dumps({"cell": cell}).encode())


def remove(store: Store, handoff: Handoff) -> None:
    """Delete the handoff, then its marks (a mark without its handoff means nothing)."""
    store.delete(handoff.key)
    for mark in MARKS:
        store.delete(handoff.key + mark)


def list_handoffs(store: Store) -> dict[str, Handoff]:
    """Every handoff in the store, by topic (a topic has at most one: its incarnation's)."""
    keys = [key for key, _ in list_all(store, HANDOFFS)]
    present = set(keys)
    found: dict[str, Handoff] = {}
    for key in keys:
        if key.endswith(MARKS):
            continue
        handoff = read(store, key, present)
        if handoff is not None:
            found[handoff.topic] = handoff
    return found


def read(store: Store, key: str, present: set[str] | None = None) -> Handoff | None:
    """The handoff at ``key`` with its marks (None if it vanished: adopted meanwhile).
    ``present``: the keys a listing found, so that marks it did not list are not read."""
    data = store.get(key)
    if data is None:
        return None
    topic, incarnation = _names_of(key)
    try:
        manifest = mf.decode(data)
    except mf.ManifestDamaged as exc:
        raise StorageError(f"the handoff {key} of topic {topic!r} is damaged ({exc})") from exc

    def mark(suffix: str) -> dict[str, object] | None:
        if present is not None and key + suffix not in present:
            return None
        body = store.get(key + suffix)
        if body is None:
            return None
        try:
            loaded = json.loads(body)
        except ValueError:
            return {}
        return loaded if isinstance(loaded, dict) else {}

    ready = mark(READY) is not None
    claimed = mark(CLAIMED)
    adopted = mark(ADOPTED)
    claim_of = None
    if claimed is not None:
        claim_of = Claim(str(claimed.get("cell", "")), int(str(claimed.get("epoch", 0))))
    adopted_by = None if adopted is None else str(adopted.get("cell", ""))
    return Handoff(topic, incarnation, manifest, ready, claim_of, adopted_by)


def records_for(handoff: Handoff, source: KeyNamer, adopter: KeyNamer) -> dict[str, Record]:
    """The handoff's records with every key named as the adopter names it: its own
    objects by relative keys, the others' by bucket-absolute ones."""

    def named(key: str) -> str:
        return adopter.local(source.absolute(key))

    return {
        path: Record(
            record.size, tuple(Piece(named(p.key), p.start, p.length) for p in record.pieces), record.sealed
        )
        for path, record in handoff.manifest.files.items()
    }


class KeyNamer(Protocol):
    def absolute(self, key: str) -> str: ...

    def local(self, key: str) -> str: ...


def _names_of(key: str) -> tuple[str, str]:
    rest = key[len(HANDOFFS) :]
    topic, _, incarnation = rest.rpartition("/")
    return urllib.parse.unquote(topic), urllib.parse.unquote(incarnation)
