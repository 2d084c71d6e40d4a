"""Managing access control lists: the native door's actions, and the same actions run on
a data directory's store while the server is stopped (``odradek acl ... --data-dir``).

Actions (DoAction; JSON bodies and results; an admin principal only, else Unauthorized)::

    acl_add     {"bindings": [binding, ...]}   -> {"added": [binding, ...]}
    acl_list    filter                         -> {"bindings": [binding, ...]}
    acl_remove  filter                         -> {"removed": [binding, ...]}

A binding is ``{"principal", "resource_type", "pattern_type", "pattern", "operation",
"permission"}`` (security/acl.py). A filter names any of those fields; a field left out
matches every binding (``acl_remove`` refuses an empty filter, which would remove all:
name at least one field).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from odradek.errors import InvalidRequest
from odradek.security.acl import Binding, binding, binding_of
from odradek.security.acl_store import AclStore
from odradek.security.actions import Call, admin_body, local_caller
from odradek.security.principal import Principal

ACTIONS: dict[str, str] = {
    "acl_add": 'Add access control bindings (admin). Body: {"bindings": [{"principal", "resource_type", '
    '"pattern_type", "pattern", "operation", "permission"}]}.',
    "acl_list": "List access control bindings (admin), optionally filtered by any binding field.",
    "acl_remove": "Remove the access control bindings a filter selects (admin); at least one field.",
}
FIELDS = ("principal", "resource_type", "pattern_type", "pattern", "operation", "permission")


def selector(body: dict[str, Any]) -> Callable[[Binding], bool]:
    """The bindings a filter selects (every field given must be equal; checked)."""
    wanted = {field: body[field] for field in FIELDS if body.get(field) is not None}
    if "principal" in wanted:  # normalize as a binding would be (User: prefix, case)
        wanted["principal"] = binding(wanted["principal"], "topic", "literal", "x", "read", "allow").principal
    for field in ("resource_type", "pattern_type", "operation", "permission"):
        if field in wanted:
            wanted[field] = str(wanted[field]).lower()
    return lambda entry: all(getattr(entry, field) == value for field, value in wanted.items())


def serve_action(store: AclStore | None, principal: Principal, action: str, raw: bytes) -> bytes:
    """Run ``action`` for ``principal``; the JSON result."""
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown action {action!r}")
    if store is None:
        raise InvalidRequest("this server does not authorize (start it with --auth --authorize)")
    body = admin_body(principal, action, raw)
    return json.dumps(run(store, action, body)).encode()


def run(store: AclStore, action: str, body: dict[str, Any]) -> dict[str, Any]:
    if action == "acl_add":
        entries = body.get("bindings")
        if not isinstance(entries, list) or not entries:
            raise InvalidRequest("acl_add needs 'bindings': a non-empty list of bindings")
        added = store.add([binding_of(entry) for entry in entries])
        return {"added": [entry.to_json() for entry in added]}
    chosen = selector(body)
    if action == "acl_list":
        return {"bindings": [entry.to_json() for entry in store.bindings() if chosen(entry)]}
    if not any(body.get(field) is not None for field in FIELDS):
        raise InvalidRequest(
            "acl_remove needs a filter naming at least one field (it would remove every binding)"
        )
    return {"removed": [entry.to_json() for entry in store.remove(chosen)]}


def local_call(store: AclStore) -> Call:
    """The actions on a store opened here (the server stopped)."""
    return local_caller(functools.partial(serve_action, store))
