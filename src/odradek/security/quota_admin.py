"""Managing client quotas: the native door's actions, and the same actions run on a data
directory's settings while the server is stopped (``odradek quota ... --data-dir``).

Actions (DoAction; JSON bodies and results; an admin principal only, else Unauthorized)::

    quota_set     {"entity": "user=alice", "quotas": {KEY: VALUE, ...}}   -> entity
    quota_list    {"entity"?}                                           -> {"entities": [entity, ...]}
    quota_remove  {"entity", "keys"?: [KEY, ...]}                        -> entity

An entity is ``{"entity": "user=alice,client-id=<default>", "quotas": {KEY: VALUE}}``
(security/quotas.py names the keys and entity forms; ``storage_bytes`` on a tenant's
entity alone). ``quota_set`` sets the keys given
and keeps the others; ``quota_remove`` removes the keys named, or every key of the
entity (and so the entity) when none is named.
"""

from __future__ import annotations

import functools
import json
from typing import Any

from odradek.errors import InvalidRequest
from odradek.security.actions import Call, admin_body, local_caller
from odradek.security.principal import Principal
from odradek.security.quotas import QUOTA_KEYS, QuotaEntity, QuotaSettings

ACTIONS: dict[str, str] = {
    "quota_set": 'Set client quotas of an entity (admin). Body: {"entity": "user=alice", "quotas": '
    '{"producer_byte_rate": 1048576}}.',
    "quota_list": 'List client quotas (admin). Body: {"entity"?}.',
    "quota_remove": 'Remove client quotas of an entity (admin). Body: {"entity", "keys"?}.',
}


def _entity(body: dict[str, Any], required: bool = True) -> QuotaEntity | None:
    text = body.get("entity")
    if text is None and not required:
        return None
    if not isinstance(text, str):
        raise InvalidRequest("field 'entity' must be a string such as user=alice or client-id=<default>")
    return QuotaEntity.parse(text)


def _shown(settings: QuotaSettings, entity: QuotaEntity) -> dict[str, Any]:
    return {"entity": str(entity), "quotas": settings.entities().get(entity, {})}


def serve_action(settings: QuotaSettings | None, principal: Principal, action: str, raw: bytes) -> bytes:
    """Run quota ``action`` for ``principal``; the JSON result."""
    if action not in ACTIONS:
        raise InvalidRequest(f"unknown action {action!r}")
    if settings is None:
        raise InvalidRequest("this server keeps no quota settings")
    body = admin_body(principal, action, raw)
    return json.dumps(_run(settings, action, body)).encode()


def _run(settings: QuotaSettings, action: str, body: dict[str, Any]) -> dict[str, Any]:
    if action == "quota_list":
        return {"entities": settings.describe(_entity(body, required=False))}
    entity = _entity(body)
    assert entity is not None
    if action == "quota_set":
        quotas = body.get("quotas")
        if not isinstance(quotas, dict) or not quotas:
            raise InvalidRequest(f"field 'quotas' must name at least one of {', '.join(QUOTA_KEYS)}")
        settings.set(entity, quotas)
        return _shown(settings, entity)
    keys = body.get("keys") or list(settings.entities().get(entity, {}))
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise InvalidRequest("field 'keys' must be a list of quota names")
    if entity not in settings.entities():
        raise InvalidRequest(f"no quotas are set for {entity}")
    settings.set(entity, dict.fromkeys(keys))
    return _shown(settings, entity)


def local_call(settings: QuotaSettings) -> Call:
    """The actions on quota settings opened here (the server stopped)."""
    return local_caller(functools.partial(serve_action, settings))
