"""Managing users and API tokens: the native door's administration actions, and the
same actions run on a data directory's credential store while the server is stopped.

Actions (DoAction; JSON bodies and results; an admin principal only, else Unauthorized)::

    user_add      {"name", "password", "tenant"?, "admin"?, "mechanisms"?, "replace"?} -> user
    user_list     {}                                    -> {"users": [user, ...]}
    user_remove   {"name"}                              -> {"name", "tokens_revoked"}
    token_create  {"user", "expires"?}                  -> {"token", "id", "user", "created", "expires"}
    token_list    {"user"?}                             -> {"tokens": [token, ...]}   (never a secret)
    token_revoke  {"id"}                                -> token
    tenant_create {"name"}                              -> {"name", "created"}
    tenant_list   {}                                    -> {"tenants": [{"name", "created", "users"}, ...]}
    tenant_delete {"name"}                              -> {"name"}   (refused while users or topics are left)

A user is ``{"name", "tenant", "admin", "created", "mechanisms"}``. The token is in
``token_create``'s answer only: it is stored hashed and cannot be shown again. A
server without authentication serves these to anyone on its loopback doors (its one
principal is an admin): that is how the first admin is made on a running server.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from odradek.config import parse_duration
from odradek.errors import InvalidRequest
from odradek.security.actions import Call, admin_body, local_caller
from odradek.security.credentials import CredentialStore
from odradek.security.passwords import MECHANISMS
from odradek.security.principal import Principal

ACTIONS: dict[str, str] = {
    "user_add": 'Add a user (admin). Body: {"name", "password", "tenant"?, "admin"?, "mechanisms"?, '
    '"replace"?}. Result: the user (never its credentials).',
    "user_list": "List users (admin). Result: {users: [...]}.",
    "user_remove": 'Remove a user and its tokens (admin). Body: {"name"}.',
    "token_create": 'Make an API token of a user (admin). Body: {"user", "expires"?: "30d"}. Result: '
    "{token, id, ...}: the token is shown once.",
    "token_list": 'List API tokens (admin), never their secrets. Body: {"user"?}.',
    "token_revoke": 'Revoke an API token (admin). Body: {"id"}.',
    "tenant_create": 'Make a tenant (admin). Body: {"name"}.',
    "tenant_list": "List tenants (admin). Result: {tenants: [...]}.",
    "tenant_delete": 'Delete a tenant with no users, topics or groups left (admin). Body: {"name"}.',
}


def _text(body: dict[str, Any], field: str, required: bool = True) -> str | None:
    value = body.get(field)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"field {field!r} must be a non-empty string")
    return value


def serve_action(
    store: CredentialStore | None,
    principal: Principal,
    action: str,
    raw: bytes,
    leftovers: Callable[[str], list[str]] | None = None,
) -> bytes:
    """Run administration ``action`` for ``principal``; the JSON result. ``leftovers``:
    the topics and groups left in a tenant (refusing its deletion); None: not known here
    (a stopped server's data directory), so ``tenant_delete`` is refused."""
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown action {action!r}")
    if store is None:
        raise InvalidRequest(
            "this server keeps no credential store (a cluster agent): manage users elsewhere"
        )
    body = admin_body(principal, action, raw)
    return json.dumps(_run(store, action, body, leftovers)).encode()


def _run(
    store: CredentialStore,
    action: str,
    body: dict[str, Any],
    leftovers: Callable[[str], list[str]] | None = None,
) -> dict[str, Any]:
    if action == "tenant_create":
        name = str(_text(body, "name"))
        return {"name": name, "created": store.create_tenant(name)}
    if action == "tenant_list":
        members: dict[str, int] = {}
        for user in store.users():
            if user.tenant is not None:
                members[user.tenant] = members.get(user.tenant, 0) + 1
        return {
            "tenants": [
                {"name": name, "created": created, "users": members.get(name, 0)}
                for name, created in store.tenants().items()
            ]
        }
    if action == "tenant_delete":
        if leftovers is None:
            raise InvalidRequest(
                "a tenant is deleted through a running server, which can tell whether topics are "
                "left in it (not with --data-dir)"
            )
        name = str(_text(body, "name"))
        store.delete_tenant(name, leftovers)
        return {"name": name}
    if action == "user_add":
        mechanisms = body.get("mechanisms") or list(MECHANISMS)
        if not isinstance(mechanisms, list) or not all(isinstance(m, str) for m in mechanisms):
            raise InvalidRequest("field 'mechanisms' must be a list of mechanism names")
        user = store.add_user(
            str(_text(body, "name")),
            str(_text(body, "password")),
            tenant=_text(body, "tenant", required=False),
            admin=body.get("admin") is True,
            mechanisms=tuple(mechanisms),
            replace=body.get("replace") is True,
        )
        return user.describe()
    if action == "user_list":
        return {"users": [user.describe() for user in store.users()]}
    if action == "user_remove":
        name = str(_text(body, "name"))
        return {"name": name, "tokens_revoked": store.remove_user(name)}
    if action == "token_create":
        expires = parse_duration(body.get("expires"), "expires")
        token, entry = store.create_token(str(_text(body, "user")), expires)
        return {"token": token, **entry.describe()}
    if action == "token_list":
        return {"tokens": [token.describe() for token in store.tokens(_text(body, "user", required=False))]}
    entry = store.revoke_token(str(_text(body, "id")))
    return entry.describe()


def local_call(store: CredentialStore) -> Call:
    """The actions on a credential store opened here (the server stopped)."""
    return local_caller(functools.partial(serve_action, store))
