"""Delete the cache, restart the agent: everything comes back from the object store.

Goal: with `odradek serve --store URL` the data directory is only a cache. After a
clean stop, deleting the data directory and starting again on the same store brings
back every topic, record (values included), key version, schema, native group's
acknowledgements, Kafka group's committed offset, idempotent producer's sequence (a
retried append with an old sequence is not written twice) and Schema Registry subject.

Method: a real `odradek serve --store` subprocess on a directory store (file://) and on
moto's S3 server, driven by real clients: the native remote client, kafka-python for
the Kafka group, HTTP for the registry. The server is stopped with SIGTERM, its data
directory removed, a new server started on an empty directory and the same store, and
everything is read back through the same doors.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
import warnings
from pathlib import Path

import pyarrow as pa
from stores import DEADLINE_SECONDS, StoreServer, StoreURL, read_all

import odradek

with warnings.catch_warnings():  # kafka-python's protocol tables use a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

PAYMENT = {
    "type": "object",
    "properties": {"id": {"type": "integer"}, "amount": {"type": "number"}},
    "required": ["id", "amount"],
    "additionalProperties": False,
}
SUBJECT_SCHEMA = {"type": "record", "name": "Audit", "fields": [{"name": "who", "type": "string"}]}
HTTP_SECONDS = 30.0  # generous: no assertion is about speed


def _registry(url: str, method: str = "GET", body: object = None) -> object:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/vnd.schemaregistry.v1+json"}
    )
    with urllib.request.urlopen(request, timeout=HTTP_SECONDS) as answer:
        return json.loads(answer.read())


def _kafka_consumer(server: StoreServer) -> KafkaConsumer:
    return KafkaConsumer(
        bootstrap_servers=server.bootstrap, group_id="kafka-billing", enable_auto_commit=False
    )


def _write_everything(server: StoreServer) -> dict[str, object]:
    written: dict[str, object] = {}
    with odradek.connect(server.url) as client:
        client.create_topic("orders.eu")
        client.create_topic("payments", schema=PAYMENT)
        first = client.append(
            "orders.eu",
            [{"key": b"a", "value": b"a1"}, {"key": b"b", "value": b"b1"}],
            expect={b"a": 0, b"b": 0},
        )
        second = client.append("orders.eu", [{"key": b"a", "value": b"a2"}], expect={b"a": 1})
        third = client.append("orders.eu", [{"key": b"c", "value": b"c1"}], producer=("producer-1", 0))
        assert (first.base_offset, second.base_offset, third.base_offset) == (0, 2, 3)
        client.append("payments", [{"key": b"p1", "value": {"id": 1, "amount": 9.5}}])
        consumer = client.subscribe("orders.eu", group="billing", start="earliest")
        try:
            deliveries = []
            while len(deliveries) < 3:  # keys a, b and c each have one delivery in flight
                deliveries.extend(consumer.poll(max_records=10, timeout=DEADLINE_SECONDS))
            acked = [d for d in deliveries if d.key in (b"b", b"c")]
            consumer.ack(acked)
        finally:
            consumer.close()
        written["native_acked"] = sorted(d.offset for d in acked)
    kafka = _kafka_consumer(server)
    kafka.assign([TopicPartition("orders.eu", 0)])
    kafka.commit({TopicPartition("orders.eu", 0): OffsetAndMetadata(3, "", -1)})
    kafka.close()
    registered = _registry(
        f"{server.registry}/subjects/common-types/versions",
        "POST",
        {"schema": json.dumps(SUBJECT_SCHEMA)},
    )
    written["subject_id"] = registered["id"]  # type: ignore[index]
    return written


def _check_everything(server: StoreServer, written: dict[str, object]) -> None:
    with odradek.connect(server.url) as client:
        assert sorted(client.list_topics()) == ["orders.eu", "payments"]
        table = read_all(client, "orders.eu")
        assert table.column("offset").to_pylist() == [0, 1, 2, 3]
        assert table.column("value").to_pylist() == [b"a1", b"b1", b"a2", b"c1"]
        assert table.column("version").to_pylist() == [1, 1, 2, 1]
        assert client.key_version("orders.eu", b"a") == 2
        assert client.read_key("orders.eu", b"a").column("value").to_pylist() == [b"a1", b"a2"]
        info = client.get_schema("payments")
        assert info is not None and info.version == 1 and info.kind == "JSON"
        payments = read_all(client, "payments")
        assert payments.column("value").to_pylist() == [{"id": 1, "amount": 9.5}]
        # The idempotent producer's sequence survived: the retry is not written twice.
        retry = client.append("orders.eu", [{"key": b"c", "value": b"c1"}], producer=("producer-1", 0))
        assert (retry.duplicate, retry.base_offset) == (True, 3)
        assert client.describe_topic("orders.eu").next_offset == 4
        # The native group's acknowledgements survived: only key a's records come again.
        consumer = client.subscribe("orders.eu", group="billing", start="earliest")
        try:
            again = consumer.poll(max_records=10, timeout=DEADLINE_SECONDS)
            assert [(d.key, d.offset) for d in again] == [(b"a", 0)]
            assert not set(written["native_acked"]) & {d.offset for d in again}  # type: ignore[call-overload]
        finally:
            consumer.close()
    kafka = _kafka_consumer(server)
    committed = kafka.committed(TopicPartition("orders.eu", 0))
    kafka.close()
    assert committed == 3
    assert _registry(f"{server.registry}/subjects") == ["common-types", "payments-value"]
    version = _registry(f"{server.registry}/subjects/common-types/versions/1")
    assert version["id"] == written["subject_id"]  # type: ignore[index]
    assert json.loads(version["schema"]) == SUBJECT_SCHEMA  # type: ignore[index]


def test_a_deleted_cache_comes_back_from_the_store(
    start_store_server: type[StoreServer], store_url: StoreURL, tmp_path: Path
) -> None:
    data = tmp_path / "cache"
    server = start_store_server(data, store_url)
    written = _write_everything(server)
    code, errors = server.stop()
    assert code == 0, errors
    assert f"store={store_url.url}" in errors  # the ready event names the store
    shutil.rmtree(data)

    server = start_store_server(data, store_url)
    _check_everything(server, written)
    code, errors = server.stop()
    assert code == 0, errors
    assert "replayed=" in errors and "epoch=2" in errors


def test_the_ready_line_names_the_store_without_secrets(
    start_store_server: type[StoreServer], store_url: StoreURL, tmp_path: Path
) -> None:
    server = start_store_server(tmp_path / "cache", store_url)
    code, errors = server.stop()
    assert code == 0, errors
    for secret in store_url.env.values():
        if "secret" in secret:
            assert secret not in errors


def test_a_table_of_many_batches_comes_back_whole(
    start_store_server: type[StoreServer], store_url: StoreURL, tmp_path: Path
) -> None:
    """Many appends from a pipelining client (the append stream), then a deleted cache."""
    data = tmp_path / "cache"
    server = start_store_server(data, store_url)
    values = [b"value-%05d" % index for index in range(3000)]
    keys = [b"key-%d" % (index % 37) for index in range(3000)]
    with odradek.connect(server.url) as client:
        client.create_topic("bulk")
        for start in range(0, 3000, 100):
            batch = pa.RecordBatch.from_pydict(
                {"key": keys[start : start + 100], "value": values[start : start + 100]}
            )
            client.append("bulk", batch)
    assert server.stop()[0] == 0
    shutil.rmtree(data)
    server = start_store_server(data, store_url)
    with odradek.connect(server.url) as client:
        table = read_all(client, "bulk")
        assert table.column("value").to_pylist() == values
        assert client.key_version("bulk", b"key-0") == len(range(0, 3000, 37))
    assert server.stop()[0] == 0
