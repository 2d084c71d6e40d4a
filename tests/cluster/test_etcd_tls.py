"""Cluster agents reach etcd over TLS, and every TLS mistake is a clear error at once.

Goal: with ``https://`` endpoints an agent joins, acquires, watches and reads the
cluster's state over TLS, with or without a client certificate (etcd's
``--client-cert-auth``); ``odradek cluster status`` reads it the same way. A server
certificate that does not verify, a client without a certificate where etcd asks for
one, a client certificate etcd does not trust: each raises ``EtcdRefused`` naming what to
change (not ``EtcdUnavailable`` after a retry loop). Settings that cannot work (TLS files
with ``http://`` endpoints, a certificate without its key, a missing, unreadable or
non-PEM file, a key that is not the certificate's, an encrypted key) are refused before
anything is dialled.
Method: a real etcd 3.4 (Debian's etcd-server) on a loopback port serving TLS with
certificates made in the test (``cryptography``), one member without and one with
``--client-cert-auth``; the agents' own ``EtcdCluster``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster_testing import run
from cryptography.hazmat.primitives import serialization
from etcd_certificates import Certificates, make_certificates
from etcd_servers import unique_cluster_name
from secured_etcd import join_acquire_watch, secured_etcd

from odradek.chaos.etcd import EtcdServers
from odradek.cluster.agent import AgentSettings, ClusterAgent
from odradek.cluster.etcd import EtcdCluster, EtcdUnavailable, endpoints_tls
from odradek.cluster.etcd_client import EtcdRefused, EtcdSecurity, load_security
from odradek.cluster.status import cluster_status
from odradek.errors import InvalidRequest

COMMAND_SECONDS = 120.0


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[EtcdServers]:
    with secured_etcd(tmp_path_factory.mktemp("etcd-tls"), certificates) as servers:
        yield servers


@pytest.fixture(scope="module")
def mtls_etcd(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[EtcdServers]:
    with secured_etcd(tmp_path_factory.mktemp("etcd-mtls"), certificates, client_cert_auth=True) as servers:
        yield servers


def _security(certificates: Certificates, *, ca: Path | None = None, client: bool = False) -> EtcdSecurity:
    security = load_security(
        True,
        ca=str(ca or certificates.ca),
        cert=str(certificates.client_cert) if client else None,
        key=str(certificates.client_key) if client else None,
    )
    assert security is not None
    return security


def test_agents_work_over_tls(tls_etcd: EtcdServers, certificates: Certificates) -> None:
    assert tls_etcd.url.startswith("https://") and endpoints_tls(tls_etcd.url)
    run(join_acquire_watch(tls_etcd.url, _security(certificates)))


def test_agents_work_with_a_client_certificate(mtls_etcd: EtcdServers, certificates: Certificates) -> None:
    run(join_acquire_watch(mtls_etcd.url, _security(certificates, client=True)))


class _NoData:
    """A role that serves nothing (the agent's election is what is under test)."""

    def become_owner(self, epoch: int, cell: str = "_cell") -> None:
        pass

    def stop_owning(self, graceful: bool, cell: str = "_cell") -> None:
        pass

    def topics(self, cell: str) -> list[str]:
        return []

    def take_back(self, cell: str, keep: object) -> list[str]:
        return []


def test_an_agent_reaches_a_secured_etcd_through_its_settings(
    mtls_etcd: EtcdServers, certificates: Certificates
) -> None:
    """What serve --etcd builds: AgentSettings carry the TLS files and the user, and
    every EtcdCluster the agent makes (one per join) reaches the secured etcd with them."""
    settings = AgentSettings(
        endpoints=mtls_etcd.url,
        cluster=unique_cluster_name(),
        agent_id="a",
        address="127.0.0.1:1",
        lease_ttl=5,
        security=_security(certificates, client=True),
    )
    agent = ClusterAgent(settings, _NoData())
    agent.start(timeout=30)
    try:
        assert agent.wait_for_role("owner", 30), agent.status()
        assert agent.readiness()[0]
    finally:
        agent.stop()


def _refusal(endpoints: str, security: EtcdSecurity | None) -> EtcdRefused:
    async def scenario() -> EtcdRefused:
        # retry_seconds far above the test's own deadline: a refusal that were retried
        # would fail the test by its deadline instead of raising EtcdRefused
        async with EtcdCluster(
            endpoints, unique_cluster_name(), security=security, retry_seconds=600
        ) as cluster:
            with pytest.raises(EtcdRefused) as refused:
                await cluster.join("a", "127.0.0.1:1", ttl=5)
            return refused.value

    return run(scenario())


def test_a_server_certificate_that_does_not_verify_is_refused(
    tls_etcd: EtcdServers, certificates: Certificates
) -> None:
    refused = _refusal(tls_etcd.url, _security(certificates, ca=certificates.other_ca))
    assert "does not verify against --etcd-ca" in refused.message
    assert str(certificates.other_ca) in refused.message


def test_without_a_ca_the_system_cas_do_not_verify_a_private_ca(tls_etcd: EtcdServers) -> None:
    refused = _refusal(tls_etcd.url, None)
    assert "does not verify against the system's CAs" in refused.message


def test_etcd_asking_for_a_client_certificate_refuses_a_client_without_one(
    mtls_etcd: EtcdServers, certificates: Certificates
) -> None:
    refused = _refusal(mtls_etcd.url, _security(certificates))
    assert "asks for a client certificate" in refused.message
    assert "--etcd-cert and --etcd-key" in refused.message


def test_a_client_certificate_of_another_ca_is_refused(
    mtls_etcd: EtcdServers, certificates: Certificates
) -> None:
    security = load_security(
        True,
        ca=str(certificates.ca),
        cert=str(certificates.stranger_cert),
        key=str(certificates.stranger_key),
    )
    refused = _refusal(mtls_etcd.url, security)
    assert f"refused the client certificate --etcd-cert {certificates.stranger_cert}" in refused.message


def test_plaintext_to_a_tls_port_is_not_taken_for_a_refusal(tls_etcd: EtcdServers) -> None:
    """http:// to a port serving TLS fails as an unreachable etcd would (retried)."""
    plaintext = tls_etcd.url.replace("https://", "http://")

    async def scenario() -> None:
        async with EtcdCluster(plaintext, unique_cluster_name(), retry_seconds=0.5) as cluster:
            with pytest.raises(EtcdUnavailable):
                await cluster.join("a", "127.0.0.1:1", ttl=5)

    run(scenario())


# --- settings refused before anything is dialled ---------------------------------------


def test_tls_files_with_plaintext_endpoints_are_refused(certificates: Certificates) -> None:
    with pytest.raises(InvalidRequest, match="write them https://"):
        load_security(False, ca=str(certificates.ca))
    with pytest.raises(InvalidRequest, match="write them https://"):
        EtcdCluster("http://127.0.0.1:9", "c", security=_security(certificates))
    with pytest.raises(InvalidRequest, match="mix http:// and https://"):
        EtcdCluster("http://127.0.0.1:9,https://127.0.0.1:10", "c")


def test_a_certificate_without_its_key_is_refused(certificates: Certificates) -> None:
    with pytest.raises(InvalidRequest, match="--etcd-cert needs --etcd-key"):
        load_security(True, ca=str(certificates.ca), cert=str(certificates.client_cert))
    with pytest.raises(InvalidRequest, match="--etcd-key needs --etcd-cert"):
        load_security(True, key=str(certificates.client_key))


def test_missing_unreadable_and_wrong_files_are_refused(tmp_path: Path, certificates: Certificates) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(InvalidRequest, match=f"--etcd-ca {missing}: cannot read it"):
        load_security(True, ca=str(missing))
    with pytest.raises(InvalidRequest, match=f"--etcd-ca {tmp_path}: cannot read it"):
        load_security(True, ca=str(tmp_path))  # a directory (root reads any file)
    empty = tmp_path / "empty.pem"
    empty.write_bytes(b"")
    with pytest.raises(InvalidRequest, match="the file is empty"):
        load_security(True, ca=str(empty))
    with pytest.raises(InvalidRequest, match="no PEM certificate in it"):
        load_security(True, ca=str(certificates.client_key))
    with pytest.raises(InvalidRequest, match="is not the key of --etcd-cert"):
        load_security(True, cert=str(certificates.client_cert), key=str(certificates.server_key))
    with pytest.raises(InvalidRequest, match="not a PEM certificate and its PEM private key"):
        load_security(True, cert=str(certificates.client_key), key=str(certificates.client_cert))
    large = tmp_path / "large.pem"
    large.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(InvalidRequest, match="larger than"):
        load_security(True, ca=str(large))


def test_an_encrypted_key_is_refused(tmp_path: Path, certificates: Certificates) -> None:
    key = serialization.load_pem_private_key(certificates.client_key.read_bytes(), None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(InvalidRequest, match="the key is encrypted"):
        load_security(True, cert=str(certificates.client_cert), key=str(encrypted))


# --- odradek cluster status -------------------------------------------------------------


def test_cluster_status_reads_a_tls_etcd(mtls_etcd: EtcdServers, certificates: Certificates) -> None:
    async def scenario() -> None:
        security = _security(certificates, client=True)
        name = unique_cluster_name()
        async with EtcdCluster(mtls_etcd.url, name, security=security) as agent:
            await agent.join("a", "127.0.0.1:1", ttl=5)
            await agent.acquire("_cell")
            report = await cluster_status(mtls_etcd.url, name, security=security)
            assert report.healthy, report.problems
            assert [endpoint.endpoint for endpoint in report.endpoints] == [mtls_etcd.url]
            assert [status.record.agent_id for status in report.agents] == ["a"]
            await agent.leave()
        refused = await cluster_status(mtls_etcd.url, name, security=_security(certificates))
        assert not refused.reachable
        assert "asks for a client certificate" in refused.endpoints[0].errors[0]

    run(scenario())


def _status_command(etcd: EtcdServers, cluster: str, *flags: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ODRADEK_")}
    command = [sys.executable, "-m", "odradek.cli.main", "cluster", "status", "--json"]
    return subprocess.run(
        [*command, "--etcd", etcd.url, "--cluster", cluster, *flags],
        capture_output=True,
        text=True,
        timeout=COMMAND_SECONDS,
        env=environment,
        check=False,
    )


def test_the_cluster_status_command_takes_the_tls_flags(
    mtls_etcd: EtcdServers, certificates: Certificates
) -> None:
    name = unique_cluster_name()
    tls = ["--etcd-ca", str(certificates.ca), "--etcd-cert", str(certificates.client_cert)]
    answered = _status_command(mtls_etcd, name, *tls, "--etcd-key", str(certificates.client_key))
    assert answered.returncode == 1, answered.stderr  # etcd answered: nobody owns the cell
    report = json.loads(answered.stdout)
    assert report["etcd"]["healthy"] and report["problems"] == [
        "no agent owns the cell (owners/_cell): no agent runs, or a failover is in progress"
    ]
    refused = _status_command(mtls_etcd, name, "--etcd-ca", str(certificates.ca))
    assert refused.returncode == 3
    assert "asks for a client certificate" in refused.stdout
    usage = _status_command(mtls_etcd, name, *tls)  # no key
    assert usage.returncode == 2 and "--etcd-cert needs --etcd-key" in usage.stderr
