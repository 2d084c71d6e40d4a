"""JWTs (OAUTHBEARER, Bearer) checked against a JWKS.

Goal: a token signed by a key of the set, unexpired, with a subject, authenticates as
its subject (tenant and admin from its claims); an expired token, one signed by another
key, one with an algorithm the server refuses (none, a shared-secret HS256), one
without sub or exp, or for another audience, authenticates nobody; an unreadable or
malformed JWKS stops the server at start with a clear error.
Method: an RSA key made with `cryptography`, its JWKS written to a file, tokens signed
with PyJWT; the validator and the authenticator in-process.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from odradek.errors import InvalidRequest, Unauthenticated
from odradek.security import Authenticator, CredentialStore
from odradek.security.jwks import JwtValidator

_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwks(path: Path) -> str:
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key()))
    path.write_text(json.dumps({"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}))
    return str(path)


def _token(key: Any = _KEY, algorithm: str = "RS256", **claims: Any) -> str:
    body = {"sub": "alice", "exp": time.time() + 600, "aud": "odradek", **claims}
    body = {name: value for name, value in body.items() if value is not None}
    return jwt.encode(body, key, algorithm=algorithm, headers={"kid": "k1"})


def test_a_valid_token_names_its_principal(tmp_path: Path) -> None:
    validator = JwtValidator(_jwks(tmp_path / "jwks.json"), audience="odradek")
    principal, expires = validator.validate(_token(tenant="shop", admin=True))
    # a tenant's principal is never a cluster admin (decision 0028)
    assert (principal.name, principal.tenant, principal.admin, principal.mechanism) == (
        "alice",
        "shop",
        False,
        "OAUTHBEARER",
    )
    assert validator.validate(_token(admin=True))[0].admin is True
    assert expires > time.time()
    authenticator = Authenticator(CredentialStore.open(str(tmp_path / "data")), validator)
    assert authenticator.bearer(_token()).principal.name == "alice"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        (lambda: _token(exp=time.time() - 3600), "expired"),
        (lambda: _token(key=_OTHER), "not valid"),
        (lambda: _token(key="shared-secret-of-thirty-two-bytes!", algorithm="HS256"), "algorithm"),
        (lambda: jwt.encode({"sub": "alice", "exp": time.time() + 60}, None, algorithm="none"), "algorithm"),
        (lambda: _token(sub=None), "not valid"),
        (lambda: _token(exp=None), "not valid"),
        (lambda: _token(aud="another"), "not valid"),
        (lambda: "not.a.jwt", "not a JWT"),
    ],
)
def test_bad_tokens_authenticate_nobody(tmp_path: Path, token: Any, reason: str) -> None:
    validator = JwtValidator(_jwks(tmp_path / "jwks.json"), audience="odradek")
    with pytest.raises(Unauthenticated, match=reason):
        validator.validate(token())


def test_a_bad_key_set_is_refused_at_start(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="cannot read"):
        JwtValidator(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"keys": "nope"}')
    with pytest.raises(InvalidRequest, match="not a JSON Web Key Set"):
        JwtValidator(str(tmp_path / "bad.json"))
