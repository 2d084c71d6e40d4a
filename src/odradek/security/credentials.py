"""The credential store: users (salted SCRAM credentials) and API tokens (hashed).

Stored as one checksummed JSON document behind the storage seam
(``<data dir>/security/credentials.json``, storage/documents.py), in two copies::

    {"version": 1,
     "users": {NAME: {"tenant": T | null, "admin": bool, "created": SECONDS,
                      "scram": {"SCRAM-SHA-256": {salt, iterations, stored_key, server_key}, ...}}},
     "tokens": {ID: {"user": NAME, "hash": SHA-256 HEX, "created": SECONDS, "expires": SECONDS | null}}}

Rules
-----
* No secret is stored: a password becomes SCRAM credentials (SHA-256 and SHA-512, so
  a Kafka client may use either mechanism, and PLAIN is checked against them); a token
  ``odr_<id>_<secret>`` is stored as the SHA-256 of its secret (a random 256-bit
  secret needs no salt) and shown once, when it is made.
* A change is made on a copy of the state, saved, and only then published: a refused
  or failed save changes nothing. One lock serializes changes; reads take the
  published state without a lock.
* A token belongs to a user: it authenticates as that user (tenant and admin flag as
  the user has them at the time); removing the user revokes its tokens.
* ``repr`` and errors never show a password, a token or a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import threading
import time
from typing import Any

from odradek import limits
from odradek.errors import InvalidRequest, StorageError
from odradek.security.passwords import MECHANISMS, ScramCredential, make_credential
from odradek.security.principal import Principal
from odradek.storage.disk import LOCAL, Disk, describe_os_error
from odradek.storage.documents import Document

DOCUMENT = os.path.join("security", "credentials.json")
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
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise StorageError(f"{path} is not a credential store ({type(exc).__name__}: {exc})") from None
        return cls(users, tokens)


class CredentialStore:
    """Users and tokens of one server (see the module docstring). Thread-safe."""

    def __init__(self, document: Document) -> None:
        self._document = document
        self._lock = threading.Lock()
        try:
            data = document.load()
        except OSError as exc:
            raise StorageError(f"cannot read {document.path}: {describe_os_error(exc)}") from exc
        self._state = _State({}, {}) if data is None else _State.from_json(data, document.path)

    @classmethod
    def open(cls, data_dir: str, disk: Disk = LOCAL, *, sync: bool = True) -> CredentialStore:
        """The store of the data directory ``data_dir`` (empty if it has none yet)."""
        directory = os.path.join(data_dir, os.path.dirname(DOCUMENT))
        try:
            disk.makedirs(directory)
        except OSError as exc:
            raise StorageError(f"cannot make {directory}: {describe_os_error(exc)}") from exc
        return cls(Document(disk, os.path.join(data_dir, DOCUMENT), sync=sync))

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
            check_name(tenant, "tenant name")
        for mechanism in mechanisms:
            if mechanism not in MECHANISMS:
                raise InvalidRequest(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
        if not mechanisms:
            raise InvalidRequest("a user needs at least one SCRAM mechanism")
        credentials = {mechanism: make_credential(mechanism, password) for mechanism in mechanisms}
        with self._lock:
            state = self._state
            if name in state.users and not replace:
                raise InvalidRequest(f"user {name!r} exists; remove it first or replace its password")
            if name not in state.users and len(state.users) >= limits.security_users_max:
                raise InvalidRequest(f"the store holds {limits.security_users_max} users already")
            user = User(name, tenant, admin, time.time(), credentials)
            self._publish(_State({**state.users, name: user}, state.tokens))
        return user

    def remove_user(self, name: str) -> int:
        """Remove user ``name`` and its tokens; returns how many tokens went with it."""
        with self._lock:
            state = self._state
            if name not in state.users:
                raise InvalidRequest(f"no user {str(name)[:64]!r}")
            users = {key: user for key, user in state.users.items() if key != name}
            tokens = {key: token for key, token in state.tokens.items() if token.user != name}
            self._publish(_State(users, tokens))
        return len(state.tokens) - len(tokens)

    def create_token(self, user: str, expires_seconds: float | None = None) -> tuple[str, Token]:
        """A new token of ``user``: the token (shown once, never stored) and its entry."""
        with self._lock:
            state = self._state
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
            self._publish(_State(state.users, {**state.tokens, token_id: entry}))
        return f"{TOKEN_PREFIX}{token_id}_{secret}", entry

    def revoke_token(self, token_id: str) -> Token:
        with self._lock:
            state = self._state
            entry = state.tokens.get(token_id)
            if entry is None:
                raise InvalidRequest(f"no token {str(token_id)[:64]!r} (odradek token list names them)")
            tokens = {key: token for key, token in state.tokens.items() if key != token_id}
            self._publish(_State(state.users, tokens))
        return entry

    def _publish(self, state: _State) -> None:
        """Save ``state``, then make it the one read (a failed save changes nothing)."""
        try:
            self._document.save(state.to_json())
        except OSError as exc:
            raise StorageError(f"could not write {self._document.path}: {describe_os_error(exc)}") from exc
        self._state = state
