"""Principals and authentication on every door (docs/security.md, decision 0017).

* :mod:`~odradek.security.principal`: who made a request;
* :mod:`~odradek.security.credentials`: users (salted SCRAM) and API tokens (hashed),
  durable behind the storage seam;
* :mod:`~odradek.security.authenticator`: credentials to a principal, for every door;
* :mod:`~odradek.security.sasl`: the Kafka door's SASL exchange, without IO;
* :mod:`~odradek.security.jwks`: JWTs checked against an identity provider's keys;
* :mod:`~odradek.security.http`: HTTP Basic and Bearer for the HTTP doors and Flight.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from odradek.security.principal import ANONYMOUS, Principal, current_principal

if TYPE_CHECKING:
    from odradek.security.authenticator import Authenticated, Authenticator
    from odradek.security.credentials import CredentialStore

# Imported on first use (PEP 562): the credential store brings the storage seam and
# pyarrow, which commands that only parse arguments (`odradek acl --help`) must not pay.
_LAZY = {
    "Authenticated": "odradek.security.authenticator",
    "Authenticator": "odradek.security.authenticator",
    "CredentialStore": "odradek.security.credentials",
}


def __getattr__(name: str) -> Any:
    try:
        module_name = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'odradek.security' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


__all__ = ["ANONYMOUS", "Authenticated", "Authenticator", "CredentialStore", "Principal", "current_principal"]
