"""Backends of the object-store client: one attempt of one request through obstore, URLs
and credentials, and the translation of what a store answered, in one place.

obstore's own retries are turned off (``max_retries=0``): the ObjectStore above decides
what to retry and counts every attempt. What obstore raises is mapped here:

* ``FileNotFoundError`` is an absent object (None), except S3's ``NoSuchBucket``, which
  is a StoreRefused: a missing bucket must not look like an empty one.
* ``AlreadyExistsError`` is a taken key (KeyExists), except S3's 409
  ``ConditionalRequestConflict`` (a concurrent conditional write: nothing was written,
  retry); ``PreconditionError`` is a version mismatch.
* An HTTP status: 408, 409, 429 and 5xx are StoreUnavailable (a write's outcome is
  unknown, except after 409, 429 and 503, which S3 sends before doing anything); 416 is
  an InvalidRequest (the range); other 4xx are StoreRefused.
* No status: a connection refused is StoreUnavailable (nothing was sent); a timeout or a
  broken connection is StoreUnavailable with an unknown outcome for writes; an OS error
  of the local directory is StoreRefused for permissions and for a key that is both an
  object and a directory ("a" and "a/b": S3 allows it, a file system does not),
  StoreUnavailable otherwise (a full disk).
* Failing to get credentials from the machine's metadata service is StoreRefused.

The local directory (``file://``) fsyncs each object it writes and its directories up to
the store's root before a put returns, as the engine does for its own files: obstore's
local store renames into place without syncing, and an acknowledged write must survive a
power cut.
"""

from __future__ import annotations

import datetime
import errno
import os
import re
import threading
import urllib.parse
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import obstore
from obstore import exceptions as obstore_errors
from obstore.store import AzureStore, GCSStore, LocalStore, MemoryStore, S3Store

from odradek.errors import InvalidRequest, OdradekError
from odradek.storage.objects import (
    KeyExists,
    Listed,
    ObjectHead,
    RetryPolicy,
    StoreRefused,
    StoreUnavailable,
    StoreUnsupported,
    VersionMismatch,
)

if TYPE_CHECKING:
    from obstore.store import ObjectStore as RawStore

SCHEMES = ("s3", "gs", "az", "file", "memory")
# Options that configure obstore's HTTP client rather than the store.
_CLIENT_OPTIONS = frozenset(
    {
        "allow_http",
        "allow_invalid_certificates",
        "connect_timeout",
        "default_content_type",
        "http1_only",
        "http2_only",
        "pool_idle_timeout",
        "pool_max_idle_per_host",
        "proxy_url",
        "proxy_ca_certificate",
        "proxy_excludes",
        "root_certificate",
        "user_agent",
    }
)
# How object_store reads a boolean setting.
_TRUE = frozenset({"true", "1", "on", "yes", "y"})
_METADATA_HOST = "169.254.169.254"
_REASON_CHARS_MAX = 300

_STATUS = re.compile(r"status code: (\d{3})")
_OS_ERROR = re.compile(r"os error (\d+)")
_HTTP_KIND = re.compile(r"HttpError \{\s*kind: (\w+)")


# -- Translation --------------------------------------------------------------------------


def reason_of(exc: BaseException) -> str:
    """The first line of obstore's message (the rest is a Rust debug dump)."""
    text = str(exc).strip().split("\n", 1)[0] or type(exc).__name__
    return text if len(text) <= _REASON_CHARS_MAX else text[: _REASON_CHARS_MAX - 3] + "..."


def translate(exc: Exception, *, write: bool) -> OdradekError:
    """What obstore raised, as an Odradek error: see the module's docstring."""
    if isinstance(exc, OdradekError):
        return exc
    text, reason = str(exc), reason_of(exc)
    if isinstance(exc, obstore_errors.PermissionDeniedError | obstore_errors.UnauthenticatedError):
        return StoreRefused(f"access denied: {reason}")
    if isinstance(exc, obstore_errors.NotSupportedError | NotImplementedError):
        return StoreUnsupported(reason)
    if isinstance(exc, obstore_errors.UnknownConfigurationKeyError | obstore_errors.InvalidPathError):
        return InvalidRequest(reason)
    if _METADATA_HOST in text:
        return StoreRefused(
            "no credentials: none were configured and the machine's metadata service did not "
            f"provide any ({reason})"
        )
    status = _STATUS.search(text)
    if status is not None:
        code = int(status.group(1))
        if code in (408, 409, 429) or code >= 500:
            return StoreUnavailable(reason, outcome_unknown=write and code not in (409, 429, 503))
        if code == 416:
            return InvalidRequest(f"the byte range starts at or past the end of the object ({reason})")
        if "NoSuchBucket" in text:
            return StoreRefused(f"the bucket does not exist ({reason})")
        return StoreRefused(reason)
    number = exc.errno if isinstance(exc, OSError) and exc.errno else None
    if number is None and (found := _OS_ERROR.search(text)) is not None:
        number = int(found.group(1))
    if number in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StoreRefused(reason)
    if number in (errno.ENOTDIR, errno.EISDIR):
        return StoreRefused(
            f"{reason}: in a directory store a key cannot be both an object and the prefix of others"
        )
    if number is not None:
        return StoreUnavailable(reason, outcome_unknown=write)
    kind = _HTTP_KIND.search(text)
    if kind is not None:
        name = kind.group(1)
        return StoreUnavailable(f"{reason} ({name.lower()})", outcome_unknown=write and name != "Connect")
    if isinstance(exc, ValueError):
        return InvalidRequest(reason)
    return StoreUnavailable(reason, outcome_unknown=write)


def _no_bucket(exc: Exception) -> bool:
    return "NoSuchBucket" in str(exc)


# -- Backends -----------------------------------------------------------------------------


class ObstoreBackend:
    """One attempt of one request on an obstore store (see objects.Backend)."""

    def __init__(
        self,
        store: RawStore,
        url: str,
        *,
        compare_and_swap: bool = True,
        sorted_listing: bool = False,
        version_field: str = "e_tag",
    ) -> None:
        self._store = store
        self._url = url
        self._compare_and_swap = compare_and_swap
        self._sorted_listing = sorted_listing
        # The field of obstore's metadata that versions an object for a conditional put:
        # the ETag, except on GCS, whose If-Match is on the generation ("version").
        self._version_field = version_field

    @property
    def url(self) -> str:
        return self._url

    @property
    def compare_and_swap(self) -> bool:
        return self._compare_and_swap

    @property
    def sorted_listing(self) -> bool:
        return self._sorted_listing

    def put(
        self, path: str, data: memoryview, *, create: bool = False, expect: str | None = None
    ) -> str | None:
        mode: Any = "create" if create else "overwrite" if expect is None else {self._version_field: expect}
        try:
            result = obstore.put(self._store, path, data, mode=mode, use_multipart=False)
        except obstore_errors.AlreadyExistsError as exc:
            if "ConditionalRequestConflict" in str(exc):
                raise StoreUnavailable(
                    f"a concurrent conditional write conflicted: {reason_of(exc)}"
                ) from exc
            raise KeyExists(path) from exc
        except obstore_errors.PreconditionError as exc:
            raise (KeyExists(path) if create else VersionMismatch(path)) from exc
        except FileNotFoundError as exc:
            if expect is not None and not _no_bucket(exc):
                raise VersionMismatch(path) from exc  # compare-and-swap on a vanished object
            raise translate(exc, write=True) from exc
        except Exception as exc:
            raise translate(exc, write=True) from exc
        token = result.get(self._version_field)
        return None if token is None else str(token)

    def get(self, path: str) -> tuple[memoryview, str | None] | None:
        try:
            result = obstore.get(self._store, path)
            data = result.bytes()
            token = result.meta.get(self._version_field)
        except FileNotFoundError as exc:
            if _no_bucket(exc):
                raise translate(exc, write=False) from exc
            return None
        except Exception as exc:
            raise translate(exc, write=False) from exc
        return memoryview(data), None if token is None else str(token)

    def get_range(self, path: str, start: int, end: int) -> memoryview | None:
        try:
            data = obstore.get_range(self._store, path, start=start, end=end)
        except FileNotFoundError as exc:
            if _no_bucket(exc):
                raise translate(exc, write=False) from exc
            return None
        except Exception as exc:
            error = translate(exc, write=False)
            if "range" in reason_of(exc).lower() and isinstance(error, StoreUnavailable):
                error = InvalidRequest(
                    f"the byte range starts at or past the end of the object ({reason_of(exc)})"
                )
            raise error from exc
        return memoryview(data)

    def head(self, path: str) -> ObjectHead | None:
        try:
            meta = obstore.head(self._store, path)
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise translate(exc, write=False) from exc
        token = meta.get(self._version_field)
        return ObjectHead(int(meta["size"]), None if token is None else str(token))

    def list(self, prefix: str, after: str | None) -> Iterator[Sequence[Listed]]:
        try:
            stream = obstore.list(self._store, prefix or None, offset=after, chunk_size=1000)
            for chunk in stream:
                yield [Listed(meta["path"], int(meta["size"])) for meta in chunk]
        except FileNotFoundError as exc:
            if _no_bucket(exc):
                raise translate(exc, write=False) from exc
            return  # the local directory's root (or the prefix's) does not exist yet
        except Exception as exc:
            raise translate(exc, write=False) from exc

    def delete(self, path: str) -> None:
        try:
            obstore.delete(self._store, path)
        except FileNotFoundError as exc:
            if _no_bucket(exc):
                raise translate(exc, write=True) from exc
        except Exception as exc:
            raise translate(exc, write=True) from exc


class LocalBackend(ObstoreBackend):
    """A directory: create-if-absent (a hard link that fails if the name exists), no
    compare-and-swap, listings in directory order, and an fsync of every object written
    and of its directories before the put returns."""

    def __init__(self, root: str) -> None:
        self.root = root
        store = LocalStore(root, mkdir=True)
        super().__init__(store, f"file://{root}", compare_and_swap=False)

    def put(
        self, path: str, data: memoryview, *, create: bool = False, expect: str | None = None
    ) -> str | None:
        token = super().put(path, data, create=create, expect=expect)
        try:
            self._sync(path)
        except OSError as exc:
            raise translate(exc, write=True) from exc
        return token

    def _sync(self, path: str) -> None:
        target = os.path.join(self.root, *path.split("/"))
        fd = os.open(target, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        # Each directory on the way may have been created by this put: sync its entry.
        directory = os.path.dirname(target)
        while True:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            if os.path.samefile(directory, self.root):
                break
            directory = os.path.dirname(directory)


# -- URLs ---------------------------------------------------------------------------------

_memory_lock = threading.Lock()
_memory_stores: dict[str, MemoryStore] = {}


def forget_memory_store(name: str) -> None:
    """Drop the process-wide memory store ``memory://NAME`` (tests free their memory)."""
    with _memory_lock:
        _memory_stores.pop(name, None)


def open_backend(
    url: str, *, options: dict[str, str | bool], retry: RetryPolicy, instance_credentials: bool
) -> tuple[ObstoreBackend, str]:
    """The backend for ``url`` and the key prefix inside it (see objects.open_store)."""
    if not isinstance(url, str):
        raise InvalidRequest(f"a store URL must be a string, not {type(url).__name__}")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise InvalidRequest(
            f"unsupported store URL {url!r}: use s3://bucket/prefix, gs://bucket/prefix, "
            "az://container/prefix, file:///dir or memory://"
        )
    if parts.query or parts.fragment:
        raise InvalidRequest(f"store URL {url!r}: no query or fragment allowed; give settings as options")
    if parts.username is not None or parts.password is not None or _has_port(parts):
        raise InvalidRequest(
            f"store URL {url!r}: no credentials or port in the URL; use the environment "
            "variables or options (an S3 endpoint: AWS_ENDPOINT_URL)"
        )
    prefix = urllib.parse.unquote(parts.path).strip("/")
    if scheme == "memory":
        if options:
            raise InvalidRequest(f"a memory store takes no options, got {sorted(options)}")
        return _memory(parts.netloc), prefix
    if scheme == "file":
        return _local(url, parts), ""
    if not parts.netloc:
        raise InvalidRequest(f"store URL {url!r} names no {'container' if scheme == 'az' else 'bucket'}")
    config = {key: value for key, value in options.items() if key not in _CLIENT_OPTIONS}
    client: dict[str, Any] = {key: value for key, value in options.items() if key in _CLIENT_OPTIONS}
    # Given client options replace those obstore would read from the environment
    # (AWS_ALLOW_HTTP...): carry the environment's over, the options winning.
    variable_prefix = {"s3": "AWS_", "gs": "GOOGLE_", "az": "AZURE_"}[scheme]
    for key in _CLIENT_OPTIONS:
        value = os.environ.get(variable_prefix + key.upper())
        if value is not None and key not in client:
            client[key] = value
    timeout = datetime.timedelta(seconds=retry.request_timeout_seconds)
    client.setdefault("timeout", timeout)
    client.setdefault("connect_timeout", min(timeout, datetime.timedelta(seconds=5)))
    no_retries: Any = {"max_retries": 0}
    bucket = parts.netloc

    def build() -> RawStore:
        if scheme == "s3":
            return S3Store(bucket, config=config, client_options=client, retry_config=no_retries)  # type: ignore[arg-type]
        if scheme == "gs":
            return GCSStore(bucket, config=config, client_options=client, retry_config=no_retries)  # type: ignore[arg-type]
        return AzureStore(bucket, config=config, client_options=client, retry_config=no_retries)  # type: ignore[arg-type]

    if scheme == "s3":
        _check_s3(url, options, instance_credentials)
    elif scheme == "az":
        _check_azure(url, options)
    try:
        store = build()
    except Exception as exc:
        raise InvalidRequest(f"store URL {url!r}: {reason_of(exc)}") from exc
    # GCS makes a conditional put on the object's generation, not its ETag.
    version_field = "version" if scheme == "gs" else "e_tag"
    return ObstoreBackend(store, f"{scheme}://{bucket}", version_field=version_field), prefix


def _has_port(parts: urllib.parse.SplitResult) -> bool:
    try:
        return parts.port is not None
    except ValueError:
        return True


def _memory(name: str) -> ObstoreBackend:
    if not name:
        return ObstoreBackend(MemoryStore(), "memory://", sorted_listing=True)
    with _memory_lock:
        store = _memory_stores.get(name)
        if store is None:
            store = _memory_stores[name] = MemoryStore()
    # obstore's memory store keeps its objects in a B-tree: listed in byte order.
    return ObstoreBackend(store, f"memory://{name}", sorted_listing=True)


def _local(url: str, parts: urllib.parse.SplitResult) -> LocalBackend:
    if parts.netloc not in ("", "localhost"):
        raise InvalidRequest(f"store URL {url!r}: a directory is file:///absolute/path (three slashes)")
    root = urllib.parse.unquote(parts.path)
    if not root.startswith("/") or root == "/":
        raise InvalidRequest(f"store URL {url!r}: a directory is file:///absolute/path, not the root")
    root = os.path.normpath(root)
    try:
        os.makedirs(root, exist_ok=True)
        return LocalBackend(os.path.realpath(root))
    except (OSError, obstore_errors.BaseError) as exc:
        raise InvalidRequest(f"store URL {url!r}: cannot use the directory: {reason_of(exc)}") from exc


def _setting(options: dict[str, str | bool], names: tuple[str, ...], variables: tuple[str, ...]) -> str:
    """An option (obstore's name, or with its aws_/azure_ prefix), else an environment
    variable, as a string ("" if neither is set)."""
    for name in names:
        if name in options:
            return str(options[name])
    for variable in variables:
        if os.environ.get(variable):
            return os.environ[variable]
    return ""


def _check_s3(url: str, options: dict[str, str | bool], instance_credentials: bool) -> None:
    endpoint = _setting(
        options,
        ("endpoint", "aws_endpoint", "aws_endpoint_url"),
        ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"),
    )
    allow_http = _setting(options, ("allow_http", "aws_allow_http"), ("AWS_ALLOW_HTTP",))
    if endpoint.lower().startswith("http://") and allow_http.lower() not in _TRUE:
        raise InvalidRequest(
            f"store URL {url!r}: the endpoint {endpoint} is plain HTTP; set AWS_ALLOW_HTTP=true "
            "(or the option allow_http) to allow it"
        )
    key_id = _setting(options, ("access_key_id", "aws_access_key_id"), ("AWS_ACCESS_KEY_ID",))
    secret = _setting(options, ("secret_access_key", "aws_secret_access_key"), ("AWS_SECRET_ACCESS_KEY",))
    if bool(key_id) != bool(secret):
        raise InvalidRequest(
            f"store URL {url!r}: an access key id without its secret (or the other way round); "
            "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        )
    other_sources = (
        _setting(options, ("skip_signature", "aws_skip_signature"), ("AWS_SKIP_SIGNATURE",)).lower() in _TRUE
        or _setting(
            options,
            (),
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            ),
        )
        != ""
    )
    if not (key_id or other_sources or instance_credentials):
        raise InvalidRequest(
            f"store URL {url!r}: no S3 credentials; set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or AWS_WEB_IDENTITY_TOKEN_FILE, AWS_CONTAINER_CREDENTIALS_*, "
            "AWS_SKIP_SIGNATURE=true for a public bucket), or allow the machine's instance "
            "credentials"
        )


def _check_azure(url: str, options: dict[str, str | bool]) -> None:
    account = _setting(
        options, ("account_name", "azure_storage_account_name"), ("AZURE_STORAGE_ACCOUNT_NAME",)
    )
    if not account:
        raise InvalidRequest(
            f"store URL {url!r}: no storage account; set AZURE_STORAGE_ACCOUNT_NAME "
            "(or the option account_name)"
        )
