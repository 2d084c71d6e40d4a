"""OAUTHBEARER / JWT: tokens signed by an identity provider, checked against its JWKS.

``odradek serve --jwks FILE|URL`` names the provider's key set (a JSON Web Key Set).
A JWT is accepted when its signature verifies with the key its header names (``kid``;
the only key when the set has one), with an asymmetric algorithm (RS*, PS*, ES*, EdDSA;
never ``none`` nor a shared-secret HS*), it carries ``exp`` and ``sub`` and has not
expired (``limits.jwt_leeway_seconds`` of skew allowed), and ``aud``/``iss`` match when
the server names them. The principal is ``sub``; the claims ``tenant`` (text) and
``admin`` (true) give its tenant and admin flag.

A URL is fetched at start (a failure stops the server: no silent open door), again at
most every ``limits.jwks_refresh_seconds``, and at once (at most that often) when a
token names a key id the set does not hold, so rotated keys are picked up.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from typing import Any

import jwt

from odradek import limits
from odradek.errors import InvalidRequest, Unauthenticated
from odradek.security.principal import Principal

log = logging.getLogger("odradek.security")

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


def _read_source(source: str) -> bytes:
    if source.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(source, timeout=limits.jwks_fetch_seconds_max) as response:
                data: bytes = response.read(limits.jwks_bytes_max + 1)
        except OSError as exc:
            raise InvalidRequest(f"--jwks {source}: cannot fetch it ({exc})") from None
    else:
        try:
            with open(source, "rb") as handle:
                data = handle.read(limits.jwks_bytes_max + 1)
        except OSError as exc:
            raise InvalidRequest(f"--jwks {source}: cannot read it ({exc.strerror or exc})") from None
    if len(data) > limits.jwks_bytes_max:
        raise InvalidRequest(f"--jwks {source}: larger than {limits.jwks_bytes_max} bytes")
    return data


def load_key_set(source: str) -> jwt.PyJWKSet:
    data = _read_source(source)
    try:
        return jwt.PyJWKSet.from_dict(json.loads(data))
    except (ValueError, jwt.PyJWTError, TypeError, AttributeError) as exc:
        raise InvalidRequest(f"--jwks {source}: not a JSON Web Key Set with a usable key ({exc})") from None


class JwtValidator:
    """Checks JWTs against the key set of ``source`` (see the module docstring)."""

    def __init__(self, source: str, *, audience: str | None = None, issuer: str | None = None) -> None:
        self.source = source
        self.audience = audience
        self.issuer = issuer
        self._keys = load_key_set(source)
        self._fetched = time.monotonic()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JwtValidator({self.source!r})"

    def _key(self, key_id: str | None) -> Any:
        keys = self._keys
        if key_id is None:
            if len(keys.keys) == 1:
                return keys.keys[0]
            raise Unauthenticated("the token names no key (kid) and the key set holds several")
        for key in keys.keys:
            if key.key_id == key_id:
                return key
        if self._refresh():
            return self._key(key_id)
        raise Unauthenticated("the token is signed with a key the server does not know")

    def _refresh(self) -> bool:
        """Fetch a URL's key set again, at most every ``jwks_refresh_seconds``."""
        if not self.source.startswith(("http://", "https://")):
            return False
        with self._lock:
            if time.monotonic() - self._fetched < limits.jwks_refresh_seconds:
                return False
            self._fetched = time.monotonic()
            try:
                self._keys = load_key_set(self.source)
            except InvalidRequest as exc:
                log.warning(
                    "JWKS refresh failed; keeping the keys held", extra={"fields": {"error": exc.message}}
                )
                return False
        return True

    def validate(self, token: str) -> tuple[Principal, float]:
        """The principal of ``token`` and when it expires (Unix seconds)."""
        if len(token) > limits.security_credential_bytes_max:
            raise Unauthenticated("the token is too long")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not a JWT") from None
        if header.get("alg") not in ALGORITHMS:
            raise Unauthenticated("the token's algorithm is not accepted (asymmetric signatures only)")
        key = self._key(header.get("kid"))
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[header["alg"]],
                audience=self.audience,
                issuer=self.issuer,
                leeway=limits.jwt_leeway_seconds,
                options={"require": ["exp", "sub"], "verify_aud": self.audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid: {type(exc).__name__}") from None
        subject = claims["sub"]
        tenant = claims.get("tenant")
        if (
            not isinstance(subject, str)
            or not subject
            or (tenant is not None and not isinstance(tenant, str))
        ):
            raise Unauthenticated("the token's sub (and tenant) claims must be text")
        return Principal(subject, tenant, claims.get("admin") is True, "OAUTHBEARER"), float(claims["exp"])
