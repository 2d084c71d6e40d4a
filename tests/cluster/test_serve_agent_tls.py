"""`odradek serve --etcd ... --tls-cert F --tls-key F --tls-ca F`: a cluster whose doors
serve TLS with client certificates.

Goal: what a user of a TLS cluster sees: each agent's ready line says grpc+tls://; a
client given only a standby's URL is redirected to the owner at its grpc+tls:// URL (not
grpc://, which a TLS door would not answer) and appends there; the agents' status names
grpc+tls:// URLs; a client without a certificate is refused by the standby too; a Kafka
client over SSL bootstrapped with the standby's Kafka port only is led to the owner (the
standby's relay serves TLS and reaches the owner over TLS with its own certificate).
Method: two `odradek serve --store --etcd` processes on a real etcd and moto's S3 server,
certificates made in the test (etcd_certificates.py), the Python client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import wait_for
from etcd_certificates import Certificates, make_certificates
from etcd_servers import EtcdServers
from object_servers import S3Server, free_ports, unique_prefix

import odradek
from odradek.errors import OdradekError, Unavailable


class TlsAgent:
    def __init__(self, directory: Path, agent_id: str, etcd: str, cluster: str, store: S3Server, prefix: str,
                 certificates: Certificates, cells: int = 1) -> None:  # fmt: skip
        self.port, self.kafka_port, self.registry_port = free_ports(3)
        self.log = directory / f"{agent_id}.log"
        self.certificates = certificates
        command = [
            sys.executable, "-m", "odradek.cli.main", "serve",
            "--data-dir", str(directory / agent_id),
            "--listen", f"127.0.0.1:{self.port}",
            "--store", store.url(prefix),
            "--store-flush-ms", "5",
            "--etcd", etcd,
            "--cluster", cluster,
            "--agent-id", agent_id,
            "--kafka-listen", f"127.0.0.1:{self.kafka_port}",
            "--tls-cert", str(certificates.server_cert),
            "--tls-key", str(certificates.server_key),
            "--tls-ca", str(certificates.ca),
            # With cells, every agent's registry door (decision 0034); else none.
            *(["--cells", str(cells), "--registry-listen", f"127.0.0.1:{self.registry_port}"]
              if cells > 1 else ["--registry-listen", "off"]),
        ]  # fmt: skip
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, env={**os.environ, **store.env}
            )
        assert self.process.stdout is not None
        self.ready = self.process.stdout.readline().decode()
        assert "ready" in self.ready, f"agent {agent_id} did not start: {self.log.read_text()[-3000:]}"
        self.url = f"grpc+tls://127.0.0.1:{self.port}"

    def connect(self) -> odradek.RemoteClient:
        files = self.certificates
        return odradek.connect(
            self.url, tls_ca=str(files.ca), tls_cert=str(files.client_cert), tls_key=str(files.client_key)
        )

    def status(self) -> dict[str, object]:
        with self.connect() as client:
            return dict(json.loads(client._action("cluster_status", {})))

    def stop(self) -> None:
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def agents(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server, certificates: Certificates
) -> Iterator[list[TlsAgent]]:
    cluster, prefix = f"tls{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    started: list[TlsAgent] = []
    try:
        started.append(TlsAgent(tmp_path, "a0", etcd_server.url, cluster, moto_s3, prefix, certificates))

        def owns() -> bool:
            try:
                return started[0].status()["role"] == "owner"
            except OdradekError:
                return False

        wait_for(owns, "the first agent to own the data")
        started.append(TlsAgent(tmp_path, "a1", etcd_server.url, cluster, moto_s3, prefix, certificates))
        yield started
    finally:
        for agent in started:
            agent.stop()


def test_a_standby_redirects_to_the_owner_over_tls(
    agents: list[TlsAgent], certificates: Certificates
) -> None:
    owner, standby = agents
    assert f"url=grpc+tls://127.0.0.1:{standby.port}" in standby.ready
    status = standby.status()
    assert status["role"] == "standby"
    assert status["owner_url"] == owner.url
    listed = status["agents"]
    assert isinstance(listed, list)
    assert {agent["url"] for agent in listed} == {owner.url, standby.url}
    with standby.connect() as client:  # given the standby only: the redirect names grpc+tls://
        client.create_topic("orders")
        client.append("orders", [{"value": b"over tls"}])
        assert client.url == owner.url
    with owner.connect() as client:
        values = [
            row["value"]
            for batch in client.read("orders", start="earliest", wait=0)
            for row in batch.to_pylist()
        ]
        assert values == [b"over tls"]
    with (
        odradek.connect(standby.url, tls_ca=str(certificates.ca), timeout=10) as client,
        pytest.raises(Unavailable),
    ):
        client.list_topics()  # no client certificate


def test_a_kafka_client_over_ssl_bootstrapped_with_a_standby_reaches_the_owner(
    agents: list[TlsAgent], certificates: Certificates
) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    owner, standby = agents
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{standby.kafka_port}",
            "security.protocol": "SSL",
            "ssl.ca.location": str(certificates.ca),
            "ssl.certificate.location": str(certificates.client_cert),
            "ssl.key.location": str(certificates.client_key),
            "topic.metadata.refresh.interval.ms": 1000,
        }
    )
    delivered: list[object] = []
    producer.produce(
        "relayed", key=b"k", value=b"through the standby", on_delivery=lambda e, m: delivered.append(e)
    )
    assert producer.flush(60) == 0 and delivered == [None]
    with owner.connect() as client:
        values = [
            row["value"]
            for batch in client.read("relayed", start="earliest", wait=0)
            for row in batch.to_pylist()
        ]
    assert values == [b"through the standby"]


def test_cluster_status_reads_the_owners_checkpoint_lag_over_tls(
    agents: list[TlsAgent], certificates: Certificates, etcd_server: EtcdServers
) -> None:
    """`odradek cluster status` asks the owner's Flight door how far its checkpoints lag:
    over grpc+tls:// with the CLI's client files when the agents serve TLS (it asked over
    plaintext before, which a TLS door refuses, so the lag was missing with a warning)."""
    owner, _ = agents
    cluster = owner.status()["cluster"]
    env = {
        **os.environ,
        "ODRADEK_TLS_CA": str(certificates.ca),
        "ODRADEK_TLS_CLIENT_CERT": str(certificates.client_cert),
        "ODRADEK_TLS_CLIENT_KEY": str(certificates.client_key),
    }
    command = [sys.executable, "-m", "odradek.cli.main", "cluster", "status", "--format", "json",
               "--etcd", etcd_server.url, "--cluster", str(cluster)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert isinstance(report["store"], dict), report["warnings"]
    assert report["store"]["interval_seconds"] > 0
    assert not any("checkpoints lag" in warning for warning in report["warnings"])


def test_with_cells_a_registry_door_forwards_to_another_cells_agent_over_tls(
    tmp_path: Path, etcd_server: EtcdServers, moto_s3: S3Server, certificates: Certificates
) -> None:
    """Two agents, two cells, one each: a registration through one agent's registry
    door for a topic of the other's cell is forwarded over TLS (the agent presenting its
    own certificate, as the door's client certificates ask: decision 0034)."""
    import ssl
    import urllib.request

    cluster, prefix = f"tlsr{os.getpid()}{time.monotonic_ns() % 10**9}", unique_prefix()
    started: list[TlsAgent] = []
    try:
        for agent_id in ("a0", "a1"):
            started.append(
                TlsAgent(tmp_path, agent_id, etcd_server.url, cluster, moto_s3, prefix, certificates, 2)
            )
        wait_for(lambda: all(len(_serving(agent)) == 1 for agent in started), "one cell served by each agent")
        with started[0].connect() as client:
            for index in range(4):
                client.create_topic(f"tls.{index}")  # two in each cell
        context = ssl.create_default_context(cafile=str(certificates.ca))
        context.load_cert_chain(str(certificates.client_cert), str(certificates.client_key))
        schema = json.dumps({"type": "record", "name": "R", "fields": [{"name": "id", "type": "long"}]})
        for index in range(4):
            for agent in started:  # each topic through both doors: one of them forwards
                request = urllib.request.Request(
                    f"https://127.0.0.1:{agent.registry_port}/subjects/tls.{index}-value/versions",
                    data=json.dumps({"schema": schema}).encode(),
                    method="POST",
                    headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
                )
                with urllib.request.urlopen(request, timeout=30, context=context) as answer:
                    assert answer.status == 200 and "id" in json.loads(answer.read())
        with started[1].connect() as client:
            assert all(client.get_schema(f"tls.{index}") is not None for index in range(4))
    finally:
        for agent in started:
            agent.stop()


def _serving(agent: TlsAgent) -> list[str]:
    try:
        cells = agent.status().get("cells", [])
    except OdradekError:
        return []
    assert isinstance(cells, list)
    return [cell["cell"] for cell in cells if cell["serving"]]
