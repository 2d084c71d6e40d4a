"""The one place every door asks whether a principal may do something (decision 0020).

A server's authorizer belongs to its :class:`~odradek.security.Authenticator`:
:func:`enable_authorization` (``odradek serve --auth --authorize``) gives it one over the
bindings kept beside the credential store (security/acl_store.py), and every door asks
:func:`authorizer_of` for it with the authenticator it already holds. None (no
authentication, or authorization not enabled) means every authenticated principal may do
everything, as before.

A check is a dictionary lookup once answered (security/acl.py's decision cache, emptied
when the bindings change); a refusal is logged at info with the principal, the operation
and the resource, never a credential.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable

from odradek.errors import Unauthorized
from odradek.names import TENANT_ROOT, tenant_prefix
from odradek.security.acl import CLUSTER, Decider, covers
from odradek.security.acl_store import AclStore, refresh_every
from odradek.security.authenticator import Authenticator
from odradek.security.principal import Principal

log = logging.getLogger("odradek.security")

_AUTHORIZERS: weakref.WeakKeyDictionary[Authenticator, Authorizer] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
_TENANT_SPACE = TENANT_ROOT + "."


class Authorizer:
    """Decisions over one :class:`AclStore`, remembered until its bindings change."""

    def __init__(self, store: AclStore) -> None:
        self.store = store
        self.decider = Decider(store.acl)
        store.listen(self.decider.use)

    def __repr__(self) -> str:
        return f"Authorizer({self.store!r})"

    def allowed(self, principal: Principal, operation: str, resource_type: str, name: str = CLUSTER) -> bool:
        """Allowed? A refusal by bindings other agents share reads them again first (at
        most every ``limits.security_refresh_seconds_min``), so a binding added on
        another agent holds at once, as a user added there does (decision 0017). A name
        in the tenants' space (decision 0028) is its tenant's principals' own, matched as
        they say it, and refused to every other principal but an admin."""
        said = _said(principal, resource_type, name)
        if said is None:
            return False
        name = said
        if self.decider.allowed(principal, operation, resource_type, name):
            return True
        if self.store.shared and self.store.refresh(soon=True):
            return self.decider.allowed(principal, operation, resource_type, name)
        return False

    def refusal(self, principal: Principal, operation: str, resource_type: str, name: str = CLUSTER) -> str:
        """Log a refusal at info and return its message."""
        log.info(
            "authorization refused: %s may not %s %s %s",
            principal,
            operation,
            resource_type,
            name,
            extra={
                "principal": principal.name,
                "operation": operation,
                "resource": f"{resource_type}:{name}",
            },
        )
        return (
            f"{principal} is not authorized to {operation} {resource_type.replace('_', ' ')} {name!r} "
            "(no access control binding allows it; odradek acl add grants it)"
        )

    def check(self, principal: Principal, operation: str, resource_type: str, name: str = CLUSTER) -> None:
        """Raise :class:`~odradek.errors.Unauthorized` (logged) unless allowed."""
        if not self.allowed(principal, operation, resource_type, name):
            raise Unauthorized(self.refusal(principal, operation, resource_type, name))

    def covers(self, principal: Principal, operation: str, resource_type: str, pattern: str) -> bool:
        """Whether ``principal`` may ``operation`` everything the match ``pattern`` can name
        (security/acl.py's :func:`~odradek.security.acl.covers`); a refusal is logged."""
        if _said(principal, resource_type, pattern) != pattern:
            pass  # a pattern naming the tenants' space: covered for admins only
        elif covers(self.decider.acl, principal, operation, resource_type, pattern):
            return True
        elif self.store.shared and self.store.refresh(soon=True):
            if covers(self.decider.acl, principal, operation, resource_type, pattern):
                return True
        self.refusal(principal, operation, resource_type, pattern)
        return False

    def filter(
        self, principal: Principal, operation: str, resource_type: str, names: Iterable[str]
    ) -> list[str]:
        """The names ``principal`` may ``operation``, in order (one pass)."""
        names = list(names)
        said = {name: _said(principal, resource_type, name) for name in names}
        if all(local == name for name, local in said.items()):
            return self.decider.filter(principal, operation, resource_type, names)
        locals_ = [local for local in said.values() if local is not None]
        allowed = set(self.decider.filter(principal, operation, resource_type, locals_))
        return [name for name in names if said[name] in allowed]


def _said(principal: Principal, resource_type: str, name: str) -> str | None:
    """The name ``principal``'s bindings are matched against for engine name ``name``:
    itself, or, in the tenants' space (``_t.<tenant>.``), the name as its tenant says
    it; None: a name of another namespace (refused but to an admin)."""
    if principal.admin or resource_type == "cluster" or not name.startswith(_TENANT_SPACE):
        return name
    if principal.tenant is not None:
        prefix = tenant_prefix(principal.tenant)
        if name.startswith(prefix):
            return name[len(prefix) :]
    return None


def enable_authorization(authenticator: Authenticator, store: AclStore | None = None) -> Authorizer:
    """Give ``authenticator``'s doors an authorizer over ``store`` (default: the bindings
    kept beside its credential store; a shared store is read again every few seconds)."""
    with _LOCK:
        found = _AUTHORIZERS.get(authenticator)
        if found is not None and store is None:
            return found
        if store is None:
            store = AclStore.beside(authenticator.store)
            if store.shared:
                refresh_every(store)
        authorizer = _AUTHORIZERS[authenticator] = Authorizer(store)
        return authorizer


def authorizer_of(authenticator: Authenticator | None) -> Authorizer | None:
    """The authorizer of a door's authenticator; None: every principal may do everything."""
    if authenticator is None:
        return None
    return _AUTHORIZERS.get(authenticator)
