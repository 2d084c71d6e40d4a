"""Authentication's cost in one run: Kafka produce throughput with TLS + SCRAM against
plain, the SCRAM handshake's cost, and the rate of new authenticated connections.

Starts three `odradek serve --no-fsync` processes side by side: one plain (no TLS, no
authentication), one with TLS only, and one with TLS and --auth (a user and a token made
in its data directory before it starts), so the figures differ by TLS and SASL only,
and the TLS column tells TLS's share from SASL's.

    python scripts/auth_bench.py [--records 500000] [--connections 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import socket
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import scramp

import odradek

sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "cluster"))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests" / "protocols" / "kafka"))
sys.path.insert(0, str(Path(__file__).parent))
from etcd_certificates import make_certificates
from tls_bench import kafka_produce, start
from wire import Wire

from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.messages_admin import SaslHandshakeRequest
from odradek.protocols.kafka.codec.messages_data import ApiVersionsRequest
from odradek.protocols.kafka.codec.messages_sasl import SaslAuthenticateRequest
from odradek.security import Authenticator, CredentialStore

PASSWORD = "bench-password"


class _TlsWire(Wire):  # type: ignore[misc]  # the test helper is imported by path
    def __init__(self, port: int, context: ssl.SSLContext) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.client_id = "bench"
        self.correlation = 0


def kafka_connections(port: int, count: int, context: ssl.SSLContext | None, mechanism: str | None) -> float:
    """New connections per second, each ready to send requests: TCP + ApiVersions, or
    TCP + TLS + ApiVersions + a whole SASL exchange."""
    started = time.perf_counter()
    for _ in range(count):
        wire: Any = Wire(port) if context is None else _TlsWire(port, context)
        try:
            wire.call(ApiKey.API_VERSIONS, 3, ApiVersionsRequest())
            if mechanism is not None:
                authenticate(wire, mechanism)
        finally:
            wire.close()
    return count / (time.perf_counter() - started)


def authenticate(wire: Any, mechanism: str) -> None:
    assert wire.call(ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeRequest(mechanism=mechanism)).error_code == 0
    if mechanism == "PLAIN":
        message = f"\0bench\0{PASSWORD}".encode()
        assert (
            wire.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=message)).error_code
            == 0
        )
        return
    client = scramp.ScramClient([mechanism], "bench", PASSWORD)
    first = wire.call(
        ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=client.get_client_first().encode())
    )
    client.set_server_first(first.auth_bytes.decode())
    final = wire.call(
        ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=client.get_client_final().encode())
    )
    assert final.error_code == 0
    client.set_server_final(final.auth_bytes.decode())


def server_scram_ms(directory: Path, mechanism: str, count: int = 200) -> float:
    """The server's own work per SCRAM exchange (both steps), in-process, in ms."""
    store = CredentialStore.open(str(directory))
    authenticator = Authenticator(store)
    clients = []
    for _ in range(count):
        client = scramp.ScramClient([mechanism], "bench", PASSWORD)
        clients.append(client)
    spent = 0.0
    for client in clients:
        server = authenticator.sasl()
        server.start(mechanism)
        started = time.perf_counter()
        first = server.step(client.get_client_first().encode())
        spent += time.perf_counter() - started
        client.set_server_first(first.response.decode())
        final = client.get_client_final().encode()  # the client's PBKDF2: not the server's cost
        started = time.perf_counter()
        done = server.step(final)
        spent += time.perf_counter() - started
        assert done.principal is not None
    return spent / count * 1000


def flight_connections(url: str, count: int, settings: dict[str, str]) -> float:
    started = time.perf_counter()
    for _ in range(count):
        with odradek.connect(url, **settings) as client:
            client.list_topics()
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument(
        "--rounds", type=int, default=3, help="each figure is the median of this many rounds, taken in turn"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        files = make_certificates(root / "certificates")
        ca = str(files.ca)
        store = CredentialStore.open(str(root / "secure"))
        store.add_user("bench", PASSWORD)
        token, _ = store.create_token("bench")
        context = ssl.create_default_context(cafile=ca)
        tls_files = ["--tls-cert", str(files.server_cert), "--tls-key", str(files.server_key)]
        plain, plain_url, plain_kafka = start(root / "plain", [])
        tls, tls_url, tls_kafka = start(root / "tls", tls_files)
        secure, secure_url, secure_kafka = start(root / "secure", [*tls_files, "--auth"])
        ssl_only = {"security.protocol": "SSL", "ssl.ca.location": ca}
        sasl_ssl = {
            **ssl_only,
            "security.protocol": "SASL_SSL",
            "sasl.username": "bench",
            "sasl.password": PASSWORD,
        }
        scram_512 = {**sasl_ssl, "sasl.mechanism": "SCRAM-SHA-512"}
        try:

            def median(*measures: Any) -> tuple[float, ...]:
                """Each measure's median over the rounds, the measures taken in turn within
                a round (a machine whose load changes weighs on all of them alike)."""
                taken: list[list[float]] = [[] for _ in measures]
                for _ in range(args.rounds):
                    for found, measure in zip(taken, measures, strict=True):
                        found.append(measure())
                return tuple(statistics.median(found) for found in taken)

            connects = median(
                lambda: kafka_connections(plain_kafka, args.connections, None, None),
                lambda: kafka_connections(tls_kafka, args.connections, context, None),
                lambda: kafka_connections(secure_kafka, args.connections, context, "SCRAM-SHA-256"),
                lambda: kafka_connections(secure_kafka, args.connections, context, "SCRAM-SHA-512"),
                lambda: kafka_connections(secure_kafka, args.connections, context, "PLAIN"),
            )
            produce = median(
                lambda: kafka_produce(plain_kafka, args.records, {}),
                lambda: kafka_produce(tls_kafka, args.records, ssl_only),
                lambda: kafka_produce(secure_kafka, args.records, scram_512),
            )
            flight_connect = median(
                lambda: flight_connections(plain_url, args.connections, {}),
                lambda: flight_connections(tls_url, args.connections, {"tls_ca": ca}),
                lambda: flight_connections(secure_url, args.connections, {"tls_ca": ca, "token": token}),
            )
            rows = [
                ("Kafka produce (confluent-kafka), records/s", produce[0], produce[1], produce[2]),
                ("Kafka connect, SCRAM-SHA-256, connections/s", connects[0], connects[1], connects[2]),
                ("Kafka connect, SCRAM-SHA-512, connections/s", connects[0], connects[1], connects[3]),
                ("Kafka connect, PLAIN, connections/s", connects[0], connects[1], connects[4]),
                ("Flight connect + call (token), connections/s", flight_connect[0], flight_connect[1],
                 flight_connect[2]),
            ]  # fmt: skip
            scram = {
                mechanism: server_scram_ms(root / "secure", mechanism)
                for mechanism in ("SCRAM-SHA-256", "SCRAM-SHA-512")
            }
        finally:
            for process in (plain, tls, secure):
                process.terminate()
                process.wait(30)
    print(f"{'measure':45} {'plain':>12} {'TLS':>12} {'TLS+auth':>12} {'auth/plain':>10}")
    for name, without, with_tls, with_auth in rows:
        print(f"{name:45} {without:12,.0f} {with_tls:12,.0f} {with_auth:12,.0f} {with_auth / without:10.0%}")
    for mechanism, milliseconds in scram.items():
        print(f"server work per {mechanism} exchange: {milliseconds:.3f} ms")


if __name__ == "__main__":
    main()
