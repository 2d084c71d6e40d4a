"""`odradek serve --tls-cert F --tls-key F [--tls-ca F]`: TLS on every door, end to end.

Goal: what a user of a TLS server sees. Every door serves TLS: the Python client over
grpc+tls://, confluent-kafka, kafka-python and kcat with security.protocol=SSL, the
Schema Registry and /metrics over HTTPS; a plaintext client gets nowhere. With --tls-ca
a client without a certificate, or with one signed by another CA, is refused on every
door. SIGHUP reloads the files: new Kafka and HTTPS connections present the new
certificate (its serial number), a connection opened before goes on working, the
Flight door keeps its first certificate (pyarrow cannot change it: documented), and a
bad new file keeps the old certificate. Bad files stop the server at start, clearly.
Method: real `odradek serve` subprocesses on loopback ports, certificates made in the
test with `cryptography` (the cluster tests' generator), real clients.
"""

from __future__ import annotations

import http.client
import os
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from odradek_process import ODRADEK, Server

import odradek
from odradek.errors import Unavailable

sys.path.insert(0, str(Path(__file__).parents[1] / "cluster"))  # the certificate generator

from etcd_certificates import Certificates, make_certificates

from odradek.ports import free_port

DEADLINE_SECONDS = 30.0  # generous: a loaded machine starts and reloads slowly


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("first"))


@pytest.fixture(scope="module")
def second(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("second"))


class Doors:
    def __init__(self) -> None:
        self.kafka, self.registry, self.metrics = free_port(), free_port(), free_port()

    def flags(self) -> list[str]:
        return [
            "--kafka-listen", f"127.0.0.1:{self.kafka}",
            "--registry-listen", f"127.0.0.1:{self.registry}",
            "--metrics-listen", f"127.0.0.1:{self.metrics}",
        ]  # fmt: skip


def _tls_flags(certificates: Certificates, *, mutual: bool = False) -> list[str]:
    flags = ["--tls-cert", str(certificates.server_cert), "--tls-key", str(certificates.server_key)]
    return [*flags, "--tls-ca", str(certificates.ca)] if mutual else flags


def _https_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _serial(port: int, context: ssl.SSLContext) -> str:
    """The serial number of the certificate a new TLS connection to ``port`` is shown."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as connection:
            return str(connection.getpeercert()["serialNumber"])


def _serial_of(certificate: Path) -> str:
    return str(ssl._ssl._test_decode_cert(str(certificate))["serialNumber"])  # type: ignore[attr-defined]


def test_every_door_serves_tls(start_server: type[Server], first: Certificates, tmp_path: Path) -> None:
    doors = Doors()
    server = start_server(None, *doors.flags(), *_tls_flags(first))
    assert server.url.startswith("grpc+tls://127.0.0.1:")
    ca = str(first.ca)
    # The native door: the Python client over grpc+tls://.
    with odradek.connect(server.url, tls_ca=ca) as client:
        client.create_topic("orders")
        client.append("orders", [{"key": b"k", "value": b"native"}])
    # A plaintext client gets nowhere.
    plain = server.url.replace("grpc+tls://", "grpc://")
    with odradek.connect(plain, timeout=10) as client, pytest.raises(Unavailable):
        client.list_topics()
    # The Kafka door: confluent-kafka, kafka-python and kcat over SSL.
    confluent = pytest.importorskip("confluent_kafka")
    bootstrap = f"127.0.0.1:{doors.kafka}"
    producer = confluent.Producer(
        {"bootstrap.servers": bootstrap, "security.protocol": "SSL", "ssl.ca.location": ca}
    )
    producer.produce("orders", key=b"k", value=b"confluent")
    assert producer.flush(DEADLINE_SECONDS) == 0
    del producer
    kafka_python = pytest.importorskip("kafka")
    other = kafka_python.KafkaProducer(bootstrap_servers=bootstrap, security_protocol="SSL", ssl_cafile=ca)
    other.send("orders", key=b"k", value=b"kafka-python").get(timeout=DEADLINE_SECONDS)
    other.close()
    kcat = shutil.which("kcat")
    if kcat is not None:
        produced = subprocess.run(
            [kcat, "-b", bootstrap, "-X", "security.protocol=ssl", "-X", f"ssl.ca.location={ca}",
             "-P", "-t", "orders", "-k", "k"],
            input=b"kcat\n", capture_output=True, timeout=DEADLINE_SECONDS,
        )  # fmt: skip
        assert produced.returncode == 0, produced.stderr
    consumer = kafka_python.KafkaConsumer(
        "orders",
        bootstrap_servers=bootstrap,
        security_protocol="SSL",
        ssl_cafile=ca,
        auto_offset_reset="earliest",
        consumer_timeout_ms=int(DEADLINE_SECONDS * 1000),
    )
    expected = [b"native", b"confluent", b"kafka-python", *([b"kcat"] if kcat else [])]
    values = []
    for message in consumer:
        values.append(message.value)
        if len(values) == len(expected):
            break
    consumer.close()
    assert values == expected
    # The HTTP doors: HTTPS.
    context = _https_context(first.ca)
    with urllib.request.urlopen(f"https://127.0.0.1:{doors.registry}/subjects", context=context) as answer:
        assert answer.status == 200
    with urllib.request.urlopen(f"https://127.0.0.1:{doors.metrics}/metrics", context=context) as answer:
        assert b"odradek_appends_total" in answer.read()
    with pytest.raises((urllib.error.URLError, ConnectionError, http.client.HTTPException)):
        urllib.request.urlopen(f"http://127.0.0.1:{doors.metrics}/metrics", timeout=10).read()
    code, errors = server.stop()
    assert code == 0, errors
    assert "registry=https://" in errors and "metrics=https://" in errors


def test_the_command_line_reads_its_ca_from_the_environment(
    start_server: type[Server], first: Certificates
) -> None:
    server = start_server(None, "--kafka-listen", "off", "--registry-listen", "off", *_tls_flags(first))
    command = [*ODRADEK, "topic", "create", "orders", "--server", server.url]
    environment = {key: value for key, value in os.environ.items() if not key.startswith("ODRADEK_")}
    untrusted = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=60)
    assert untrusted.returncode == 3, untrusted.stderr  # the system's CAs do not know the test CA
    trusted = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**environment, "ODRADEK_TLS_CA": str(first.ca)},
        timeout=60,
    )
    assert trusted.returncode == 0, trusted.stderr
    server.stop()


def test_client_certificates_are_required_on_every_door(
    start_server: type[Server], first: Certificates, second: Certificates
) -> None:
    doors = Doors()
    server = start_server(None, *doors.flags(), *_tls_flags(first, mutual=True))
    ca, cert, key = str(first.ca), str(first.client_cert), str(first.client_key)
    with odradek.connect(server.url, tls_ca=ca, tls_cert=cert, tls_key=key) as client:
        client.create_topic("orders")
    refused = [
        {"tls_ca": ca},  # no client certificate
        {"tls_ca": ca, "tls_cert": str(second.stranger_cert), "tls_key": str(second.stranger_key)},
    ]
    for options in refused:
        with odradek.connect(server.url, timeout=10, **options) as client, pytest.raises(Unavailable):
            client.list_topics()
    # Kafka: a client without a certificate gets no metadata; one with it does.
    admin = pytest.importorskip("confluent_kafka.admin")
    kafka_error = pytest.importorskip("confluent_kafka").KafkaException
    base = {
        "bootstrap.servers": f"127.0.0.1:{doors.kafka}",
        "security.protocol": "SSL",
        "ssl.ca.location": ca,
    }
    with pytest.raises(kafka_error):
        admin.AdminClient(base).list_topics(timeout=5)
    trusted = admin.AdminClient({**base, "ssl.certificate.location": cert, "ssl.key.location": key})
    assert "orders" in trusted.list_topics(timeout=DEADLINE_SECONDS).topics
    # HTTPS: refused without a certificate and with a stranger's, served with the CA's.
    for port in (doors.registry, doors.metrics):
        for context in (
            _https_context(first.ca),
            _https_context(first.ca, second.stranger_cert, second.stranger_key),
        ):
            with pytest.raises((urllib.error.URLError, ConnectionError, ssl.SSLError)):
                urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=context, timeout=10).read()
        trusting = _https_context(first.ca, first.client_cert, first.client_key)
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/", context=trusting, timeout=10) as answer:
            assert answer.status == 200
    code, errors = server.stop()
    assert code == 0, errors


def _wait_for_log(server: Server, text: str) -> str:
    """Read the server's stderr until a line containing ``text`` (the deadline fails)."""
    assert server.process.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(server.process.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while time.monotonic() < deadline:
            if selector.select(timeout=0.5):
                line = server.process.stderr.readline().decode()
                if text in line:
                    return line
    finally:
        selector.close()
    raise AssertionError(f"the server logged no line with {text!r}")


def test_sighup_reloads_the_certificate(
    start_server: type[Server], first: Certificates, second: Certificates, tmp_path: Path
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    shutil.copy(first.server_cert, cert)
    shutil.copy(first.server_key, key)
    doors = Doors()
    server = start_server(None, *doors.flags(), "--tls-cert", str(cert), "--tls-key", str(key))
    flight_port = int(server.url.rsplit(":", 1)[1])
    before, after = _https_context(first.ca), _https_context(second.ca)
    old, new = _serial_of(first.server_cert), _serial_of(second.server_cert)
    assert {_serial(port, before) for port in (doors.kafka, doors.registry, doors.metrics)} == {old}
    # A keep-alive HTTPS connection opened before the reload.
    kept = http.client.HTTPSConnection("127.0.0.1", doors.metrics, context=before, timeout=10)
    kept.request("GET", "/healthz")
    assert kept.getresponse().read() is not None
    shutil.copy(second.server_cert, cert)
    shutil.copy(second.server_key, key)
    server.process.send_signal(signal.SIGHUP)
    _wait_for_log(server, "TLS certificate reloaded")
    for port in (doors.kafka, doors.registry, doors.metrics):
        assert _serial(port, after) == new
    flight = _https_context(first.ca)
    flight.set_alpn_protocols(["h2"])
    assert _serial(flight_port, flight) == old  # the Flight door keeps its first certificate
    assert isinstance(kept.sock, ssl.SSLSocket)
    assert kept.sock.getpeercert()["serialNumber"] == old
    kept.request("GET", "/healthz")
    assert kept.getresponse().status == 200  # the old connection goes on
    kept.close()
    # A bad new file is refused and the doors keep the certificate they serve.
    key.write_text("not a key\n")
    server.process.send_signal(signal.SIGHUP)
    _wait_for_log(server, "TLS reload refused")
    for port in (doors.kafka, doors.registry, doors.metrics):
        assert _serial(port, after) == new
    with odradek.connect(server.url, tls_ca=str(first.ca)) as client:  # Flight: the first CA
        client.create_topic("still-serving")
    code, errors = server.stop()
    assert code == 0, errors


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-key", "{key}"], "--tls-key needs --tls-cert"),
        (["--tls-cert", "{cert}"], "--tls-cert needs --tls-key"),
        (["--tls-ca", "{ca}"], "--tls-ca checks client certificates"),
        (["--tls-cert", "{cert}", "--tls-key", "{other_key}"], "is not the key of --tls-cert"),
        (["--tls-cert", "{missing}", "--tls-key", "{key}"], "cannot read it"),
        (["--tls-cert", "{cert}", "--tls-key", "{key}", "--tls-ca", "{key}"], "no PEM certificate in it"),
    ],
)
def test_bad_files_stop_the_server_at_start(
    tmp_path: Path, first: Certificates, second: Certificates, flags: list[str], message: str
) -> None:
    names = {
        "cert": first.server_cert,
        "key": first.server_key,
        "ca": first.ca,
        "other_key": second.server_key,
        "missing": tmp_path / "missing.pem",
    }
    arguments = [flag.format(**names) for flag in flags]
    result = subprocess.run(
        [*ODRADEK, "serve", "--data-dir", str(tmp_path / "d"), "--listen", "127.0.0.1:0",
         "--kafka-listen", "off", "--registry-listen", "off", *arguments],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "d").exists()  # refused before the data directory was opened
