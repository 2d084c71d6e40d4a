"""The one place where credentials become a principal, for every door.

* ``password(user, password)``: PLAIN on the Kafka door, HTTP Basic, Flight Basic;
  checked against the user's stored SCRAM credential. Verified checks are remembered
  for ``limits.security_password_cache_seconds`` (by a keyed hash, never the password),
  so a client sending Basic credentials on every call costs one PBKDF2 per period.
* ``bearer(token)``: an API token of the store (``odr_...``), a cluster agent's own
  (``odragent_...``, security/agents.py) or, with a JWKS, a JWT.
* ``certificate(subject)``: a verified client certificate (mTLS) whose subject's CN
  names the principal; a user of that name gives its tenant and admin flag.
* ``sasl()``: a Kafka connection's SASL exchange (security/sasl.py).

Refusals are :class:`~odradek.errors.Unauthenticated` with a message that names the
user (for an operator's log) and never the secret.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from odradek import limits
from odradek.errors import Unauthenticated
from odradek.security.agents import agent_principal, is_agent_token
from odradek.security.credentials import TOKEN_PREFIX, CredentialStore
from odradek.security.jwks import JwtValidator
from odradek.security.passwords import MECHANISMS, password_matches
from odradek.security.principal import Principal

if TYPE_CHECKING:
    from odradek.security.sasl import SaslServer


@dataclasses.dataclass(frozen=True, slots=True)
class Authenticated:
    """A principal and when its credential expires (Unix seconds; None: never)."""

    principal: Principal
    expires: float | None = None


class Authenticator:
    def __init__(
        self,
        store: CredentialStore,
        jwt: JwtValidator | None = None,
        *,
        mtls: bool = False,
    ) -> None:
        self.store = store
        self.jwt = jwt
        self.mtls = mtls
        # An agent id's published credentials hash, for the tokens of a cluster's agents
        # (security/agents.py): set by the cluster agent; None on a single node.
        self.agents: Callable[[str], str | None] | None = None
        self._cache_key = secrets.token_bytes(32)
        self._verified: collections.OrderedDict[bytes, tuple[float, int]] = collections.OrderedDict()
        self._cache_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Authenticator({self.store!r}, jwt={self.jwt!r}, mtls={self.mtls})"

    @property
    def kafka_mechanisms(self) -> tuple[str, ...]:
        mechanisms = ("PLAIN", *MECHANISMS, "OAUTHBEARER")
        return mechanisms

    def describe(self) -> str:
        """What the ready line says: the ways a client may authenticate."""
        parts = ["scram", "plain", "token"]
        if self.jwt is not None:
            parts.append("jwt")
        if self.mtls:
            parts.append("mtls")
        return ",".join(parts)

    # -- passwords ------------------------------------------------------------------------

    def password(self, name: str, password: str, mechanism: str = "PLAIN") -> Principal:
        if (
            len(name) > limits.security_name_chars_max
            or len(password.encode("utf-8", "replace")) > limits.security_password_bytes_max
        ):
            raise Unauthenticated("authentication failed: user name or password too long")
        user = self.store.user(name)
        if user is None and self.store.refresh(soon=True):  # added on another agent?
            user = self.store.user(name)
        if user is None:
            raise Unauthenticated(
                f"authentication failed for user {name[:64]!r}: unknown user or wrong password"
            )
        key = hmac.new(self._cache_key, f"{name}\0{password}".encode(), hashlib.sha256).digest()
        now = time.monotonic()
        stamp = id(user)  # a changed user (new password, removed and added) is another object
        with self._cache_lock:
            cached = self._verified.get(key)
            if (
                cached is not None
                and cached[1] == stamp
                and now - cached[0] < limits.security_password_cache_seconds
            ):
                return user.principal(mechanism)
        credential = next(iter(user.credentials.values()))
        if not password_matches(credential, password):
            raise Unauthenticated(
                f"authentication failed for user {name[:64]!r}: unknown user or wrong password"
            )
        with self._cache_lock:
            self._verified[key] = (now, stamp)
            self._verified.move_to_end(key)
            while len(self._verified) > limits.security_password_cache_entries_max:
                self._verified.popitem(last=False)
        return user.principal(mechanism)

    # -- tokens ---------------------------------------------------------------------------

    def bearer(self, token: str, mechanism: str = "token") -> Authenticated:
        if len(token) > limits.security_credential_bytes_max:
            raise Unauthenticated("authentication failed: the token is too long")
        if is_agent_token(token):
            return Authenticated(agent_principal(token, self.agents))
        if token.startswith(TOKEN_PREFIX):
            found = self.store.token_user(token)
            if found is None and self.store.refresh(soon=True):  # made on another agent?
                found = self.store.token_user(token)
            if found is None:
                if self.store.token_expired(token):
                    raise Unauthenticated("authentication failed: the token has expired")
                raise Unauthenticated("authentication failed: unknown or revoked token")
            user, entry = found
            return Authenticated(user.principal(mechanism), entry.expires)
        if self.jwt is None:
            raise Unauthenticated("authentication failed: unknown token (this server takes no JWTs)")
        principal, expires = self.jwt.validate(token)
        known = self.store.user(principal.name)
        if known is not None and principal.tenant is None:
            principal = dataclasses.replace(
                principal, tenant=known.tenant, admin=principal.admin or known.admin
            )
        return Authenticated(dataclasses.replace(principal, mechanism=mechanism), expires)

    # -- certificates ---------------------------------------------------------------------

    def certificate(self, subject: str | None) -> Principal | None:
        """The principal a verified client certificate names (its CN); None without one."""
        if not self.mtls or not subject:
            return None
        common_name = None
        for part in subject.split(","):
            name, _, value = part.partition("=")
            if name.strip() == "CN" and value.strip():
                common_name = value.strip()
        if common_name is None:
            return None
        user = self.store.user(common_name)
        if user is not None:
            return user.principal("mtls")
        return Principal(common_name, None, False, "mtls")

    def sasl(self) -> SaslServer:
        from odradek.security.sasl import SaslServer

        return SaslServer(self)
