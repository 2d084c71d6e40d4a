"""A tenant's storage_bytes quota and a tenant's view of /metrics, end to end.

Goal: with `odradek quota set tenant=acme --storage-bytes N`, once acme's topics store N
bytes or more every append to them is refused, whichever door it comes through: the
native client raises QuotaExceeded naming the tenant, its usage and its quota; a Kafka
producer (confluent-kafka) gets POLICY_VIOLATION, not retried; the HTTP API answers 403
with code quota_exceeded. Nothing of a refused append is written, reads go on, another
tenant appends as before, and deleting records (Kafka DeleteRecords) or the topic brings
acme back under so that appends work again on every door. On /metrics a tenant's
principal sees its own tenant's series only (its topics and groups without the
`_t.<tenant>.` prefix, its metering, its users'), never another tenant's nor the
process's; an untenanted principal sees the process's series and the default
namespace's, nothing of a tenant (no tenant's topic, group, metering or user); an admin
sees the whole exposition.
Method: a real `odradek serve --auth` with its Kafka, HTTP and metrics doors on free
loopback ports; tenants, users and the quota made with the CLI before the start; the
public Python client, confluent-kafka and raw HTTP requests. Sizes decide, never timings:
records of 30,000 bytes against a quota of 200,000 bytes in segments of 64 KiB.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

import odradek
from odradek.errors import QuotaExceeded
from odradek.ports import free_ports

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))  # the serve subprocess helpers

from odradek_process import Server, run

QUOTA = 200_000  # bytes acme's topics may store
RECORD = 30_000  # bytes of one record's value
SEGMENT = 64 * 1024  # the smallest segment: deleting records frees whole segments


def _ok(result: Any) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return str(result.stdout.decode())


def _basic(user: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{user}-secret".encode()).decode()}


def _call(port: int, method: str, path: str, user: str, body: Any = None) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        payload = None if body is None else json.dumps(body).encode()
        headers = {**_basic(user), **({"Content-Type": "application/json"} if payload is not None else {})}
        connection.request(method, path, body=payload, headers=headers)
        answer = connection.getresponse()
        raw = answer.read()
        return answer.status, raw.decode() if path.startswith("/metrics") else json.loads(raw or b"null")
    finally:
        connection.close()


@pytest.fixture
def served(tmp_path: Path) -> Any:
    """A server with tenants acme (alice, its storage quota) and globex (gary), the
    untenanted user bob and the admin root; its ports and the users' tokens."""
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    for tenant, user in (("acme", "alice"), ("globex", "gary")):
        _ok(run("tenant", "create", tenant, "--data-dir", str(data)))
        _ok(
            run(
                "user",
                "add",
                user,
                "--tenant",
                tenant,
                "--data-dir",
                str(data),
                stdin=f"{user}-secret\n".encode(),
            )
        )
    _ok(run("user", "add", "bob", "--data-dir", str(data), stdin=b"bob-secret\n"))
    shown = _ok(run("quota", "set", "tenant=acme", "--storage-bytes", str(QUOTA), "--data-dir", str(data)))
    assert shown == f"tenant=acme\tstorage_bytes={QUOTA}\n"
    tokens = {
        user: _ok(run("token", "create", user, "--data-dir", str(data))).strip()
        for user in ("root", "alice", "gary", "bob")
    }
    kafka_port, http_port, metrics_port = free_ports(3)
    server = Server(
        data,
        "--auth",
        "--kafka-listen",
        f"127.0.0.1:{kafka_port}",
        "--registry-listen",
        f"127.0.0.1:{http_port}",
        "--metrics-listen",
        f"127.0.0.1:{metrics_port}",
    )
    try:
        yield server, tokens, {"kafka": kafka_port, "http": http_port, "metrics": metrics_port}
    finally:
        server.stop()


def _kafka(port: int, user: str, **more: object) -> dict[str, object]:
    return {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": f"{user}-secret",
        **more,
    }


def _fill(client: odradek.Client, topic: str) -> QuotaExceeded:
    """Append RECORD-byte records to ``topic`` until the tenant's quota refuses one."""
    for _ in range(2 * QUOTA // RECORD + 2):
        before = client.describe_topic(topic).next_offset
        try:
            client.append(topic, [{"value": b"a" * RECORD}])
        except QuotaExceeded as refused:
            assert client.describe_topic(topic).next_offset == before  # nothing written
            return refused
    raise AssertionError(f"{topic} took {2 * QUOTA} bytes without a refusal")


def test_a_tenant_at_its_storage_quota_is_refused_on_every_door_until_it_deletes(served: Any) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    admin_module = pytest.importorskip("confluent_kafka.admin")
    server, tokens, ports = served
    with (
        odradek.connect(server.url, token=tokens["alice"]) as alice,
        odradek.connect(server.url, token=tokens["gary"]) as gary,
    ):
        alice.create_topic("orders", segment_bytes=SEGMENT)
        gary.create_topic("orders", segment_bytes=SEGMENT)

        # native door: appends until acme stores its quota, then QuotaExceeded
        refused = _fill(alice, "orders")
        assert refused.tenant == "acme" and refused.quota == QUOTA and refused.used >= QUOTA
        assert not refused.retryable
        assert f"tenant acme stores {refused.used} bytes" in refused.message
        assert f"storage_bytes quota of {QUOTA}" in refused.message
        assert refused.used <= QUOTA + RECORD + 1024  # the append that crossed it, one frame
        stored = alice.describe_topic("orders")

        # Kafka door: POLICY_VIOLATION for the batch, not retried
        def produce(user: str) -> list[Any]:
            reports: list[Any] = []
            producer = confluent_kafka.Producer(
                _kafka(ports["kafka"], user, **{"message.timeout.ms": 20000, "enable.idempotence": False})
            )
            producer.produce(
                "orders", value=b"k" * RECORD, on_delivery=lambda error, _: reports.append(error)
            )
            assert producer.flush(30) == 0
            return reports

        (error,) = produce("alice")
        assert error is not None and error.code() == confluent_kafka.KafkaError.POLICY_VIOLATION, error
        assert not error.retriable()

        # HTTP API: 403 quota_exceeded, naming the tenant, its usage and its quota
        status, answer = _call(
            ports["http"],
            "POST",
            "/v1/topics/orders/records",
            "alice",
            {"records": [{"value": "h" * RECORD}]},
        )
        assert status == 403, answer
        assert answer["code"] == "quota_exceeded" and "tenant acme" in answer["message"]
        assert answer["details"]["tenant"] == "acme" and answer["details"]["quota"] == QUOTA
        assert answer["details"]["used"] >= QUOTA

        # nothing of the refused appends was written; reads go on
        after = alice.describe_topic("orders")
        assert (after.next_offset, after.bytes) == (stored.next_offset, stored.bytes)
        read = alice.fetch("orders", 0, max_records=1000, max_bytes=10 * QUOTA)
        assert sum(batch.num_rows for batch in read) == stored.next_offset

        # another tenant is not bounded (nor counted with acme)
        for _ in range(QUOTA // RECORD + 1):
            gary.append("orders", [{"value": b"g" * RECORD}])
        assert produce("gary") == [None]
        status, answer = _call(
            ports["http"], "POST", "/v1/topics/orders/records", "gary", {"records": [{"value": "g" * RECORD}]}
        )
        assert status == 200, answer
        assert gary.describe_topic("orders").bytes > QUOTA

        # deleting records (Kafka DeleteRecords) frees acme's closed segments: under again
        admin = admin_module.AdminClient(_kafka(ports["kafka"], "alice"))
        last = alice.describe_topic("orders").next_offset - 1
        deleted = admin.delete_records([confluent_kafka.TopicPartition("orders", 0, last)])
        assert next(iter(deleted.values())).result(timeout=30).low_watermark == last
        assert alice.describe_topic("orders").bytes < QUOTA
        alice.append("orders", [{"value": b"n" * RECORD}])
        assert produce("alice") == [None]
        status, answer = _call(
            ports["http"],
            "POST",
            "/v1/topics/orders/records",
            "alice",
            {"records": [{"value": "h" * RECORD}]},
        )
        assert status == 200, answer
        assert alice.describe_topic("orders").next_offset == last + 4

        # full again, then deleting the topic frees all of it
        _fill(alice, "orders")
        alice.delete_topic("orders")
        alice.create_topic("orders")
        alice.append("orders", [{"value": b"fresh"}])
        assert produce("alice") == [None]
        status, answer = _call(
            ports["http"], "POST", "/v1/topics/orders/records", "alice", {"records": [{"value": "h"}]}
        )
        assert status == 200, answer
        assert alice.describe_topic("orders").next_offset == 3


def test_storage_bytes_is_a_tenants_quota_only(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    refused = run("quota", "set", "user=alice", "--storage-bytes", "1000", "--data-dir", data)
    assert refused.returncode != 0
    assert b"storage_bytes bounds a tenant's stored bytes" in refused.stderr
    _ok(run("quota", "set", "tenant=<default>", "--storage-bytes", "5000", "--data-dir", data))
    listed = _ok(run("quota", "list", "--format", "json", "--data-dir", data))
    assert [json.loads(line) for line in listed.splitlines()] == [
        {"entity": "tenant=<default>", "quotas": {"storage_bytes": 5000.0}}
    ]
    _ok(run("quota", "remove", "tenant=<default>", "--key", "storage_bytes", "--data-dir", data))
    assert _ok(run("quota", "list", "--data-dir", data)) == ""


def _series(exposition: str) -> list[tuple[str, dict[str, str]]]:
    """Each sample's name and labels."""
    found = []
    for line in exposition.splitlines():
        if not line or line.startswith("#"):
            continue
        match = re.match(r"^(\w+)(?:\{(.*)\})? \S+$", line)
        assert match is not None, line
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        found.append((match.group(1), labels))
    return found


def test_a_tenants_principal_scrapes_its_own_tenant_only(served: Any) -> None:
    server, tokens, ports = served
    for user in ("alice", "gary", "bob"):
        with odradek.connect(server.url, token=tokens[user]) as client:
            client.create_topic("orders")
            client.append("orders", [{"value": f"{user}-1".encode()}, {"value": f"{user}-2".encode()}])
            client.create_topic("prices", cleanup="compact")  # its compaction gauges too
            client.append("prices", [{"key": b"k", "value": user.encode()}])
            list(client.read("orders", start="earliest", wait=0))
            consumer = client.subscribe("orders", group="billing", start="earliest")
            deliveries = []
            for _ in range(20):
                deliveries += consumer.poll(timeout=1.0)
                if len(deliveries) >= 2:
                    break
            consumer.ack(deliveries)
            consumer.close()

    for user, tenant, other in (("alice", "acme", "globex"), ("gary", "globex", "acme")):
        status, exposition = _call(ports["metrics"], "GET", "/metrics", user)
        assert status == 200, exposition
        series = _series(exposition)
        names = {name for name, _ in series}
        assert ("odradek_topic_records", {"topic": "orders"}) in series
        compacted = {
            labels["topic"] for name, labels in series if name.startswith("odradek_topic_compaction_")
        }
        assert compacted == {"prices"}  # its own compacted topic, named as it names it
        assert ("odradek_group_committed_offset", {"group": "billing", "topic": "orders"}) in series
        assert ("odradek_tenant_records_in_total", {"tenant": tenant}) in series
        assert ("odradek_tenant_storage_bytes", {"tenant": tenant}) in series
        assert ("odradek_principal_records_in_total", {"principal": user}) in series
        for _, labels in series:  # every sample is its tenant's, named as it names them
            assert labels.keys() & {"topic", "group", "tenant", "principal"}, labels
            assert labels.get("tenant", tenant) == tenant
            assert labels.get("principal", user) == user
        assert "_t." not in exposition and other not in exposition
        assert not any(
            name.startswith(("odradek_door_", "odradek_fsync", "odradek_errors")) for name in names
        )
        assert "odradek_topics_unavailable" not in names
        # the records it produced, as the admin sees them for its tenant
        records = dict(re.findall(r'^odradek_topic_records\{topic="([^"]+)"\} (\S+)$', exposition, re.M))
        assert records == {"orders": "2.0", "prices": "1.0"}

    # an admin sees the whole exposition, every tenant's series too
    status, exposition = _call(ports["metrics"], "GET", "/metrics", "root")
    assert status == 200
    series = _series(exposition)
    topics = {labels["topic"] for name, labels in series if name == "odradek_topic_records"}
    assert topics == {
        "orders",
        "_t.acme.orders",
        "_t.globex.orders",
        "prices",
        "_t.acme.prices",
        "_t.globex.prices",
    }
    compacted = {labels["topic"] for name, labels in series if name.startswith("odradek_topic_compaction_")}
    assert compacted == {"prices", "_t.acme.prices", "_t.globex.prices"}
    assert any(name.startswith("odradek_door_requests") for name, _ in series)
    assert {labels["tenant"] for name, labels in series if name == "odradek_tenant_storage_bytes"} == {
        "acme",
        "globex",
    }
    principals = {labels["principal"] for _, labels in series if "principal" in labels}
    assert principals >= {"alice", "gary", "bob"}

    # an untenanted principal (bob) sees the default namespace and the process, no tenant
    status, exposition = _call(ports["metrics"], "GET", "/metrics", "bob")
    assert status == 200, exposition
    series = _series(exposition)
    topics = {labels["topic"] for name, labels in series if "topic" in labels}
    assert topics == {"orders", "prices"}
    compacted = {labels["topic"] for name, labels in series if name.startswith("odradek_topic_compaction_")}
    assert compacted == {"prices"}
    assert {labels["group"] for name, labels in series if "group" in labels} == {"billing"}
    assert ("odradek_group_committed_offset", {"group": "billing", "topic": "orders"}) in series
    assert ("odradek_principal_records_in_total", {"principal": "bob"}) in series
    for _, labels in series:
        assert "tenant" not in labels, labels
        assert labels.get("principal", "bob") in principals - {"alice", "gary"}, labels
    assert "_t." not in exposition and "acme" not in exposition and "globex" not in exposition
    assert "alice" not in exposition and "gary" not in exposition
    names = {name for name, _ in series}
    assert any(name.startswith("odradek_door_requests") for name in names)  # the process's stay
    assert "odradek_topics_unavailable" in names
    records = dict(re.findall(r'^odradek_topic_records\{topic="([^"]+)"\} (\S+)$', exposition, re.M))
    assert records == {"orders": "2.0", "prices": "1.0"}


def test_with_authorize_a_scrape_holds_the_topics_the_principal_may_describe(tmp_path: Path) -> None:
    """With --authorize the views leave out the series of a topic the scraping principal
    may not describe (as Metadata and the topic listings do); an admin sees them all."""
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    _ok(run("tenant", "create", "acme", "--data-dir", str(data)))
    _ok(run("user", "add", "alice", "--tenant", "acme", "--data-dir", str(data), stdin=b"alice-secret\n"))
    _ok(run("user", "add", "bob", "--data-dir", str(data), stdin=b"bob-secret\n"))
    for user in ("alice", "bob"):  # each may describe its namespace's orders, not hidden
        for kind, name in (("--topic", "orders"), ("--group", ">")):
            _ok(run("acl", "add", "--principal", user, "--allow", "all", kind, name, "--data-dir", str(data)))
    token = _ok(run("token", "create", "root", "--data-dir", str(data))).strip()
    (metrics_port,) = free_ports(1)
    server = Server(data, "--auth", "--authorize", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    try:
        with odradek.connect(server.url, token=token) as root:
            for topic in ("orders", "hidden", "_t.acme.orders", "_t.acme.hidden"):
                root.create_topic(topic)
                root.append(topic, [{"value": b"x"}])
        every = {"orders", "hidden", "_t.acme.orders", "_t.acme.hidden"}
        for user, shown in (("root", every), ("alice", {"orders"}), ("bob", {"orders"})):
            status, exposition = _call(metrics_port, "GET", "/metrics", user)
            assert status == 200, exposition
            series = _series(exposition)
            topics = {labels["topic"] for _, labels in series if "topic" in labels}
            assert topics == shown, user
            if user != "alice":  # the process's series stay for an untenanted principal
                assert any(name.startswith("odradek_door_requests") for name, _ in series)
    finally:
        server.stop()
