"""A secured etcd for tests: Debian's etcd 3.4 (``odradek.chaos.etcd``'s members) with its
client port over TLS, optionally asking clients for a certificate, and optionally with
authentication enabled; certificates made by etcd_certificates.py.

``secured_etcd(directory, certificates, ...)`` starts one member and yields it (a member
that does not start fails the test with its output). ``wait_token_deleted`` waits until
etcd's log says it deleted a simple token (what an expiry does): members started with
``log_level="info"`` log each deletion with the token. ``join_acquire_watch`` is what
each kind of secured etcd must allow: two agents join, one acquires a topic, the other
sees it in a watch, the owner's commit check passes, both leave. ``as_root`` is a client
of etcd's root user, for changing users and roles.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from etcd_certificates import Certificates
from etcd_servers import unique_cluster_name

from odradek.chaos import etcd
from odradek.chaos.etcd import EtcdAuth, EtcdServers, EtcdTls
from odradek.chaos.processes import HarnessError
from odradek.cluster.etcd import EtcdCluster
from odradek.cluster.etcd_client import EtcdClient, EtcdSecurity, load_security

DELETION_SECONDS_MAX = 60.0  # generous: etcd checks its tokens' deadlines every second


@contextlib.contextmanager
def secured_etcd(
    directory: Path,
    certificates: Certificates | None,
    *,
    client_cert_auth: bool = False,
    auth: EtcdAuth | None = None,
    log_level: str = "warn",
) -> Iterator[EtcdServers]:
    tls = None
    if certificates is not None:
        tls = EtcdTls(
            certificates.ca,
            certificates.server_cert,
            certificates.server_key,
            client_cert=certificates.client_cert,
            client_key=certificates.client_key,
            client_cert_auth=client_cert_auth,
        )
    with contextlib.ExitStack() as stack:
        try:
            servers = stack.enter_context(
                etcd.etcd_cluster(directory, 1, tls=tls, auth=auth, log_level=log_level)
            )
        except HarnessError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield servers


def security_of(servers: EtcdServers, *, client_cert: bool = True, user: bool = True) -> EtcdSecurity | None:
    """What an agent of ``servers`` is given: the CA (and the client certificate) when it
    serves TLS, the user and password when it authenticates."""
    tls = servers.tls
    return load_security(
        tls is not None,
        ca=str(tls.ca) if tls else None,
        cert=str(tls.client_cert) if tls and client_cert and tls.client_cert else None,
        key=str(tls.client_key) if tls and client_cert and tls.client_key else None,
        user=servers.auth.user if servers.auth and user else None,
        password=servers.auth.password if servers.auth and user else None,
    )


async def wait_token_deleted(servers: EtcdServers, token: str) -> None:
    """Until the member logs that it deleted ``token`` (it expired unused)."""
    deadline = time.monotonic() + DELETION_SECONDS_MAX
    member = servers.members[0]
    while not any(
        "deleted a simple token" in line and f'"{token}"' in line
        for line in member.log_path.read_text(errors="replace").splitlines()
    ):
        if time.monotonic() > deadline:
            raise AssertionError(f"etcd did not delete token {token} within {DELETION_SECONDS_MAX} s")
        await asyncio.sleep(0.1)


async def join_acquire_watch(endpoints: str, security: EtcdSecurity | None) -> None:
    name = unique_cluster_name()
    async with (
        EtcdCluster(endpoints, name, security=security) as a,
        EtcdCluster(endpoints, name, security=security) as b,
    ):
        await a.join("a", "127.0.0.1:1", ttl=5)
        await b.join("b", "127.0.0.1:2", ttl=5)
        assert [agent.agent_id for agent in await a.agents()] == ["a", "b"]
        owners = b.watch_owner("orders")
        assert await anext(owners) is None
        owned = await a.acquire("orders")
        seen = await asyncio.wait_for(anext(owners), 30)
        assert seen is not None and (seen.agent_id, seen.epoch) == ("a", owned.epoch)
        await owners.aclose()
        assert await a.commit_allowed("orders", owned.epoch)
        await a.leave()
        await b.leave()


@contextlib.asynccontextmanager
async def as_root(servers: EtcdServers) -> AsyncIterator[EtcdClient]:
    """A client of etcd's root user (``servers`` has authentication enabled)."""
    assert servers.auth is not None
    tls = servers.tls
    security = load_security(
        tls is not None,
        ca=str(tls.ca) if tls else None,
        cert=str(tls.client_cert) if tls and tls.client_cert else None,
        key=str(tls.client_key) if tls and tls.client_key else None,
        user="root",
        password=servers.auth.root_password,
    )
    member = servers.members[0]
    client = EtcdClient("127.0.0.1", member.client_port, tls=tls is not None, security=security, timeout=10)
    try:
        await client.connect()
        yield client
    finally:
        await client.close()
