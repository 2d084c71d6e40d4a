"""Who made a request: the principal every door names for each connection or call.

A principal has a name, a tenant (None: no tenant, or a cluster admin) and an admin
flag (never set with a tenant: a tenant has no cluster admins, decision 0028), and says
how it was authenticated. Every door knows the principal of each request (the Kafka door
per connection, the Flight door per call, the HTTP doors per request), so that an
authorizer can check it in one place (:func:`current_principal`).
"""

from __future__ import annotations

import contextvars
import dataclasses


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated identity. ``mechanism`` is how it was authenticated (``PLAIN``,
    ``SCRAM-SHA-256``, ``SCRAM-SHA-512``, ``OAUTHBEARER``, ``token``, ``basic``, ``mtls``
    or ``none`` on a server without authentication)."""

    name: str
    tenant: str | None = None
    admin: bool = False
    mechanism: str = "none"

    def __post_init__(self) -> None:
        # A tenant's principal is never a cluster admin (decision 0028): it could
        # otherwise manage every tenant's users and data.
        if self.tenant is not None and self.admin:
            object.__setattr__(self, "admin", False)

    def __str__(self) -> str:
        return f"User:{self.name}"


# The principal of a server without authentication: every caller is it, and may do
# everything (the server binds loopback only unless --insecure, docs/security.md).
ANONYMOUS = Principal("ANONYMOUS", None, admin=True, mechanism="none")

_CURRENT: contextvars.ContextVar[Principal] = contextvars.ContextVar("odradek_principal", default=ANONYMOUS)


def current_principal() -> Principal:
    """The principal of the request being served (the Kafka door sets it per connection
    task; the Flight and HTTP doors per call)."""
    return _CURRENT.get()


def set_current_principal(principal: Principal) -> contextvars.Token[Principal]:
    return _CURRENT.set(principal)
