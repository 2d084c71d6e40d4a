"""Authorization on the Kafka door and Kafka's ACL APIs (DescribeAcls, CreateAcls, DeleteAcls).

Goal: kafka-python's KafkaAdminClient and confluent-kafka's AdminClient, as an admin,
create, describe and delete bindings, which then take effect for a SASL client: a
principal produces, consumes and commits only where a binding allows it; a denied
produce is answered TOPIC_AUTHORIZATION_FAILED and leaves nothing behind; a denied group
GROUP_AUTHORIZATION_FAILED; Metadata lists only the topics the principal may describe; a
principal that is not an admin may not manage bindings (CLUSTER_AUTHORIZATION_FAILED);
a door without authorization answers the ACL APIs SECURITY_DISABLED.
Method: an in-process Kafka listener over a fresh node with an authenticator and an
authorizer over the data directory's bindings; real clients over SASL_PLAINTEXT (PLAIN).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from odradek.node import Node
from odradek.protocols.kafka import KafkaListenerHandle, start_kafka_listener
from odradek.security import Authenticator, CredentialStore
from odradek.security.acl import binding
from odradek.security.authorizer import enable_authorization

confluent_kafka = pytest.importorskip("confluent_kafka")
confluent_admin = pytest.importorskip("confluent_kafka.admin")
kafka_admin = pytest.importorskip("kafka.admin")
kafka_errors = pytest.importorskip("kafka.errors")


class AclDoor:
    def __init__(self, directory: Path, *, authorize: bool = True) -> None:
        self.node = Node.open(str(directory / "data"), fsync=False)
        store = CredentialStore.open(str(directory / "data"))
        store.add_user("root", "root-secret", admin=True)
        store.add_user("alice", "alice-secret")
        authenticator = Authenticator(store)
        self.authorizer = enable_authorization(authenticator) if authorize else None
        self.listener: KafkaListenerHandle = start_kafka_listener(
            self.node, "127.0.0.1", 0, authenticator=authenticator
        )

    def settings(self, user: str) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.listener.bootstrap,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": user,
            "sasl.password": f"{user}-secret",
        }

    def kafka_python_admin(self, user: str) -> Any:
        return kafka_admin.KafkaAdminClient(
            bootstrap_servers=self.listener.bootstrap,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username=user,
            sasl_plain_password=f"{user}-secret",
            request_timeout_ms=10_000,
        )

    def close(self) -> None:
        self.listener.close()
        self.node.close()


@pytest.fixture
def door(tmp_path: Path) -> Iterator[AclDoor]:
    served = AclDoor(tmp_path)
    yield served
    served.close()


def _produce(door: AclDoor, user: str, topic: str) -> list[Any]:
    """Produce one record; the delivery errors (None: delivered)."""
    outcomes: list[Any] = []
    producer = confluent_kafka.Producer(
        {**door.settings(user), "message.timeout.ms": 10_000, "allow.auto.create.topics": False}
    )
    producer.produce(topic, value=b"v", on_delivery=lambda error, _message: outcomes.append(error))
    producer.flush(30)
    return outcomes


def _consume(door: AclDoor, user: str, topic: str, group: str) -> Any:
    """The first message (or error) a consumer of ``group`` polls from ``topic``."""
    consumer = confluent_kafka.Consumer(
        {**door.settings(user), "group.id": group, "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([topic])
        for _ in range(60):  # up to 30 s
            message = consumer.poll(0.5)
            if message is not None:
                return message
        return None
    finally:
        consumer.close()


def test_kafka_python_admin_manages_bindings_that_then_take_effect(door: AclDoor) -> None:
    admin = door.kafka_python_admin("root")
    try:
        admin.create_topics(
            [kafka_admin.NewTopic("acl.orders", 1, 1), kafka_admin.NewTopic("acl.secret", 1, 1)]
        )
        topic = kafka_admin.ResourcePattern(
            kafka_admin.ResourceType.TOPIC, "acl.", kafka_admin.ACLResourcePatternType.PREFIXED
        )
        group = kafka_admin.ResourcePattern(kafka_admin.ResourceType.GROUP, "billing")
        allow = kafka_admin.ACLPermissionType.ALLOW
        acls = [
            kafka_admin.ACL("User:alice", "*", kafka_admin.ACLOperation.WRITE, allow, topic),
            kafka_admin.ACL("User:alice", "*", kafka_admin.ACLOperation.READ, allow, topic),
            kafka_admin.ACL("User:alice", "*", kafka_admin.ACLOperation.READ, allow, group),
            kafka_admin.ACL(
                "User:alice",
                "*",
                kafka_admin.ACLOperation.ALL,
                kafka_admin.ACLPermissionType.DENY,
                kafka_admin.ResourcePattern(kafka_admin.ResourceType.TOPIC, "acl.secret"),
            ),
        ]
        created = admin.create_acls(acls)
        assert created["failed"] == [] and len(created["succeeded"]) == 4
        described, error = admin.describe_acls(
            kafka_admin.ACLFilter(
                "User:alice",
                "*",
                kafka_admin.ACLOperation.ANY,
                kafka_admin.ACLPermissionType.ANY,
                kafka_admin.ResourcePatternFilter(
                    kafka_admin.ResourceType.TOPIC, None, kafka_admin.ACLResourcePatternType.ANY
                ),
            )
        )
        assert error is kafka_errors.NoError
        assert {(acl.operation.name, acl.resource_pattern.resource_name) for acl in described} == {
            ("WRITE", "acl."),
            ("READ", "acl."),
            ("ALL", "acl.secret"),
        }
        assert _produce(door, "alice", "acl.orders") == [None]
        refused = _produce(door, "alice", "acl.secret")
        assert (
            refused[0] is not None
            and refused[0].code() == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
        )
        assert door.node.engine.describe_topic("acl.secret").records == 0  # nothing left behind
        message = _consume(door, "alice", "acl.orders", "billing")
        assert message is not None and message.error() is None and message.value() == b"v"
        denied_group = _consume(door, "alice", "acl.orders", "payroll")
        assert denied_group is not None and denied_group.error() is not None
        assert denied_group.error().code() == confluent_kafka.KafkaError.GROUP_AUTHORIZATION_FAILED
        deleted = admin.delete_acls(
            [
                kafka_admin.ACLFilter(
                    "User:alice",
                    "*",
                    kafka_admin.ACLOperation.WRITE,
                    kafka_admin.ACLPermissionType.ANY,
                    kafka_admin.ResourcePatternFilter(
                        kafka_admin.ResourceType.TOPIC, "acl.", kafka_admin.ACLResourcePatternType.MATCH
                    ),
                )
            ]
        )
        assert [len(matches) for _filter, matches, _error in deleted] == [1]
    finally:
        admin.close()
    refused = _produce(door, "alice", "acl.orders")
    assert (
        refused[0] is not None and refused[0].code() == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
    )
    assert door.node.engine.describe_topic("acl.orders").records == 1


def test_confluent_admin_manages_bindings(door: AclDoor) -> None:
    admin_module = confluent_admin
    admin = admin_module.AdminClient(door.settings("root"))
    binding_ = admin_module.AclBinding(
        admin_module.ResourceType.TOPIC,
        "orders.>",
        admin_module.ResourcePatternType.LITERAL,
        "User:alice",
        "*",
        admin_module.AclOperation.READ,
        admin_module.AclPermissionType.ALLOW,
    )
    for future in admin.create_acls([binding_]).values():
        future.result(30)
    assert [(entry.pattern_type, entry.pattern) for entry in door.authorizer.store.bindings()] == [
        ("match", "orders.>")
    ]
    everything = admin_module.AclBindingFilter(
        admin_module.ResourceType.ANY,
        None,
        admin_module.ResourcePatternType.ANY,
        None,
        None,
        admin_module.AclOperation.ANY,
        admin_module.AclPermissionType.ANY,
    )
    described = admin.describe_acls(everything).result(30)
    assert [(entry.name, entry.principal, entry.operation) for entry in described] == [
        ("orders.>", "User:alice", admin_module.AclOperation.READ)
    ]
    for future in admin.delete_acls([everything]).values():
        assert len(future.result(30)) == 1
    assert door.authorizer.store.bindings() == []


def test_metadata_lists_only_describable_topics_and_admin_apis_are_refused(door: AclDoor) -> None:
    for name in ("shop.orders", "shop.payments", "hr.salaries"):
        door.node.engine.create_topic(name)
    door.authorizer.store.add([binding("User:alice", "topic", "match", "shop.*", "read", "allow")])
    alice = confluent_admin.AdminClient(door.settings("alice"))
    assert sorted(alice.list_topics(timeout=30).topics) == ["shop.orders", "shop.payments"]
    alice_admin = door.kafka_python_admin("alice")
    try:
        with pytest.raises(kafka_errors.ClusterAuthorizationFailedError):
            alice_admin.describe_acls(
                kafka_admin.ACLFilter(
                    None,
                    None,
                    kafka_admin.ACLOperation.ANY,
                    kafka_admin.ACLPermissionType.ANY,
                    kafka_admin.ResourcePatternFilter(
                        kafka_admin.ResourceType.ANY, None, kafka_admin.ACLResourcePatternType.ANY
                    ),
                )
            )
    finally:
        alice_admin.close()
    creating = alice.create_topics([confluent_admin.NewTopic("hr.bonus", 1, 1)])
    with pytest.raises(confluent_kafka.KafkaException) as not_created:
        creating["hr.bonus"].result(30)
    assert not_created.value.args[0].code() == confluent_kafka.KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert "hr.bonus" not in door.node.engine.list_topics()


def test_without_authorization_the_acl_apis_say_security_disabled(tmp_path: Path) -> None:
    door = AclDoor(tmp_path, authorize=False)
    try:
        admin = door.kafka_python_admin("alice")
        try:
            with pytest.raises(kafka_errors.SecurityDisabledError):
                admin.describe_acls(
                    kafka_admin.ACLFilter(
                        None,
                        None,
                        kafka_admin.ACLOperation.ANY,
                        kafka_admin.ACLPermissionType.ANY,
                        kafka_admin.ResourcePatternFilter(
                            kafka_admin.ResourceType.ANY, None, kafka_admin.ACLResourcePatternType.ANY
                        ),
                    )
                )
        finally:
            admin.close()
        door.node.engine.create_topic("anything.goes")
        assert _produce(door, "alice", "anything.goes") == [None]  # unchanged: no checks
    finally:
        door.close()


def test_a_pattern_consumer_reads_only_what_it_may(door: AclDoor) -> None:
    for name in ("shop.orders", "shop.payments", "hr.salaries"):
        door.node.engine.create_topic(name)
        door.node.engine.append(name, [{"value": name.encode()}])
    door.authorizer.store.add(
        [
            binding("User:alice", "topic", "match", "shop.*", "read", "allow"),
            binding("User:alice", "group", "literal", "everything", "read", "allow"),
        ]
    )
    consumer = confluent_kafka.Consumer(
        {**door.settings("alice"), "group.id": "everything", "auto.offset.reset": "earliest"}
    )
    seen: set[bytes] = set()
    try:
        consumer.subscribe(["^.*"])  # every topic the broker lists
        for _ in range(120):  # up to 60 s
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                seen.add(message.value())
            if len(seen) == 2:
                break
        assert seen == {b"shop.orders", b"shop.payments"}
        assignment = {partition.topic for partition in consumer.assignment()}
        assert assignment == {"shop.orders", "shop.payments"}  # hr.salaries was never listed
    finally:
        consumer.close()


def test_a_transactional_producer_needs_its_transactional_id(door: AclDoor) -> None:
    door.node.engine.create_topic("ledger")
    door.authorizer.store.add([binding("User:alice", "topic", "literal", "ledger", "write", "allow")])
    producer = confluent_kafka.Producer(
        {**door.settings("alice"), "transactional.id": "ledger-writer", "transaction.timeout.ms": 10_000}
    )
    with pytest.raises(confluent_kafka.KafkaException) as refused:
        producer.init_transactions(30)
    assert refused.value.args[0].code() == confluent_kafka.KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    door.authorizer.store.add(
        [binding("User:alice", "transactional_id", "prefixed", "ledger-", "write", "allow")]
    )
    allowed = confluent_kafka.Producer(
        {**door.settings("alice"), "transactional.id": "ledger-writer", "transaction.timeout.ms": 10_000}
    )
    allowed.init_transactions(30)
    allowed.begin_transaction()
    allowed.produce("ledger", b"entry")
    allowed.commit_transaction(30)
    deadline = time.monotonic() + 30  # the commit's append is acknowledged apart from EndTxn's answer
    while door.node.engine.describe_topic("ledger").records < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert door.node.engine.describe_topic("ledger").records == 1
