"""`odradek tenant` and tenants' isolation through the native (Flight) door, end to end.

Goal: what an operator and two tenants do: make tenants and their users (offline, then
through the door), start `odradek serve --auth --authorize`; both tenants create
`orders` and write to it; each lists, reads (`>` and by name) and consumes (a group on
`>`) only its own records, under its own names; neither names the other's topics (nor
does an untenanted user, whose `>` never shows a tenant's topics); a denied write leaves
nothing behind; a cluster admin sees the tenants' topics under `_t.<tenant>.`; a tenant
with topics or users left is not deleted; a principal of a deleted tenant is refused.
Method: a real `odradek serve` subprocess on loopback ports, CLI subprocesses, and the
public Python client with tokens.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from odradek_process import Server, run

import odradek
from odradek.errors import InvalidRequest, Unauthorized
from odradek.ports import free_ports
from odradek.security.credentials import CredentialStore
from odradek.security.http import basic_header


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def _token(data: Path, user: str) -> str:
    return _ok(run("token", "create", user, "--data-dir", str(data))).strip()


def _read_all(client: odradek.Client, pattern: str) -> pa.Table:
    return pa.Table.from_batches(list(client.read(pattern, start="earliest", wait=0)))


def _consume(client: odradek.Client, pattern: str, group: str, wanted: int) -> list[tuple[str, bytes | None]]:
    consumer = client.subscribe(pattern, group=group, start="earliest")
    deliveries: list[odradek.Delivery] = []
    for _ in range(30):  # at most 30 polls of up to a second each
        deliveries += consumer.poll(timeout=1.0)
        if len(deliveries) >= wanted:
            break
    result = consumer.ack(deliveries)
    consumer.close()
    assert result.settled == len(deliveries)
    return sorted((delivery.topic, delivery.value) for delivery in deliveries)


@pytest.fixture
def tenants(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A data directory with tenants acme and globex, their users alice and gary, an
    untenanted user bob and the admin root; each user's token."""
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    assert _ok(run("tenant", "create", "acme", "--data-dir", str(data))) == "created tenant acme\n"
    for tenant, user in (("acme", "alice"), ("globex", "gary")):
        if tenant != "acme":
            _ok(run("tenant", "create", tenant, "--data-dir", str(data)))
        _ok(run("user", "add", user, "--tenant", tenant, "--data-dir", str(data), stdin=b"secret\n"))
    _ok(run("user", "add", "bob", "--data-dir", str(data), stdin=b"secret\n"))
    for principal in ("alice", "gary", "bob"):  # each may do everything in its namespace
        for kind in ("--topic", "--group", "--transactional-id", "--subject"):
            _ok(
                run(
                    "acl",
                    "add",
                    "--principal",
                    principal,
                    "--allow",
                    "all",
                    kind,
                    ">",
                    "--data-dir",
                    str(data),
                )
            )
    _ok(
        run(
            "acl",
            "add",
            "--principal",
            "alice",
            "--deny",
            "write",
            "--topic",
            "secret",
            "--data-dir",
            str(data),
        )
    )
    return data, {user: _token(data, user) for user in ("root", "alice", "gary", "bob")}


def test_two_tenants_each_see_only_their_own_orders(tenants: tuple[Path, dict[str, str]]) -> None:
    data, tokens = tenants
    flags = ("--auth", "--authorize", "--kafka-listen", "off", "--registry-listen", "off")
    server = Server(data, *flags)
    try:
        listed = _ok(run("tenant", "list", server=server, env={"ODRADEK_TOKEN": tokens["root"]}))
        assert [line.split("\t")[:2] for line in listed.splitlines()] == [
            ["acme", "users=1"],
            ["globex", "users=1"],
        ]
        for user in ("alice", "gary", "bob"):
            env = {"ODRADEK_TOKEN": tokens[user]}
            _ok(run("topic", "create", "orders", server=server, env=env))
            _ok(run("produce", "orders", server=server, env=env, stdin=f"{user}-1\n{user}-2\n".encode()))
        with odradek.connect(server.url, token=tokens["alice"]) as alice:
            alice.create_topic("orders.eu")
            alice.append("orders.eu", [{"value": b"alice-eu"}])
        for user in ("alice", "gary", "bob"):
            with odradek.connect(server.url, token=tokens[user]) as client:
                mine = ["orders", "orders.eu"] if user == "alice" else ["orders"]
                assert client.list_topics() == mine
                assert client.list_topics(">") == mine
                assert client.list_topics("*") == ["orders"]
                table = _read_all(client, ">")
                values = sorted(table.column("value").to_pylist())
                expected = [
                    f"{user}-1".encode(),
                    f"{user}-2".encode(),
                    *([b"alice-eu"] if user == "alice" else []),
                ]
                assert values == sorted(expected)
                assert set(table.column("topic").to_pylist()) == set(mine)
                assert [r.as_py() for r in _read_all(client, "orders").column("value")] == expected[:2]
                assert client.describe_topic("orders").name == "orders"
                assert client.describe_topic("orders").records == 2
                consumed = _consume(client, ">", "billing", len(expected))
                assert consumed == sorted(
                    (topic, value)
                    for topic, value in zip(
                        ["orders", "orders", *(["orders.eu"] if user == "alice" else [])],
                        expected,
                        strict=True,
                    )
                )
                assert client.list_groups() == ["billing"]
                assert client.describe_group("billing").group == "billing"
        with odradek.connect(server.url, token=tokens["alice"]) as alice:
            # another namespace's topic cannot be named, only the tenant's own: the
            # authorizer refuses the tenants' space to others, the namespace any '_' name
            with pytest.raises(Unauthorized, match=r"not authorized to read topic '_t\.globex\.orders'"):
                _read_all(alice, "_t.globex.orders")
            with pytest.raises(InvalidRequest, match="reserved"):
                _read_all(alice, "_t.globex.>")
            with pytest.raises(Unauthorized, match=r"not authorized to write topic '_t\.globex\.orders'"):
                alice.append("_t.globex.orders", [{"value": b"x"}])
            with pytest.raises(InvalidRequest, match="reserved"):
                alice.append("_orders", [{"value": b"x"}])
            with pytest.raises(odradek.TopicNotFound, match="'nothing'"):
                alice.describe_topic("nothing")  # its own name in the message, not the engine's
            # a denied write leaves nothing behind
            alice.create_topic("secret")
            with pytest.raises(Unauthorized, match="write topic 'secret'"):
                alice.append("secret", [{"value": b"never"}])
            assert alice.describe_topic("secret").records == 0
        with odradek.connect(server.url, token=tokens["root"]) as root:
            everything = root.list_topics()
            assert "_t.acme.orders" in everything and "_t.globex.orders" in everything
            assert root.list_topics(">") == ["orders"]  # a leading wildcard stays out of tenants
            assert root.list_topics("_t.*.orders") == ["_t.acme.orders", "_t.globex.orders"]
            assert root.describe_topic("_t.acme.secret").records == 0
            assert "_t.acme.billing" in root.list_groups()
            refused = run("tenant", "delete", "globex", server=server, env={"ODRADEK_TOKEN": tokens["root"]})
            assert refused.returncode == 1 and b"1 user(s) (gary)" in refused.stderr
            _ok(run("user", "remove", "gary", server=server, env={"ODRADEK_TOKEN": tokens["root"]}))
            refused = run("tenant", "delete", "globex", server=server, env={"ODRADEK_TOKEN": tokens["root"]})
            assert refused.returncode == 1 and b"_t.globex.orders" in refused.stderr
            root.delete_topic("_t.globex.orders")
            root.delete_group("_t.globex.billing")
            _ok(run("tenant", "delete", "globex", server=server, env={"ODRADEK_TOKEN": tokens["root"]}))
            assert "globex" not in _ok(
                run("tenant", "list", server=server, env={"ODRADEK_TOKEN": tokens["root"]})
            )
    finally:
        server.stop()


def test_a_principal_of_a_tenant_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    _ok(run("tenant", "create", "acme", "--data-dir", str(data)))
    _ok(run("user", "add", "alice", "--tenant", "acme", "--data-dir", str(data), stdin=b"secret\n"))
    alice = _token(data, "alice")
    root = {"ODRADEK_TOKEN": _token(data, "root")}
    server = Server(data, "--auth", "--kafka-listen", "off", "--registry-listen", "off")
    try:
        _ok(run("topic", "create", "orders", server=server, env={"ODRADEK_TOKEN": alice}))
        assert _ok(run("topic", "list", server=server, env={"ODRADEK_TOKEN": alice})).split() == ["orders"]
        refused = run("tenant", "create", "acme", server=server, env={"ODRADEK_TOKEN": alice})
        assert refused.returncode == 1 and b"admin" in refused.stderr
        bad = run("tenant", "create", "no.dots", server=server, env=root)
        assert bad.returncode == 1 and b"tenant name" in bad.stderr
        offline = run("tenant", "delete", "acme", "--data-dir", str(data))
        assert offline.returncode == 2  # through a running server only
        # the tenant's data is gone (by an admin), the tenant deleted: alice is refused
        _ok(run("user", "remove", "alice", server=server, env=root))
        _ok(run("topic", "delete", "_t.acme.orders", server=server, env=root))
        _ok(run("tenant", "delete", "acme", server=server, env=root))
    finally:
        server.stop()
    # A principal naming a tenant that is gone (a JWT's tenant claim; here a user kept
    # by writing the store's document directly) is refused, never let into a namespace.
    _ok(run("tenant", "create", "acme", "--data-dir", str(data)))
    _ok(run("user", "add", "alice", "--tenant", "acme", "--data-dir", str(data), stdin=b"secret\n"))
    alice = _token(data, "alice")
    store = CredentialStore.open(str(data))
    store._publish(dataclasses.replace(store._state, tenants={}))
    server = Server(data, "--auth", "--kafka-listen", "off", "--registry-listen", "off")
    try:
        refused = run("topic", "list", server=server, env={"ODRADEK_TOKEN": alice})
        assert refused.returncode == 1 and b"tenant 'acme', which does not exist" in refused.stderr
    finally:
        server.stop()


def test_kafka_clients_of_two_tenants_see_only_their_own(tenants: tuple[Path, dict[str, str]]) -> None:
    """Through the Kafka door (confluent-kafka, SCRAM): Metadata lists a principal's own
    topics only, a regex subscription and a group consume its own records only, a write
    to another namespace's topic is refused and leaves nothing; the Schema Registry, the
    HTTP API and the console keep each tenant's subjects, topics and groups its own; the
    metrics endpoint shows a tenant's principal its own tenant's series only."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    admin_client = pytest.importorskip("confluent_kafka.admin").AdminClient
    data, tokens = tenants
    kafka_port, registry_port, metrics_port = free_ports(3)
    server = Server(
        data,
        "--auth",
        "--authorize",
        "--kafka-listen",
        f"127.0.0.1:{kafka_port}",
        "--registry-listen",
        f"127.0.0.1:{registry_port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    )
    try:

        def settings(user: str, **more: object) -> dict[str, object]:
            return {
                "bootstrap.servers": f"127.0.0.1:{kafka_port}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": user,
                "sasl.password": "secret",
                **more,
            }

        for user in ("alice", "gary", "bob"):
            with odradek.connect(server.url, token=tokens[user]) as client:
                client.create_topic("orders")
            producer = confluent_kafka.Producer(settings(user))
            for number in (1, 2):
                producer.produce("orders", key=user.encode(), value=f"{user}-{number}".encode())
            assert producer.flush(30) == 0
        with odradek.connect(server.url, token=tokens["alice"]) as alice:
            alice.create_topic("orders.eu")
        for user in ("alice", "gary", "bob"):
            metadata = admin_client(settings(user)).list_topics(timeout=30)
            mine = ["orders", "orders.eu"] if user == "alice" else ["orders"]
            assert sorted(metadata.topics) == mine
            assert not any(topic.startswith("_") for topic in metadata.topics)
            consumer = confluent_kafka.Consumer(
                settings(user, **{"group.id": "billing", "auto.offset.reset": "earliest"})
            )
            consumer.subscribe(["^.*"])  # every topic it can see
            values = []
            for _ in range(60):
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    values.append((message.topic(), message.value()))
                    consumer.commit(message, asynchronous=False)
                if len(values) >= 2:
                    break
            consumer.close()
            assert sorted(values) == [("orders", f"{user}-1".encode()), ("orders", f"{user}-2".encode())]
        # a transaction of a tenant: its transactional id and group are its own too
        transactional = confluent_kafka.Producer(settings("alice", **{"transactional.id": "loader"}))
        transactional.init_transactions(30)
        transactional.begin_transaction()
        transactional.produce("orders.eu", value=b"alice-eu")
        transactional.commit_transaction(30)
        # another namespace's topic cannot be written (nor made) through the Kafka door
        failures: list[object] = []
        producer = confluent_kafka.Producer(settings("alice", **{"message.timeout.ms": 5000}))
        producer.produce(
            "_t.globex.orders", value=b"forged", on_delivery=lambda error, _: failures.append(error)
        )
        producer.flush(30)
        assert len(failures) == 1 and failures[0] is not None
        with odradek.connect(server.url, token=tokens["root"]) as root:
            assert root.describe_topic("_t.globex.orders").records == 2
            eu = _read_all(root, "_t.acme.orders.eu")
            assert eu.column("value").to_pylist() == [b"alice-eu"]
            assert "_t.acme._t.globex.orders" not in root.list_topics()
            groups = root.list_groups()
            assert {"billing", "_t.acme.billing", "_t.globex.billing"} <= set(groups)
            assert root.describe_group("_t.acme.billing").group == "_t.acme.billing"

        def registry(user: str, method: str, path: str, body: object = None) -> tuple[int, Any]:
            password = "root-secret" if user == "root" else "secret"
            request = urllib.request.Request(
                f"http://127.0.0.1:{registry_port}{path}",
                method=method,
                data=None if body is None else json.dumps(body).encode(),
                headers={
                    "Authorization": basic_header(user, password),
                    "Content-Type": "application/vnd.schemaregistry.v1+json",
                },
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:
                    return answer.status, json.loads(answer.read() or b"null")
            except urllib.error.HTTPError as refused:
                return refused.code, json.loads(refused.read() or b"null")

        # the Schema Registry: each tenant's subjects are its own
        ids = {}
        for user, field in (("alice", "amount"), ("gary", "cents")):
            schema = {"type": "record", "name": "Payment", "fields": [{"name": field, "type": "long"}]}
            status, registered = registry(
                user, "POST", "/subjects/payments-value/versions", {"schema": json.dumps(schema)}
            )
            assert status == 200, registered
            ids[user] = registered["id"]
        for user, field in (("alice", "amount"), ("gary", "cents")):
            assert registry(user, "GET", "/subjects") == (200, ["payments-value"])
            status, latest = registry(user, "GET", "/subjects/payments-value/versions/latest")
            assert status == 200 and latest["subject"] == "payments-value" and field in latest["schema"]
            assert registry(user, "GET", f"/schemas/ids/{ids[user]}/subjects") == (200, ["payments-value"])
            other = ids["gary" if user == "alice" else "alice"]
            status, refused = registry(user, "GET", f"/schemas/ids/{other}")
            assert status == 404 and refused["error_code"] == 40403
        assert registry("bob", "GET", "/subjects") == (200, [])
        status, listed = registry("root", "GET", "/subjects")
        assert listed == ["_t.acme.payments-value", "_t.globex.payments-value"]
        status, refused = registry("alice", "PUT", "/config", {"compatibility": "NONE"})
        assert status == 403
        with odradek.connect(server.url, token=tokens["root"]) as root:
            assert root.get_schema("_t.acme.payments") is not None
        # metering per tenant on /metrics: its principals' records, bytes in and out
        request = urllib.request.Request(
            f"http://127.0.0.1:{metrics_port}/metrics",
            headers={"Authorization": basic_header("root", "root-secret")},
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            exposition = answer.read().decode()
        metered = {
            (match[0], match[1]): float(match[2])
            for match in re.findall(
                r'^odradek_tenant_(\w+)_total\{tenant="([^"]+)"\} (\S+)$', exposition, re.M
            )
        }
        assert metered[("records_in", "acme")] == 3  # two records and one in a transaction
        assert metered[("records_in", "globex")] == 2
        assert metered[("records_out", "globex")] >= 2 and metered[("bytes_in", "globex")] > 0
        assert {tenant for _, tenant in metered} == {"acme", "globex"}  # bob has none
        stored = dict(
            re.findall(r'^odradek_tenant_storage_bytes\{tenant="([^"]+)"\} (\S+)$', exposition, re.M)
        )
        assert set(stored) == {"acme", "globex"} and all(float(size) > 0 for size in stored.values())
        # the HTTP API: each tenant's topics, records and groups are its own
        for user in ("alice", "gary"):
            status, made = registry(user, "POST", "/v1/topics", {"name": "events"})
            assert status == 201 and made["name"] == "events", made
            status, _ = registry(user, "POST", "/v1/topics/events/records", {"records": [{"value": user}]})
            assert status == 200
        for user in ("alice", "gary"):
            status, listed = registry(user, "GET", "/v1/topics")
            mine = (
                ["events", "orders", "orders.eu", "payments"]
                if user == "alice"
                else ["events", "orders", "payments"]
            )
            assert status == 200 and listed["topics"] == mine and not listed["unavailable"]
            status, read = registry(user, "GET", "/v1/topics/events/records")
            assert read["topic"] == "events" and [r["value"] for r in read["records"]] == [user]
            status, joined = registry(
                user, "POST", "/v1/groups/web/members", {"pattern": "events", "start": "earliest"}
            )
            assert status == 201 and joined["group"] == "web", joined
            member = joined["member"]
            polled: list[Any] = []
            for _ in range(10):
                status, answer = registry(
                    user, "POST", f"/v1/groups/web/members/{member}/poll", {"timeout": 1.0}
                )
                polled += answer["deliveries"]
                if polled:
                    break
            assert [(d["topic"], d["value"]) for d in polled] == [("events", user)]
            status, settled = registry(
                user, "POST", f"/v1/groups/web/members/{member}/ack", {"deliveries": polled}
            )
            assert status == 200 and settled["settled"] == 1, settled
            status, groups = registry(user, "GET", "/v1/groups")
            assert sorted(group["group"] for group in groups["groups"]) == ["billing", "web"]
            status, refused = registry(user, "GET", "/v1/topics/nothing")
            assert status == 404 and "_t." not in json.dumps(refused)
        # the console: its topics, tails and no cluster status
        status, console = registry("alice", "GET", "/v1/console/topics")
        assert status == 200 and [row["name"] for row in console["topics"]] == [
            "events",
            "orders",
            "orders.eu",
            "payments",
        ]
        tail = urllib.request.Request(
            f"http://127.0.0.1:{registry_port}/v1/console/tail?pattern=%3E&start=earliest",
            headers={"Authorization": basic_header("gary", "secret")},
        )
        events = []
        with urllib.request.urlopen(tail, timeout=10) as stream:
            while len(events) < 3:  # gary's three records: orders (2) and events (1)
                line = stream.readline().decode()
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        assert sorted((event["topic"], event["value"]) for event in events) == [
            ("events", "gary"),
            ("orders", "gary-1"),
            ("orders", "gary-2"),
        ]
        assert registry("gary", "GET", "/v1/console/cluster")[0] == 403
        # the metrics endpoint serves a tenant's principal its own tenant's series only
        tenant_request = urllib.request.Request(
            f"http://127.0.0.1:{metrics_port}/metrics",
            headers={"Authorization": basic_header("alice", "secret")},
        )
        with urllib.request.urlopen(tenant_request, timeout=10) as answer:
            scoped = answer.read().decode()
        assert re.search(r'^odradek_topic_records\{topic="orders\.eu"\} ', scoped, re.M)
        assert re.search(r'^odradek_tenant_records_in_total\{tenant="acme"\} ', scoped, re.M)
        assert "_t." not in scoped and "globex" not in scoped and "odradek_door_" not in scoped
    finally:
        server.stop()


def test_an_untenanted_user_never_reaches_a_tenant_through_any_door(tmp_path: Path) -> None:
    """Without --authorize (every user may do everything in its namespace), an untenanted
    user through the HTTP API, the Schema Registry, the Kafka door and the native door
    neither lists, reads, writes nor makes a tenant's topics; a cluster admin sees them."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    admin_client = pytest.importorskip("confluent_kafka.admin").AdminClient
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    _ok(run("tenant", "create", "acme", "--data-dir", str(data)))
    _ok(run("user", "add", "alice", "--tenant", "acme", "--data-dir", str(data), stdin=b"secret\n"))
    _ok(run("user", "add", "bob", "--data-dir", str(data), stdin=b"secret\n"))
    kafka_port, registry_port = free_ports(2)
    server = Server(
        data,
        "--auth",
        "--kafka-listen",
        f"127.0.0.1:{kafka_port}",
        "--registry-listen",
        f"127.0.0.1:{registry_port}",
    )

    def http(user: str, method: str, path: str, body: object = None) -> tuple[int, object]:
        password = "root-secret" if user == "root" else "secret"
        request = urllib.request.Request(
            f"http://127.0.0.1:{registry_port}{path}",
            method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": basic_header(user, password), "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as refused:
            return refused.code, json.loads(refused.read() or b"null")

    try:
        with odradek.connect(server.url, user="alice", password="secret") as alice:
            alice.create_topic("orders", schema={"type": "record", "name": "O", "fields": []})
        with odradek.connect(server.url, user="bob", password="secret") as bob:
            bob.create_topic("orders")
            assert bob.list_topics() == ["orders"]
            with pytest.raises(InvalidRequest, match="reserved"):
                bob.describe_topic("_t.acme.orders")
        # the HTTP API
        status, listed = http("bob", "GET", "/v1/topics")
        assert status == 200 and listed == {"topics": ["orders"], "unavailable": {}}
        status, refused = http("bob", "GET", "/v1/topics/_t.acme.orders/records")
        assert status == 403 and "tenants' space" in str(refused)
        status, refused = http("bob", "POST", "/v1/topics", {"name": "_t.acme.planted"})
        assert status == 400 and "reserved" in str(refused)
        status, refused = http("bob", "GET", "/v1/topics?pattern=_t.acme.%3E")
        assert status == 403
        status, listed = http("root", "GET", "/v1/topics")
        assert status == 200 and isinstance(listed, dict) and "_t.acme.orders" in listed["topics"]
        # the Schema Registry
        status, subjects = http("bob", "GET", "/subjects")
        assert status == 200 and subjects == []
        status, subjects = http("root", "GET", "/subjects")
        assert subjects == ["_t.acme.orders-value"]
        status, _ = http("bob", "GET", "/subjects/_t.acme.orders-value/versions")
        assert status == 403
        # the Kafka door
        settings = {
            "bootstrap.servers": f"127.0.0.1:{kafka_port}",
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256",
            "sasl.username": "bob",
            "sasl.password": "secret",
        }
        assert sorted(admin_client(settings).list_topics(timeout=30).topics) == ["orders"]
        failures: list[object] = []
        producer = confluent_kafka.Producer({**settings, "message.timeout.ms": 5000})
        producer.produce(
            "_t.acme.orders", value=b"forged", on_delivery=lambda error, _: failures.append(error)
        )
        producer.flush(30)
        assert len(failures) == 1 and failures[0] is not None
        with odradek.connect(server.url, user="root", password="root-secret") as root:
            assert root.describe_topic("_t.acme.orders").records == 0
            assert [name for name in root.list_topics() if name.startswith("_")] == ["_t.acme.orders"]
    finally:
        server.stop()


def test_kafka_consumer_and_share_groups_and_admin_of_two_tenants(
    tenants: tuple[Path, dict[str, str]],
) -> None:
    """Through the Kafka door (confluent-kafka, SCRAM): each tenant's consumer-protocol
    group (group.protocol=consumer, KIP-848) on the regex ``^.*`` and its share consumer
    (KIP-932) read only its own ``orders``, under its own names, as does an untenanted
    user's; a classic member's lag (`group describe`) counts its partitions under the
    tenant's names; describing the group, the tenant's topic's configs and the cluster,
    adding a partition and deleting records work in its own names, without a cluster
    binding; the other tenant's names are never visible, and naming them finds nothing."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    admin_module = pytest.importorskip("confluent_kafka.admin")
    if not hasattr(confluent_kafka, "ShareConsumer"):  # before 2.16
        pytest.skip("this confluent-kafka has no ShareConsumer")
    data, tokens = tenants
    (kafka_port,) = free_ports(1)
    server = Server(
        data,
        "--auth",
        "--authorize",
        "--kafka-listen",
        f"127.0.0.1:{kafka_port}",
        "--registry-listen",
        "off",
    )
    users = ("alice", "gary", "bob")
    try:

        def settings(user: str, **more: object) -> dict[str, object]:
            return {
                "bootstrap.servers": f"127.0.0.1:{kafka_port}",
                "security.protocol": "SASL_PLAINTEXT",
                "sasl.mechanism": "SCRAM-SHA-256",
                "sasl.username": user,
                "sasl.password": "secret",
                "topic.metadata.refresh.interval.ms": 1000,
                **more,
            }

        for user in users:
            with odradek.connect(server.url, token=tokens[user]) as client:
                client.create_topic("orders")
                # the share group's start (a share consumer reads from the latest otherwise)
                client.subscribe("orders", group="queue", start="earliest", ordering="none").close()
            producer = confluent_kafka.Producer(settings(user))
            for number in (1, 2):
                producer.produce("orders", key=user.encode(), value=f"{user}-{number}".encode())
            assert producer.flush(30) == 0
        mine = {user: [("orders", f"{user}-1".encode()), ("orders", f"{user}-2".encode())] for user in users}

        for user in users:
            admin = admin_module.AdminClient(settings(user))
            consumer = confluent_kafka.Consumer(
                settings(
                    user,
                    **{
                        "group.id": "billing",
                        "group.protocol": "consumer",
                        "auto.offset.reset": "earliest",
                        "enable.auto.commit": False,
                    },
                )
            )
            consumer.subscribe(["^.*"])  # every topic it can see
            values: list[tuple[str, bytes]] = []
            for _ in range(60):
                message = consumer.poll(1.0)
                if message is not None and message.error() is None:
                    values.append((message.topic(), message.value()))
                    consumer.commit(message, asynchronous=False)
                if len(values) >= 2:
                    break
            assert sorted(values) == mine[user]
            described = admin.describe_consumer_groups(["billing"])["billing"].result(timeout=30)
            assert described.type == confluent_kafka.ConsumerGroupType.CONSUMER
            assert [
                (tp.topic, tp.partition)
                for member in described.members
                for tp in member.assignment.topic_partitions
            ] == [("orders", 0)]
            consumer.close()

            share = confluent_kafka.ShareConsumer(settings(user, **{"group.id": "queue"}))
            share.subscribe(["orders"])
            shared: list[tuple[str, bytes]] = []
            for _ in range(60):
                polled = share.poll(1.0)
                assert not [m.error() for m in polled if m.error() is not None]
                shared += [(m.topic(), m.value()) for m in polled]
                if len(shared) >= 2:
                    break
            share.close()
            assert sorted(shared) == mine[user]

            # a classic group's member, one record of two committed: its lag, in its own names
            classic = confluent_kafka.Consumer(
                settings(
                    user,
                    **{"group.id": "classic", "auto.offset.reset": "earliest", "enable.auto.commit": False},
                )
            )
            classic.subscribe(["orders"])
            first = None
            for _ in range(60):
                first = classic.poll(1.0)
                if first is not None and first.error() is None:
                    break
            assert first is not None and first.error() is None and first.value() == f"{user}-1".encode()
            classic.commit(first, asynchronous=False)
            with odradek.connect(server.url, token=tokens[user]) as client:
                (member,) = client.describe_group("classic").members
            classic.close()
            assert member.lag == 1
            assert [(held.topic, tuple(held.partitions), held.lag) for held in member.assignment or ()] == [
                ("orders", (0,), 1)
            ]

            # the admin APIs a tenant uses, in its own names
            topic = admin_module.ConfigResource(admin_module.ResourceType.TOPIC, "orders")
            configs = admin.describe_configs([topic])[topic].result(timeout=30)
            assert configs["cleanup.policy"].value == "delete"
            for other in ("_t.globex.orders", "_t.acme.orders"):
                foreign = admin_module.ConfigResource(admin_module.ResourceType.TOPIC, other)
                with pytest.raises(confluent_kafka.KafkaException):
                    admin.describe_configs([foreign])[foreign].result(timeout=30)
            cluster = admin.describe_cluster(request_timeout=30).result()
            assert len(cluster.nodes) == 1
            grown = admin.create_partitions([admin_module.NewPartitions("orders", 2)])
            grown["orders"].result(timeout=30)
            assert len(admin.list_topics(timeout=30).topics["orders"].partitions) == 2
            deleted = admin.delete_records([confluent_kafka.TopicPartition("orders", 0, 1)])
            assert next(iter(deleted.values())).result(timeout=30).low_watermark == 1
            foreign_records = admin.delete_records([confluent_kafka.TopicPartition("_t.globex.orders", 0, 2)])
            with pytest.raises(confluent_kafka.KafkaException):
                next(iter(foreign_records.values())).result(timeout=30)
            groups = admin.list_consumer_groups(request_timeout=30).result()
            assert sorted(listing.group_id for listing in groups.valid) == ["billing", "classic", "queue"]
            assert sorted(admin.list_topics(timeout=30).topics) == ["orders"]

        with odradek.connect(server.url, token=tokens["root"]) as root:
            for tenant in ("acme", "globex"):
                described_topic = root.describe_topic(f"_t.{tenant}.orders")
                assert (described_topic.first_offset, described_topic.next_offset) == (1, 2)
                assert {f"_t.{tenant}.billing", f"_t.{tenant}.queue"} <= set(root.list_groups())
            assert not [name for name in root.list_topics() if name.startswith("_t.acme._t")]
    finally:
        server.stop()
