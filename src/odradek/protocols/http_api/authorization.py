"""Authorization on the HTTP API (decision 0020), as on the Flight door: which
operation on which resource each route is, asked of the server's authorizer
(security/authorizer.py) before the route runs.

* Topics: ``create``, ``describe`` (describe, schema), ``alter``, ``delete`` on the
  topic; ``write`` to produce and to store a key's snapshot (as the Flight door's
  ``snapshot`` action); ``read`` to read, tail and read keys (from a snapshot too).
* Groups: ``describe`` and ``delete`` on the group; a member's join needs ``read`` on
  the group and on the topics of its pattern (a wildcard must be covered by bindings
  allowing every topic it can match: ``Authorizer.covers``); its poll, ack, nack and
  leave need ``read`` on the group.
* Listings (``GET /v1/topics``, ``GET /v1/groups``) answer only what the principal may
  describe; ``/openapi.json`` is open to any authenticated principal.

A refusal is :class:`~odradek.errors.Unauthorized`, answered 403 in the API's error
shape, and logged at info by the authorizer.
"""

from __future__ import annotations

from odradek.errors import Unauthorized
from odradek.names import is_pattern
from odradek.security.authorizer import Authorizer
from odradek.security.principal import Principal

# handler -> (operation, resource type, path parameter naming the resource)
ROUTES: dict[str, tuple[str, str, str]] = {
    "_describe_topic": ("describe", "topic", "topic"),
    "_alter_topic": ("alter", "topic", "topic"),
    "_delete_topic": ("delete", "topic", "topic"),
    "_schema": ("describe", "topic", "topic"),
    "_produce": ("write", "topic", "topic"),
    "_read": ("read", "topic", "topic"),
    "_tail": ("read", "topic", "topic"),
    "_key_version": ("read", "topic", "topic"),
    "_read_key": ("read", "topic", "topic"),
    "_snapshot": ("write", "topic", "topic"),
    "_describe_group": ("describe", "group", "group"),
    "_delete_group": ("delete", "group", "group"),
    "_join": ("read", "group", "group"),
    "_leave": ("read", "group", "group"),
    "_poll": ("read", "group", "group"),
    "_ack": ("read", "group", "group"),
    "_nack": ("read", "group", "group"),
}


def check_route(
    authorizer: Authorizer, principal: Principal, handler: str, parameters: dict[str, str]
) -> None:
    """Raise Unauthorized unless ``principal`` may take the route ``handler`` names."""
    needed = ROUTES.get(handler)
    if needed is not None:
        operation, resource_type, parameter = needed
        authorizer.check(principal, operation, resource_type, parameters[parameter])


def check_create(authorizer: Authorizer, principal: Principal, topic: str) -> None:
    authorizer.check(principal, "create", "topic", topic)


def check_pattern_read(authorizer: Authorizer, principal: Principal, pattern: str) -> None:
    """``read`` on every topic a member's pattern can match."""
    if not is_pattern(pattern):
        authorizer.check(principal, "read", "topic", pattern)
    elif not authorizer.covers(principal, "read", "topic", pattern):
        raise Unauthorized(
            f"{principal} is not authorized to read every topic {pattern!r} can match "
            "(a wildcard needs bindings that allow all of them; odradek acl add grants it)"
        )
