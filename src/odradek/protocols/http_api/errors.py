"""The one error shape of the HTTP API and the status of each error code.

Every refusal is ``{"code", "message", "details"}``, the JSON of
``odradek.errors.to_wire`` that the Flight door sends in its errors' ``extra_info``
(docs/flight-protocol.md, "Errors"), with the same codes; the HTTP status says the
kind: 400 invalid, 401 unauthenticated, 403 unauthorized or a tenant's storage quota
reached, 404 not found, 409 conflict,
413 too large, 503 retryable (with ``Retry-After``), 500 for the rest.
"""

from __future__ import annotations

import json

from odradek.errors import OdradekError, to_wire

# The status of each error code; codes not named take 400 if they are InvalidRequest,
# 503 if retryable, else 500 (see status_of).
STATUS_OF_CODE = {
    "invalid_request": 400,
    "schema_violation": 400,
    "invalid_schema": 400,
    "sequence_error": 400,
    "offset_out_of_range": 400,
    "incompatible_schema": 409,
    "request_too_large": 413,
    "unknown_member": 404,
    "view_not_found": 404,
    "topic_not_found": 404,
    "not_found": 404,
    "method_not_allowed": 405,
    "topic_exists": 409,
    "conflict": 409,
    "unauthenticated": 401,
    "unauthorized": 403,
    # A tenant at its storage_bytes quota: the tenant's bound, not the server's space, and
    # a 4xx that clients and proxies do not retry (decision 0028).
    "quota_exceeded": 403,
    "unavailable": 503,
    "not_owner": 503,
    "storage_error": 503,
    "closed": 503,
    "data_damaged": 500,
    "fenced": 500,
    "error": 500,
}

# A retryable refusal tells the client when to try again (seconds).
RETRY_AFTER_SECONDS = 1

CONTENT_TYPE = "application/json"


def status_of(error: OdradekError) -> int:
    chosen = getattr(error, "http_status", None)  # a door's own refinement (routes.py)
    if isinstance(chosen, int):
        return chosen
    status = STATUS_OF_CODE.get(error.code)
    if status is not None:
        return status
    from odradek.errors import InvalidRequest

    if isinstance(error, InvalidRequest):
        return 400
    return 503 if error.retryable else 500


def error_body(code: str, message: str, details: dict[str, object] | None = None) -> bytes:
    """The error document (one line of JSON and a newline)."""
    return (json.dumps({"code": code, "message": message, "details": details or {}}) + "\n").encode()


def body_of(error: OdradekError) -> bytes:
    return (json.dumps(to_wire(error)) + "\n").encode()
