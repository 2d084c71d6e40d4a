"""Authentication on the Flight door (gRPC headers) and in the native client.

The server's middleware reads the ``authorization`` header of every call: ``Bearer
TOKEN`` (an API token or a JWT) or ``Basic`` (user and password, checked against the
stored SCRAM credential; verified checks are remembered for a while, security/
authenticator.py). A call without acceptable credentials is refused with gRPC's
UNAUTHENTICATED before any handler runs; a handler names the caller with
:func:`call_principal`. pyarrow does not expose the peer's client certificate, so on
this door mTLS only admits the connection (gRPC checks the certificate against
``--tls-ca``); the principal comes from the credentials.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import pyarrow.flight as flight

from odradek.errors import Unauthenticated
from odradek.security.http import authenticate_header, bearer_token
from odradek.security.principal import ANONYMOUS, Principal

if TYPE_CHECKING:  # the client imports this module for its credentials alone
    from odradek.security.authenticator import Authenticator

MIDDLEWARE = "odradek-authentication"


class _Authenticated(flight.ServerMiddleware):  # type: ignore[misc]
    def __init__(
        self,
        principal: Principal,
        token: str | None = None,
        expires: float | None = None,
        header: str | None = None,
    ) -> None:
        self.principal = principal
        self.token = token  # a bearer token, checked again by long-lived streams (revalidation.py)
        self.expires = expires
        # The credentials as sent: what an agent passes on when it asks another agent of
        # its cluster for a part of this call (decision 0035). None: a certificate's.
        self.header = header


class FlightAuthentication(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """The server middleware: every call authenticated, or refused UNAUTHENTICATED."""

    def __init__(self, authenticator: Authenticator) -> None:
        self.authenticator = authenticator

    def start_call(self, info: flight.CallInfo, headers: dict[str, list[str]]) -> _Authenticated:
        values = headers.get("authorization") or headers.get("Authorization") or []
        header = values[0] if values else None
        try:
            authenticated = authenticate_header(self.authenticator, header)
        except Unauthenticated as exc:
            raise flight.FlightUnauthenticatedError(exc.message) from None
        if authenticated.expires is not None and authenticated.expires <= time.time():
            raise flight.FlightUnauthenticatedError("authentication failed: the token has expired")
        return _Authenticated(authenticated.principal, bearer_token(header), authenticated.expires, header)


def call_credential(context: flight.ServerCallContext) -> tuple[Principal, str | None, float | None] | None:
    """The principal of a Flight call, its bearer token and when it expires; None on a
    server without authentication."""
    middleware = context.get_middleware(MIDDLEWARE)
    if middleware is None:
        return None
    return middleware.principal, middleware.token, middleware.expires


def call_header(context: flight.ServerCallContext) -> str | None:
    """The ``authorization`` header a Flight call was made with; None on a server without
    authentication, or for a principal its certificate names."""
    middleware = context.get_middleware(MIDDLEWARE)
    return middleware.header if middleware is not None else None


def call_principal(context: flight.ServerCallContext) -> Principal:
    """The principal of a Flight call (ANONYMOUS on a server without authentication)."""
    middleware = context.get_middleware(MIDDLEWARE)
    return middleware.principal if middleware is not None else ANONYMOUS


class _Credentials(flight.ClientMiddleware):  # type: ignore[misc]
    def __init__(self, header: str) -> None:
        self._header = header

    def sending_headers(self) -> dict[str, str]:
        return {"authorization": self._header}

    def received_headers(self, headers: Any) -> None:
        pass


class ClientCredentials(flight.ClientMiddlewareFactory):  # type: ignore[misc]
    """The native client's credentials, sent on every call. ``repr`` hides them."""

    def __init__(self, header: str) -> None:
        self._header = header

    def __repr__(self) -> str:
        return "ClientCredentials(<hidden>)"

    def start_call(self, info: flight.CallInfo) -> _Credentials:
        return _Credentials(self._header)
