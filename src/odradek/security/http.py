"""HTTP ``Authorization`` headers (Basic and Bearer), shared by the HTTP doors and the
Flight door's middleware (gRPC carries the same header)."""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING

from odradek import limits
from odradek.errors import Unauthenticated

if TYPE_CHECKING:  # the client imports this module for basic_header alone
    from odradek.security.authenticator import Authenticated, Authenticator

CHALLENGE = 'Basic realm="odradek", charset="UTF-8", Bearer realm="odradek"'


def authenticate_header(authenticator: Authenticator, header: str | None) -> Authenticated:
    """The principal an ``Authorization`` header names; Unauthenticated otherwise."""
    if not header:
        raise Unauthenticated("authentication required: send Authorization: Bearer TOKEN or Basic")
    if len(header) > limits.security_credential_bytes_max:
        raise Unauthenticated("authentication failed: the Authorization header is too long")
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return authenticator.bearer(value)
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise Unauthenticated("authentication failed: malformed Basic credentials") from None
        name, separator, password = decoded.partition(":")
        if not separator or not name:
            raise Unauthenticated("authentication failed: malformed Basic credentials")
        from odradek.security.authenticator import Authenticated

        return Authenticated(authenticator.password(name, password, "basic"))
    raise Unauthenticated("authentication failed: the Authorization scheme must be Bearer or Basic")


def bearer_token(header: str | None) -> str | None:
    """The token of a ``Bearer`` header (None for another scheme)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def basic_header(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
