"""Handoffs: a topic released by the agent that held it, waiting in the store to be adopted.

Decision record 0030, step 1. An engine on an object store can let go of one topic while
it runs (``Engine.release_topic``) and take one up (``Engine.adopt_topic``) without a
restart. The topic's files stay in the store; what travels is a *handoff*, a manifest
of the topic's files alone::

    handoffs/<escaped topic>/<incarnation>            the handoff (a manifest, manifest.py's
                                                      layout, of the topic's files only)
    handoffs/<escaped topic>/<incarnation>.adopted    written by the adopter before its
                                                      checkpoint names the files

**Releasing** (the engine's side is in engine.py): the topic is closed (its pending
appends are acknowledged or fail), a checkpoint writes a manifest that names every file
of the topic as it was closed (storage/checkpoint.py), the handoff is written with the
records of those files, and only then is the topic's directory removed from the tree
(journaled, as a deletion). The file objects the handoff names are *protected*: a
checkpoint's garbage collection never deletes them while the handoff exists.

**Adopting**: the handoff's directories and files enter the tree as remote files (the
StoreDisk fetches each when it is first read or written: nothing is downloaded up
front), the ``.adopted`` mark is written, a checkpoint names the files, and the handoff
and its mark are deleted. The topic is then opened like any other.

**A crash in between** is resolved when the engine opens, from what the store holds:

* the topic in the tree and its handoff without a mark: the release stopped before it
  removed the directory. The handoff wins (it was written after the topic was closed
  for good): the local copy is dropped, the topic stays released;
* the topic in the tree, its handoff and the mark: the adoption's checkpoint named the
  files and the agent stopped before it deleted the handoff: the handoff and the mark
  are deleted, the topic is served;
* no topic in the tree, a handoff and a mark: the adoption stopped before its
  checkpoint; the mark is deleted, the topic stays released (adopt it again);
* no topic in the tree and a handoff: released, waiting.

Sans-IO naming and encoding here, with the few store calls the engine makes.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Protocol

from odradek.errors import StorageError
from odradek.storage import manifest as mf
from odradek.storage.manifest import Manifest, Record
from odradek.storage.objects import Listed
from odradek.storage.tree import under

log = logging.getLogger(__name__)

HANDOFFS = "handoffs/"
ADOPTED_SUFFIX = ".adopted"
_LIST_PAGE = 1000


class Store(Protocol):
    def put_new(self, key: str, data: bytes) -> bool: ...

    def get(self, key: str) -> bytes | None: ...

    def list(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> Sequence[Listed]: ...

    def delete(self, key: str) -> None: ...


@dataclasses.dataclass(frozen=True)
class Handoff:
    """A released topic: its name, incarnation, and its files' records (paths relative
    to the data directory, as in a manifest)."""

    topic: str
    incarnation: str
    manifest: Manifest
    adopted: bool = False  # the ``.adopted`` mark exists

    @property
    def key(self) -> str:
        return handoff_key(self.topic, self.incarnation)

    @property
    def directory(self) -> str:
        return topic_directory(self.topic)

    def keys(self) -> set[str]:
        return self.manifest.keys()


def topic_directory(topic: str) -> str:
    """The topic's directory, relative to the data directory."""
    return f"topics/{topic}"


def handoff_key(topic: str, incarnation: str) -> str:
    return f"{HANDOFFS}{mf.escape_path(topic)}/{mf.escape_path(incarnation)}"


def adopted_key(topic: str, incarnation: str) -> str:
    return handoff_key(topic, incarnation) + ADOPTED_SUFFIX


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


def write(store: Store, handoff: Handoff) -> None:
    """Write ``handoff`` (create-if-absent: a topic's incarnation is released once)."""
    if not store.put_new(handoff.key, mf.encode(handoff.manifest)):
        raise StorageError(f"the handoff {handoff.key} exists already: topic {handoff.topic!r} is released")


def mark_adopted(store: Store, handoff: Handoff) -> None:
    store.put_new(adopted_key(handoff.topic, handoff.incarnation), b"adopted\n")


def remove(store: Store, handoff: Handoff) -> None:
    """Delete the handoff, then its mark (a mark without its handoff means nothing)."""
    store.delete(handoff.key)
    store.delete(adopted_key(handoff.topic, handoff.incarnation))


def unmark(store: Store, handoff: Handoff) -> None:
    store.delete(adopted_key(handoff.topic, handoff.incarnation))


def list_handoffs(store: Store) -> dict[str, Handoff]:
    """Every handoff in the store, by topic (a topic has at most one: its incarnation's)."""
    keys: list[str] = []
    after: str | None = None
    while True:
        page = store.list(HANDOFFS, after=after, limit=_LIST_PAGE)
        keys.extend(key for key, _ in page)
        if len(page) < _LIST_PAGE:
            break
        after = page[-1][0]
    marks = {key[: -len(ADOPTED_SUFFIX)] for key in keys if key.endswith(ADOPTED_SUFFIX)}
    found: dict[str, Handoff] = {}
    for key in keys:
        if key.endswith(ADOPTED_SUFFIX):
            continue
        handoff = read(store, key, adopted=key in marks)
        if handoff is not None:
            found[handoff.topic] = handoff
    return found


def read(store: Store, key: str, *, adopted: bool = False) -> Handoff | None:
    """The handoff at ``key`` (None if it vanished: adopted meanwhile)."""
    data = store.get(key)
    if data is None:
        return None
    topic, incarnation = _names_of(key)
    try:
        manifest = mf.decode(data)
    except mf.ManifestDamaged as exc:
        raise StorageError(f"the handoff {key} of topic {topic!r} is damaged ({exc})") from exc
    return Handoff(topic, incarnation, manifest, adopted)


def protected_keys(handoffs: dict[str, Handoff]) -> set[str]:
    """The file objects that garbage collection must keep: every handoff's."""
    keys: set[str] = set()
    for handoff in handoffs.values():
        keys.update(handoff.keys())
    return keys


def _names_of(key: str) -> tuple[str, str]:
    rest = key[len(HANDOFFS) :]
    topic, _, incarnation = rest.rpartition("/")
    return _unescape(topic), _unescape(incarnation)


def _unescape(segment: str) -> str:
    out = bytearray()
    index = 0
    raw = segment.encode()
    while index < len(raw):
        if raw[index] == ord("%") and index + 3 <= len(raw):
            out.append(int(raw[index + 1 : index + 3], 16))
            index += 3
        else:
            out.append(raw[index])
            index += 1
    return out.decode()
