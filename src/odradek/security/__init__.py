"""Principals and authentication on every door (docs/security.md, decision 0017).

* :mod:`~odradek.security.principal`: who made a request;
* :mod:`~odradek.security.credentials`: users (salted SCRAM) and API tokens (hashed),
  durable behind the storage seam;
* :mod:`~odradek.security.authenticator`: credentials to a principal, for every door;
* :mod:`~odradek.security.sasl`: the Kafka door's SASL exchange, without IO;
* :mod:`~odradek.security.jwks`: JWTs checked against an identity provider's keys;
* :mod:`~odradek.security.http`: HTTP Basic and Bearer for the HTTP doors and Flight.
"""

from odradek.security.authenticator import Authenticated, Authenticator
from odradek.security.credentials import CredentialStore
from odradek.security.principal import ANONYMOUS, Principal, current_principal

__all__ = ["ANONYMOUS", "Authenticated", "Authenticator", "CredentialStore", "Principal", "current_principal"]
