"""Tenants on the Schema Registry (decision 0028): a tenant's subjects are its own.

A subject is named after its topic (``orders-value``), so a tenant's subject is the
engine's ``_t.acme.orders-value`` (security/tenants.py's prefix), which names the
tenant's topic ``_t.acme.orders``. :func:`serve` rewrites a tenant's request (the subject
of its path, a ``subject`` or ``subjectPrefix`` query, the subjects of its schema
references) and its answer back (every JSON string starting with the prefix), and keeps
out what the tenant does not own:

* listings (``GET /subjects``, ``/schemas/ids/N/subjects``, ``/schemas/ids/N/versions``)
  hold its own subjects only;
* a schema by id (``/schemas/ids/N``, ``/schemas/guids/G``) is answered only when one of
  its subjects uses it (ids are the registry's, shared: 40403 otherwise, as for an id
  that does not exist);
* the global ``config`` and ``mode`` are the cluster's: a tenant reads them, never
  changes them (403); views (``/v1/views``) are the cluster's too (403).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import Any

from odradek.protocols.registry.routes import Request, Response
from odradek.security.tenants import Namespace

Serve = Callable[[Request], Response]

_FORBIDDEN = 40301
_SCHEMA_NOT_FOUND = 40403


def serve(namespace: Namespace, request: Request, handle: Serve) -> Response:
    """The registry's answer to ``request`` said in tenant ``namespace``."""
    prefix = namespace.prefix
    segments = [part for part in request.path.strip("/").split("/") if part]
    method = request.method.upper()
    if segments[:1] in (["config"], ["mode"]) and len(segments) == 1 and method != "GET":
        return Response.error(
            403, _FORBIDDEN, f"the global {segments[0]} is the cluster's, not {namespace}'s"
        )
    if segments[:2] == ["v1", "views"]:
        return Response.error(403, _FORBIDDEN, f"views are the cluster's, not served to {namespace}")
    if segments[:1] == ["subjects"] and len(segments) >= 2:
        segments[1] = prefix + segments[1]
    elif segments[:2] == ["compatibility", "subjects"] and len(segments) >= 3:
        segments[2] = prefix + segments[2]
    elif segments[:1] in (["config"], ["mode"]) and len(segments) >= 2:
        segments[1] = prefix + segments[1]
    query = dict(request.query)
    if "subject" in query:
        query["subject"] = prefix + query["subject"]
    if segments == ["subjects"]:
        query["subjectPrefix"] = prefix + query.get("subjectPrefix", "")
    if segments[:2] in (["schemas", "ids"], ["schemas", "guids"]) and len(segments) >= 3:
        if not _uses(namespace, handle, segments[:3]):
            return Response.error(404, _SCHEMA_NOT_FOUND, "Schema not found")
    engine = dataclasses.replace(
        request, path="/" + "/".join(segments), query=query, body=_references(prefix, request.body)
    )
    answer = handle(engine)
    return _local(namespace, answer, segments)


def _uses(namespace: Namespace, handle: Serve, target: list[str]) -> bool:
    """Whether a subject of ``namespace`` uses the schema ``target`` names."""
    if target[1] == "guids":
        answer = handle(Request("GET", "/" + "/".join(target)))
        if answer.status != 200:
            return True  # its own refusal (not found) is the answer
        found = json.loads(answer.body)
        schema_id = found.get("id") if isinstance(found, dict) else None
        if schema_id is None:
            return False
        target = ["schemas", "ids", str(schema_id)]
    answer = handle(Request("GET", "/" + "/".join([*target, "subjects"]), {"deleted": "true"}))
    if answer.status != 200:
        return True  # not found: answered as such
    subjects = json.loads(answer.body)
    return isinstance(subjects, list) and any(isinstance(s, str) and namespace.owns(s) for s in subjects)


def _references(prefix: str, body: bytes) -> bytes:
    """A registration's body with the subjects of its schema references prefixed."""
    if not body or b'"references"' not in body:
        return body
    try:
        document = json.loads(body)
    except ValueError:
        return body  # the registry refuses it with its own message
    references = document.get("references") if isinstance(document, dict) else None
    if not isinstance(references, list):
        return body
    for reference in references:
        if isinstance(reference, dict) and isinstance(reference.get("subject"), str):
            reference["subject"] = prefix + reference["subject"]
    return json.dumps(document).encode()


def _local(namespace: Namespace, answer: Response, segments: list[str]) -> Response:
    """The answer with the tenant's subjects as it names them, without others'."""
    if not answer.body or not answer.content_type.startswith("application/"):
        return answer
    try:
        document: Any = json.loads(answer.body)
    except ValueError:
        return answer
    if segments == ["subjects"] or (segments[:2] == ["schemas", "ids"] and segments[3:] == ["subjects"]):
        if isinstance(document, list):
            document = [s for s in document if not isinstance(s, str) or namespace.owns(s)]
    if segments[:2] == ["schemas", "ids"] and segments[3:] == ["versions"] and isinstance(document, list):
        document = [
            entry
            for entry in document
            if not isinstance(entry, dict) or namespace.owns(str(entry.get("subject", "")))
        ]
    local = namespace.local_value(document)
    if isinstance(local, dict) and isinstance(local.get("message"), str):
        local["message"] = namespace.local_text(local["message"])
    return dataclasses.replace(answer, body=json.dumps(local).encode())
