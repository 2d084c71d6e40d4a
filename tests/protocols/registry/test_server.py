"""The registry's HTTP shell, and Confluent's own client reading its answers.

Goal: the shell keeps connections alive, bounds bodies and connections, answers
malformed HTTP with Confluent-shaped errors, and stops cleanly with idle connections
open; confluent-kafka's ``SchemaRegistryClient`` and its Avro serializer and
deserializer understand every answer they ask for.
Method: a real ``RegistryListener`` on a free loopback port over the in-memory backend
of conftest.py; raw sockets and ``http.client`` for the shell, confluent-kafka 2.16.1
for the client (skipped when it is not installed).
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from odradek.protocols.registry import server as server_module
from odradek.protocols.registry.routes import CONTENT_TYPE
from odradek.protocols.registry.server import RegistryListener

# Generous: a loaded machine may take a while to answer; no assertion is about speed.
socket_timeout_seconds = 30.0


@pytest.fixture
def listener(registry: Any) -> Iterator[RegistryListener]:
    with RegistryListener(registry.registry, "127.0.0.1", 0) as started:
        yield started


def _connect(listener: RegistryListener) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(listener.host, listener.port, timeout=socket_timeout_seconds)


def _read_until_closed(connection: socket.socket) -> bytes:
    received = b""
    while chunk := connection.recv(65536):
        received += chunk
    return received


def test_requests_share_one_keep_alive_connection(listener: RegistryListener) -> None:
    connection = _connect(listener)
    body = json.dumps({"schema": json.dumps({"type": "record", "name": "R", "fields": []})})
    connection.request("POST", "/subjects/orders-key/versions", body, {"Content-Type": CONTENT_TYPE})
    registered = connection.getresponse()
    assert registered.status == 200
    assert registered.getheader("Content-Type") == CONTENT_TYPE
    assert json.loads(registered.read())["version"] == 1
    first_socket = connection.sock
    connection.request("GET", "/subjects")
    listed = connection.getresponse()
    assert json.loads(listed.read()) == ["orders-key"]
    assert connection.sock is first_socket  # not reconnected
    connection.close()


def test_a_body_over_the_limit_is_refused_before_it_is_read(listener: RegistryListener) -> None:
    with socket.create_connection((listener.host, listener.port), timeout=socket_timeout_seconds) as raw:
        declared = server_module.request_body_bytes_max + 1
        raw.sendall(
            b"POST /subjects/x/versions HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {declared}\r\n\r\n".encode()
        )
        answer = _read_until_closed(raw)  # the server answers and closes without the body
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error_code"] == 413


def test_chunked_bodies_and_bad_lengths_are_refused(listener: RegistryListener) -> None:
    for headers, status in (
        (b"Transfer-Encoding: chunked\r\n", b"411"),
        (b"Content-Length: -5\r\n", b"400"),
    ):
        with socket.create_connection((listener.host, listener.port), timeout=socket_timeout_seconds) as raw:
            raw.sendall(b"POST /subjects/x/versions HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            answer = _read_until_closed(raw)
        assert answer.startswith(b"HTTP/1.1 " + status), answer


def test_a_malformed_request_line_gets_a_json_error(listener: RegistryListener) -> None:
    with socket.create_connection((listener.host, listener.port), timeout=socket_timeout_seconds) as raw:
        raw.sendall(b"this is not http\r\n\r\n")
        answer = _read_until_closed(raw)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0]
    assert json.loads(body)["error_code"] == 400


def test_a_request_whose_body_stops_arriving_is_closed(
    registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module._RegistryHandler, "timeout", 0.2)
    with RegistryListener(registry.registry, "127.0.0.1", 0) as started:
        with socket.create_connection((started.host, started.port), timeout=socket_timeout_seconds) as raw:
            raw.sendall(b"POST /subjects/x/versions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
            assert _read_until_closed(raw) == b""  # closed, with no answer to half a request
        # The listener still serves others.
        connection = _connect(started)
        connection.request("GET", "/")
        assert connection.getresponse().status == 200
        connection.close()


def test_connections_beyond_the_limit_are_answered_503_on_accept(
    registry: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server_module, "connections_max", 2)
    with RegistryListener(registry.registry, "127.0.0.1", 0) as started:
        held = [_connect(started) for _ in range(2)]
        for connection in held:
            connection.request("GET", "/")
            assert connection.getresponse().read() == b"{}"
        with socket.create_connection((started.host, started.port), timeout=socket_timeout_seconds) as extra:
            extra.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = _read_until_closed(extra)  # a 503 naming the cap, then closed
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503")
        assert "connections_max=2" in json.loads(body)["message"]
        held[0].close()
        for connection in held[1:]:
            connection.close()


def test_close_ends_idle_keep_alive_connections(registry: Any) -> None:
    started = RegistryListener(registry.registry, "127.0.0.1", 0)
    connection = _connect(started)
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"{}"
    idle = connection.sock  # kept open for the next request
    assert idle is not None
    started.close()
    assert _read_until_closed(idle) == b""
    connection.close()
    with pytest.raises(OSError):
        socket.create_connection((started.host, started.port), timeout=socket_timeout_seconds).close()


# -- confluent-kafka's client against the door -----------------------------------------------


@pytest.fixture
def confluent_client(listener: RegistryListener) -> Iterator[Any]:
    registry_module = pytest.importorskip("confluent_kafka.schema_registry")
    client = registry_module.SchemaRegistryClient({"url": listener.url})
    yield client
    client.close()


ORDER = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "string"}],
}


def test_confluent_client_registers_reads_and_configures(confluent_client: Any, registry: Any) -> None:
    from confluent_kafka.schema_registry import Schema
    from confluent_kafka.schema_registry.error import SchemaRegistryError

    schema = Schema(json.dumps(ORDER), "AVRO")
    schema_id = confluent_client.register_schema("orders-value", schema)
    assert schema_id == registry.backend.get_schema("orders").id
    latest = confluent_client.get_latest_version("orders-value")
    assert (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, "orders-value")
    assert json.loads(latest.schema.schema_str) == ORDER
    assert confluent_client.get_version("orders-value", 1).schema_id == schema_id
    assert confluent_client.lookup_schema("orders-value", schema).version == 1
    assert confluent_client.get_subjects() == ["orders-value"]
    assert confluent_client.get_versions("orders-value") == [1]
    assert confluent_client.get_schema_types() == ["AVRO", "JSON"]
    assert confluent_client.get_subjects_by_schema_id(schema_id) == ["orders-value"]
    versions = confluent_client.get_schema_versions(schema_id)
    assert [(v.subject, v.version) for v in versions] == [("orders-value", 1)]
    assert confluent_client.get_compatibility("orders-value") == "BACKWARD"
    confluent_client.set_compatibility("orders-value", "FULL")
    assert registry.backend.modes["orders"] == "full"
    assert confluent_client.get_config().compatibility_level.value == "BACKWARD"
    breaking = dict(ORDER, fields=[*ORDER["fields"], {"name": "customer", "type": "string"}])
    assert confluent_client.test_compatibility("orders-value", Schema(json.dumps(breaking), "AVRO")) is False
    with pytest.raises(SchemaRegistryError) as refused:
        confluent_client.register_schema("orders-value", Schema(json.dumps(breaking), "AVRO"))
    assert refused.value.http_status_code == 409
    assert "customer" in refused.value.error_message
    with pytest.raises(SchemaRegistryError) as protobuf:
        confluent_client.register_schema("orders-key", Schema("syntax = 'proto3';", "PROTOBUF"))
    assert protobuf.value.error_code == 42201
    with pytest.raises(SchemaRegistryError) as deleting:
        confluent_client.delete_subject("orders-value")
    assert deleting.value.error_code == 42205


def test_confluent_avro_serializer_round_trips_through_the_door(
    confluent_client: Any, registry: Any, listener: RegistryListener
) -> None:
    from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    serializer = AvroSerializer(confluent_client, json.dumps(ORDER))
    deserializer = AvroDeserializer(confluent_client)
    context = SerializationContext("orders", MessageField.VALUE)
    framed = serializer({"id": "o-1", "amount": "12.50"}, context)
    schema_id = registry.backend.get_schema("orders").id  # auto-registration created the topic
    assert framed[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    # A fresh client (empty caches) must fetch the writer's schema by id.
    from confluent_kafka.schema_registry import SchemaRegistryClient

    fresh = SchemaRegistryClient({"url": listener.url})
    assert AvroDeserializer(fresh)(framed, context) == {"id": "o-1", "amount": "12.50"}
    assert deserializer(framed, context) == {"id": "o-1", "amount": "12.50"}
    fresh.close()
