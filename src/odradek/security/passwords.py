"""Salted SCRAM credentials (RFC 5802 / 7677): what is stored instead of a password.

A credential is ``(salt, iterations, stored_key, server_key)`` for one hash
(SHA-256 or SHA-512), exactly what a SCRAM server needs (``scramp``'s ``auth_fn``).
No password is ever stored. A PLAIN (or HTTP Basic) password is checked by deriving
``StoredKey = H(HMAC(PBKDF2(password, salt, i), "Client Key"))`` and comparing it in
constant time with the stored one.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import os
from typing import Any

import scramp

from odradek import limits
from odradek.errors import InvalidRequest

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
_SALT_BYTES = 24


@dataclasses.dataclass(frozen=True, slots=True)
class ScramCredential:
    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __repr__(self) -> str:  # keys are as good as a password against this server
        return f"ScramCredential({self.mechanism}, iterations={self.iterations})"

    @property
    def hash_name(self) -> str:
        return MECHANISMS[self.mechanism]

    def auth_info(self) -> tuple[bytes, bytes, bytes, int]:
        """What ``scramp``'s server asks of its ``auth_fn``."""
        return self.salt, self.stored_key, self.server_key, self.iterations

    def to_json(self) -> dict[str, Any]:
        def text(data: bytes) -> str:
            return base64.b64encode(data).decode()

        return {
            "salt": text(self.salt),
            "iterations": self.iterations,
            "stored_key": text(self.stored_key),
            "server_key": text(self.server_key),
        }

    @classmethod
    def from_json(cls, mechanism: str, data: dict[str, Any]) -> ScramCredential:
        return cls(
            mechanism,
            base64.b64decode(data["salt"]),
            int(data["iterations"]),
            base64.b64decode(data["stored_key"]),
            base64.b64decode(data["server_key"]),
        )


def check_password(password: str) -> str:
    if not isinstance(password, str) or not password:
        raise InvalidRequest("a password must not be empty")
    if len(password.encode()) > limits.security_password_bytes_max:
        raise InvalidRequest(f"a password is at most {limits.security_password_bytes_max} bytes")
    return password


def make_credential(
    mechanism: str, password: str, iterations: int = limits.scram_iterations_default
) -> ScramCredential:
    """A new salted credential for ``password`` (a fresh random salt)."""
    if mechanism not in MECHANISMS:
        raise InvalidRequest(f"mechanism must be one of {', '.join(MECHANISMS)}, got {mechanism!r}")
    check_password(password)
    try:
        salt, stored_key, server_key, count = scramp.ScramMechanism(mechanism).make_auth_info(
            password, iteration_count=iterations, salt=os.urandom(_SALT_BYTES)
        )
    except scramp.ScramException as exc:  # a password SASLprep refuses
        raise InvalidRequest(f"this password cannot be used with SCRAM: {exc.args[0]}") from None
    return ScramCredential(mechanism, salt, count, stored_key, server_key)


def password_matches(credential: ScramCredential, password: str) -> bool:
    """Whether ``password`` is the one ``credential`` was made of (constant time)."""
    try:
        prepared = scramp.core.saslprep(password)
    except scramp.ScramException:
        return False
    salted = hashlib.pbkdf2_hmac(
        credential.hash_name, prepared.encode(), credential.salt, credential.iterations
    )
    client_key = hmac.new(salted, b"Client Key", credential.hash_name).digest()
    stored_key = hashlib.new(credential.hash_name, client_key).digest()
    return hmac.compare_digest(stored_key, credential.stored_key)
