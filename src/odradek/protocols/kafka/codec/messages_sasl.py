"""Messages of authentication: SaslAuthenticate (36). SaslHandshake (17) is in
messages_admin.py.

Field layouts follow the Kafka protocol's message definitions; each field names the
versions it exists in.
"""

from __future__ import annotations

import dataclasses

from odradek.protocols.kafka.codec.schema import BYTES, INT16, INT64, STRING, f

# -- SaslAuthenticate (36) ------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SaslAuthenticateRequest:
    auth_bytes: bytes = f(BYTES)

    def __repr__(self) -> str:  # the bytes hold a password or a token
        return f"SaslAuthenticateRequest(<{len(self.auth_bytes)} bytes>)"


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class SaslAuthenticateResponse:
    error_code: int = f(INT16)
    error_message: str | None = f(STRING, nullable="0+", default=None)
    auth_bytes: bytes = f(BYTES, default=b"")
    session_lifetime_ms: int = f(INT64, "1+", default=0)
