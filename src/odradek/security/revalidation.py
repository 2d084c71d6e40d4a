"""Long-lived streams check their principal again (issue 16).

A call is authenticated and authorized when it starts; a stream may then last for
hours: a Flight read that follows a topic, a subscription, an append stream, an SSE tail,
a Kafka connection. Each keeps a :class:`StreamGuard`, which checks the principal again
whenever the credential store or the access control bindings changed (their
``generation`` moved: a change made here, or one another agent made, read within
``limits.security_refresh_seconds``), and at least every
``limits.security_stream_recheck_seconds`` (an expiring token):

* the credential still authenticates: an API token still in the store (not revoked, not
  expired, its user still there), a password user still there with the same tenant and
  admin flag, a JWT not past its expiry;
* the stream's own authorization still allows it (``authorize``: the read, write or
  subscription checks the door made when it began).

A stream whose principal fails ends with :class:`~odradek.errors.Unauthenticated` or
:class:`~odradek.errors.Unauthorized` naming why; the doors check it at each batch or
request and, while idle, where they already wake up to notice a cancelled call.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from odradek import limits
from odradek.errors import OdradekError, Unauthenticated, Unauthorized
from odradek.security.agents import agent_principal, is_agent_token
from odradek.security.authenticator import Authenticator
from odradek.security.authorizer import authorizer_of
from odradek.security.credentials import TOKEN_PREFIX
from odradek.security.passwords import MECHANISMS
from odradek.security.principal import Principal

# How a principal was authenticated with a password of a stored user.
_PASSWORD_MECHANISMS = frozenset(("PLAIN", "basic", *MECHANISMS))


def generation(authenticator: Authenticator) -> int:
    """A number that moves whenever the credentials or the bindings change."""
    authorizer = authorizer_of(authenticator)
    acl = authorizer.store.generation if authorizer is not None else 0
    return authenticator.store.generation * 1_000_003 + acl


def still_valid(
    authenticator: Authenticator, principal: Principal, token: str | None, expires: float | None
) -> str | None:
    """Why ``principal`` (authenticated with ``token``, if a bearer token, valid until
    ``expires``) no longer authenticates; None: it still does."""
    if expires is not None and time.time() >= expires:
        return "its token has expired"
    store = authenticator.store
    if token is not None and is_agent_token(token):
        try:
            agent_principal(token, authenticator.agents)
        except Unauthenticated:
            return "its agent left the cluster"
        return None
    if token is not None and token.startswith(TOKEN_PREFIX):
        found = store.token_user(token)
        if found is None:
            return "its token was revoked (or its user removed)"
        user = found[0]
    elif principal.mechanism in _PASSWORD_MECHANISMS:
        known = store.user(principal.name)
        if known is None:
            return f"user {principal.name!r} was removed"
        user = known
    else:  # a JWT (its expiry above) or a client certificate (checked by TLS)
        return None
    if user.tenant != principal.tenant or user.admin != principal.admin:
        return f"user {principal.name!r} was changed (its tenant or admin flag)"
    return None


class StreamGuard:
    """The checks of one stream (see the module docstring). ``authorize`` raises
    Unauthorized if the principal may no longer do what the stream does."""

    def __init__(
        self,
        authenticator: Authenticator,
        principal: Principal,
        token: str | None = None,
        expires: float | None = None,
        authorize: Callable[[Principal], None] | None = None,
        what: str = "stream",
    ) -> None:
        self._what = what
        self._authenticator = authenticator
        self.principal = principal
        self._token = token
        self._expires = expires
        self._authorize = authorize
        self._seen = generation(authenticator)
        self._checked = time.monotonic()
        self.failure: OdradekError | None = None

    def check(self) -> None:
        """Raise why the stream must end (Unauthenticated or Unauthorized), if it must."""
        if self.failure is not None:
            raise self.failure
        now = time.monotonic()
        current = generation(self._authenticator)
        if current == self._seen and now - self._checked < limits.security_stream_recheck_seconds:
            return
        self._seen, self._checked = current, now
        reason = still_valid(self._authenticator, self.principal, self._token, self._expires)
        if reason is not None:
            self.failure = Unauthenticated(f"the {self._what} of {self.principal} ended: {reason}")
            raise self.failure
        if self._authorize is not None:
            try:
                self._authorize(self.principal)
            except Unauthorized as exc:
                self.failure = Unauthorized(f"the {self._what} of {self.principal} ended: {exc.message}")
                raise self.failure from None

    def ended(self) -> bool:
        """Whether the stream must end (for a ``stop`` callback; :meth:`check` says why)."""
        try:
            self.check()
        except OdradekError:
            return True
        return False
