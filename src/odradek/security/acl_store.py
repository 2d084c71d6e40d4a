"""The bindings of a server, durable behind the storage seam (decision 0020).

Kept beside the credential store, in a document of their own::

    {"version": 1, "bindings": [{"principal", "resource_type", "pattern_type", "pattern",
                                 "operation", "permission"}, ...]}

in the data directory (``<data dir>/security/acls.json``, two copies, checksummed), or,
for a server whose data is in an object store, as the object ``security/acls.json`` of
that store, and for the agents of a cluster as the key
``/odradek/<cluster>/security/acls.json`` of its etcd (decision 0029), replaced by
compare-and-swap and read again every ``limits.security_refresh_seconds`` and, in etcd,
as soon as its watch says it changed (as the credentials are, security/credentials.py).

A change is made on a copy, saved, and only then published (a refused or failed save
changes nothing); one lock serializes changes; readers take the published bindings
without a lock. Every publication hands the new bindings to the listeners (the
authorizer's decision cache).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from odradek import limits
from odradek.errors import InvalidRequest, StorageError
from odradek.security.acl import Acl, Binding, binding_of
from odradek.security.credentials import (
    CredentialStore,
    _InDataDirectory,
    _InObjectStore,
    _Persistence,
    document_in,
    refresh_thread,
)
from odradek.storage.disk import LOCAL, Disk
from odradek.storage.documents import Document

if TYPE_CHECKING:
    from odradek.storage.objects import ObjectStore


DOCUMENT = "security/acls.json"


def _acl_of(data: Any, path: str) -> Acl:
    if data is None:
        return Acl.of(())
    try:
        entries = data["bindings"]
        if not isinstance(entries, list):
            raise TypeError("bindings is not a list")
        return Acl.of(binding_of(entry) for entry in entries)
    except (InvalidRequest, KeyError, TypeError) as exc:
        raise StorageError(f"{path} is not a store of access control lists ({exc})") from None


class AclStore:
    """The bindings of one server (see the module docstring). Thread-safe."""

    def __init__(self, persistence: _Persistence) -> None:
        self._persistence = persistence
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Acl], None]] = []
        self.generation = 0
        self._acl = _acl_of(self._persistence.load(), self._persistence.path)
        self.shared = isinstance(persistence, _InObjectStore) or getattr(persistence, "shared", False)
        self._refreshed = float("-inf")  # when refresh last asked the store

    @classmethod
    def open(cls, data_dir: str, disk: Disk = LOCAL, *, sync: bool = True) -> AclStore:
        """The bindings of data directory ``data_dir`` (none if it has none yet)."""
        return cls(_InDataDirectory(document_in(data_dir, DOCUMENT, disk, sync=sync)))

    @classmethod
    def in_object_store(cls, store: ObjectStore) -> AclStore:
        return cls(_InObjectStore(store, DOCUMENT))

    @classmethod
    def beside(cls, credentials: CredentialStore) -> AclStore:
        """The bindings kept where ``credentials`` are kept (its data directory, its
        object store or its cluster's etcd)."""
        persistence = credentials._persistence
        sibling = getattr(persistence, "sibling", None)
        if sibling is not None:  # a cluster's etcd (cluster/documents.py)
            return cls(sibling(DOCUMENT))
        if isinstance(persistence, _InObjectStore):
            return cls.in_object_store(persistence.store)
        if isinstance(persistence, _InDataDirectory):
            document = persistence.document
            path = os.path.join(os.path.dirname(document.path), os.path.basename(DOCUMENT))
            return cls(_InDataDirectory(Document(document.disk, path, sync=document.sync)))
        raise InvalidRequest(f"access control lists cannot be kept beside {persistence.path}")

    def __repr__(self) -> str:
        return f"AclStore(bindings={len(self._acl.bindings)})"

    @property
    def acl(self) -> Acl:
        return self._acl

    def bindings(self) -> list[Binding]:
        return list(self._acl.bindings)

    def listen(self, listener: Callable[[Acl], None]) -> None:
        """Call ``listener`` with the bindings whenever they change (in the changer's thread)."""
        self._listeners.append(listener)

    # -- changing ---------------------------------------------------------------------------

    def add(self, new: Iterable[Binding]) -> list[Binding]:
        """Add bindings (those present already are kept once); the ones added."""
        new = list(new)
        with self._lock:
            acl = self._latest()
            added = [entry for entry in dict.fromkeys(new) if entry not in set(acl.bindings)]
            if len(acl.bindings) + len(added) > limits.acl_bindings_max:
                raise InvalidRequest(
                    f"the server holds at most {limits.acl_bindings_max} bindings "
                    f"({len(acl.bindings)} now, {len(added)} more asked)"
                )
            if added:
                self._publish(Acl.of((*acl.bindings, *added)))
        return added

    def remove(self, matches: Callable[[Binding], bool]) -> list[Binding]:
        """Remove every binding ``matches`` selects; the ones removed."""
        with self._lock:
            acl = self._latest()
            removed = [entry for entry in acl.bindings if matches(entry)]
            if removed:
                gone = set(removed)
                self._publish(Acl.of(entry for entry in acl.bindings if entry not in gone))
        return removed

    def refresh(self, *, soon: bool = False) -> bool:
        """Read the document again if another agent changed it; True if it did. ``soon``:
        at most every ``limits.security_refresh_seconds_min`` (a request about to be
        refused by a shared store's bindings: one HEAD request)."""
        now = time.monotonic()
        if soon and now - self._refreshed < limits.security_refresh_seconds_min:
            return False
        self._refreshed = now
        with self._lock:
            if not self._persistence.changed():
                return False
            self._set(_acl_of(self._persistence.load(), self._persistence.path))
        return True

    def _publish(self, acl: Acl) -> None:
        self._persistence.save({"version": 1, "bindings": [entry.to_json() for entry in acl.bindings]})
        self._set(acl)

    def _set(self, acl: Acl) -> None:
        self._acl = acl
        self.generation += 1  # a long-lived stream checks its rights again (revalidation.py)
        for listener in self._listeners:
            listener(acl)

    def _latest(self) -> Acl:
        if self._persistence.changed():
            self._set(_acl_of(self._persistence.load(), self._persistence.path))
        return self._acl


def refresh_every(store: AclStore, seconds: float | None = None) -> None:
    """Read a shared store again every ``seconds`` (default
    ``limits.security_refresh_seconds``) on a daemon thread, and at once when etcd says
    the document changed (cluster/documents.py), for as long as the store is in use (the
    thread holds it weakly and ends once it is gone): the credential store's refresh
    thread (security/credentials.py)."""
    reference = weakref.ref(store)
    stops: list[threading.Event] = []

    def refresh() -> None:
        current = reference()
        if current is None:  # nobody uses the store any more: end the thread
            for stop in stops:
                stop.set()
            return
        current.refresh()

    stops.append(
        refresh_thread(
            refresh,
            seconds,
            "odradek-acls",
            "the access control lists",
            wake=getattr(store._persistence, "wake", None),
        )
    )
