"""The object-store client: one typed, synchronous, thread-safe door to S3, GCS, Azure,
a local directory and memory, through obstore.

Two layers, as httpx over its transports. ``ObjectStore`` is the policy: keys under the
store's prefix, bounded retries with backoff, the unknown-outcome rule below, a bound on
requests in flight, request counters. Under it a narrow ``Backend`` makes *one attempt*
of one request and translates what the store said (obstore's exceptions, HTTP statuses,
OS errors) in one place (``objectbackends.py``). ``objectfaults.FaultyObjectStore``
slides a fault-injecting backend between the two.

Rules
-----
* **Unknown outcomes.** A request that timed out, lost its connection after it was sent,
  or got a 500 may have taken effect. ``put`` (overwrite) and ``delete`` simply retry:
  they are idempotent. ``put_new`` (create-if-absent, the fencing primitive) retries, and
  when a retry finds the key taken *after an attempt whose outcome was unknown*, it reads
  the object and answers True if the bytes there are exactly the bytes it was given: its
  own write, whose answer was lost. ``put_if`` does the same on a version mismatch.
  **So the bytes of an object written with put_new or put_if must be unique to their
  writer** (an agent id, an epoch, a random token inside the object): two writers racing
  with identical bytes could both be told they won. This is what makes an
  acknowledgement safe: True always means "the object at this key is the one I wrote".
* When every attempt failed, the error is raised with ``outcome_unknown`` set if any
  attempt may have taken effect: the caller must then treat the key as possibly written
  (never acknowledge what it carried, never assume the key is free).
* A precondition that fails is an answer, not an error: ``put_new`` returns False,
  ``put_if`` returns None.
* Retries wait outside the semaphore of requests in flight; each attempt holds one slot.

Errors (all ``odradek.errors.StorageError``, so callers that catch storage failures catch
these; ``retryable`` says whether the same call may succeed later)::

    StorageError
    └── ObjectStoreError         .operation, .key, .store, .attempts, .outcome_unknown
        ├── StoreUnavailable     retryable: 5xx, 503 SlowDown, 429, timeouts, connection errors
        └── StoreRefused         not retryable: 4xx (access denied, bad credentials, no bucket)
            └── StoreUnsupported the backend cannot do this (compare-and-swap on a directory)

A wrong URL, option, key or byte range is an ``InvalidRequest``.
"""

from __future__ import annotations

import builtins
import dataclasses
import heapq
import itertools
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple, Protocol, Self, TypeVar

from odradek import limits
from odradek.errors import InvalidRequest, RequestTooLarge, StorageError

Data = bytes | bytearray | memoryview
T = TypeVar("T")

# Request kinds, as S3 prices them; the counters are kept by these names.
PUT, GET, HEAD, LIST, DELETE = "PUT", "GET", "HEAD", "LIST", "DELETE"
KINDS = (PUT, GET, HEAD, LIST, DELETE)

# A key is segments of these characters joined by "/": safe in every backend's paths
# and URLs without escaping (S3's "safe characters"); escape anything else as %XX.
_SEGMENT = r"[A-Za-z0-9!_.*'()=+,@~%-]+"
_KEY = re.compile(rf"{_SEGMENT}(/{_SEGMENT})*")


# -- Errors -------------------------------------------------------------------------------


class ObjectStoreError(StorageError):
    """A request to an object store failed. The message names the operation, the key and
    the store; ``outcome_unknown`` says whether a write may have taken effect anyway."""

    def __init__(
        self,
        reason: str,
        *,
        operation: str = "",
        key: str = "",
        store: str = "",
        attempts: int = 1,
        outcome_unknown: bool = False,
    ) -> None:
        message = reason
        if operation:
            message = f"{operation} {key!r} on {store}: {reason}"
            if attempts > 1:
                message += f" (after {attempts} attempts)"
            if outcome_unknown:
                message += "; the write may have taken effect"
        super().__init__(message)
        self.reason = reason
        self.operation = operation
        self.key = key
        self.store = store
        self.attempts = attempts
        self.outcome_unknown = outcome_unknown

    def located(
        self, operation: str, key: str, store: str, *, attempts: int = 1, outcome_unknown: bool = False
    ) -> Self:
        """The same error, told where it happened (the backend knows only the reason)."""
        return type(self)(
            self.reason,
            operation=operation,
            key=key,
            store=store,
            attempts=attempts,
            outcome_unknown=outcome_unknown,
        )

    def details(self) -> dict[str, Any]:
        return {
            "operation": self.operation,
            "key": self.key,
            "store": self.store,
            "attempts": self.attempts,
            "outcome_unknown": self.outcome_unknown,
        }


class StoreUnavailable(ObjectStoreError):
    """The store did not answer, or answered "later" (5xx, 503 SlowDown, 429, a timeout, a
    connection error). Retried with backoff; raised once the attempts are spent."""

    retryable = True


class StoreRefused(ObjectStoreError):
    """The store refused the request for good (access denied, bad credentials, a missing
    bucket, another 4xx): retrying the same request will not help."""

    retryable = False


class StoreUnsupported(StoreRefused):
    """The backend cannot do this at all (compare-and-swap on a local directory)."""


# Answers of a backend's put that are not errors: the ObjectStore turns them into
# False (put_new) or None (put_if), after the unknown-outcome check.
class KeyExists(Exception):
    """Create-if-absent found the key taken."""


class VersionMismatch(Exception):
    """Compare-and-swap found another version at the key (or no object)."""


# -- Values -------------------------------------------------------------------------------


class ObjectHead(NamedTuple):
    size: int
    etag: str | None


class Listed(NamedTuple):
    key: str
    size: int


class _Lister(Protocol):
    def list(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> Sequence[Listed]: ...


_LIST_PAGE = 1000


def list_all(store: _Lister, prefix: str) -> list[tuple[str, int]]:
    """Every (key, size) under ``prefix``, page by page."""
    found: list[tuple[str, int]] = []
    after: str | None = None
    while True:
        page = store.list(prefix, after=after, limit=_LIST_PAGE)
        found.extend((key, size) for key, size in page)
        if len(page) < _LIST_PAGE:
            return found
        after = page[-1][0]


class Versioned(NamedTuple):
    """An object's bytes and the version token (ETag) they had, read in one request: the
    token to give ``put_if`` for a read-modify-write."""

    data: bytes
    etag: str | None


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """How a store retries a request that failed with StoreUnavailable."""

    attempts: int = limits.object_request_attempts
    backoff_base_seconds: float = limits.object_backoff_base_seconds
    backoff_max_seconds: float = limits.object_backoff_max_seconds
    request_timeout_seconds: float = limits.object_request_timeout_seconds

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise InvalidRequest(f"a retry policy needs at least 1 attempt, not {self.attempts}")
        if not 0 <= self.backoff_base_seconds <= self.backoff_max_seconds:
            raise InvalidRequest(
                "backoff needs 0 <= base <= max seconds, not "
                f"{self.backoff_base_seconds} and {self.backoff_max_seconds}"
            )
        if not self.request_timeout_seconds > 0:
            raise InvalidRequest(f"a request timeout must be positive, not {self.request_timeout_seconds}")

    def backoff_cap(self, retry: int) -> float:
        """The longest wait before retry number ``retry`` (1 for the first retry)."""
        return float(min(self.backoff_max_seconds, self.backoff_base_seconds * 2 ** (retry - 1)))


@dataclasses.dataclass(frozen=True)
class RequestCounts:
    """Requests sent by kind (every attempt counts: a retry costs a request), the bytes of
    successful PUTs and GETs, and how many attempts were retries. Subtract two snapshots
    for the requests of a run (``after - before``)."""

    puts: int = 0
    gets: int = 0
    heads: int = 0
    lists: int = 0
    deletes: int = 0
    bytes_put: int = 0
    bytes_got: int = 0
    retries: int = 0

    @property
    def requests(self) -> int:
        return self.puts + self.gets + self.heads + self.lists + self.deletes

    def by_kind(self) -> dict[str, int]:
        return {PUT: self.puts, GET: self.gets, HEAD: self.heads, LIST: self.lists, DELETE: self.deletes}

    def __sub__(self, other: RequestCounts) -> RequestCounts:
        return RequestCounts(
            **{f.name: getattr(self, f.name) - getattr(other, f.name) for f in dataclasses.fields(self)}
        )


_COUNT_FIELD = {PUT: "puts", GET: "gets", HEAD: "heads", LIST: "lists", DELETE: "deletes"}


# -- The backend seam ---------------------------------------------------------------------


class Backend(Protocol):
    """One attempt of one request against one store, paths already prefixed.

    Failures are raised translated: ObjectStoreError subclasses (StoreUnavailable with
    ``outcome_unknown`` when the request may have taken effect) or InvalidRequest; a
    taken key and a version mismatch are KeyExists and VersionMismatch."""

    @property
    def url(self) -> str:
        """The store's URL without credentials, for messages."""
        ...

    @property
    def compare_and_swap(self) -> bool: ...

    def put(
        self, path: str, data: memoryview, *, create: bool = False, expect: str | None = None
    ) -> str | None:
        """Write the object; returns its new version token when the store gives one."""
        ...

    def get(self, path: str) -> tuple[memoryview, str | None] | None: ...

    def get_range(self, path: str, start: int, end: int) -> memoryview | None: ...

    def head(self, path: str) -> ObjectHead | None: ...

    def list(self, prefix: str, after: str | None) -> Iterator[Sequence[Listed]]:
        """Chunks of (path, size) under ``prefix`` (whole path segments). A backend with
        ``sorted_listing`` gives them in byte order and only paths > ``after``; any other
        may give them in any order (SeaweedFS lists directory by directory)."""
        ...

    @property
    def sorted_listing(self) -> bool: ...

    def delete(self, path: str) -> None:
        """Remove the object; a missing one is not an error."""
        ...


# -- The store ----------------------------------------------------------------------------


class ObjectStore:
    """Keys and bytes in an object store, with retries, counters and bounded concurrency.

    Safe to share between threads: any number may call at once, and at most
    ``requests_in_flight`` requests are sent at a time. Open one with :func:`open_store`.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        prefix: str = "",
        retry: RetryPolicy | None = None,
        requests_in_flight: int = limits.object_requests_in_flight_max,
        sleep: Callable[[float], None] = time.sleep,
        seed: int | None = None,
    ) -> None:
        if requests_in_flight < 1:
            raise InvalidRequest(f"requests in flight must be at least 1, not {requests_in_flight}")
        prefix = prefix.strip("/")
        if prefix:
            _check_key(prefix, what="prefix")
        self._backend = backend
        self._prefix = prefix + "/" if prefix else ""
        self.retry = retry or RetryPolicy()
        self.requests_in_flight = requests_in_flight
        self._slots = threading.BoundedSemaphore(requests_in_flight)
        self._sleep = sleep
        self._random = random.Random(seed)
        self._lock = threading.Lock()  # the counters and the random draws
        self._counts = dict.fromkeys(dataclasses.asdict(RequestCounts()), 0)

    # -- Identity -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Where the objects are, prefix included, without credentials."""
        root = self._backend.url
        if not self._prefix:
            return root
        separator = "" if root.endswith("/") and not root.endswith("://") else "/"
        return root + separator + self._prefix.rstrip("/")

    @property
    def prefix(self) -> str:
        return self._prefix.rstrip("/")

    @property
    def supports_compare_and_swap(self) -> bool:
        """Whether ``put_if`` works here (every backend but the local directory)."""
        return self._backend.compare_and_swap

    @property
    def backend(self) -> Backend:
        return self._backend

    def __repr__(self) -> str:
        return f"ObjectStore({self.url!r})"

    def child(self, prefix: str) -> ObjectStore:
        """The store of ``prefix`` under this one's, on the same backend (a cluster's
        cells, decision 0031): a key of one is named from another by ``absolute``."""
        prefix = prefix.strip("/")
        _check_key(prefix, what="prefix")
        return self.at(self.absolute(prefix))

    def at(self, absolute_prefix: str) -> ObjectStore:
        """The store of a bucket-absolute prefix (``absolute("")`` of a store) on this
        one's backend."""
        prefix = absolute_prefix.strip("/")
        if prefix:
            _check_key(prefix, what="prefix")
        return ObjectStore(
            self._backend, prefix=prefix, retry=self.retry, requests_in_flight=self.requests_in_flight
        )

    def absolute(self, key: str) -> str:
        """``key`` of this store as a bucket-absolute key (``/<prefix>/<key>``), which any
        store on the same backend reads, writes and deletes as this one's object."""
        return key if key.startswith("/") else "/" + self._prefix + key

    def local(self, key: str) -> str:
        """A key as this store names it: relative when it is under this store's prefix,
        bucket-absolute otherwise."""
        if key.startswith("/" + self._prefix):
            rest = key[1 + len(self._prefix) :]
            if rest and not rest.startswith("/"):
                return rest
        return key

    def counts(self) -> RequestCounts:
        """A snapshot of the request counters."""
        with self._lock:
            return RequestCounts(**self._counts)

    # -- Writes -------------------------------------------------------------------------

    def put(self, key: str, data: Data) -> str | None:
        """Write the object, replacing any; returns its version token (ETag) if known."""
        path, view = self._path(key), _view(key, data)
        return self._retrying(PUT, key, lambda _maybe: self._put(path, view))

    def put_new(self, key: str, data: Data) -> bool:
        """Create the object if the key is free: True if this call wrote it, False if the key
        was taken. On every backend, the local directory included. See the module's rule
        on unknown outcomes: ``data`` must be unique to this writer."""
        path, view = self._path(key), _view(key, data)

        def attempt(maybe_written: bool) -> bool:
            try:
                self._put(path, view, create=True)
            except KeyExists:
                if not maybe_written:
                    return False
                there = self._read_back(key)
                return there is not None and there.data == view
            return True

        return self._retrying(PUT, key, attempt)

    def put_if(self, key: str, data: Data, etag: str) -> str | None:
        """Replace the object only if its version token is still ``etag`` (from ``head``,
        ``get_versioned`` or an earlier put): the new token, or None if the object changed
        or vanished. Raises StoreUnsupported where the backend cannot compare-and-swap
        (the local directory): check ``supports_compare_and_swap``."""
        path, view = self._path(key), _view(key, data)
        if not self._backend.compare_and_swap:
            raise StoreUnsupported(
                "compare-and-swap (put_if) is not supported by this backend; use put_new"
            ).located(PUT, key, self.url)

        def attempt(maybe_written: bool) -> str | None:
            try:
                token = self._put(path, view, expect=etag)
            except VersionMismatch:
                if not maybe_written:
                    return None
                there = self._read_back(key)
                return there.etag if there is not None and there.data == view else None
            if token is None:
                head = self.head(key)
                token = head.etag if head is not None else None
            return token

        return self._retrying(PUT, key, attempt)

    def delete(self, key: str) -> None:
        """Remove the object; a missing one is fine."""
        path = self._path(key)
        self._retrying(DELETE, key, lambda _maybe: self._request(DELETE, lambda: self._backend.delete(path)))

    # -- Reads --------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None if there is none (one copy out of obstore's buffer;
        ``get_buffer`` avoids it)."""
        view = self.get_buffer(key)
        return None if view is None else view.tobytes()

    def get_buffer(self, key: str) -> memoryview | None:
        """The object's bytes as a read-only view of obstore's buffer (no copy)."""
        found = self._get(key)
        return None if found is None else found[0]

    def get_versioned(self, key: str) -> Versioned | None:
        """The object's bytes and version token, read by one GET."""
        found = self._get(key)
        return None if found is None else Versioned(found[0].tobytes(), found[1])

    def get_range(self, key: str, start: int, end: int) -> bytes | None:
        """Bytes ``[start, end)`` of the object (fewer if it ends before ``end``), or None if
        there is none. An empty range answers b"" without a request; a range starting at
        or past the object's end is an InvalidRequest."""
        path = self._path(key)
        if not 0 <= start <= end:
            raise InvalidRequest(f"byte range [{start}, {end}) of {key!r}: need 0 <= start <= end")
        if start == end:
            return b""

        def attempt(_maybe: bool) -> bytes | None:
            view = self._request(GET, lambda: self._backend.get_range(path, start, end))
            if view is None:
                return None
            self._add("bytes_got", len(view))
            return view.tobytes()

        return self._retrying(GET, key, attempt)

    def head(self, key: str) -> ObjectHead | None:
        """The object's size and version token, or None if there is none."""
        path = self._path(key)
        return self._retrying(HEAD, key, lambda _maybe: self._request(HEAD, lambda: self._backend.head(path)))

    def list(self, prefix: str = "", *, after: str | None = None, limit: int | None = None) -> list[Listed]:
        """(key, size) of the objects under ``prefix``, sorted by key. ``prefix`` is whole
        path segments ("wal" and "wal/" both mean the directory wal/; "" is everything).
        ``after`` skips keys up to and including it. Without ``limit`` a listing longer than
        ``object_list_keys_max`` is refused; with one, at most ``limit`` keys come back, and
        a full page means "continue with after=<last key>"."""
        prefix = prefix.strip("/")
        if prefix:
            _check_key(prefix, what="prefix")
        if after is not None:
            _check_key(after)
        cap = limits.object_list_keys_max if limit is None else limit
        if not 0 < cap <= limits.object_list_keys_max:
            raise InvalidRequest(
                f"a listing's limit must be within 1..{limits.object_list_keys_max}, not {cap}"
            )
        path = self._prefix + prefix
        start = None if after is None else self._prefix + after
        found = self._retrying(LIST, prefix, lambda _maybe: self._list(path, start, cap + 1))
        if len(found) > cap and limit is None:
            raise RequestTooLarge(
                f"more than {cap} objects under {prefix!r} on {self.url}: list them in pages "
                "(limit= and after=)"
            )
        cut = len(self._prefix)
        return [Listed(item.key[cut:], item.size) for item in found[:cap]]

    # -- Internals ----------------------------------------------------------------------

    def _path(self, key: str) -> str:
        if key.startswith("/"):  # bucket-absolute: another prefix of the same backend
            _check_key(key[1:])
            path = key[1:]
        else:
            _check_key(key)
            path = self._prefix + key
        if len(path.encode()) > limits.object_key_bytes_max:
            raise InvalidRequest(
                f"object key {key!r} is longer than {limits.object_key_bytes_max} bytes with its prefix"
            )
        return path

    def _put(
        self, path: str, view: memoryview, *, create: bool = False, expect: str | None = None
    ) -> str | None:
        token = self._request(PUT, lambda: self._backend.put(path, view, create=create, expect=expect))
        self._add("bytes_put", len(view))
        return token

    def _read_back(self, key: str) -> Versioned | None:
        """What is at ``key`` now, after a write of unknown outcome found it taken."""
        try:
            return self.get_versioned(key)
        except ObjectStoreError as exc:
            raise StoreUnavailable(
                "the key was taken after an attempt of unknown outcome, and reading it back "
                f"to see whose object it is failed: {exc.reason}"
            ).located(PUT, key, self.url, outcome_unknown=True) from exc

    def _get(self, key: str) -> tuple[memoryview, str | None] | None:
        path = self._path(key)

        def attempt(_maybe: bool) -> tuple[memoryview, str | None] | None:
            found = self._request(GET, lambda: self._backend.get(path))
            if found is not None:
                self._add("bytes_got", len(found[0]))
            return found

        return self._retrying(GET, key, attempt)

    def _list(self, path: str, after: str | None, wanted: int) -> builtins.list[Listed]:
        scanned = 0

        def counted(chunks: Iterable[Sequence[Listed]]) -> Iterator[Listed]:
            nonlocal scanned
            for chunk in chunks:
                scanned += len(chunk)
                yield from chunk

        try:
            with self._slots:
                if self._backend.sorted_listing:
                    found = builtins.list(itertools.islice(counted(self._backend.list(path, after)), wanted))
                else:  # any order (S3-compatible servers differ): read it all, keep the first
                    items = counted(self._backend.list(path, None))
                    if after is not None:
                        items = (item for item in items if item.key > after)
                    found = heapq.nsmallest(wanted, items)
        finally:  # counted as S3 bills it: a request per page of keys read
            self._add("lists", max(1, -(-scanned // limits.object_list_page_keys)))
        return found

    def _request(self, kind: str, call: Callable[[], T]) -> T:
        """One attempt: holds a slot of the requests in flight and counts the request."""
        with self._slots:
            self._add(_COUNT_FIELD[kind], 1)
            return call()

    def _retrying(self, operation: str, key: str, attempt: Callable[[bool], T]) -> T:
        """Run ``attempt`` until it returns, retrying StoreUnavailable with backoff. The
        attempt is told whether an earlier one may have taken effect (the unknown-outcome
        rule); every other error is raised at once, told where it happened."""
        maybe_written = False
        for number in range(1, self.retry.attempts + 1):
            try:
                return attempt(maybe_written)
            except ObjectStoreError as exc:
                if exc.operation:  # already told where (a nested call's final error): as is
                    raise
                retry = isinstance(exc, StoreUnavailable)
                maybe_written = maybe_written or (retry and exc.outcome_unknown)
                if not retry or number == self.retry.attempts:
                    raise exc.located(
                        operation, key, self.url, attempts=number, outcome_unknown=maybe_written
                    ) from exc
            except InvalidRequest as exc:
                raise InvalidRequest(f"{operation} {key!r} on {self.url}: {exc.message}") from exc
            self._add("retries", 1)
            self._sleep(self._backoff(number))
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _backoff(self, retry: int) -> float:
        """Full jitter: a uniform draw below the exponential cap (AWS's recommendation)."""
        with self._lock:
            return self._random.uniform(0.0, self.retry.backoff_cap(retry))

    def _add(self, counter: str, amount: int) -> None:
        with self._lock:
            self._counts[counter] += amount


def _check_key(key: str, *, what: str = "object key") -> None:
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise InvalidRequest(
            f"{what} {key!r} is not a key: segments of letters, digits and !_.*'()=+,@~%- "
            "joined by '/' (escape other characters as %XX)"
        )
    if any(segment in (".", "..") for segment in key.split("/")):
        raise InvalidRequest(f"{what} {key!r} has a '.' or '..' segment")


def _view(key: str, data: Data) -> memoryview:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidRequest(
            f"the data of {key!r} must be bytes, bytearray or memoryview, not {type(data).__name__}"
        )
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if len(view) > limits.object_put_bytes_max:
        raise RequestTooLarge(
            f"object {key!r} is {len(view)} bytes, over the {limits.object_put_bytes_max} of one PUT"
        )
    return view


def open_store(
    url: str,
    *,
    options: Mapping[str, str | bool] | None = None,
    retry: RetryPolicy | None = None,
    requests_in_flight: int = limits.object_requests_in_flight_max,
    instance_credentials: bool = False,
) -> ObjectStore:
    """Open the store at ``url``: ``s3://bucket/prefix``, ``gs://bucket/prefix``,
    ``az://container/prefix``, ``file:///dir`` or ``memory://[name][/prefix]``.

    Credentials and endpoints come from the usual environment variables (obstore reads
    them: AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    AWS_ALLOW_HTTP; GOOGLE_*; AZURE_STORAGE_*) and from ``options`` (obstore's
    configuration keys, e.g. ``endpoint``, ``access_key_id``, ``allow_http``), which win.
    An S3 store needs credentials from one of those, or ``instance_credentials=True`` to
    take them from the machine's metadata service. ``memory://`` is a fresh in-memory
    store; ``memory://NAME`` is the process-wide one of that name (agents of one process
    share it in tests)."""
    from odradek.storage.objectbackends import open_backend

    backend, prefix = open_backend(
        url,
        options=dict(options or {}),
        retry=retry or RetryPolicy(),
        instance_credentials=instance_credentials,
    )
    return ObjectStore(backend, prefix=prefix, retry=retry, requests_in_flight=requests_in_flight)
