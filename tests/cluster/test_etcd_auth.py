"""Cluster agents authenticate to etcd as a user, and keep working past the token's life.

Goal: with ``--etcd-user`` and its password an agent joins, acquires, watches and reads;
``odradek cluster status`` reads the same way. etcd's simple tokens expire unused after
``--auth-token-ttl`` (and are dropped when the user's password changes, or a member
restarts): an agent whose token expired renews it once and its request succeeds, and a
watch created after the expiry does see its events (etcd 3.4 answers such a watch with
"created" and "canceled" at once, which aetcd took for a live watch that never fires).
A wrong password, a missing user where etcd requires one, and a role that does not
permit the cluster's keys are each an ``EtcdRefused`` naming what to change, at once.
Method: a real etcd 3.4 on a loopback port with authentication enabled through etcd's
gRPC Auth API (a root user, and a user whose role reads and writes ``/odradek/``) and a
token TTL of 1 s; an expiry is waited for on etcd's own log line ("deleted a simple
token", with the token), never by a sleep.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import aetcd.rpc
import pytest
from cluster_testing import run
from etcd_servers import unique_cluster_name
from secured_etcd import as_root, join_acquire_watch, secured_etcd, security_of, wait_token_deleted

from odradek.chaos.etcd import EtcdAuth, EtcdServers
from odradek.cluster.etcd import EtcdCluster
from odradek.cluster.etcd_client import EtcdRefused, EtcdSecurity, load_security
from odradek.cluster.status import cluster_status
from odradek.errors import InvalidRequest

AUTH = EtcdAuth(token_ttl_seconds=1)


@pytest.fixture(scope="module")
def auth_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServers]:
    # log level info: etcd logs each simple token it deletes (what the expiry tests wait on)
    with secured_etcd(tmp_path_factory.mktemp("etcd-auth"), None, auth=AUTH, log_level="info") as servers:
        yield servers


def _security(servers: EtcdServers, password: str | None = None, user: str | None = None) -> EtcdSecurity:
    assert servers.auth is not None
    security = load_security(
        False, user=user or servers.auth.user, password=password or servers.auth.password
    )
    assert security is not None
    return security


def test_an_agent_authenticates_and_works(auth_etcd: EtcdServers) -> None:
    run(join_acquire_watch(auth_etcd.url, security_of(auth_etcd)))


def _refusal(servers: EtcdServers, security: EtcdSecurity | None) -> EtcdRefused:
    async def scenario() -> EtcdRefused:
        # retry_seconds far above the test's own deadline: a refusal that were retried
        # would fail the test by its deadline instead of raising EtcdRefused
        async with EtcdCluster(
            servers.url, unique_cluster_name(), security=security, retry_seconds=600
        ) as cluster:
            with pytest.raises(EtcdRefused) as refused:
                await cluster.join("a", "127.0.0.1:1", ttl=5)
            return refused.value

    return run(scenario())


def test_a_wrong_password_is_refused_at_once(auth_etcd: EtcdServers) -> None:
    refused = _refusal(auth_etcd, _security(auth_etcd, password="not the password"))
    assert "refused user 'odradek': wrong user name or password" in refused.message
    assert "ODRADEK_ETCD_PASSWORD" in refused.message


def test_etcd_requiring_a_user_refuses_a_client_without_one(auth_etcd: EtcdServers) -> None:
    refused = _refusal(auth_etcd, None)
    assert "requires authentication: give --etcd-user" in refused.message


def test_a_role_without_the_cluster_keys_is_refused(auth_etcd: EtcdServers) -> None:
    async def add_outsider() -> None:
        async with as_root(auth_etcd) as root:
            permission = aetcd.rpc.Permission(
                permType=aetcd.rpc.Permission.READWRITE, key=b"/elsewhere/", range_end=b"/elsewhere0"
            )
            await root.auth_stub.RoleAdd(aetcd.rpc.AuthRoleAddRequest(name="elsewhere"))
            await root.auth_stub.RoleGrantPermission(
                aetcd.rpc.AuthRoleGrantPermissionRequest(name="elsewhere", perm=permission)
            )
            await root.auth_stub.UserAdd(aetcd.rpc.AuthUserAddRequest(name="outsider", password="pw"))
            await root.auth_stub.UserGrantRole(
                aetcd.rpc.AuthUserGrantRoleRequest(user="outsider", role="elsewhere")
            )

    run(add_outsider())
    refused = _refusal(auth_etcd, _security(auth_etcd, user="outsider", password="pw"))
    assert "to user 'outsider': etcdserver: permission denied" in refused.message
    assert "readwrite on the cluster's keys" in refused.message


def test_a_user_without_a_password_is_refused_before_etcd_is_asked() -> None:
    with pytest.raises(InvalidRequest, match="needs a password"):
        load_security(False, user="odradek")
    with pytest.raises(InvalidRequest, match="without a user"):
        load_security(False, password="secret")


def test_an_expired_token_is_renewed_once_and_the_request_succeeds(auth_etcd: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(auth_etcd.url, name, security=security_of(auth_etcd)) as agent:
            await agent.join("a", "127.0.0.1:1", ttl=5)  # renewed on a stream: no token used since
            client = agent._connection()
            first = client.token
            assert first is not None
            await wait_token_deleted(auth_etcd, first)
            owned = await agent.acquire("orders")  # a transaction: refused, renewed, retried
            assert client.token_renewals == 1 and client.token != first
            assert await agent.commit_allowed("orders", owned.epoch)
            second = client.token
            await wait_token_deleted(auth_etcd, second)
            agents = await agent.agents()  # a listing on the KV stub itself
            assert [record.agent_id for record in agents] == ["a"]
            assert client.token_renewals == 2
            assert agent.holds("orders", owned.epoch)  # the lease was kept alive throughout
            await agent.leave()

    run(scenario())


def test_a_watch_created_after_the_token_expired_sees_its_events(auth_etcd: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        security = security_of(auth_etcd)
        async with (
            EtcdCluster(auth_etcd.url, name, security=security) as owner,
            EtcdCluster(auth_etcd.url, name, security=security) as watcher,
        ):
            await owner.join("a", "127.0.0.1:1", ttl=5)
            early = watcher.watch_owner("early")  # opens the watch stream with the first token
            assert await anext(early) is None
            token = watcher._connection().token
            assert token is not None
            await wait_token_deleted(auth_etcd, token)
            late = watcher.watch_owner("late")  # a watch created on the stream of an expired token
            assert await anext(late) is None
            owned = await owner.acquire("late")
            seen = await asyncio.wait_for(anext(late), 30)
            assert seen is not None and seen.epoch == owned.epoch
            # the watch of the old stream went on, on the new one
            owned_early = await owner.acquire("early")
            seen_early = await asyncio.wait_for(anext(early), 30)
            assert seen_early is not None and seen_early.epoch == owned_early.epoch
            await early.aclose()
            await late.aclose()
            await owner.leave()

    run(scenario())


def test_tokens_dropped_by_a_password_change_are_renewed(auth_etcd: EtcdServers) -> None:
    """etcd drops every token of a user whose password changes (here: to the same one)."""

    async def scenario() -> None:
        assert auth_etcd.auth is not None
        async with EtcdCluster(
            auth_etcd.url, unique_cluster_name(), security=security_of(auth_etcd)
        ) as agent:
            await agent.join("a", "127.0.0.1:1", ttl=5)
            client = agent._connection()
            async with as_root(auth_etcd) as root:
                await root.auth_stub.UserChangePassword(
                    aetcd.rpc.AuthUserChangePasswordRequest(
                        name=auth_etcd.auth.user, password=auth_etcd.auth.password
                    )
                )
            await agent.acquire("orders")
            assert client.token_renewals == 1
            await agent.leave()

    run(scenario())


def test_cluster_status_reads_an_etcd_with_authentication(auth_etcd: EtcdServers) -> None:
    async def scenario() -> None:
        name = unique_cluster_name()
        async with EtcdCluster(auth_etcd.url, name, security=security_of(auth_etcd)) as agent:
            await agent.join("a", "127.0.0.1:1", ttl=5)
            await agent.acquire("_cell")
            report = await cluster_status(auth_etcd.url, name, security=security_of(auth_etcd))
            assert report.healthy, report.problems
            assert [status.record.agent_id for status in report.agents] == ["a"]
            assert report.catalog_topics == 0
            anonymous = await cluster_status(auth_etcd.url, name)
            assert any(
                "requires authentication: give --etcd-user" in problem for problem in anonymous.problems
            )
            await agent.leave()

    run(scenario())
