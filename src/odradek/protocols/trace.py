"""W3C Trace Context (``traceparent``, ``tracestate``) taken into record headers.

A record's headers cross every door unchanged, so a trace context a producer put in its
record's ``traceparent`` / ``tracestate`` headers comes out on every other door as it
went in. The HTTP API also takes the request's own ``traceparent`` and ``tracestate``
HTTP headers (what an instrumented HTTP client sends) into the headers of each record
of a produce that has none of its own. Those are validated (W3C Trace Context level 1,
§3.2 and §3.3), never generated: no tracing SDK runs in the server.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from odradek import limits
from odradek.errors import InvalidRequest

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
# A list member: key "=" value (§3.3.1.3); the value is printable ASCII but ',' and '='.
_MEMBER = re.compile(
    r"[a-z0-9][a-z0-9_\-*/@]{0,255}=[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
)


def check_traceparent(value: str) -> str:
    """``value`` if it is a valid version-00 style ``traceparent``, else InvalidRequest."""
    match = _TRACEPARENT.fullmatch(value.strip())
    if match is None:
        raise InvalidRequest(
            f"the traceparent header {value[:100]!r} is not a W3C trace context "
            "(VERSION-TRACEID-PARENTID-FLAGS: 2, 32, 16 and 2 lower-case hex digits)"
        )
    version, trace_id, parent_id, _ = match.groups()
    if version == "ff":
        raise InvalidRequest(f"the traceparent header {value!r} has the invalid version ff")
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        raise InvalidRequest(f"the traceparent header {value!r} has an all-zero trace id or parent id")
    return match.group(0)


def check_tracestate(value: str) -> str:
    """``value`` if it is a valid ``tracestate`` within the bounds, else InvalidRequest."""
    if len(value) > limits.tracestate_chars_max:
        raise InvalidRequest(
            f"the tracestate header has {len(value)} characters; at most "
            f"{limits.tracestate_chars_max} are taken (W3C Trace Context)"
        )
    members = [member.strip() for member in value.split(",") if member.strip()]
    if len(members) > limits.tracestate_members_max:
        raise InvalidRequest(
            f"the tracestate header has {len(members)} list members; at most "
            f"{limits.tracestate_members_max} (W3C Trace Context)"
        )
    for member in members:
        if _MEMBER.fullmatch(member) is None:
            raise InvalidRequest(
                f"the tracestate header's member {member[:100]!r} is not KEY=VALUE (W3C Trace Context)"
            )
    return ",".join(members)


def request_context(headers: Mapping[str, str]) -> dict[str, bytes]:
    """The trace context of an HTTP request's headers (``headers``: lower-case names),
    validated; {} when it has no ``traceparent`` (a ``tracestate`` alone is ignored, as
    W3C Trace Context says)."""
    parent = headers.get(TRACEPARENT)
    if parent is None:
        return {}
    context = {TRACEPARENT: check_traceparent(parent).encode()}
    state = headers.get(TRACESTATE)
    if state is not None and state.strip():
        context[TRACESTATE] = check_tracestate(state).encode()
    return context


def with_context(rows: list[dict[str, Any]], context: Mapping[str, bytes]) -> list[dict[str, Any]]:
    """``rows`` (records as dicts), each without a ``traceparent`` header of its own given
    ``context``'s headers."""
    if not context:
        return rows
    traced = []
    for row in rows:
        headers = row.get("headers") or {}
        if TRACEPARENT not in headers:
            row = {**row, "headers": {**headers, **context}}
        traced.append(row)
    return traced
