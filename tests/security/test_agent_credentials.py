"""An agent's own credentials (security/agents.py, decision 0040).

Goal: a token an agent makes authenticates, at another agent, as that agent's admin
principal only while the agent's record publishes the hash of its secret; a wrong
secret, another agent's id, an agent that left, a malformed token and a server that
is no agent are each refused without naming the secret; a stream authenticated so
ends when the agent leaves; the record carries the hash through etcd's encoding.
Method: the Authenticator over an in-memory credential store, with a dict standing
for the watched agent records.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from odradek.cluster.keys import AgentRecord
from odradek.errors import InvalidRequest, Unauthenticated
from odradek.security import Authenticator, CredentialStore
from odradek.security.agents import AGENT_TOKEN_PREFIX, AgentCredentials
from odradek.security.revalidation import still_valid


@pytest.fixture
def authenticator(tmp_path: Path) -> Authenticator:
    return Authenticator(CredentialStore.open(str(tmp_path)))


def _token(credentials: AgentCredentials) -> str:
    return credentials.authorization.removeprefix("Bearer ")


def test_an_agents_token_authenticates_it_as_an_admin_while_its_record_says_so(
    authenticator: Authenticator,
) -> None:
    a1, a2 = AgentCredentials("a1"), AgentCredentials("agent:2@zone-b")
    published = {"a1": a1.token_hash, "agent:2@zone-b": a2.token_hash}
    authenticator.agents = published.get
    for credentials in (a1, a2):
        found = authenticator.bearer(_token(credentials))
        assert found.expires is None
        principal = found.principal
        assert principal.name == f"_agent.{credentials.agent_id}"
        assert principal.admin and principal.tenant is None and principal.mechanism == "agent"
        assert still_valid(authenticator, principal, _token(credentials), None) is None
    del published["a1"]  # its lease ended: its record is gone
    with pytest.raises(Unauthenticated, match="live agent"):
        authenticator.bearer(_token(a1))
    assert still_valid(authenticator, authenticator.bearer(_token(a2)).principal, _token(a1), None) == (
        "its agent left the cluster"
    )


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: token[: len(AGENT_TOKEN_PREFIX)] + "0" * 64 + token[len(AGENT_TOKEN_PREFIX) + 64 :],
        lambda token: token.replace(".a1", ".a2"),  # another agent's id with a1's secret
        lambda token: token.replace(".a1", ""),  # no id
        lambda token: token[:-5],  # cut short
        lambda token: AGENT_TOKEN_PREFIX,
    ],
)
def test_a_forged_or_malformed_agent_token_is_refused_without_its_secret(
    authenticator: Authenticator, forge: object
) -> None:
    a1, a2 = AgentCredentials("a1"), AgentCredentials("a2")
    authenticator.agents = {"a1": a1.token_hash, "a2": a2.token_hash}.get
    token = forge(_token(a1))  # type: ignore[operator]
    with pytest.raises(Unauthenticated) as refused:
        authenticator.bearer(token)
    secret = _token(a1)[len(AGENT_TOKEN_PREFIX) : len(AGENT_TOKEN_PREFIX) + 64]
    assert secret not in str(refused.value) and secret not in repr(a1)


def test_a_server_that_is_no_agent_refuses_agent_tokens(authenticator: Authenticator) -> None:
    with pytest.raises(Unauthenticated, match="no agent of a cluster"):
        authenticator.bearer(_token(AgentCredentials("a1")))


def test_two_agents_draw_different_secrets() -> None:
    assert AgentCredentials("a1").token_hash != AgentCredentials("a1").token_hash


def test_the_agent_record_carries_the_hash_and_refuses_a_bad_one() -> None:
    credentials = AgentCredentials("a1")
    record = AgentRecord("a1", "h:1", 0.0, token_hash=credentials.token_hash)
    assert AgentRecord.decode(record.encode()).token_hash == credentials.token_hash
    plain = AgentRecord("a1", "h:1", 0.0)
    assert b"token" not in plain.encode() and AgentRecord.decode(plain.encode()).token_hash == ""
    with pytest.raises(InvalidRequest, match="64 hexadecimal"):
        AgentRecord("a1", "h:1", 0.0, token_hash="secret")
