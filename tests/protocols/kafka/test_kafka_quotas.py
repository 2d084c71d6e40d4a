"""Client quotas on the Kafka door: throttling and DescribeClientQuotas/AlterClientQuotas.

Goal: a request over its quota is answered, with throttle_time_ms set, and its
connection is muted for that long (KIP-219: the next request is answered no earlier);
a client within its quota, or another client id, is not throttled; a real producer
(confluent-kafka) over a produce quota is told to back off (librdkafka's throttle
callback); DescribeClientQuotas and AlterClientQuotas (neither confluent-kafka 2.16 nor
kafka-python 3 offers them in its admin client, so by hand over the wire, versions 0 and
1) change and show the settings, refuse bad entities per entity, refuse non-admins, and
what they set survives a restart; the metering counts each principal's bytes and
records.
Method: a Kafka listener in-process over a fresh data directory with quota settings;
raw requests with the door's own codec (wire.py). No assertion waits on a timing: the
muted connection's delay is checked as a lower bound, which load only lengthens.
"""

from __future__ import annotations

import os
import struct
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import confluent_kafka
import pytest
from test_kafka_protocol import FETCH_VERSION, PRODUCE_VERSION, batch, partition_result, produce
from wire import Wire

from odradek.node import Node
from odradek.protocols.kafka import quota_api, start_kafka_listener
from odradek.protocols.kafka.codec import messages_data as data_messages
from odradek.protocols.kafka.codec import messages_quotas as m
from odradek.protocols.kafka.codec.api import ApiKey, Request, decode_request, encode_response
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.security import Authenticator, CredentialStore
from odradek.security.principal import Principal
from odradek.security.quotas import FETCH, PRODUCE, Metering, QuotaEntity, QuotaManager, QuotaSettings


class QuotaDoor:
    def __init__(self, data_dir: str, authenticator: Authenticator | None = None) -> None:
        self.data_dir = data_dir
        self.node = Node.open(data_dir, fsync=False)
        self.settings = QuotaSettings.open(data_dir)
        self.quotas = QuotaManager(self.settings)
        self.metering = Metering()
        self.listener = start_kafka_listener(
            self.node,
            "127.0.0.1",
            0,
            quotas=self.quotas,
            metering=self.metering,
            authenticator=authenticator,
        )

    @property
    def port(self) -> int:
        return self.listener.port

    def close(self) -> None:
        self.listener.close()
        self.node.close()


@pytest.fixture
def door(tmp_path: Path) -> Iterator[QuotaDoor]:
    opened = QuotaDoor(os.path.join(tmp_path, "data"))
    try:
        yield opened
    finally:
        opened.close()


def _topic(door: QuotaDoor) -> str:
    name = f"quotas.t{uuid.uuid4().hex[:8]}"
    door.node.engine.create_topic(name)
    return name


def test_a_produce_over_quota_is_answered_throttled_and_the_connection_muted(door: QuotaDoor) -> None:
    topic = _topic(door)
    # 1,000 B/s over a 10 s span: about 12 KB is 1.2x the quota, a throttle near 2 s.
    door.settings.set(QuotaEntity.parse("client-id=noisy"), {PRODUCE: 1000.0})
    noisy = Wire(door.port, client_id="noisy")
    quiet = Wire(door.port, client_id="quiet")
    try:
        first = noisy.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic, batch([b"x" * 4000])))
        assert partition_result(first).error_code == ErrorCode.NONE and first.throttle_time_ms == 0
        sent = time.monotonic()  # before the server mutes the connection, whatever the load
        response = noisy.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic, batch([b"y" * 8000])))
        # Answered (the records are written) but throttled.
        assert partition_result(response).error_code == ErrorCode.NONE
        assert response.throttle_time_ms > 0
        assert [len(v) for v in door.node.engine.fetch(topic, 0)[-1].column("value").to_pylist()] == [8000]
        # Another client id is not bounded: answered at once, unthrottled.
        other = quiet.call(ApiKey.PRODUCE, PRODUCE_VERSION, produce(topic, batch([b"z" * 8000])))
        assert other.throttle_time_ms == 0
        # The throttled connection is muted: its next request is answered no earlier than
        # the throttle time after the throttled request was sent (a lower bound that load
        # only lengthens; 1 ms for the rounding to whole milliseconds).
        noisy.call(ApiKey.METADATA, 12, data_messages.MetadataRequest(topics=()))
        assert time.monotonic() - sent >= response.throttle_time_ms / 1000 - 0.001
    finally:
        noisy.close()
        quiet.close()
    metered = door.metering.snapshot()["ANONYMOUS"]
    assert metered["bytes_in"] > 20_000 and metered["records_in"] == 3
    assert metered["throttle_seconds"] > 0


def test_a_fetch_over_quota_is_throttled(door: QuotaDoor) -> None:
    topic = _topic(door)
    door.node.engine.append(topic, [{"value": b"v" * 20_000}])
    door.settings.set(QuotaEntity.parse("user=<default>"), {FETCH: 1000.0})
    wire = Wire(door.port)
    try:
        request = data_messages.FetchRequest(
            max_wait_ms=0,
            min_bytes=1,
            max_bytes=1 << 20,
            topics=(
                data_messages.FetchTopic(
                    topic=topic,
                    partitions=(
                        data_messages.FetchPartition(
                            partition=0, fetch_offset=0, partition_max_bytes=1 << 20
                        ),
                    ),
                ),
            ),
        )
        response = wire.call(ApiKey.FETCH, FETCH_VERSION, request)
        assert response.responses[0].partitions[0].records
        assert response.throttle_time_ms > 0
    finally:
        wire.close()
    metered = door.metering.snapshot()["ANONYMOUS"]
    assert metered["bytes_out"] > 20_000 and metered["records_out"] == 1


def test_a_real_producer_over_quota_is_told_to_back_off(door: QuotaDoor) -> None:
    topic = _topic(door)
    door.settings.set(QuotaEntity.parse("user=<default>,client-id=<default>"), {PRODUCE: 50_000.0})
    throttles: list[int] = []

    def throttled(event: Any) -> None:
        throttles.append(event.throttle_time)

    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": f"127.0.0.1:{door.port}",
            "client.id": "flat-out",
            "linger.ms": 5,
            "throttle_cb": throttled,
        }
    )
    deadline = time.monotonic() + 60
    sent = 0
    while not throttles and time.monotonic() < deadline:
        for _ in range(100):
            producer.produce(topic, b"r" * 1000)
        sent += 100
        producer.poll(0.05)
    producer.flush(60)
    assert throttles and max(throttles) > 0, f"no throttle reported after {sent} records"


def _entity(**parts: str | None) -> tuple[m.EntityData, ...]:
    return tuple(
        m.EntityData(entity_type=kind.replace("_", "-"), entity_name=name) for kind, name in parts.items()
    )


def _alter(wire: Wire, version: int, *entries: m.AlterClientQuotasEntry) -> m.AlterClientQuotasResponse:
    response: m.AlterClientQuotasResponse = wire.call(
        ApiKey.ALTER_CLIENT_QUOTAS, version, m.AlterClientQuotasRequest(entries=entries)
    )
    return response


def _describe(wire: Wire, version: int, *components: m.ComponentData, strict: bool = False) -> dict[str, Any]:
    response: m.DescribeClientQuotasResponse = wire.call(
        ApiKey.DESCRIBE_CLIENT_QUOTAS,
        version,
        m.DescribeClientQuotasRequest(components=components, strict=strict),
    )
    assert response.error_code == ErrorCode.NONE, response.error_message
    assert response.entries is not None
    return {
        ",".join(f"{e.entity_type}={e.entity_name}" for e in entry.entity): {
            v.key: v.value for v in entry.values
        }
        for entry in response.entries
    }


@pytest.mark.parametrize("version", [0, 1])
def test_alter_and_describe_client_quotas(tmp_path: Path, version: int) -> None:
    door = QuotaDoor(os.path.join(tmp_path, "data"))
    try:
        wire = Wire(door.port)
        set_ops = (m.OpData(key=PRODUCE, value=1024.0), m.OpData(key=FETCH, value=2048.0))
        answer = _alter(
            wire,
            version,
            m.AlterClientQuotasEntry(entity=_entity(user="alice"), ops=set_ops),
            m.AlterClientQuotasEntry(entity=_entity(user=None, client_id="app"), ops=set_ops[:1]),
            m.AlterClientQuotasEntry(entity=_entity(client_id=None), ops=set_ops[1:]),
            # refused, each on its own: a Kafka-only key, an unknown type, a bad value
            m.AlterClientQuotasEntry(
                entity=_entity(user="bob"), ops=(m.OpData(key="request_percentage", value=50.0),)
            ),
            m.AlterClientQuotasEntry(entity=_entity(group="g"), ops=set_ops),
            m.AlterClientQuotasEntry(entity=_entity(user="carol"), ops=(m.OpData(key=PRODUCE, value=-1.0),)),
        )
        codes = [entry.error_code for entry in answer.entries]
        assert codes == [ErrorCode.NONE] * 3 + [ErrorCode.INVALID_REQUEST] * 3
        assert "request_rate" in (answer.entries[3].error_message or "")
        everything = _describe(wire, version)
        assert everything == {
            "user=alice": {PRODUCE: 1024.0, FETCH: 2048.0},
            "user=None,client-id=app": {PRODUCE: 1024.0},
            "client-id=None": {FETCH: 2048.0},
        }
        exact = m.ComponentData(entity_type="user", match_type=m.MATCH_EXACT, match="alice")
        default = m.ComponentData(entity_type="user", match_type=m.MATCH_DEFAULT)
        any_client = m.ComponentData(entity_type="client-id", match_type=m.MATCH_ANY)
        assert set(_describe(wire, version, exact)) == {"user=alice"}
        assert set(_describe(wire, version, default)) == {"user=None,client-id=app"}
        assert set(_describe(wire, version, any_client)) == {"user=None,client-id=app", "client-id=None"}
        assert set(_describe(wire, version, any_client, strict=True)) == {"client-id=None"}
        # removing the last value removes the entity
        removed = _alter(
            wire,
            version,
            m.AlterClientQuotasEntry(entity=_entity(client_id=None), ops=(m.OpData(key=FETCH, remove=True),)),
        )
        assert removed.entries[0].error_code == ErrorCode.NONE
        wire.close()
    finally:
        door.close()
    again = QuotaDoor(door.data_dir)  # what was set survives a restart
    try:
        wire = Wire(again.port)
        assert set(_describe(wire, version)) == {"user=alice", "user=None,client-id=app"}
        wire.close()
    finally:
        again.close()


def test_only_an_admin_manages_quotas(tmp_path: Path) -> None:
    quotas = QuotaManager(QuotaSettings.open(str(tmp_path)))
    bob = Principal("bob", None, admin=False, mechanism="PLAIN")
    describe = Request(ApiKey.DESCRIBE_CLIENT_QUOTAS, 1, 1, "c", m.DescribeClientQuotasRequest())
    assert quota_api.serve(quotas, bob, describe).error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    entry = m.AlterClientQuotasEntry(entity=_entity(user="bob"), ops=(m.OpData(key=PRODUCE, value=1e9),))
    alter = Request(ApiKey.ALTER_CLIENT_QUOTAS, 1, 2, "c", m.AlterClientQuotasRequest(entries=(entry,)))
    answer = quota_api.serve(quotas, bob, alter)
    assert answer.entries[0].error_code == ErrorCode.CLUSTER_AUTHORIZATION_FAILED
    assert quotas.settings.entities() == {}


def test_quotas_follow_the_authenticated_user(tmp_path: Path) -> None:
    data_dir = os.path.join(tmp_path, "data")
    store = CredentialStore.open(data_dir)
    for name in ("alice", "bob"):
        store.add_user(name, f"{name}-secret")
    door = QuotaDoor(data_dir, Authenticator(store))
    try:
        topic = _topic(door)
        door.settings.set(QuotaEntity.parse("user=alice"), {PRODUCE: 1000.0})
        throttles: dict[str, list[int]] = {"alice": [], "bob": []}
        for name in ("alice", "bob"):
            producer = confluent_kafka.Producer(
                {
                    "bootstrap.servers": f"127.0.0.1:{door.port}",
                    "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": "SCRAM-SHA-256",
                    "sasl.username": name,
                    "sasl.password": f"{name}-secret",
                    "linger.ms": 0,
                    "throttle_cb": lambda event, name=name: throttles[name].append(event.throttle_time),
                }
            )
            for _ in range(20):
                producer.produce(topic, b"x" * 1000)
            assert producer.flush(60) == 0
            if name == "alice":
                deadline = time.monotonic() + 60
                while not throttles["alice"] and time.monotonic() < deadline:
                    producer.poll(0.1)
            else:
                producer.poll(0.5)  # any throttle report bob would get has come by now
        assert throttles["alice"] and max(throttles["alice"]) > 0
        assert not any(throttles["bob"])
        metered = door.metering.snapshot()
        assert metered["alice"]["records_in"] == metered["bob"]["records_in"] == 20
        assert metered["alice"]["throttle_seconds"] > 0 and metered["bob"]["throttle_seconds"] == 0
    finally:
        door.close()


@pytest.mark.parametrize("version", [0, 1])
def test_the_codec_agrees_with_kafka_pythons_message_definitions(version: int) -> None:
    """kafka-python 3 generates its messages from Kafka's own JSON definitions: what it
    encodes decodes here, and what the door encodes decodes there."""
    with warnings.catch_warnings():  # kafka-python loads its definitions with a deprecated call
        warnings.simplefilter("ignore", DeprecationWarning)
        from kafka.protocol.admin import AlterClientQuotasRequest as KafkaAlter
        from kafka.protocol.admin import AlterClientQuotasResponse as KafkaAlterResponse
        from kafka.protocol.admin import DescribeClientQuotasRequest as KafkaDescribe
        from kafka.protocol.admin import DescribeClientQuotasResponse as KafkaDescribeResponse
    flexible = version >= 1

    def frame(api_key: int, body: bytes) -> bytes:
        header = struct.pack(">hhih", api_key, version, 7, 1) + b"c" + (b"\x00" if flexible else b"")
        return header + body

    ComponentData = KafkaDescribe.ComponentData
    describe = KafkaDescribe(
        version=version,
        components=[
            ComponentData(entity_type="user", match_type=m.MATCH_EXACT, match="alice"),
            ComponentData(entity_type="client-id", match_type=m.MATCH_DEFAULT, match=None),
        ],
        strict=True,
    )
    decoded = decode_request(frame(ApiKey.DESCRIBE_CLIENT_QUOTAS, bytes(describe.encode()))).body
    assert decoded == m.DescribeClientQuotasRequest(
        components=(
            m.ComponentData(entity_type="user", match_type=m.MATCH_EXACT, match="alice"),
            m.ComponentData(entity_type="client-id", match_type=m.MATCH_DEFAULT, match=None),
        ),
        strict=True,
    )
    Entry = KafkaAlter.EntryData
    alter = KafkaAlter(
        version=version,
        entries=[
            Entry(
                entity=[Entry.EntityData(entity_type="user", entity_name=None)],
                ops=[Entry.OpData(key=PRODUCE, value=1024.5, remove=False)],
            )
        ],
        validate_only=True,
    )
    decoded = decode_request(frame(ApiKey.ALTER_CLIENT_QUOTAS, bytes(alter.encode()))).body
    assert decoded == m.AlterClientQuotasRequest(
        entries=(
            m.AlterClientQuotasEntry(
                entity=(m.EntityData(entity_type="user", entity_name=None),),
                ops=(m.OpData(key=PRODUCE, value=1024.5, remove=False),),
            ),
        ),
        validate_only=True,
    )
    header_bytes = 4 + 4 + (1 if flexible else 0)  # size, correlation id, tagged fields
    described = m.DescribeClientQuotasResponse(
        throttle_time_ms=5,
        entries=(
            m.DescribeClientQuotasEntry(
                entity=(m.EntityData(entity_type="user", entity_name=None),),
                values=(m.ValueData(key="request_rate", value=2.5),),
            ),
        ),
    )
    raw = b"".join(encode_response(ApiKey.DESCRIBE_CLIENT_QUOTAS, version, 7, described))
    theirs = KafkaDescribeResponse.decode(raw[header_bytes:], version=version)
    assert theirs.throttle_time_ms == 5 and theirs.error_message is None
    assert [(e.entity[0].entity_type, e.entity[0].entity_name) for e in theirs.entries] == [("user", None)]
    assert [(v.key, v.value) for v in theirs.entries[0].values] == [("request_rate", 2.5)]
    altered = m.AlterClientQuotasResponse(
        entries=(
            m.AlterClientQuotasEntryResponse(
                error_code=ErrorCode.INVALID_REQUEST,
                error_message="no",
                entity=(m.EntityData(entity_type="client-id", entity_name="x"),),
            ),
        )
    )
    raw = b"".join(encode_response(ApiKey.ALTER_CLIENT_QUOTAS, version, 7, altered))
    answer = KafkaAlterResponse.decode(raw[header_bytes:], version=version).entries[0]
    assert (answer.error_code, answer.error_message) == (ErrorCode.INVALID_REQUEST, "no")
    assert (answer.entity[0].entity_type, answer.entity[0].entity_name) == ("client-id", "x")
