"""A cluster's security documents as keys of its etcd prefix (decision 0029).

The credential store, the access control bindings and the quotas are each one
checksummed JSON document (security/credentials.py, acl_store.py, quotas.py) behind a
small persistence (``load``, ``save``, ``changed``). In a cluster they are the keys
``/odradek/<cluster>/security/credentials.json``, ``.../acls.json`` and
``.../quotas.json`` (cluster/keys.py), in the same encoding as on disk
(storage/documents.py). Rules:

* **Sync callers, their own loop.** The doors are threads and the stores are sync; the
  etcd client is asynchronous. ``EtcdDocuments`` runs its own ``EtcdCluster`` (its own
  channel, the same TLS and user as the agent's) on an event loop of its own, on a daemon
  thread, and a sync call waits for its answer there. The agent's event loop is never
  touched, so nothing here can block it; a call from this loop's own thread is refused
  (it would wait for itself).
* **Compare-and-swap.** A save is one transaction: put the document if the key's
  ``mod_revision`` is still the one read (0: absent). A concurrent change on another
  agent is refused with a retryable StorageError, as the object store's CAS is; a retry
  after an unknown outcome recognizes its own write.
* **Bounded.** A document over ``limits.security_document_bytes_max`` is refused before
  it is sent (etcd refuses requests over its ``--max-request-bytes``, 1.5 MiB by
  default): the change fails and nothing changes.
* **Watched.** ``watch()`` follows ``security/`` with an etcd watch and wakes the
  refresh thread of every persistence of the key that changed (``wake``), so a
  revocation reaches every agent as soon as etcd tells it; the periodic refresh stays as
  a backstop. After a member is lost or etcd compacted past the watch, every document
  is read again.
* **Unreachable etcd.** A call waits at most the cluster's retry time
  (``limits.cluster_retry_seconds_max``) and raises EtcdUnavailable (retryable): a change
  is refused, the documents last read go on being served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from odradek import limits
from odradek.cluster.etcd import EtcdCluster, EtcdUnavailable
from odradek.cluster.etcd_client import EtcdSecurity
from odradek.errors import RequestTooLarge, StorageError
from odradek.storage.documents import decode, encode

log = logging.getLogger("odradek.security")

T = TypeVar("T")

_SLACK_SECONDS = 5.0  # beyond the etcd client's own retry time, before a sync call gives up


class EtcdDocuments:
    """The security documents of one cluster in etcd, for sync callers (module docstring)."""

    def __init__(
        self,
        endpoints: str | Sequence[str],
        cluster: str = "default",
        *,
        security: EtcdSecurity | None = None,
        retry_seconds: float = limits.cluster_retry_seconds_max,
    ) -> None:
        self._etcd = EtcdCluster(endpoints, cluster, security=security, retry_seconds=retry_seconds)
        self.layout = self._etcd.layout
        self.endpoints = ",".join(
            f"{'https' if self._etcd.tls else 'http'}://{host}:{port}" for host, port in self._etcd.endpoints
        )
        self._wait_seconds = retry_seconds + limits.cluster_request_timeout_seconds + _SLACK_SECONDS
        self._wakes: dict[bytes, list[threading.Event]] = {}
        self._lock = threading.Lock()
        self._watch: concurrent.futures.Future[None] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="odradek-etcd-documents", daemon=True
        )
        self._thread.start()
        self._closed = False

    def __repr__(self) -> str:
        return f"EtcdDocuments({self.endpoints}, cluster={self.layout.cluster!r})"

    def persistence(self, document: str) -> InEtcd:
        """The persistence of security document ``document`` (``security/acls.json``)."""
        return InEtcd(self, document)

    def _run(self, coroutine: Coroutine[Any, Any, T], what: str) -> T:
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("a sync call of the etcd documents from their own event loop")
        if self._closed:
            coroutine.close()
            raise StorageError(f"the etcd client of cluster {self.layout.cluster!r} is closed")
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(self._wait_seconds)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise EtcdUnavailable(
                f"etcd ({self.endpoints}) did not answer {what} within {self._wait_seconds:g} s"
            ) from None

    def read(self, key: bytes) -> tuple[bytes | None, int]:
        return self._run(self._etcd.read_key(key), f"the read of {key.decode()}")

    def revision(self, key: bytes) -> int:
        return self._run(self._etcd.key_revision(key), f"the revision of {key.decode()}")

    def swap(self, key: bytes, value: bytes, revision: int, *, own: bool = True) -> int | None:
        return self._run(self._etcd.swap_key(key, value, revision, own=own), f"the change of {key.decode()}")

    def _wake_on(self, key: bytes, wake: threading.Event) -> None:
        with self._lock:
            self._wakes.setdefault(key, []).append(wake)

    def watch(self) -> None:
        """Follow the documents with an etcd watch (once; until ``close``)."""
        with self._lock:
            if self._watch is None:
                self._watch = asyncio.run_coroutine_threadsafe(self._follow(), self._loop)

    async def _follow(self) -> None:
        prefix = self.layout.security_prefix
        while True:
            try:
                async for key in self._etcd.watch_keys(prefix):
                    with self._lock:
                        wakes = [w for k, ws in self._wakes.items() if key is None or k == key for w in ws]
                    for wake in wakes:  # (an Event's set never blocks this loop)
                        wake.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - etcd unreachable a while: the backstop refreshes
                log.warning("the watch of the security documents in etcd broke: %s; watching again", exc)
                await asyncio.sleep(1.0)

    def close(self) -> None:
        """Stop the watch and the client (the stores keep what they read last)."""
        if self._closed:
            return
        self._closed = True
        if self._watch is not None:
            self._watch.cancel()

        async def shut() -> None:
            with contextlib.suppress(Exception):
                await self._etcd.close()

        with contextlib.suppress(Exception):
            closing = asyncio.run_coroutine_threadsafe(shut(), self._loop)
            closing.result(limits.cluster_request_timeout_seconds)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(limits.cluster_request_timeout_seconds)
        if not self._thread.is_alive():
            self._loop.close()


class InEtcd:
    """One security document as an etcd key, compare-and-swapped on its ``mod_revision``
    (the persistence of security/credentials.py)."""

    shared = True  # other agents write it too: read again when a credential is not found

    def __init__(self, documents: EtcdDocuments, document: str) -> None:
        self.documents = documents
        self.document = document
        self.key = documents.layout.security(document)
        self.path = f"etcd key {self.key.decode()}"
        self.wake = threading.Event()  # set when etcd says the key changed
        self._revision = 0
        self._generation = 0
        documents._wake_on(self.key, self.wake)

    def sibling(self, document: str) -> InEtcd:
        """Another document of the same cluster (the bindings beside the credentials)."""
        return self.documents.persistence(document)

    def load(self) -> Any | None:
        value, revision = self.documents.read(self.key)
        if value is None:
            self._revision, self._generation = 0, 0
            return None
        try:
            data, generation = decode(value)
        except ValueError as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None
        self._revision, self._generation = revision, generation
        return data

    def save(self, data: Any) -> None:
        raw = self._encoded(data)
        revision = self.documents.swap(self.key, raw, self._revision)
        if revision is None:
            raise StorageError(f"{self.path} was changed by another agent meanwhile; retry")
        self._revision, self._generation = revision, self._generation + 1

    def create(self, data: Any) -> bool:
        """Write ``data`` if the key is absent (an import: two agents import it once);
        False if it is there already."""
        raw = self._encoded(data, 1)
        revision = self.documents.swap(self.key, raw, 0, own=False)
        if revision is None:
            return False
        self._revision, self._generation = revision, 1
        return True

    def changed(self) -> bool:
        return self.documents.revision(self.key) != self._revision

    def _encoded(self, data: Any, generation: int | None = None) -> bytes:
        raw = encode(data, self._generation + 1 if generation is None else generation)
        if len(raw) > limits.security_document_bytes_max:
            raise RequestTooLarge(
                f"{self.path} would be {len(raw):,} bytes, over limits.security_document_bytes_max "
                f"({limits.security_document_bytes_max:,} bytes: etcd refuses larger requests); "
                "nothing was changed"
            )
        return raw


def import_from_store(persistence: InEtcd, store: Any) -> bool:
    """Copy ``persistence``'s document from the object ``store`` (where the previous
    version kept it) into etcd if etcd has none yet (create-if-absent: two agents starting
    together import it once). True if this call imported it."""
    from odradek.security.credentials import _InObjectStore

    if persistence.load() is not None:
        return False
    found = _InObjectStore(store, persistence.document)
    data = found.load()
    if data is None:
        return False
    if not persistence.create(data):
        persistence.load()  # another agent imported it meanwhile
        return False
    log.info(
        "imported %s from the store into %s (the object is no longer read)",
        found.path,
        persistence.path,
        extra={"fields": {"document": persistence.document, "key": persistence.key.decode()}},
    )
    return True
