"""What the administration actions of users, tokens, access control lists and quotas
share (admin.py, acl_admin.py, quota_admin.py): the admin check and the JSON body of a
request, and the same actions run on stores opened here while the server is stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from odradek.errors import InvalidRequest, Unauthorized
from odradek.security.principal import ANONYMOUS, Principal

#: An administration action by name with its JSON body, answering its JSON result.
Call = Callable[[str, dict[str, Any]], dict[str, Any]]
#: A module's ``serve_action`` bound to its store: (principal, action, raw body) -> JSON.
Serve = Callable[[Principal, str, bytes], bytes]


def admin_body(principal: Principal, action: str, raw: bytes) -> dict[str, Any]:
    """The JSON object body of ``action``, once ``principal`` is known to be an admin."""
    if not principal.admin:
        raise Unauthorized(f"{principal} may not {action.replace('_', ' ')}: it takes an admin principal")
    try:
        body = json.loads(raw) if raw else {}
    except ValueError:
        raise InvalidRequest(f"the body of {action} is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"the body of {action} must be a JSON object")
    return body


def local_caller(serve: Serve) -> Call:
    """The actions of ``serve`` run in this process, as the data directory's owner."""

    def call(action: str, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(serve(ANONYMOUS, action, json.dumps(body).encode()))
        return result

    return call
