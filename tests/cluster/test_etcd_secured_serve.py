"""`odradek serve --etcd https://...` as a user: an agent of a cluster whose etcd asks for
TLS client certificates and a password, end to end.

Goal: what an operator of a secured etcd sees: an agent started with the CA, its client
certificate and key (flags) and its user with the password in ODRADEK_ETCD_PASSWORD
becomes the owner, and a client appends through it and reads its records back; `odradek
cluster status` with the same settings (environment variables) shows it as the owner.
A wrong password stops the agent at start with etcd's refusal in its message (not a
retry loop that gives up on a timeout), and a missing CA file stops it before it joins.
Method: a real etcd 3.4 on a loopback port with --client-cert-auth and authentication
enabled (etcd's gRPC Auth API), certificates made in the test, moto's S3 server as the
store, `odradek serve` and `odradek cluster status` as subprocesses.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_certificates import Certificates, make_certificates
from etcd_servers import unique_cluster_name
from object_servers import S3Server, free_ports, unique_prefix
from secured_etcd import secured_etcd

import odradek
from odradek.chaos.etcd import EtcdAuth, EtcdServers

EXIT_SECONDS = 120.0  # generous: a loaded machine imports and starts slowly


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory, certificates: Certificates) -> Iterator[EtcdServers]:
    directory = tmp_path_factory.mktemp("etcd-secured")
    with secured_etcd(directory, certificates, client_cert_auth=True, auth=EtcdAuth()) as servers:
        yield servers


def _command(
    tmp_path: Path, etcd: EtcdServers, certificates: Certificates, store: S3Server, cluster: str
) -> tuple[list[str], str]:
    port = free_ports(1)[0]
    command = [
        sys.executable, "-m", "odradek.cli.main", "serve",
        "--data-dir", str(tmp_path / "cache"),
        "--listen", f"127.0.0.1:{port}",
        "--store", store.url(unique_prefix()),
        "--store-flush-ms", "5",
        "--kafka-listen", "off",
        "--registry-listen", "off",
        "--etcd", etcd.url,
        "--cluster", cluster,
        "--etcd-ca", str(certificates.ca),
        "--etcd-cert", str(certificates.client_cert),
        "--etcd-key", str(certificates.client_key),
        "--etcd-user", "odradek",
    ]  # fmt: skip
    return command, f"grpc://127.0.0.1:{port}"


def _environment(store: S3Server, password: str) -> dict[str, str]:
    inherited = {key: value for key, value in os.environ.items() if not key.startswith("ODRADEK_")}
    return {**inherited, **store.env, "ODRADEK_ETCD_PASSWORD": password}


def test_an_agent_serves_through_a_secured_etcd(
    tmp_path: Path, secured: EtcdServers, certificates: Certificates, moto_s3: S3Server
) -> None:
    assert secured.auth is not None
    cluster = unique_cluster_name()
    command, url = _command(tmp_path, secured, certificates, moto_s3, cluster)
    log = tmp_path / "agent.log"
    with open(log, "wb") as errors:
        agent = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, env=_environment(moto_s3, secured.auth.password)
        )
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline().decode()
        assert "ready" in line, f"the agent did not start: {log.read_text()[-3000:]}"
        with odradek.connect(url) as client:
            client.create_topic("orders")
            result = client.append("orders", [{"key": b"k", "value": b"v1"}, {"key": b"k", "value": b"v2"}])
            assert (result.base_offset, result.count) == (0, 2)
            assert client.read_key("orders", b"k").column("value").to_pylist() == [b"v1", b"v2"]
        status = subprocess.run(
            [sys.executable, "-m", "odradek.cli.main", "cluster", "status", "--json"],
            capture_output=True,
            text=True,
            timeout=EXIT_SECONDS,
            check=False,
            env={
                **_environment(moto_s3, secured.auth.password),
                "ODRADEK_ETCD": secured.url,
                "ODRADEK_CLUSTER": cluster,
                "ODRADEK_ETCD_CA": str(certificates.ca),
                "ODRADEK_ETCD_CERT": str(certificates.client_cert),
                "ODRADEK_ETCD_KEY": str(certificates.client_key),
                "ODRADEK_ETCD_USER": "odradek",
            },
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert json.loads(status.stdout)["owner"] == f"127.0.0.1:{url.rpartition(':')[2]}"
    finally:
        if agent.stdout is not None:
            agent.stdout.close()
        agent.send_signal(signal.SIGTERM)
        try:
            code = agent.wait(EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            agent.kill()
            raise
    assert code == 0, log.read_text()[-3000:]
    assert "odradek-test-password" not in log.read_text()


def _failed_start(command: list[str], environment: dict[str, str]) -> tuple[int, str]:
    started = subprocess.run(
        command, capture_output=True, text=True, timeout=EXIT_SECONDS, env=environment, check=False
    )
    assert "ready" not in started.stdout
    return started.returncode, started.stderr


def test_a_wrong_password_stops_the_agent_at_start(
    tmp_path: Path, secured: EtcdServers, certificates: Certificates, moto_s3: S3Server
) -> None:
    command, _ = _command(tmp_path, secured, certificates, moto_s3, unique_cluster_name())
    code, errors = _failed_start(command, _environment(moto_s3, "not the password"))
    assert code == 1
    assert "refused user 'odradek': wrong user name or password" in errors
    assert "could not join" not in errors  # etcd's refusal, not a join that timed out


def test_a_missing_ca_file_stops_the_agent_before_it_joins(
    tmp_path: Path, secured: EtcdServers, certificates: Certificates, moto_s3: S3Server
) -> None:
    assert secured.auth is not None
    command, _ = _command(tmp_path, secured, certificates, moto_s3, unique_cluster_name())
    missing = tmp_path / "no-such-ca.pem"
    command[command.index("--etcd-ca") + 1] = str(missing)
    code, errors = _failed_start(command, _environment(moto_s3, secured.auth.password))
    assert code == 1
    assert f"--etcd-ca {missing}: cannot read it" in errors


def test_the_first_admin_made_offline_in_a_secured_etcd_is_accepted_by_an_agent(
    tmp_path: Path, secured: EtcdServers, certificates: Certificates, moto_s3: S3Server
) -> None:
    """`odradek user add --etcd https://...` with the agent's TLS flags and etcd user
    writes the cluster's credential store in etcd (decision 0029); an agent started with
    --auth then accepts the user, and a wrong etcd password is refused with etcd's reason."""
    assert secured.auth is not None
    cluster = unique_cluster_name()
    command, url = _command(tmp_path, secured, certificates, moto_s3, cluster)
    etcd_flags = command[command.index("--etcd") :]  # --etcd URL --cluster C and the TLS and user flags
    environment = _environment(moto_s3, secured.auth.password)

    def offline(*arguments: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "odradek.cli.main", *arguments, *etcd_flags],
            input="root-secret\n",
            capture_output=True,
            text=True,
            timeout=EXIT_SECONDS,
            check=False,
            env=environment if password is None else {**environment, "ODRADEK_ETCD_PASSWORD": password},
        )

    refused = offline("user", "add", "root", "--admin", password="not the password")
    assert refused.returncode == 1 and "wrong user name or password" in refused.stderr, refused.stderr
    added = offline("user", "add", "root", "--admin")
    assert added.returncode == 0, added.stderr
    listed = offline("user", "list")
    assert listed.returncode == 0 and listed.stdout.startswith("root\t"), listed.stdout + listed.stderr
    log = tmp_path / "agent.log"
    with open(log, "wb") as errors:
        agent = subprocess.Popen([*command, "--auth"], stdout=subprocess.PIPE, stderr=errors, env=environment)
    try:
        assert agent.stdout is not None
        line = agent.stdout.readline().decode()
        assert "ready" in line, f"the agent did not start: {log.read_text()[-3000:]}"
        with odradek.connect(url, user="root", password="root-secret") as client:
            client.create_topic("orders")
        with (
            pytest.raises(odradek.Unauthenticated),
            odradek.connect(url, user="root", password="wrong") as client,
        ):
            client.create_topic("refused")
    finally:
        if agent.stdout is not None:
            agent.stdout.close()
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            agent.kill()
            raise
