"""A tenant's Kafka clients alter configs, describe log dirs and list and describe
transactions in their own namespace (decision 0028), end to end.

Goal: what a tenant's Kafka tools do on what they own: alice (tenant acme) alters her
topic's config and reads it back; her broker config change is refused per resource with
CLUSTER_AUTHORIZATION_FAILED, her topic's in the same call served; DescribeLogDirs,
ListTransactions and DescribeTransactions show each tenant only its own topics and
transactional ids, under its own names, and no disk totals; gary (tenant globex) names
the same `orders` and `loader` and sees his; bob (the untenanted default namespace) is
served as before (his broker config change answers as it always did, he sees the disk's
totals); the admin root sees every namespace's under the engine's names; with
`--authorize`, `alter` on the cluster still decides AlterConfigs, per resource.
Method: a real `odradek serve --auth` (and `--authorize`) subprocess, confluent-kafka's
AdminClient and transactional Producer, kafka-python's KafkaAdminClient (SCRAM).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from odradek_process import Server, run

from odradek.ports import free_port

confluent_kafka = pytest.importorskip("confluent_kafka")
confluent_admin = pytest.importorskip("confluent_kafka.admin")
kafka = pytest.importorskip("kafka")
kafka_errors = pytest.importorskip("kafka.errors")

CLUSTER_AUTHORIZATION_FAILED = 31


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


@pytest.fixture
def door(tmp_path: Path) -> Iterator[int]:
    """`odradek serve --auth` with tenants acme (alice) and globex (gary), the untenanted
    bob and the admin root; its Kafka port."""
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"secret\n"))
    for tenant, user in (("acme", "alice"), ("globex", "gary")):
        _ok(run("tenant", "create", tenant, "--data-dir", str(data)))
        _ok(run("user", "add", user, "--tenant", tenant, "--data-dir", str(data), stdin=b"secret\n"))
    _ok(run("user", "add", "bob", "--data-dir", str(data), stdin=b"secret\n"))
    port = free_port()
    server = Server(data, "--auth", "--kafka-listen", f"127.0.0.1:{port}", "--registry-listen", "off")
    try:
        yield port
    finally:
        server.stop()


def _settings(port: int, user: str, **more: object) -> dict[str, object]:
    return {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": user,
        "sasl.password": "secret",
        **more,
    }


def _kafka_python(port: int, user: str) -> Any:
    return kafka.KafkaAdminClient(
        bootstrap_servers=f"127.0.0.1:{port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-256",
        sasl_plain_username=user,
        sasl_plain_password="secret",
        request_timeout_ms=30000,
    )


def _create(port: int, user: str, *names: str) -> None:
    admin = confluent_admin.AdminClient(_settings(port, user))
    futures = admin.create_topics([confluent_admin.NewTopic(name, num_partitions=2) for name in names])
    for future in futures.values():
        future.result(30)


def _topic_config(admin: Any, name: str) -> dict[str, str]:
    resource = confluent_admin.ConfigResource(confluent_admin.ResourceType.TOPIC, name)
    entries = admin.describe_configs([resource])[resource].result(30)
    return {key: entry.value for key, entry in entries.items()}


def _alter(admin: Any, resources: list[Any]) -> dict[str, Any]:
    """Each resource's outcome: None (altered) or its KafkaError."""
    outcomes: dict[str, Any] = {}
    for resource, future in admin.incremental_alter_configs(resources).items():
        try:
            future.result(30)
            outcomes[resource.name] = None
        except confluent_kafka.KafkaException as exc:
            outcomes[resource.name] = exc.args[0]
    return outcomes


def test_a_tenant_alters_its_own_topics_configs_and_no_broker_config(door: int) -> None:
    port = door
    for user in ("alice", "gary", "bob"):
        _create(port, user, "orders")
    alice = confluent_admin.AdminClient(_settings(port, "alice"))
    gary = confluent_admin.AdminClient(_settings(port, "gary"))
    bob = confluent_admin.AdminClient(_settings(port, "bob"))
    root = confluent_admin.AdminClient(_settings(port, "root"))
    others = (("gary", gary), ("bob", bob))
    before = {user: _topic_config(client, "orders") for user, client in others}
    node = str(next(iter(root.list_topics(timeout=30).brokers)))
    set_op = confluent_admin.AlterConfigOpType.SET
    topic = confluent_admin.ResourceType.TOPIC
    broker = confluent_admin.ResourceType.BROKER
    retention = confluent_admin.ConfigEntry("retention.ms", "3600000", incremental_operation=set_op)
    compact = confluent_admin.ConfigEntry("cleanup.policy", "compact", incremental_operation=set_op)
    outcomes = _alter(
        alice,
        [
            confluent_admin.ConfigResource(topic, "orders", incremental_configs=[retention, compact]),
            confluent_admin.ConfigResource(broker, node, incremental_configs=[retention]),
        ],
    )
    assert outcomes["orders"] is None
    refused = outcomes[node]
    assert refused.code() == CLUSTER_AUTHORIZATION_FAILED
    assert "bind every namespace" in refused.str()
    mine = _topic_config(alice, "orders")
    assert (mine["retention.ms"], mine["cleanup.policy"]) == ("3600000", "compact")
    assert _topic_config(root, "_t.acme.orders")["retention.ms"] == "3600000"
    # the other namespaces' `orders` are not touched
    assert {user: _topic_config(client, "orders") for user, client in others} == before
    assert before["gary"]["retention.ms"] != "3600000"
    # the broker's config is unchanged (a tenant may describe it: its name is no namespace's)
    broker_resource = confluent_admin.ConfigResource(broker, node)
    broker_config = root.describe_configs([broker_resource])[broker_resource].result(30)
    assert broker_config["log.retention.ms"].value != "3600000"
    # another namespace's topic is reached by no name: `_t.globex.orders` is no topic of acme's
    outcomes = _alter(
        alice,
        [confluent_admin.ConfigResource(topic, "_t.globex.orders", incremental_configs=[retention])],
    )
    assert outcomes["_t.globex.orders"] is not None
    assert _topic_config(gary, "orders") == before["gary"]
    # the default namespace's broker resource answers as it did before: not a tenant's refusal
    outcomes = _alter(bob, [confluent_admin.ConfigResource(broker, node, incremental_configs=[retention])])
    assert outcomes[node] is not None and outcomes[node].code() != CLUSTER_AUTHORIZATION_FAILED
    # the older AlterConfigs (kafka-python) renames the topic the same way
    client = _kafka_python(port, "gary")
    try:
        client.alter_configs([kafka.admin.ConfigResource("TOPIC", "orders", {"retention.ms": "7200000"})])
    finally:
        client.close()
    assert _topic_config(gary, "orders")["retention.ms"] == "7200000"
    assert _topic_config(root, "_t.globex.orders")["retention.ms"] == "7200000"
    assert _topic_config(alice, "orders")["retention.ms"] == "3600000"


def _log_dir_topics(port: int, user: str, topics: Any = None) -> tuple[dict[str, list[int]], list[Any]]:
    client = _kafka_python(port, user)
    try:
        answers = client.describe_log_dirs(topics)
    finally:
        client.close()
    found: dict[str, list[int]] = {}
    dirs = []
    for answer in answers if isinstance(answers, list) else [answers]:
        results = answer["log_dirs"] if isinstance(answer, dict) and "log_dirs" in answer else answer
        for result in results if isinstance(results, list) else [results]:
            dirs.append(result)
            for entry in result["topics"]:
                found[entry["name"]] = sorted(p["partition_index"] for p in entry["partitions"])
    return found, dirs


def test_each_tenant_describes_only_its_own_log_dirs(door: int) -> None:
    port = door
    _create(port, "alice", "orders", "orders.eu")
    _create(port, "gary", "orders")
    _create(port, "bob", "orders")
    for user, count in (("alice", 3), ("gary", 1), ("bob", 2)):
        producer = confluent_kafka.Producer(_settings(port, user))
        for number in range(count):
            producer.produce("orders", value=b"x" * 100, partition=number % 2)
        assert producer.flush(30) == 0
    alice, dirs = _log_dir_topics(port, "alice")
    assert alice == {"orders": [0, 1], "orders.eu": [0, 1]}
    assert all(d.get("total_bytes", -1) == -1 and d.get("usable_bytes", -1) == -1 for d in dirs)
    assert _log_dir_topics(port, "alice", {"orders": [1], "_t.globex.orders": [0]})[0] == {"orders": [1]}
    assert _log_dir_topics(port, "gary")[0] == {"orders": [0, 1]}
    bob, bob_dirs = _log_dir_topics(port, "bob")
    assert bob == {"orders": [0, 1]}
    assert _log_dir_topics(port, "bob", {"_t.acme.orders": [0]})[0] == {}
    root, _ = _log_dir_topics(port, "root")
    assert {"orders", "_t.acme.orders", "_t.acme.orders.eu", "_t.globex.orders"} <= set(root)
    # the default namespace is told the data directory's disk, as before
    assert all(d["total_bytes"] > 0 and d["usable_bytes"] > 0 for d in bob_dirs)


def test_each_tenant_lists_and_describes_only_its_own_transactions(door: int) -> None:
    port = door
    for user in ("alice", "gary", "bob"):
        _create(port, user, "orders")
    open_ones = []
    for user in ("alice", "gary", "bob"):  # each leaves `loader` open on its `orders`
        producer = confluent_kafka.Producer(_settings(port, user, **{"transactional.id": "loader"}))
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce("orders", value=user.encode(), partition=1)
        assert producer.flush(30) == 0
        open_ones.append(producer)
    done = confluent_kafka.Producer(_settings(port, "gary", **{"transactional.id": "gary-only"}))
    done.init_transactions(30)
    done.begin_transaction()
    done.produce("orders", value=b"committed")
    done.commit_transaction(30)

    def listed(user: str, **filters: Any) -> list[tuple[str, str]]:
        client = _kafka_python(port, user)
        try:
            answers = client.list_transactions(**filters)
        finally:
            client.close()
        return sorted(
            (listing.transactional_id, str(getattr(listing.state, "value", listing.state)))
            for listings in answers.values()
            for listing in listings
        )

    def described(user: str, *ids: str) -> dict[str, Any]:
        """Each id's description (the answer names it as asked) or its error."""
        client = _kafka_python(port, user)
        try:
            outcome: dict[str, Any] = {}
            for transactional_id in ids:
                try:
                    answer = client.describe_transactions([transactional_id])
                    assert list(answer) == [transactional_id]
                    outcome[transactional_id] = answer[transactional_id]
                except kafka_errors.TransactionalIdNotFoundError as exc:
                    outcome[transactional_id] = exc
            return outcome
        finally:
            client.close()

    def partitions(description: Any) -> list[tuple[str, int]]:
        return sorted((tp.topic, tp.partition) for tp in description.topic_partitions)

    assert listed("alice") == [("loader", "Ongoing")]
    assert listed("gary") == [("gary-only", "CompleteCommit"), ("loader", "Ongoing")]
    assert listed("gary", state_filters=["CompleteCommit"]) == [("gary-only", "CompleteCommit")]
    assert listed("bob") == [("loader", "Ongoing")]
    # an id pattern (ListTransactions v2) is matched inside the tenant
    assert listed("gary", transactional_id_pattern="gary.*") == [("gary-only", "CompleteCommit")]
    assert listed("alice", transactional_id_pattern=".*") == [("loader", "Ongoing")]
    assert listed("alice", transactional_id_pattern="_t\\.globex\\..*") == []
    assert listed("bob", transactional_id_pattern=".*loader") == [("loader", "Ongoing")]
    root = listed("root")
    assert {"loader", "_t.acme.loader", "_t.globex.loader", "_t.globex.gary-only"} <= {i for i, _ in root}
    # the producer id filter applies as for anyone: gary's committed one by its id
    gary = described("gary", "gary-only", "loader")
    producer_id = gary["gary-only"].producer_id
    assert listed("gary", producer_id_filters=[producer_id]) == [("gary-only", "CompleteCommit")]
    assert listed("alice", producer_id_filters=[producer_id]) == []
    alice = described("alice", "loader", "gary-only", "_t.globex.loader")
    mine = alice["loader"]
    assert partitions(mine) == [("orders", 1)]
    assert mine.producer_id != gary["loader"].producer_id
    for foreign in ("gary-only", "_t.globex.loader"):
        assert isinstance(alice[foreign], kafka_errors.TransactionalIdNotFoundError)
    bob = described("bob", "loader", "_t.acme.loader")
    assert partitions(bob["loader"]) == [("orders", 1)]
    assert isinstance(bob["_t.acme.loader"], kafka_errors.TransactionalIdNotFoundError)
    admin = described("root", "_t.acme.loader")["_t.acme.loader"]
    assert partitions(admin) == [("_t.acme.orders", 1)]
    for producer in open_ones:
        producer.abort_transaction(30)
    assert listed("alice", state_filters=["Ongoing"]) == []


def test_authorize_bindings_apply_on_top_of_a_tenants_alter_configs(tmp_path: Path) -> None:
    """With --authorize, AlterConfigs takes `alter` on the cluster as for anyone: alice
    (granted it) alters her topic, her broker resource still refused as a tenant's; gary
    (not granted) has each resource refused, and his topic keeps its config."""
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"secret\n"))
    for tenant, user in (("acme", "alice"), ("globex", "gary")):
        _ok(run("tenant", "create", tenant, "--data-dir", str(data)))
        _ok(run("user", "add", user, "--tenant", tenant, "--data-dir", str(data), stdin=b"secret\n"))
        _ok(run("acl", "add", "--principal", user, "--allow", "all", "--topic", ">", "--data-dir", str(data)))
    _ok(run("acl", "add", "--principal", "alice", "--allow", "alter", "--cluster", "--data-dir", str(data)))
    port = free_port()
    flags = ("--auth", "--authorize", "--kafka-listen", f"127.0.0.1:{port}", "--registry-listen", "off")
    server = Server(data, *flags)
    try:
        for user in ("alice", "gary"):
            _create(port, user, "orders")
        set_op = confluent_admin.AlterConfigOpType.SET
        retention = confluent_admin.ConfigEntry("retention.ms", "3600000", incremental_operation=set_op)
        outcomes = {}
        for user in ("alice", "gary"):
            client = confluent_admin.AdminClient(_settings(port, user))
            node = str(next(iter(client.list_topics(timeout=30).brokers)))
            resources = [
                confluent_admin.ConfigResource(
                    confluent_admin.ResourceType.TOPIC, "orders", incremental_configs=[retention]
                ),
                confluent_admin.ConfigResource(
                    confluent_admin.ResourceType.BROKER, node, incremental_configs=[retention]
                ),
            ]
            outcomes[user] = _alter(client, resources)
            outcomes[user]["config"] = _topic_config(client, "orders")["retention.ms"]
        assert outcomes["alice"]["orders"] is None
        assert outcomes["alice"]["config"] == "3600000"
        assert outcomes["alice"][node].code() == CLUSTER_AUTHORIZATION_FAILED
        assert "bind every namespace" in outcomes["alice"][node].str()
        assert outcomes["gary"]["orders"].code() == CLUSTER_AUTHORIZATION_FAILED
        assert "may not alter the cluster" in outcomes["gary"]["orders"].str()
        assert outcomes["gary"][node].code() == CLUSTER_AUTHORIZATION_FAILED
        assert outcomes["gary"]["config"] != "3600000"
    finally:
        server.stop()
