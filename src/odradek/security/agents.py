"""An agent's own credentials: what one agent of a cluster sends another when it calls
on its own behalf, not a client's (decision 0040).

With authentication on, a call an agent makes for a client carries the client's
credentials (decision 0035). Some calls have no client behind them: a consumer
group's dead letters appended to a topic of another cell, work an agent does in the
background. For those, each agent holds credentials of its own:

* At start it draws a random 256-bit secret, kept in memory only, and publishes the
  secret's SHA-256 in its agent record in etcd (``agents/<id>``, bound to its lease:
  cluster/keys.py's ``AgentRecord.token_hash``).
* It calls another agent with the bearer token ``odragent_<secret hex>.<agent id>``.
* The agent called looks the named agent up in its watched view of the agent records
  and compares the secret's hash with the record's, in constant time. A match
  authenticates the principal ``_agent.<id>``, a cluster admin (it may do what any
  agent does; the namespace of its names is the engine's).

Nothing secret is stored: etcd holds a hash, as the credential store holds API tokens'.
An agent's credentials die with its lease (its record is gone); a restarted agent
draws a new secret. Whoever may write the cluster's etcd keys may already do anything
to the cluster, so the trust is the one the cluster already has.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable

from odradek.errors import Unauthenticated
from odradek.security.principal import Principal

AGENT_TOKEN_PREFIX = "odragent_"
AGENT_PRINCIPAL_PREFIX = "_agent."
MECHANISM = "agent"
_SECRET_HEX = 64


class AgentCredentials:
    """This agent's own credentials: the token it sends, the hash it publishes."""

    def __init__(self, agent_id: str) -> None:
        self.agent_id = agent_id
        self._secret = secrets.token_hex(_SECRET_HEX // 2)
        self.token_hash = _hash(self._secret)

    def __repr__(self) -> str:
        return f"AgentCredentials({self.agent_id!r})"  # never the secret

    @property
    def authorization(self) -> str:
        """The ``authorization`` header value of a call on this agent's behalf."""
        return f"Bearer {AGENT_TOKEN_PREFIX}{self._secret}.{self.agent_id}"


def is_agent_token(token: str) -> bool:
    return token.startswith(AGENT_TOKEN_PREFIX)


def agent_principal(token: str, token_hash_of: Callable[[str], str | None] | None) -> Principal:
    """The principal of an agent's token, checked against the hash the named agent's
    record publishes (``token_hash_of``: an agent id's, None when no live agent has
    that id or it publishes none); Unauthenticated otherwise."""
    body = token[len(AGENT_TOKEN_PREFIX) :]
    secret, dot, agent_id = body[:_SECRET_HEX], body[_SECRET_HEX : _SECRET_HEX + 1], body[_SECRET_HEX + 1 :]
    expected = token_hash_of(agent_id) if token_hash_of is not None and dot == "." and agent_id else None
    if not expected or not hmac.compare_digest(_hash(secret), expected):
        raise Unauthenticated(
            "authentication failed: not the credentials of a live agent of this cluster"
            + ("" if token_hash_of is not None else " (this server is no agent of a cluster)")
        )
    return Principal(f"{AGENT_PRINCIPAL_PREFIX}{agent_id}", None, admin=True, mechanism=MECHANISM)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii", "replace")).hexdigest()
