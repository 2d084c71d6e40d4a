"""SASL on the Kafka door: what one connection may send before and while it
authenticates (the connection loop, server.py, asks this module).

Rules (as a Kafka broker's SASL listener)
-----------------------------------------
* On a listener with authentication, a connection may send nothing but ApiVersions,
  SaslHandshake and SaslAuthenticate until it has authenticated; any other request
  closes it (a broker does the same). A verified client certificate (mTLS) whose CN
  names the principal authenticates the connection before any request.
* SaslHandshake names the mechanism (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER);
  SaslAuthenticate carries the exchange (security/sasl.py). Version 0 of SaslHandshake
  is followed by raw SASL frames instead (size-prefixed, without a Kafka header).
* A failed exchange is answered SASL_AUTHENTICATION_FAILED with a message, and the
  connection is closed once the answer is written. More than
  ``limits.kafka_sasl_requests_max`` requests without authenticating close it too.
* KIP-368: a credential that expires (a token or JWT with an expiry) gives the session
  that lifetime in SaslAuthenticate v1+; the client authenticates again on the same
  connection before then (as the same principal). A request after the session ended
  closes the connection.
* The connection's principal is checked again (security/revalidation.py) at its next
  request once the credentials or the bindings changed, and at least every
  ``limits.security_stream_recheck_seconds``: a request after its user was removed or
  its token revoked closes the connection (a client that authenticates again is refused).
* The connection's principal is published to its task (security.principal), so that
  every handler of the connection can name it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

from odradek import limits
from odradek.errors import OdradekError
from odradek.protocols.kafka.codec import messages_admin as admin_messages
from odradek.protocols.kafka.codec import messages_data as data_messages
from odradek.protocols.kafka.codec.api import APIS, ApiKey, Request
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.codec.messages_sasl import SaslAuthenticateResponse
from odradek.security.authenticator import Authenticator
from odradek.security.principal import ANONYMOUS, Principal, set_current_principal
from odradek.security.revalidation import StreamGuard
from odradek.security.sasl import SaslServer

log = logging.getLogger("odradek.protocols.kafka.auth")

SASL_AUTHENTICATION_FAILED = 58  # Kafka's error code (not in every codec table yet)
_BEFORE_AUTHENTICATION = frozenset({ApiKey.API_VERSIONS, ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE})


def api_versions_for(body: data_messages.ApiVersionsResponse, authenticating: bool) -> Any:
    """ApiVersions as this listener serves it: with SaslHandshake when it authenticates
    (a client configured for SASL then starts it); as the codec serves it otherwise
    (without SaslHandshake: a client configured for SASL is told at once that this
    listener does not take it)."""
    if not authenticating:
        return body
    keys = [
        key for key in body.api_keys if key.api_key not in (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE)
    ]
    for api_key in (ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE):
        api = APIS[api_key]
        keys.append(
            data_messages.ApiVersion(
                api_key=api_key, min_version=api.min_version, max_version=api.max_version
            )
        )
    keys.sort(key=lambda key: key.api_key)
    return dataclasses.replace(body, api_keys=tuple(keys))


def not_authenticating() -> SaslAuthenticateResponse:
    """SaslAuthenticate on a listener without authentication: ILLEGAL_SASL_STATE."""
    return SaslAuthenticateResponse(
        error_code=ErrorCode.ILLEGAL_SASL_STATE,
        error_message="this listener does not authenticate (odradek serve --auth turns SASL on)",
    )


class ConnectionAuth:
    """The authentication state of one Kafka connection."""

    def __init__(
        self, authenticator: Authenticator | None, peer: Any, certificate: dict[str, Any] | None
    ) -> None:
        self.authenticator = authenticator
        self.peer = peer
        self.principal: Principal | None = ANONYMOUS if authenticator is None else None
        self.expires: float | None = None
        self._guard: StreamGuard | None = None  # the principal checked again (revalidation.py)
        self.close_after_response = False
        self.raw_sasl = False  # after SaslHandshake v0: the next frames are raw SASL tokens
        self._sasl: SaslServer | None = None
        self._unauthenticated_requests = 0
        if authenticator is not None and certificate:
            from odradek.protocols.tls import peer_subject

            self.principal = authenticator.certificate(peer_subject(certificate))
        if self.principal is not None:
            set_current_principal(self.principal)

    @property
    def required(self) -> bool:
        return self.authenticator is not None

    def refusal(self, request: Request) -> str | None:
        """Why ``request`` closes the connection unanswered (None: serve it)."""
        if self.authenticator is None or request.api_key in _BEFORE_AUTHENTICATION:
            if self.principal is None:
                self._unauthenticated_requests += 1
                if self._unauthenticated_requests > limits.kafka_sasl_requests_max:
                    return f"more than {limits.kafka_sasl_requests_max} requests without authenticating"
            return None
        if self.principal is None:
            return f"{ApiKey(request.api_key).name} before authenticating (SASL is required on this listener)"
        if self.expires is not None and time.time() >= self.expires:
            return f"the session of {self.principal} expired (KIP-368: authenticate again before it ends)"
        if self._guard is not None:  # its user removed, its token revoked: the connection closes
            try:
                self._guard.check()
            except OdradekError as exc:
                return exc.message
        return None

    # -- SASL ---------------------------------------------------------------------------

    def handshake(self, request: Request) -> admin_messages.SaslHandshakeResponse:
        assert self.authenticator is not None
        mechanisms = self.authenticator.kafka_mechanisms
        sasl = self.authenticator.sasl()
        mechanism = request.body.mechanism
        if not sasl.start(mechanism):
            self.close_after_response = True
            log.warning(
                "Kafka SASL mechanism refused",
                extra={"fields": {"peer": _host(self.peer), "mechanism": str(mechanism)[:64]}},
            )
            return admin_messages.SaslHandshakeResponse(
                error_code=ErrorCode.UNSUPPORTED_SASL_MECHANISM, mechanisms=mechanisms
            )
        self._sasl = sasl
        self.raw_sasl = request.api_version == 0
        return admin_messages.SaslHandshakeResponse(error_code=ErrorCode.NONE, mechanisms=mechanisms)

    def authenticate(self, request: Request) -> SaslAuthenticateResponse:
        response, lifetime_ms, error = self._step(bytes(request.body.auth_bytes))
        if error is not None:
            return SaslAuthenticateResponse(error_code=SASL_AUTHENTICATION_FAILED, error_message=error)
        return SaslAuthenticateResponse(
            error_code=ErrorCode.NONE, auth_bytes=response, session_lifetime_ms=lifetime_ms
        )

    def raw_token(self, frame: bytes) -> bytes | None:
        """A raw SASL frame (after SaslHandshake v0): the raw answer, or None to close
        the connection (refused: version 0 has no way to say why)."""
        response, _lifetime, error = self._step(frame)
        return None if error is not None else response

    def _step(self, data: bytes) -> tuple[bytes, int, str | None]:
        if self._sasl is None:
            self.close_after_response = True
            return b"", 0, "SaslAuthenticate before a SaslHandshake"
        step = self._sasl.step(data)
        if not step.done:
            return step.response, 0, None
        self._sasl = None
        self.raw_sasl = False
        principal = step.principal
        error = step.error
        if principal is not None and self.principal is not None and principal.name != self.principal.name:
            error = f"re-authentication as {principal} on a connection of {self.principal}"
            principal = None
        if principal is None:
            self.close_after_response = True
            log.warning(
                "Kafka authentication failed",
                extra={"fields": {"peer": _host(self.peer), "reason": error or "refused"}},
            )
            return b"", 0, error or "authentication failed"
        self.principal = principal
        self.expires = step.expires
        assert self.authenticator is not None
        self._guard = StreamGuard(self.authenticator, principal, step.token, step.expires, what="connection")
        set_current_principal(principal)
        log.info(
            "Kafka connection authenticated",
            extra={
                "fields": {
                    "peer": _host(self.peer),
                    "principal": principal.name,
                    "mechanism": principal.mechanism,
                }
            },
        )
        return step.response, step.session_lifetime_ms(), None


def _host(peer: Any) -> str:
    return str(peer[0]) if peer else "?"
