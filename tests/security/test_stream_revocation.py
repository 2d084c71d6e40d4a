"""A revoked token or a removed user ends the streams it opened, on every door.

Goal: a long-lived stream checks its principal again when the credentials change
(security/revalidation.py): after `odradek token revoke` a native client's following
read, its group subscription and its append stream end with Unauthenticated naming the
revoked token (the stream's own refusal, not a new call's); after `odradek user remove`
the same for a user's password streams; a Kafka consumer's connection (SCRAM-SHA-256) is
closed and its client cannot authenticate again; an SSE tail of the HTTP API (and the
console's) ends with an ``error`` event ``unauthenticated``; with `--authorize`, a
following read whose ``read`` binding is removed ends with Unauthorized. Streams of
other principals go on.
Method: one real `odradek serve --auth` subprocess with its Flight, Kafka and HTTP doors
on free loopback ports (and one with `--authorize` for the bindings); users and tokens
made and revoked with the CLI against it; the public native client, confluent-kafka and
raw HTTP (http.client). Deadlines bound how long a test waits for an end; no timing is
asserted.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import odradek
from odradek.errors import Unauthenticated, Unauthorized
from odradek.ports import free_ports

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))  # the serve subprocess helpers

from odradek_process import Server, run

DEADLINE_SECONDS = 60.0


class Served:
    def __init__(self, directory: Path) -> None:
        data = directory / "data"
        _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
        self.admin = {"ODRADEK_TOKEN": _ok(run("token", "create", "root", "--data-dir", str(data))).strip()}
        self.kafka_port, self.http_port = free_ports(2)
        self.server = Server(
            data,
            "--auth",
            "--kafka-listen",
            f"127.0.0.1:{self.kafka_port}",
            "--registry-listen",
            f"127.0.0.1:{self.http_port}",
        )

    def cli(self, *args: str, stdin: bytes = b"") -> str:
        return _ok(run(*args, server=self.server, env=self.admin, stdin=stdin))

    def user(self, password: str) -> str:
        name = f"u{uuid.uuid4().hex[:8]}"
        self.cli("user", "add", name, stdin=password.encode() + b"\n")
        return name

    def token(self, user: str) -> tuple[str, str]:
        token = self.cli("token", "create", user).strip()
        return token, token.split("_")[1]


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return str(result.stdout.decode())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    serving = Served(tmp_path_factory.mktemp("revocation"))
    yield serving
    if serving.server.process.poll() is None:
        serving.server.stop()


def _topic(client: odradek.RemoteClient) -> str:
    name = f"t{uuid.uuid4().hex[:8]}"
    client.create_topic(name)
    return name


def _until_refused(action: Any) -> Unauthenticated:
    """Call ``action`` until it raises Unauthenticated (within the deadline)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        try:
            action()
        except Unauthenticated as refused:
            return refused
    raise AssertionError(f"not refused within {DEADLINE_SECONDS} s")


def test_a_revoked_token_ends_its_read_subscription_and_append_stream(served: Served) -> None:
    user = served.user("alice-secret-1")
    token, token_id = served.token(user)
    other_token, _ = served.token(user)  # another token of the same user is not revoked
    with (
        odradek.connect(served.server.url, token=token) as client,
        odradek.connect(served.server.url, token=other_token) as other,
    ):
        topic = _topic(client)
        client.append(topic, [{"value": b"first"}])  # opens the client's append stream
        reading = iter(client.read(topic, follow=True))
        assert next(reading).num_rows == 1
        consumer = client.subscribe(topic, group=f"g{uuid.uuid4().hex[:6]}")
        assert len(consumer.poll(timeout=10)) == 1
        other_reading = iter(other.read(topic, follow=True))
        assert next(other_reading).num_rows == 1

        served.cli("token", "revoke", token_id)

        # The following read, idle (nothing more appended), ends by itself.
        with pytest.raises(Unauthenticated, match="ended: its token was revoked"):
            next(reading)
        refused = _until_refused(lambda: consumer.poll(timeout=1))
        assert "ended: its token was revoked" in refused.message
        # The other token's stream goes on.
        other.append(topic, [{"value": b"second"}])
        batch = next(other_reading)
        assert batch.column("value").to_pylist() == [b"second"]


def _appending(client: odradek.RemoteClient, topic: str, outcome: list[BaseException]) -> threading.Thread:
    """Single appends back to back on the client's one append stream (never idle long
    enough for the client to close it) until one is refused; the refusal in ``outcome``."""

    def run() -> None:
        try:
            outcome.append(_until_refused(lambda: client.append(topic, [{"value": b"again"}])))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_revoked_token_ends_its_append_streams(served: Served) -> None:
    user = served.user("alice-secret-2")
    token, token_id = served.token(user)
    revoked = threading.Event()

    def batches() -> Iterator[list[dict[str, bytes]]]:
        yield [{"value": b"before"}]
        revoked.wait(DEADLINE_SECONDS)
        yield [{"value": b"after"}]

    with odradek.connect(served.server.url, token=token) as client:
        topic = _topic(client)
        client.append(topic, [{"value": b"first"}])
        singles: list[BaseException] = []
        thread = _appending(client, topic, singles)
        put: list[BaseException] = []

        def many() -> None:
            try:
                client.append_many(topic, batches())
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                put.append(exc)

        putting = threading.Thread(target=many, daemon=True)
        putting.start()
        served.cli("token", "revoke", token_id)
        revoked.set()
        thread.join(DEADLINE_SECONDS)
        putting.join(DEADLINE_SECONDS)
    # The refusals are the streams' own (an append stream, a DoPut), not a new call's.
    assert len(singles) == 1 and isinstance(singles[0], Unauthenticated), singles
    assert "ended: its token was revoked" in singles[0].message
    assert len(put) == 1 and isinstance(put[0], Unauthenticated), put
    assert "ended: its token was revoked" in put[0].message
    with odradek.connect(served.server.url, token=served.admin["ODRADEK_TOKEN"]) as admin:
        values = [value for batch in admin.read(topic) for value in batch.column("value").to_pylist()]
    assert b"after" not in values  # the DoPut's batch after the revocation was not appended


def test_a_removed_user_ends_its_password_streams(served: Served) -> None:
    user = served.user("bob-secret-22")
    with odradek.connect(served.server.url, user=user, password="bob-secret-22") as client:
        topic = _topic(client)
        client.append(topic, [{"value": b"first"}])
        reading = iter(client.read(topic, follow=True))
        assert next(reading).num_rows == 1
        consumer = client.subscribe(topic, group=f"g{uuid.uuid4().hex[:6]}")
        assert len(consumer.poll(timeout=10)) == 1

        served.cli("user", "remove", user)

        with pytest.raises(Unauthenticated, match=f"ended: user '{user}' was removed"):
            next(reading)
        refused = _until_refused(lambda: consumer.poll(timeout=1))
        assert f"user '{user}' was removed" in refused.message


def test_a_removed_user_ends_its_append_stream(served: Served) -> None:
    user = served.user("bob-secret-23")
    with odradek.connect(served.server.url, user=user, password="bob-secret-23") as client:
        topic = _topic(client)
        client.append(topic, [{"value": b"first"}])
        singles: list[BaseException] = []
        thread = _appending(client, topic, singles)
        served.cli("user", "remove", user)
        thread.join(DEADLINE_SECONDS)
    assert len(singles) == 1 and isinstance(singles[0], Unauthenticated), singles
    assert f"ended: user '{user}' was removed" in singles[0].message


def test_a_kafka_consumer_of_a_removed_user_is_disconnected(served: Served) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    user = served.user("carol-secret-333")
    with odradek.connect(served.server.url, token=served.admin["ODRADEK_TOKEN"]) as admin:
        topic = _topic(admin)
        admin.append(topic, [{"value": b"first"}])
    errors: list[Any] = []
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": f"127.0.0.1:{served.kafka_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": user,
            "sasl.password": "carol-secret-333",
            "group.id": f"g{uuid.uuid4().hex[:6]}",
            "auto.offset.reset": "earliest",
            "error_cb": errors.append,
        }
    )
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + DEADLINE_SECONDS
        message = None
        while message is None and time.monotonic() < deadline:
            message = consumer.poll(1.0)
        assert message is not None and message.error() is None and message.value() == b"first"
        assert not errors

        served.cli("user", "remove", user)

        deadline = time.monotonic() + DEADLINE_SECONDS
        authentication = confluent_kafka.KafkaError._AUTHENTICATION
        while time.monotonic() < deadline and not any(e.code() == authentication for e in errors):
            consumer.poll(0.5)
        assert any(e.code() == authentication for e in errors), errors
    finally:
        consumer.close()


def _sse_tail(served: Served, path: str, token: str) -> tuple[http.client.HTTPConnection, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", served.http_port, timeout=DEADLINE_SECONDS)
    connection.request("GET", path, headers={"Authorization": f"Bearer {token}"})
    answer = connection.getresponse()
    assert answer.status == 200
    return connection, answer


def _events(answer: Any) -> Iterator[tuple[str, str]]:
    """(event name, data) of each event of an SSE answer until it ends."""
    name, data = "message", ""
    for raw in answer:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield name, data
            name, data = "message", ""
        elif line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]


@pytest.mark.parametrize(
    "path", ["/v1/topics/{topic}/events?start=earliest", "/v1/console/tail?pattern={topic}&start=earliest"]
)
def test_an_sse_tail_ends_when_its_token_is_revoked(served: Served, path: str) -> None:
    user = served.user("dave-secret-4444")
    token, token_id = served.token(user)
    with odradek.connect(served.server.url, token=token) as client:
        topic = _topic(client)
        client.append(topic, [{"value": b"first"}])
    connection, answer = _sse_tail(served, path.format(topic=topic), token)
    try:
        events = _events(answer)
        name, data = next(events)
        assert name == "record" and json.loads(data)["offset"] == 0

        served.cli("token", "revoke", token_id)

        name, data = next(events)
        assert name == "error"
        error = json.loads(data)
        assert error["code"] == "unauthenticated" and "its token was revoked" in error["message"]
        assert list(events) == []  # and the stream ends
    finally:
        connection.close()


def test_a_removed_binding_ends_a_following_read(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    _ok(run("user", "add", "erin", "--data-dir", str(data), stdin=b"erin-secret-5\n"))
    root = {"ODRADEK_TOKEN": _ok(run("token", "create", "root", "--data-dir", str(data))).strip()}
    server = Server(data, "--auth", "--authorize", "--kafka-listen", "off", "--registry-listen", "off")
    try:
        for operation in ("read", "write"):
            granted = ("acl", "add", "--principal", "erin", "--allow", operation, "--topic", "t")
            _ok(run(*granted, server=server, env=root))
        with odradek.connect(server.url, token=root["ODRADEK_TOKEN"]) as admin:
            admin.create_topic("t")
        with odradek.connect(server.url, user="erin", password="erin-secret-5") as client:
            client.append("t", [{"value": b"first"}])
            reading = iter(client.read("t", follow=True))
            assert next(reading).num_rows == 1
            removed = run(
                "acl", "remove", "--principal", "erin", "--operation", "read", server=server, env=root
            )
            _ok(removed)
            with pytest.raises(Unauthorized, match=r"ended: .*read topic 't'"):
                next(reading)
    finally:
        server.stop()
