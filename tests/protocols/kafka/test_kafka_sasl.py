"""SASL on the Kafka door: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER.

Goal: each mechanism works with each real client that supports it (confluent-kafka,
kafka-python, aiokafka, kcat), over SASL_PLAINTEXT and SASL_SSL, and a Faust and a
Quix Streams app over SASL_SSL; a connection that has not authenticated may send
nothing but ApiVersions and SASL; bad passwords, unknown users, expired and revoked
tokens are answered SASL_AUTHENTICATION_FAILED and the connection is closed; a SCRAM
client-final recorded from one exchange and replayed in another is refused; arbitrary
SaslAuthenticate bytes never crash the door and never authenticate.

Method: an in-process Kafka listener over a fresh node with an authenticator over a
credential store holding two users and tokens; real clients produce and consume;
refusals are checked on a raw connection (wire.py) and with scramp's client.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import scramp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wire import Wire

from odradek.node import Node
from odradek.protocols.kafka import KafkaListenerHandle, start_kafka_listener
from odradek.protocols.kafka.authentication import SASL_AUTHENTICATION_FAILED
from odradek.protocols.kafka.codec.api import ApiKey
from odradek.protocols.kafka.codec.messages_admin import SaslHandshakeRequest
from odradek.protocols.kafka.codec.messages_data import ApiVersionsRequest, MetadataRequest
from odradek.protocols.kafka.codec.messages_sasl import SaslAuthenticateRequest
from odradek.protocols.tls import ServerTls, TlsFiles
from odradek.security import Authenticator, CredentialStore
from odradek.security.jwks import JwtValidator

sys.path.insert(0, str(Path(__file__).parents[2] / "cluster"))  # the certificate generator

from etcd_certificates import Certificates, make_certificates

PASSWORD = "alice-secret"
KCAT = shutil.which("kcat")


class SaslDoor:
    def __init__(
        self, directory: Path, tls: ServerTls | None = None, jwt: JwtValidator | None = None
    ) -> None:
        self.node = Node.open(str(directory / "data"), fsync=False)
        self.store = CredentialStore.open(str(directory / "data"))
        self.store.add_user("alice", PASSWORD)
        self.token, _ = self.store.create_token("alice")
        self.authenticator = Authenticator(self.store, jwt, mtls=tls is not None and tls.mutual)
        self.listener: KafkaListenerHandle = start_kafka_listener(
            self.node,
            "127.0.0.1",
            0,
            tls=tls.context if tls is not None else None,
            authenticator=self.authenticator,
        )

        self.wires: list[Wire] = []
        self.protocol = "SASL_SSL" if tls is not None else "SASL_PLAINTEXT"
        self.ca = ""

    def wire(self) -> Wire:
        """A raw connection, closed with the door."""
        self.wires.append(Wire(self.listener.port))
        return self.wires[-1]

    @property
    def bootstrap(self) -> str:
        return self.listener.bootstrap

    @property
    def port(self) -> int:
        return self.listener.port

    def close(self) -> None:
        for wire in self.wires:
            wire.close()
        self.listener.close()
        self.node.close()


@pytest.fixture
def door(tmp_path: Path) -> Iterator[SaslDoor]:
    served = SaslDoor(tmp_path)
    yield served
    served.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def tls_door(tmp_path: Path, certificates: Certificates) -> Iterator[SaslDoor]:
    tls = ServerTls(TlsFiles(str(certificates.server_cert), str(certificates.server_key)))
    served = SaslDoor(tmp_path, tls)
    yield served
    served.close()


def _topic() -> str:
    return f"sasl.{uuid.uuid4().hex[:8]}"


# -- confluent-kafka (librdkafka) ----------------------------------------------------------


def _confluent_round_trip(bootstrap: str, settings_: dict[str, Any]) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    topic = _topic()
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, **settings_})
    producer.produce(topic, key=b"k", value=b"v1")
    assert producer.flush(30) == 0
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            **settings_,
        }
    )
    try:
        consumer.subscribe([topic])
        message = None
        for _ in range(60):
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                break
        assert message is not None and message.error() is None and message.value() == b"v1"
    finally:
        consumer.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_kafka_over_sasl_plaintext(door: SaslDoor, mechanism: str) -> None:
    _confluent_round_trip(
        door.bootstrap,
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": mechanism,
            "sasl.username": "alice",
            "sasl.password": PASSWORD,
        },
    )


@pytest.mark.compat("confluent-kafka", "SASL/TLS")
@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_kafka_over_sasl_ssl(
    tls_door: SaslDoor, certificates: Certificates, mechanism: str
) -> None:
    _confluent_round_trip(
        tls_door.bootstrap,
        {
            "security.protocol": "SASL_SSL",
            "ssl.ca.location": str(certificates.ca),
            "sasl.mechanism": mechanism,
            "sasl.username": "alice",
            "sasl.password": PASSWORD,
        },
    )


def test_confluent_kafka_oauthbearer_with_an_api_token(door: SaslDoor) -> None:
    token = door.token
    _confluent_round_trip(
        door.bootstrap,
        {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "OAUTHBEARER",
            "oauth_cb": lambda _config: (token, 4102444800.0),
        },
    )


def test_confluent_kafka_with_a_wrong_password_is_refused(door: SaslDoor) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    errors: list[Any] = []
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": door.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "alice",
            "sasl.password": "not-the-Secret-42",
            "error_cb": errors.append,
        }
    )
    for _ in range(60):
        producer.poll(0.5)
        if any(e.code() == confluent_kafka.KafkaError._AUTHENTICATION for e in errors):
            break
    assert any(e.code() == confluent_kafka.KafkaError._AUTHENTICATION for e in errors), errors
    assert "not-the-Secret-42" not in " ".join(str(e) for e in errors)


# -- kafka-python and aiokafka --------------------------------------------------------------


MECHANISMS = ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@pytest.fixture(params=["SASL_PLAINTEXT", "SASL_SSL"])
def any_door(
    request: pytest.FixtureRequest, tmp_path: Path, certificates: Certificates
) -> Iterator[SaslDoor]:
    """The door without TLS (SASL_PLAINTEXT) or with it (SASL_SSL); ``door.ssl`` says
    which (the client's CA then)."""
    tls = None
    if request.param == "SASL_SSL":
        tls = ServerTls(TlsFiles(str(certificates.server_cert), str(certificates.server_key)))
    served = SaslDoor(tmp_path, tls)
    served.protocol = request.param
    served.ca = str(certificates.ca)
    yield served
    served.close()


@pytest.mark.compat("kafka-python", "SASL/TLS")
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kafka_python(any_door: SaslDoor, mechanism: str) -> None:
    kafka = pytest.importorskip("kafka")
    topic = _topic()
    tls = {"ssl_cafile": any_door.ca, "ssl_check_hostname": False} if any_door.protocol == "SASL_SSL" else {}
    producer = kafka.KafkaProducer(
        bootstrap_servers=any_door.bootstrap,
        security_protocol=any_door.protocol,
        sasl_mechanism=mechanism,
        sasl_plain_username="alice",
        sasl_plain_password=PASSWORD,
        **tls,
    )
    producer.send(topic, b"from kafka-python").get(timeout=30)
    producer.close()
    assert any_door.node.engine.describe_topic(topic).next_offset == 1


def test_kafka_python_oauthbearer(door: SaslDoor) -> None:
    kafka = pytest.importorskip("kafka")
    from kafka.net.sasl.oauth import AbstractTokenProvider

    token = door.token

    class Provider(AbstractTokenProvider):  # type: ignore[misc]
        def token(self) -> str:
            return token

    topic = _topic()
    producer = kafka.KafkaProducer(
        bootstrap_servers=door.bootstrap,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="OAUTHBEARER",
        sasl_oauth_token_provider=Provider(),
    )
    producer.send(topic, b"token").get(timeout=30)
    producer.close()
    assert door.node.engine.describe_topic(topic).next_offset == 1


@pytest.mark.compat("aiokafka", "SASL/TLS")
@pytest.mark.parametrize("mechanism", [*MECHANISMS, "OAUTHBEARER"])
def test_aiokafka(any_door: SaslDoor, mechanism: str) -> None:
    aiokafka = pytest.importorskip("aiokafka")
    from aiokafka.abc import AbstractTokenProvider
    from aiokafka.helpers import create_ssl_context

    topic = _topic()
    token = any_door.token

    class Provider(AbstractTokenProvider):  # type: ignore[misc]
        async def token(self) -> str:
            return token

    async def produce() -> None:
        credentials: dict[str, Any] = (
            {"sasl_oauth_token_provider": Provider()}
            if mechanism == "OAUTHBEARER"
            else {"sasl_plain_username": "alice", "sasl_plain_password": PASSWORD}
        )
        if any_door.protocol == "SASL_SSL":
            context = create_ssl_context(cafile=any_door.ca)
            context.check_hostname = False
            credentials["ssl_context"] = context
        producer = aiokafka.AIOKafkaProducer(
            bootstrap_servers=any_door.bootstrap,
            security_protocol=any_door.protocol,
            sasl_mechanism=mechanism,
            **credentials,
        )
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"from aiokafka")
        finally:
            await producer.stop()

    asyncio.run(produce())
    assert any_door.node.engine.describe_topic(topic).next_offset == 1


# -- kcat -----------------------------------------------------------------------------------


@pytest.mark.compat("kcat", "SASL/TLS")
@pytest.mark.skipif(KCAT is None, reason="kcat is not installed (apt-get install kcat)")
@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_kcat_over_sasl_ssl(tls_door: SaslDoor, certificates: Certificates, mechanism: str) -> None:
    assert KCAT is not None
    topic = _topic()
    settings_ = [
        "-X", "security.protocol=SASL_SSL",
        "-X", f"ssl.ca.location={certificates.ca}",
        "-X", f"sasl.mechanism={mechanism}",
        "-X", "sasl.username=alice",
        "-X", f"sasl.password={PASSWORD}",
    ]  # fmt: skip
    done = subprocess.run(
        [KCAT, "-b", tls_door.bootstrap, *settings_, "-P", "-t", topic],
        input="one\ntwo\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert tls_door.node.engine.describe_topic(topic).next_offset == 2


# -- Faust ----------------------------------------------------------------------------------


@pytest.mark.compat("faust", "SASL/TLS")
def test_faust_over_sasl_ssl(tls_door: SaslDoor, certificates: Certificates, tmp_path: Path) -> None:
    """A Faust app (test_faust_clients.py's, on aiokafka) with ``broker_credentials``
    of SCRAM-SHA-256 over TLS: it joins its group, creates its changelog topic, reads
    and forwards every record."""
    pytest.importorskip("faust")
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_faust_clients import ForwardApp

    settings_ = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(certificates.ca),
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "alice",
        "sasl.password": PASSWORD,
    }
    admin = AdminClient({"bootstrap.servers": tls_door.bootstrap, **settings_})
    for future in admin.create_topics([NewTopic("letters", 2, 1), NewTopic("forwarded", 2, 1)]).values():
        future.result(30)
    producer = confluent_kafka.Producer({"bootstrap.servers": tls_door.bootstrap, **settings_})
    values = [f"s{i}" for i in range(10)]
    for value in values:
        producer.produce("letters", key=value.encode(), value=value.encode())
    assert producer.flush(30) == 0
    sasl = {
        "mechanism": "SCRAM-SHA-256",
        "username": "alice",
        "password": PASSWORD,
        "cafile": str(certificates.ca),
    }
    app = ForwardApp(
        tls_door.bootstrap, tmp_path / "faust", "at_least_once", env={"FORWARD_SASL": json.dumps(sasl)}
    )
    engine = tls_door.node.engine
    try:
        app.wait_until(lambda: {value for value, _ in app.sent} >= set(values), "every record forwarded")
        # A send is acknowledged after the agent printed it: wait for the topics.
        app.wait_until(
            lambda: (
                engine.describe_topic("forwarded").next_offset >= len(values)
                and engine.describe_topic("forward-forwarded_count-changelog").next_offset >= len(values)
            ),
            "the forwarded records and the changelog",
        )
    finally:
        app.kill()


@pytest.mark.compat("quix-streams", "SASL/TLS")
def test_quix_over_sasl_ssl(tls_door: SaslDoor, certificates: Certificates, tmp_path: Path) -> None:
    """The Quix word-count app (test_kafka_quix.py's, in the Quix side environment) over
    SCRAM-SHA-256 and TLS (``ConnectionConfig``): it creates its topics and changelog,
    counts every word and writes its counts."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    from confluent_kafka.admin import AdminClient, NewTopic
    from test_kafka_quix import QUIX_PYTHON, QuixApp
    from word_apps import WORDS

    if not QUIX_PYTHON.exists():
        pytest.skip("the Quix side environment is missing: run ./dev setup")
    settings_ = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": str(certificates.ca),
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "alice",
        "sasl.password": PASSWORD,
    }
    admin = AdminClient({"bootstrap.servers": tls_door.bootstrap, **settings_})
    admin.create_topics([NewTopic("words", 1, 1)])["words"].result(30)
    producer = confluent_kafka.Producer({"bootstrap.servers": tls_door.bootstrap, **settings_})
    for _ in range(3):
        for word in WORDS:
            producer.produce("words", key=word.encode(), value=word.encode())
    assert producer.flush(30) == 0
    sasl = {
        "mechanism": "SCRAM-SHA-256",
        "username": "alice",
        "password": PASSWORD,
        "cafile": str(certificates.ca),
    }
    app = QuixApp(
        tls_door.bootstrap, tmp_path / "state", "at-least-once", 0.2, env={"QUIX_SASL": json.dumps(sasl)}
    )
    engine = tls_door.node.engine
    try:
        assert app.wait_for({word: 3 for word in WORDS}) == {word: 3 for word in WORDS}
        deadline = time.monotonic() + 60
        while engine.describe_topic("counts").next_offset < 3 * len(WORDS):  # produced after the print
            assert time.monotonic() < deadline and app.process.poll() is None, app.tail()
            time.sleep(0.05)
    finally:
        app.kill()


# -- refusals on a raw connection -----------------------------------------------------------


def _closed(wire: Wire) -> bool:
    try:
        return wire.sock.recv(1) == b""
    except (TimeoutError, ConnectionError):
        return True


def _authenticate(wire: Wire, mechanism: str, auth_bytes: bytes) -> Any:
    handshake = wire.call(ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeRequest(mechanism=mechanism))
    assert handshake.error_code == 0
    return wire.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=auth_bytes))


def test_api_versions_names_sasl_and_other_requests_close_the_connection(door: SaslDoor) -> None:
    wire = door.wire()
    versions = wire.call(ApiKey.API_VERSIONS, 3, ApiVersionsRequest())
    keys = {key.api_key for key in versions.api_keys}
    assert {ApiKey.SASL_HANDSHAKE, ApiKey.SASL_AUTHENTICATE} <= keys
    wire.send(ApiKey.METADATA, 12, MetadataRequest(topics=None))
    assert _closed(wire)


@pytest.mark.parametrize(
    ("mechanism", "auth_bytes", "reason"),
    [
        ("PLAIN", b"\0alice\0not-the-Secret-42", "wrong password"),
        ("PLAIN", b"\0mallory\0" + PASSWORD.encode(), "wrong password"),
        ("OAUTHBEARER", b"n,,\x01auth=Bearer odr_0000000000000000_" + b"A" * 43 + b"\x01\x01", "revoked"),
    ],
)
def test_bad_credentials_are_answered_and_the_connection_closed(
    door: SaslDoor, mechanism: str, auth_bytes: bytes, reason: str
) -> None:
    wire = door.wire()
    response = _authenticate(wire, mechanism, auth_bytes)
    assert response.error_code == SASL_AUTHENTICATION_FAILED
    assert reason in (response.error_message or "")
    assert "Secret" not in (response.error_message or "")
    assert _closed(wire)


def test_expired_and_revoked_tokens_are_refused(door: SaslDoor) -> None:
    expiring, _ = door.store.create_token("alice", expires_seconds=-60)  # expired a minute ago
    revoked, revoked_entry = door.store.create_token("alice")
    door.store.revoke_token(revoked_entry.id)
    for token, reason in ((expiring, "expired"), (revoked, "revoked")):
        wire = door.wire()
        response = _authenticate(wire, "OAUTHBEARER", f"n,,\x01auth=Bearer {token}\x01\x01".encode())
        assert response.error_code == SASL_AUTHENTICATION_FAILED
        assert reason in (response.error_message or "")
        assert token not in (response.error_message or "")
        assert _closed(wire)


def test_a_token_that_expires_gives_the_session_its_lifetime(door: SaslDoor) -> None:
    token, _ = door.store.create_token("alice", expires_seconds=3600)
    wire = door.wire()
    response = _authenticate(wire, "OAUTHBEARER", f"n,,\x01auth=Bearer {token}\x01\x01".encode())
    assert response.error_code == 0
    assert 3_500_000 < response.session_lifetime_ms <= 3_600_000
    metadata = wire.call(ApiKey.METADATA, 12, MetadataRequest(topics=None))
    assert metadata.brokers


def test_a_replayed_scram_client_final_is_refused(door: SaslDoor) -> None:
    """The client-final of a finished exchange, sent in a new exchange with the same
    client-first (same client nonce), fails: the server's nonce differs."""
    client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD, c_nonce="fixedclientnonce")
    first = client.get_client_first().encode()
    wire = door.wire()
    server_first = _authenticate(wire, "SCRAM-SHA-256", first)
    client.set_server_first(server_first.auth_bytes.decode())
    final = client.get_client_final().encode()
    done = wire.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=final))
    assert done.error_code == 0
    replay = door.wire()
    assert _authenticate(replay, "SCRAM-SHA-256", first).error_code == 0
    refused = replay.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=final))
    assert refused.error_code == SASL_AUTHENTICATION_FAILED
    assert _closed(replay)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    mechanism=st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]),
    messages=st.lists(st.binary(max_size=300), min_size=1, max_size=3),
)
def test_fuzzed_sasl_bytes_never_authenticate(door: SaslDoor, mechanism: str, messages: list[bytes]) -> None:
    wire = door.wire()
    handshake = wire.call(ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeRequest(mechanism=mechanism))
    assert handshake.error_code == 0
    for message in messages:
        response = wire.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=message))
        if response.error_code != 0:
            assert response.error_code == SASL_AUTHENTICATION_FAILED
            assert _closed(wire)
            break
    else:
        wire.send(ApiKey.METADATA, 12, MetadataRequest(topics=None))  # still not authenticated
        assert _closed(wire)
    assert door.wire().call(ApiKey.API_VERSIONS, 3, ApiVersionsRequest()).error_code == 0  # still serving


def test_without_an_authenticator_sasl_is_refused(tmp_path: Path) -> None:
    node = Node.open(str(tmp_path / "data"), fsync=False)
    with start_kafka_listener(node, "127.0.0.1", 0) as listener:
        wire = Wire(listener.port)
        versions = wire.call(ApiKey.API_VERSIONS, 3, ApiVersionsRequest())
        assert ApiKey.SASL_HANDSHAKE not in {key.api_key for key in versions.api_keys}
        response = wire.call(ApiKey.SASL_HANDSHAKE, 1, SaslHandshakeRequest(mechanism="PLAIN"))
        assert response.error_code != 0 and response.mechanisms == ()
        refused = wire.call(ApiKey.SASL_AUTHENTICATE, 2, SaslAuthenticateRequest(auth_bytes=b"\0a\0b"))
        assert refused.error_code == 34  # ILLEGAL_SASL_STATE
        assert "does not authenticate" in (refused.error_message or "")
        wire.close()
    node.close()


# -- client certificates (mTLS) -----------------------------------------------------------


@pytest.fixture
def mtls_door(tmp_path: Path, certificates: Certificates) -> Iterator[SaslDoor]:
    tls = ServerTls(
        TlsFiles(str(certificates.server_cert), str(certificates.server_key), str(certificates.ca))
    )
    served = SaslDoor(tmp_path, tls)
    yield served
    served.close()


def _ssl_settings(certificates: Certificates, cert: Path, key: Path) -> dict[str, Any]:
    return {
        "security.protocol": "SSL",
        "ssl.ca.location": str(certificates.ca),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }


def test_a_client_certificate_names_the_principal(mtls_door: SaslDoor, certificates: Certificates) -> None:
    """A certificate signed by --tls-ca authenticates the connection without SASL (its CN
    is the principal); the door knows it."""
    seen: list[str] = []
    from odradek.protocols.kafka import authentication

    original = authentication.ConnectionAuth.__init__

    def spy(self: Any, *args: Any) -> None:
        original(self, *args)
        if self.principal is not None:
            seen.append(f"{self.principal.name}/{self.principal.mechanism}")

    authentication.ConnectionAuth.__init__ = spy  # type: ignore[method-assign]
    try:
        _confluent_round_trip(
            mtls_door.bootstrap,
            _ssl_settings(certificates, certificates.client_cert, certificates.client_key),
        )
    finally:
        authentication.ConnectionAuth.__init__ = original  # type: ignore[method-assign]
    assert "odradek agent/mtls" in seen


def test_a_certificate_of_another_ca_is_refused(mtls_door: SaslDoor, certificates: Certificates) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    errors: list[Any] = []
    settings_ = _ssl_settings(certificates, certificates.stranger_cert, certificates.stranger_key)
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": mtls_door.bootstrap, **settings_, "error_cb": errors.append}
    )
    for _ in range(60):
        producer.poll(0.5)
        if any(
            e.code()
            in (
                confluent_kafka.KafkaError._SSL,
                confluent_kafka.KafkaError._TRANSPORT,
                confluent_kafka.KafkaError._ALL_BROKERS_DOWN,
            )
            for e in errors
        ):
            break
    assert errors, "the handshake with another CA's certificate was not refused"
    assert mtls_door.node.engine.list_topics() == []


# -- SaslHandshake v0 (raw SASL frames) and KIP-368 sessions ----------------------------------


def test_a_version_0_handshake_is_followed_by_raw_sasl_frames(door: SaslDoor) -> None:
    wire = door.wire()
    assert wire.call(ApiKey.SASL_HANDSHAKE, 0, SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
    token = f"\0alice\0{PASSWORD}".encode()
    wire.sock.sendall(len(token).to_bytes(4, "big") + token)  # no Kafka header: a raw SASL frame
    assert wire._exactly(4) == b"\0\0\0\0"  # PLAIN's empty answer, raw
    assert wire.call(ApiKey.METADATA, 12, MetadataRequest(topics=None)).brokers
    refused = door.wire()
    assert refused.call(ApiKey.SASL_HANDSHAKE, 0, SaslHandshakeRequest(mechanism="PLAIN")).error_code == 0
    wrong = b"\0alice\0not-the-Secret-42"
    refused.sock.sendall(len(wrong).to_bytes(4, "big") + wrong)
    assert _closed(refused)  # version 0 cannot say why: the connection closes


def test_a_session_ends_when_its_token_expires_and_may_be_renewed(
    door: SaslDoor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KIP-368: the client authenticates again on the same connection before its session
    ends; a request after the end closes the connection. The door's clock is moved
    instead of waiting."""
    from odradek.protocols.kafka import authentication

    token, _ = door.store.create_token("alice", expires_seconds=600)
    oauth = f"n,,\x01auth=Bearer {token}\x01\x01".encode()
    renewed = door.wire()
    assert _authenticate(renewed, "OAUTHBEARER", oauth).session_lifetime_ms > 0
    assert _authenticate(renewed, "OAUTHBEARER", oauth).error_code == 0  # re-authentication
    assert renewed.call(ApiKey.METADATA, 12, MetadataRequest(topics=None)).brokers
    ended = door.wire()
    assert _authenticate(ended, "OAUTHBEARER", oauth).error_code == 0
    now = authentication.time.time()
    monkeypatch.setattr(authentication.time, "time", lambda: now + 601)
    ended.send(ApiKey.METADATA, 12, MetadataRequest(topics=None))
    assert _closed(ended)


def test_re_authentication_as_another_principal_is_refused(door: SaslDoor) -> None:
    door.store.add_user("bob", "bob-secret")
    wire = door.wire()
    assert _authenticate(wire, "PLAIN", f"\0alice\0{PASSWORD}".encode()).error_code == 0
    response = _authenticate(wire, "PLAIN", b"\0bob\0bob-secret")
    assert response.error_code == SASL_AUTHENTICATION_FAILED
    assert _closed(wire)


def test_confluent_kafka_oauthbearer_with_a_jwt(tmp_path: Path) -> None:
    """A JWT from an identity provider (its JWKS given to the server) through librdkafka's
    oauth_cb; a JWT signed by another key is refused."""
    import json

    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [{**public, "kid": "idp"}]}))
    served = SaslDoor(tmp_path, jwt=JwtValidator(str(tmp_path / "jwks.json")))
    try:
        expires = time.time() + 600
        token = jwt.encode(
            {"sub": "svc-billing", "exp": expires}, key, algorithm="RS256", headers={"kid": "idp"}
        )
        _confluent_round_trip(
            served.bootstrap,
            {
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "OAUTHBEARER",
                "oauth_cb": lambda _config: (token, expires),
            },
        )
        stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        forged = jwt.encode(
            {"sub": "svc-billing", "exp": expires}, stranger, algorithm="RS256", headers={"kid": "idp"}
        )
        wire = served.wire()
        response = _authenticate(wire, "OAUTHBEARER", f"n,,\x01auth=Bearer {forged}\x01\x01".encode())
        assert response.error_code == SASL_AUTHENTICATION_FAILED
        assert _closed(wire)
    finally:
        served.close()
