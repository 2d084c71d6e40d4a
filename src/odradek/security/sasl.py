"""The server side of a Kafka connection's SASL exchange, without IO.

Theory of operation
-------------------
A connection calls :meth:`SaslServer.start` with the mechanism of its SaslHandshake,
then :meth:`SaslServer.step` with the bytes of each SaslAuthenticate (or, after a
version 0 handshake, of each raw SASL frame). A step returns a :class:`SaslStep`:
bytes to send back, and once the exchange ends either the principal (with when its
credential expires, for KIP-368 session lifetimes) or a refusal message. Any malformed
input is a refusal, never an exception: nothing a client sends authenticates it except
a complete, valid exchange.

* PLAIN (RFC 4616): ``authzid NUL authcid NUL password`` in one step; an authzid other
  than the user is refused.
* SCRAM-SHA-256/512 (RFC 5802, 7677; ``scramp``): client-first, then client-final. The
  server nonce is fresh for every exchange, so a client-final recorded from another
  exchange (a replay) fails its proof. An unknown user gets a made-up salt derived from
  its name, so the exchange does not tell which users exist; it fails at the proof.
* OAUTHBEARER (RFC 7628): ``n,,\\x01auth=Bearer TOKEN\\x01\\x01`` in one step; the token
  is an API token or a JWT (security/jwks.py).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import secrets
import time
from typing import TYPE_CHECKING

import scramp

from odradek import limits
from odradek.errors import Unauthenticated
from odradek.security.passwords import MECHANISMS
from odradek.security.principal import Principal

if TYPE_CHECKING:
    from odradek.security.authenticator import Authenticator

_FAKE_SALT_KEY = secrets.token_bytes(32)  # per process: the made-up salts of unknown users


@dataclasses.dataclass(frozen=True, slots=True)
class SaslStep:
    """What one step of the exchange answers. ``done`` with ``principal``: authenticated;
    ``done`` with ``error``: refused (the connection is to be closed)."""

    response: bytes = b""
    done: bool = False
    principal: Principal | None = None
    expires: float | None = None
    error: str | None = None
    token: str | None = dataclasses.field(default=None, repr=False)  # OAUTHBEARER's, checked again

    def session_lifetime_ms(self, now: float | None = None) -> int:
        """KIP-368: how long the session may last (0: no limit)."""
        if self.expires is None:
            return 0
        left = self.expires - (time.time() if now is None else now)
        return max(int(left * 1000), 1)


def _refused(message: str) -> SaslStep:
    return SaslStep(done=True, error=message)


class SaslServer:
    """One SASL exchange of one connection (see the module docstring)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self.mechanism: str | None = None
        self._scram: scramp.core.ScramServer | None = None
        self._scram_user: str | None = None
        self._steps = 0

    def start(self, mechanism: str) -> bool:
        """Begin an exchange with ``mechanism``; False if it is not offered."""
        if mechanism not in self._authenticator.kafka_mechanisms:
            return False
        self.mechanism = mechanism
        self._scram = None
        self._scram_user = None
        self._steps = 0
        return True

    def step(self, data: bytes) -> SaslStep:
        if self.mechanism is None:
            return _refused("SaslAuthenticate before SaslHandshake")
        self._steps += 1
        if len(data) > limits.security_credential_bytes_max:
            return _refused("the authentication message is too long")
        try:
            if self.mechanism == "PLAIN":
                return self._plain(data)
            if self.mechanism == "OAUTHBEARER":
                return self._oauthbearer(data)
            return self._scram_step(data)
        except Unauthenticated as exc:
            return _refused(exc.message)

    # -- mechanisms ------------------------------------------------------------------------

    def _plain(self, data: bytes) -> SaslStep:
        parts = data.split(b"\0")
        if len(parts) != 3:
            return _refused("malformed PLAIN message")
        try:
            authzid, name, password = (part.decode("utf-8") for part in parts)
        except UnicodeDecodeError:
            return _refused("malformed PLAIN message: not UTF-8")
        if not name or (authzid and authzid != name):
            return _refused("PLAIN: no user name, or an authorization id other than the user")
        principal = self._authenticator.password(name, password, "PLAIN")
        return SaslStep(done=True, principal=principal)

    def _oauthbearer(self, data: bytes) -> SaslStep:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _refused("malformed OAUTHBEARER message: not UTF-8")
        header, separator, rest = text.partition("\x01")
        if not separator or not header.startswith(("n,", "y,")):
            return _refused("malformed OAUTHBEARER message")
        token = None
        for pair in rest.split("\x01"):
            key, _, value = pair.partition("=")
            if key == "auth" and value[:7].lower() == "bearer ":
                token = value[7:].strip()
        if not token:
            return _refused("OAUTHBEARER message without a bearer token")
        authenticated = self._authenticator.bearer(token, "OAUTHBEARER")
        return SaslStep(
            done=True, principal=authenticated.principal, expires=authenticated.expires, token=token
        )

    def _scram_step(self, data: bytes) -> SaslStep:
        assert self.mechanism is not None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return _refused(f"malformed {self.mechanism} message: not UTF-8")
        try:
            if self._scram is None:
                if self._steps != 1:
                    return _refused("SCRAM exchange out of order")
                self._scram = scramp.ScramMechanism(self.mechanism).make_server(self._auth_info)
                self._scram.set_client_first(text)  # calls _auth_info with the user's name
                return SaslStep(response=self._scram.get_server_first().encode())
            if self._steps != 2:
                return _refused("SCRAM exchange out of order")
            final = self._scram_final(self._scram, text)
        except scramp.ScramException:
            who = (self._scram_user or "?")[:64]
            return _refused(f"authentication failed for user {who!r}: unknown user or wrong password")
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):  # what scramp lets through
            return _refused(f"malformed {self.mechanism} message")
        name = self._scram_user or ""
        user = self._authenticator.store.user(name)
        if user is None:  # removed during the exchange, or a made-up salt's proof matched
            return _refused(f"authentication failed for user {name[:64]!r}: unknown user or wrong password")
        return SaslStep(response=final, done=True, principal=user.principal(self.mechanism))

    def _scram_final(self, server: scramp.core.ScramServer, text: str) -> bytes:
        """The server-final of a client-final, checked by scramp; a nonce that only *ends*
        with this exchange's nonce (librdkafka before 2.1 repeats the client's part) is
        checked as Kafka's broker checks it: the proof over the message as sent."""
        try:
            server.set_client_final(text)
            return str(server.get_server_final()).encode()
        except scramp.ScramException:
            attributes = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
            nonce, proof, expected = attributes.get("r", ""), attributes.get("p"), str(server.nonce)
            if nonce == expected or not nonce.endswith(expected) or proof is None:
                raise
        if attributes.get("c") != "biws":  # base64 of "n,,": no channel binding
            raise scramp.ScramException("channel binding is not supported")
        hash_name = MECHANISMS[self.mechanism or ""]
        without_proof = text[: text.rindex(",p=")]
        message = f"{server.client_first_bare},{server.server_first},{without_proof}".encode()
        signature = hmac.new(server.stored_key, message, hash_name).digest()
        try:
            client_key = bytes(
                a ^ b for a, b in zip(base64.b64decode(proof, validate=True), signature, strict=True)
            )
        except (ValueError, binascii.Error):
            raise scramp.ScramException("malformed proof") from None
        if not hmac.compare_digest(hashlib.new(hash_name, client_key).digest(), server.stored_key):
            raise scramp.ScramException("wrong proof")
        verifier = base64.b64encode(hmac.new(server.server_key, message, hash_name).digest()).decode()
        return f"v={verifier}".encode()

    def _auth_info(self, name: str) -> tuple[bytes, bytes, bytes, int]:
        assert self.mechanism is not None
        self._scram_user = name
        store = self._authenticator.store
        user = store.user(name) if len(name) <= limits.security_name_chars_max else None
        if user is None and len(name) <= limits.security_name_chars_max and store.refresh(soon=True):
            user = store.user(name)  # added on another agent
        credential = user.credentials.get(self.mechanism) if user is not None else None
        if credential is not None:
            return credential.auth_info()
        # Unknown user (or none of this mechanism): a stable made-up salt and random keys.
        salt = hmac.new(_FAKE_SALT_KEY, name.encode("utf-8", "replace"), hashlib.sha256).digest()[:24]
        size = hashlib.new(MECHANISMS[self.mechanism]).digest_size
        return salt, secrets.token_bytes(size), secrets.token_bytes(size), limits.scram_iterations_default
