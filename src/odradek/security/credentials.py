"""The credential store: users (salted SCRAM credentials) and API tokens (hashed).

Stored as one checksummed JSON document behind the storage seam: in the data directory
(``<data dir>/security/credentials.json``, storage/documents.py, in two copies), or,
for a server whose data is in an object store and for the agents of a cluster, which
share it, as the object ``security/credentials.json`` of that store (the same format,
replaced by compare-and-swap where the store has it)::

    {"version": 1,
     "users": {NAME: {"tenant": T | null, "admin": bool, "created": SECONDS,
                      "scram": {"SCRAM-SHA-256": {salt, iterations, stored_key, server_key}, ...}}},
     "tokens": {ID: {"user": NAME, "hash": SHA-256 HEX, "created": SECONDS, "expires": SECONDS | null}},
     "tenants": {NAME: {"created": SECONDS}}}

Rules
-----
* No secret is stored: a password becomes SCRAM credentials (SHA-256 and SHA-512, so
  a Kafka client may use either mechanism, and PLAIN is checked against them); a token
  ``odr_<id>_<secret>`` is stored as the SHA-256 of its secret (a random 256-bit
  secret needs no salt) and shown once, when it is made.
* A change is made on a copy of the state, saved, and only then published: a refused
  or failed save changes nothing. One lock serializes changes; reads take the
  published state without a lock.
* Shared by agents (an object store, or in a cluster the key
  ``/odradek/<cluster>/security/credentials.json`` of its etcd, cluster/documents.py):
  each change first reads the latest version and is written only if nobody wrote since
  (compare-and-swap; a loser is told to retry); every agent reads it again every
  ``limits.security_refresh_seconds``, when a credential is not found (at most every
  ``limits.security_refresh_seconds_min``) and, in etcd, as soon as its watch says the
  key changed, so a new user works at once anywhere and a revocation reaches every agent
  at once (within seconds from an object store).
* A token belongs to a user: it authenticates as that user (tenant and admin flag as
  the user has them at the time); removing the user revokes its tokens.
* Tenants (decision 0028) live here too, so that a user's tenant and the tenant itself
  change together: a user is added to an existing tenant only, and a tenant is deleted
  only once no user belongs to it (and, through a door, no topic is left in it).
* ``repr`` and errors never show a password, a token or a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from odradek import limits
from odradek.errors import InvalidRequest, StorageError
from odradek.security.passwords import MECHANISMS, ScramCredential, make_credential
from odradek.security.principal import Principal
from odradek.security.tenants import check_tenant_name
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.documents import Document, decode, encode

if TYPE_CHECKING:
    from odradek.storage.objects import ObjectStore

log = logging.getLogger("odradek.security")

DOCUMENT = "security/credentials.json"
TOKEN_PREFIX = "odr_"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]+$")
_TOKEN = re.compile(r"^odr_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")


def check_name(name: object, what: str = "user name") -> str:
    if not isinstance(name, str) or not _NAME.match(name) or len(name) > limits.security_name_chars_max:
        raise InvalidRequest(
            f"a {what} is 1 to {limits.security_name_chars_max} characters of letters, digits, "
            f"'_', '.', '@' and '-', got {str(name)[:64]!r}"
        )
    return name


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    tenant: str | None
    admin: bool
    created: float
    credentials: dict[str, ScramCredential] = dataclasses.field(repr=False)

    def principal(self, mechanism: str) -> Principal:
        return Principal(self.name, self.tenant, self.admin, mechanism)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "tenant": self.tenant,
            "admin": self.admin,
            "created": self.created,
            "mechanisms": sorted(self.credentials),
        }


@dataclasses.dataclass(frozen=True)
class Token:
    id: str
    user: str
    hash: str = dataclasses.field(repr=False)
    created: float
    expires: float | None

    def expired(self, now: float) -> bool:
        return self.expires is not None and now >= self.expires

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "created": self.created, "expires": self.expires}


@dataclasses.dataclass(frozen=True)
class _State:
    users: dict[str, User]
    tokens: dict[str, Token]
    tenants: dict[str, float] = dataclasses.field(default_factory=dict)  # name -> created

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "users": {
                user.name: {
                    "tenant": user.tenant,
                    "admin": user.admin,
                    "created": user.created,
                    "scram": {name: credential.to_json() for name, credential in user.credentials.items()},
                }
                for user in self.users.values()
            },
            "tokens": {
                token.id: {
                    "user": token.user,
                    "hash": token.hash,
                    "created": token.created,
                    "expires": token.expires,
                }
                for token in self.tokens.values()
            },
            "tenants": {name: {"created": created} for name, created in self.tenants.items()},
        }

    @classmethod
    def from_json(cls, data: Any, path: str) -> _State:
        try:
            users = {
                name: User(
                    name,
                    entry.get("tenant"),
                    bool(entry.get("admin", False)),
                    float(entry.get("created", 0.0)),
                    {
                        mechanism: ScramCredential.from_json(mechanism, credential)
                        for mechanism, credential in entry["scram"].items()
                        if mechanism in MECHANISMS
                    },
                )
                for name, entry in data.get("users", {}).items()
            }
            tokens = {
                token_id: Token(
                    token_id,
                    entry["user"],
                    entry["hash"],
                    float(entry["created"]),
                    None if entry.get("expires") is None else float(entry["expires"]),
                )
                for token_id, entry in data.get("tokens", {}).items()
            }
            tenants = {name: float(entry["created"]) for name, entry in data.get("tenants", {}).items()}
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"{path} is not a credential store ({type(exc).__name__}: {exc})") from None
        return cls(users, tokens, tenants)


class _Persistence(Protocol):
    path: str

    def load(self) -> Any | None: ...

    def save(self, data: Any) -> None: ...

    def changed(self) -> bool: ...


class _InDataDirectory:
    """The document in a data directory: one writer (the server, or the command line
    while it is stopped)."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.path = document.path

    def load(self) -> Any | None:
        try:
            return self.document.load()
        except OSError as exc:
            raise StorageError(f"cannot read {self.path}: {describe_os_error(exc)}") from exc

    def save(self, data: Any) -> None:
        try:
            self.document.save(data)
        except OSError as exc:
            raise StorageError(f"could not write {self.path}: {describe_os_error(exc)}") from exc

    def changed(self) -> bool:
        return False


class _InObjectStore:
    """The document as an object of a store that agents share."""

    def __init__(self, store: ObjectStore, key: str = DOCUMENT) -> None:
        self.store = store
        self.key = key
        self.path = f"{store.url.rstrip('/')}/{key}"
        self._etag: str | None = None
        self._generation = 0

    def load(self) -> Any | None:
        found = self.store.get_versioned(self.key)
        if found is None:
            self._etag, self._generation = None, 0
            return None
        try:
            data, generation = decode(found.data)
        except ValueError as exc:
            raise StorageError(f"{self.path} is damaged: {exc}") from None
        self._etag, self._generation = found.etag, generation
        return data

    def save(self, data: Any) -> None:
        raw = encode(data, self._generation + 1)
        if self._etag is None:
            if not self.store.put_new(self.key, raw):
                raise StorageError(f"{self.path} was written by another agent meanwhile; retry")
            head = self.store.head(self.key)
            token = head.etag if head is not None else None
        elif self.store.supports_compare_and_swap:
            token = self.store.put_if(self.key, raw, self._etag)
            if token is None:
                raise StorageError(f"{self.path} was changed by another agent meanwhile; retry")
        else:  # a directory store: no compare-and-swap (one server writes it)
            token = self.store.put(self.key, raw)
        self._etag, self._generation = token, self._generation + 1

    def changed(self) -> bool:
        head = self.store.head(self.key)
        return (head.etag if head is not None else None) != self._etag or (
            head is not None and head.etag is None
        )


class CredentialStore:
    """Users and tokens of one server (see the module docstring). Thread-safe."""

    def __init__(self, document: Document | _Persistence) -> None:
        self._persistence: _Persistence = (
            _InDataDirectory(document) if isinstance(document, Document) else document
        )
        self._lock = threading.Lock()
        self._refreshed = float("-inf")  # when refresh last asked the store
        self._state = self._read()
        # Bumped by every change published or read again: a long-lived stream checks its
        # principal again when it moved (security/revalidation.py).
        self.generation = 0

    def _read(self) -> _State:
        data = self._persistence.load()
        return _State({}, {}) if data is None else _State.from_json(data, self._persistence.path)

    @classmethod
    def in_object_store(cls, store: ObjectStore) -> CredentialStore:
        """The store kept as an object of ``store`` (shared by a cluster's agents)."""
        return cls(_InObjectStore(store))

    def refresh(self, *, soon: bool = False) -> bool:
        """Read the document again if another writer changed it (an agent of a cluster);
        ``soon``: at most every ``limits.security_refresh_seconds_min`` (a credential
        that was not found). True if it changed."""
        now = time.monotonic()
        if soon and now - self._refreshed < limits.security_refresh_seconds_min:
            return False
        self._refreshed = now
        with self._lock:
            if not self._persistence.changed():
                return False
            self._state = self._read()
            self.generation += 1
        return True

    def refresh_every(self, seconds: float | None = None) -> threading.Event:
        """Refresh on a daemon thread every ``seconds`` (default
        ``limits.security_refresh_seconds``), and at once when etcd says the document
        changed (cluster/documents.py), until the returned event is set (for stores that
        agents share; a failed read is logged and tried again)."""
        return refresh_thread(
            self.refresh,
            seconds,
            "odradek-credentials",
            "the credential store",
            wake=getattr(self._persistence, "wake", None),
        )

    @classmethod
    def open(cls, data_dir: str, disk: Disk = LOCAL, *, sync: bool = True) -> CredentialStore:
        """The store of the data directory ``data_dir`` (empty if it has none yet)."""
        return cls(document_in(data_dir, DOCUMENT, disk, sync=sync))

    def __repr__(self) -> str:
        state = self._state
        return f"CredentialStore(users={len(state.users)}, tokens={len(state.tokens)})"

    # -- reading ----------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        return self._state.users.get(name)

    def users(self) -> list[User]:
        return sorted(self._state.users.values(), key=lambda user: user.name)

    def tokens(self, user: str | None = None) -> list[Token]:
        tokens = self._state.tokens.values()
        return sorted(
            (t for t in tokens if user is None or t.user == user), key=lambda t: (t.user, t.created)
        )

    @property
    def empty(self) -> bool:
        return not self._state.users

    def token_user(self, token: str, now: float | None = None) -> tuple[User, Token] | None:
        """The user a token authenticates and the token; None if it is not a live token
        of this store (malformed, unknown, revoked, expired or of a removed user)."""
        match = _TOKEN.match(token) if isinstance(token, str) else None
        if match is None:
            return None
        state = self._state
        entry = state.tokens.get(match.group(1))
        if entry is None:
            return None
        digest = hashlib.sha256(match.group(2).encode()).hexdigest()
        if not hmac.compare_digest(digest, entry.hash):
            return None
        if entry.expired(time.time() if now is None else now):
            return None
        user = state.users.get(entry.user)
        return None if user is None else (user, entry)

    def token_expired(self, token: str, now: float | None = None) -> bool:
        """Whether ``token`` is a token of this store that expired (to say so in a refusal)."""
        match = _TOKEN.match(token) if isinstance(token, str) else None
        entry = self._state.tokens.get(match.group(1)) if match is not None else None
        return entry is not None and entry.expired(time.time() if now is None else now)

    # -- changing ---------------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        password: str,
        *,
        tenant: str | None = None,
        admin: bool = False,
        mechanisms: tuple[str, ...] = tuple(MECHANISMS),
        replace: bool = False,
    ) -> User:
        """Add user ``name`` (``replace``: or change its password, tenant and flag)."""
        check_name(name)
        if tenant is not None:
            check_tenant_name(tenant)
            if admin:
                raise InvalidRequest(
                    "a tenant's user cannot be a cluster admin (--admin manages every tenant); "
                    "give it access control bindings within its tenant instead"
                )
        for mechanism in mechanisms:
            if mechanism not in MECHANISMS:
                raise InvalidRequest(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
        if not mechanisms:
            raise InvalidRequest("a user needs at least one SCRAM mechanism")
        credentials = {mechanism: make_credential(mechanism, password) for mechanism in mechanisms}
        with self._lock:
            state = self._latest()
            if tenant is not None and tenant not in state.tenants:
                raise InvalidRequest(f"no tenant {tenant!r}: make it first (odradek tenant create {tenant})")
            if name in state.users and not replace:
                raise InvalidRequest(f"user {name!r} exists; remove it first or replace its password")
            if name not in state.users and len(state.users) >= limits.security_users_max:
                raise InvalidRequest(f"the store holds {limits.security_users_max} users already")
            user = User(name, tenant, admin, time.time(), credentials)
            self._publish(dataclasses.replace(state, users={**state.users, name: user}))
        return user

    def remove_user(self, name: str) -> int:
        """Remove user ``name`` and its tokens; returns how many tokens went with it."""
        with self._lock:
            state = self._latest()
            if name not in state.users:
                raise InvalidRequest(f"no user {str(name)[:64]!r}")
            users = {key: user for key, user in state.users.items() if key != name}
            tokens = {key: token for key, token in state.tokens.items() if token.user != name}
            self._publish(dataclasses.replace(state, users=users, tokens=tokens))
        return len(state.tokens) - len(tokens)

    def create_token(self, user: str, expires_seconds: float | None = None) -> tuple[str, Token]:
        """A new token of ``user``: the token (shown once, never stored) and its entry."""
        with self._lock:
            state = self._latest()
            if user not in state.users:
                raise InvalidRequest(f"no user {str(user)[:64]!r}: add it first (odradek user add)")
            if len(state.tokens) >= limits.security_tokens_max:
                raise InvalidRequest(f"the store holds {limits.security_tokens_max} tokens already")
            token_id = secrets.token_hex(8)
            secret = secrets.token_urlsafe(32)
            now = time.time()
            entry = Token(
                token_id,
                user,
                hashlib.sha256(secret.encode()).hexdigest(),
                now,
                None if expires_seconds is None else now + expires_seconds,
            )
            self._publish(dataclasses.replace(state, tokens={**state.tokens, token_id: entry}))
        return f"{TOKEN_PREFIX}{token_id}_{secret}", entry

    def revoke_token(self, token_id: str) -> Token:
        with self._lock:
            state = self._latest()
            entry = state.tokens.get(token_id)
            if entry is None:
                raise InvalidRequest(f"no token {str(token_id)[:64]!r} (odradek token list names them)")
            tokens = {key: token for key, token in state.tokens.items() if key != token_id}
            self._publish(dataclasses.replace(state, tokens=tokens))
        return entry

    # -- tenants (decision 0028) ------------------------------------------------------------

    def tenants(self) -> dict[str, float]:
        """Every tenant and when it was made."""
        return dict(sorted(self._state.tenants.items()))

    def tenant_exists(self, name: str) -> bool:
        """Whether tenant ``name`` exists (read again, at most every
        ``limits.security_refresh_seconds_min``, before saying no: made on another agent?)."""
        if name in self._state.tenants:
            return True
        self.refresh(soon=True)
        return name in self._state.tenants

    def create_tenant(self, name: str) -> float:
        """Make tenant ``name`` (instant: a namespace is only a name); when it was made."""
        check_tenant_name(name)
        with self._lock:
            state = self._latest()
            if name in state.tenants:
                raise InvalidRequest(f"tenant {name!r} exists")
            if len(state.tenants) >= limits.tenants_max:
                raise InvalidRequest(f"the store holds {limits.tenants_max} tenants already")
            created = time.time()
            self._publish(dataclasses.replace(state, tenants={**state.tenants, name: created}))
        return created

    def delete_tenant(self, name: str, leftovers: Callable[[str], list[str]] | None = None) -> None:
        """Delete tenant ``name``; refused while a user belongs to it or ``leftovers(name)``
        names what is left in it (its topics and groups): delete those first."""
        with self._lock:
            state = self._latest()
            if name not in state.tenants:
                raise InvalidRequest(f"no tenant {str(name)[:80]!r}")
            members = sorted(user.name for user in state.users.values() if user.tenant == name)
            if members:
                raise InvalidRequest(
                    f"tenant {name!r} has {len(members)} user(s) ({', '.join(members[:5])}): "
                    "remove them first (odradek user remove)"
                )
            left = leftovers(name) if leftovers is not None else []
            if left:
                raise InvalidRequest(
                    f"tenant {name!r} still holds {len(left)} topic(s) or group(s) "
                    f"({', '.join(left[:5])}): delete them first"
                )
            tenants = {key: created for key, created in state.tenants.items() if key != name}
            self._publish(dataclasses.replace(state, tenants=tenants))

    def _publish(self, state: _State) -> None:
        """Save ``state``, then make it the one read (a failed save changes nothing)."""
        self._persistence.save(state.to_json())
        self._state = state
        self.generation += 1

    def _latest(self) -> _State:
        """The state to change (under the lock): read again if another writer changed it."""
        if self._persistence.changed():
            self._state = self._read()
            self.generation += 1
        return self._state


def document_in(data_dir: str, name: str, disk: Disk = LOCAL, *, sync: bool = True) -> Document:
    """The security document ``name`` of data directory ``data_dir``, its directory made."""
    directory = os.path.join(data_dir, os.path.dirname(name))
    try:
        disk.makedirs(directory)
    except OSError as exc:
        raise StorageError(f"cannot make {directory}: {describe_os_error(exc)}") from exc
    return Document(disk, os.path.join(data_dir, name), sync=sync)


class _Stop(threading.Event):
    """An event that also wakes the refresh thread it stops."""

    def __init__(self, woken: threading.Event) -> None:
        super().__init__()
        self._woken = woken

    def set(self) -> None:
        super().set()
        self._woken.set()


def refresh_thread(
    refresh: Callable[[], object],
    seconds: float | None,
    name: str,
    what: str,
    *,
    wake: threading.Event | None = None,
) -> threading.Event:
    """Call ``refresh`` on a daemon thread every ``seconds`` (None:
    ``limits.security_refresh_seconds``), and as soon as ``wake`` is set (an etcd watch
    saw the document change), until the returned event is set; a failed read of ``what``
    is logged and tried again."""
    period = limits.security_refresh_seconds if seconds is None else seconds
    woken = wake if wake is not None else threading.Event()
    stop = _Stop(woken)

    def run() -> None:
        while True:
            woken.wait(period)
            woken.clear()  # (a change after this is read by this refresh or wakes the next)
            if stop.is_set():
                return
            try:
                refresh()
            except Exception as exc:  # noqa: BLE001 - a store outage must not end the thread
                log.warning("could not read %s again: %s", what, exc)

    threading.Thread(target=run, name=name, daemon=True).start()
    return stop
