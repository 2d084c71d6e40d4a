"""Authorization on the Schema Registry door (decision 0020): 403 before a route runs.

* A subject's routes: ``describe`` to read its versions, ids and settings (GET, and
  POST of a lookup or a compatibility test), ``write`` to register a version, ``alter``
  to change its compatibility or mode, ``delete`` to delete it or a version. The topic
  behind a ``<topic>-value`` subject is checked as the subject: bind the subject.
* ``GET /subjects`` lists only the subjects the principal may describe.
* The global ``config`` and ``mode``: ``alter`` on the cluster to change them.
* ``GET /v1/views/{view}/keys/{key}``: ``read`` on every topic the view folds (its
  pattern covered, as a wildcard read must be).
* Schemas by id and the rest of the read-only routes stay open to any authenticated
  principal (an id says nothing of a subject's data).

A refusal is ``403`` with ``{"error_code": 40301, "message": ...}``, logged at info by
the authorizer.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable
from typing import Any

from odradek.errors import OdradekError
from odradek.names import is_pattern
from odradek.protocols.registry.routes import Request, Response
from odradek.security.authorizer import Authorizer
from odradek.security.principal import Principal

FORBIDDEN = 40301


def _operation(method: str, segments: list[str]) -> tuple[str, str, str] | None:
    """(operation, resource type, name) a request needs; None: nothing to check."""
    method = method.upper()
    if len(segments) >= 2 and segments[0] == "subjects":
        subject = segments[1]
        if method == "DELETE":
            return "delete", "subject", subject
        if method == "POST" and segments[2:3] == ["versions"]:
            return "write", "subject", subject
        return "describe", "subject", subject
    if len(segments) >= 3 and segments[:2] == ["compatibility", "subjects"]:
        return "describe", "subject", segments[2]
    if len(segments) == 2 and segments[0] in ("config", "mode"):
        return ("describe" if method == "GET" else "alter"), "subject", segments[1]
    if len(segments) == 1 and segments[0] in ("config", "mode") and method != "GET":
        return "alter", "cluster", "kafka-cluster"
    return None


def _forbidden(message: str) -> Response:
    return Response.error(403, FORBIDDEN, message)


def handle(
    authorizer: Authorizer,
    principal: Principal,
    request: Request,
    serve: Callable[[Request], Response],
    view_pattern: Callable[[str], str | None],
) -> Response:
    """Answer ``request`` with ``serve`` if ``principal`` may, else 403."""
    if principal.admin:
        return serve(request)
    segments = [urllib.parse.unquote(part) for part in request.path.strip("/").split("/") if part]
    if len(segments) == 5 and segments[:2] == ["v1", "views"] and request.method.upper() == "GET":
        pattern = view_pattern(segments[2])
        if pattern is not None:
            allowed = (
                authorizer.covers(principal, "read", "topic", pattern)
                if is_pattern(pattern)
                else authorizer.allowed(principal, "read", "topic", pattern)
            )
            if not allowed:
                authorizer.refusal(principal, "read", "topic", pattern)
                return _forbidden(
                    f"{principal} is not authorized to read the topics of view {segments[2]!r} ({pattern!r})"
                )
        return serve(request)
    if segments == ["subjects"] and request.method.upper() == "GET":
        answer = serve(request)
        if answer.status != 200:
            return answer
        names: list[Any] = json.loads(answer.body)
        kept = authorizer.filter(principal, "describe", "subject", [str(name) for name in names])
        return Response(200, json.dumps(kept).encode(), answer.content_type)
    needed = _operation(request.method, segments)
    if needed is None:
        return serve(request)
    operation, kind, name = needed
    if not authorizer.allowed(principal, operation, kind, name):
        return _forbidden(authorizer.refusal(principal, operation, kind, name))
    return serve(request)


def view_patterns(backend: object) -> Callable[[str], str | None]:
    """The pattern of a view of the node serving ``backend`` (None: no such view)."""

    def pattern(name: str) -> str | None:
        from odradek.engine.engine import Engine
        from odradek.node import Node

        if not isinstance(backend, Engine):
            return None
        try:
            found: str = Node.of(backend).views.view(name).definition.pattern
        except OdradekError:
            return None
        return found

    return pattern
