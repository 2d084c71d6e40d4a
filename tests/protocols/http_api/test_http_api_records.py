"""Produce, read, keys and topics over the HTTP API, with the other doors' semantics.

Goal: what a client does with curl means what it means through the native client:
records produced are read back with key, value, headers, timestamp and version; a
failed expectation (`expect`, `expect_offset`) writes nothing and answers 409 with the
Flight door's error code and details; an idempotent producer's retry is answered from
memory; reads start from an offset or a time and stop at a limit; a schema'd topic's
values are JSON both ways; topics are listed by pattern, created, described, altered,
deleted; every refusal has the one error shape and its status. Method: the real
listener in-process (conftest.py), urllib as the client, the engine to check.
"""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any

import pytest
from http_api_client import Api

from odradek import limits


def _produce(api: Api, topic: str, records: list[dict[str, Any]], **options: Any) -> tuple[int, Any]:
    status, _, document = api.call("POST", f"/v1/topics/{topic}/records", {"records": records, **options})
    return status, document


def test_produce_then_read(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "orders.eu"})
    status, result = _produce(
        api,
        "orders.eu",
        [
            {
                "key": "order-1",
                "value": "created",
                "headers": {"trace": "t1"},
                "timestamp": 1_700_000_000_000_000,
            },
            {"key": "order-1", "value_b64": base64.b64encode(b"\xff\x00").decode()},
            {"value": {"n": 1}},
        ],
    )
    assert status == 200
    assert result == {
        "base_offset": 0,
        "count": 3,
        "next_offset": 3,
        "duplicate": False,
        "versions": {"order-1": 2},
    }
    page = api.ok("GET", "/v1/topics/orders.eu/records?offset=0&limit=2")
    assert page["next_offset"] == 2
    first, second = page["records"]
    assert first["key"] == "order-1" and first["value"] == "created" and first["version"] == 1
    assert first["headers"] == {"trace": "t1"}
    assert first["timestamp"] == "2023-11-14T22:13:20.000000Z"
    assert second["value_b64"] == base64.b64encode(b"\xff\x00").decode() and "value" not in second
    rest = api.ok("GET", "/v1/topics/orders.eu/records?offset=2")
    assert rest["records"][0]["value"] == '{"n": 1}' and rest["records"][0]["version"] is None
    # The engine holds exactly the bytes sent.
    table = api.node.engine.read_key("orders.eu", b"order-1")
    assert table.column("value").to_pylist() == [b"created", b"\xff\x00"]


def test_read_from_a_time_and_from_the_end(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "t"})
    _produce(api, "t", [{"value": "old", "timestamp": "2020-01-01T00:00:00Z"}])
    # One request may mix both forms of a timestamp; ISO text keeps its microseconds.
    mixed = [
        {"value": "new", "timestamp": "2025-01-01T01:00:00.000007+01:00"},
        {"value": "newer", "timestamp": 1_735_689_600_000_008},
    ]
    assert _produce(api, "t", mixed)[0] == 200
    page = api.ok("GET", "/v1/topics/t/records?time=2024-01-01T00:00:00Z")
    assert [record["value"] for record in page["records"]] == ["new", "newer"]
    assert [record["timestamp"] for record in page["records"]] == [
        "2025-01-01T00:00:00.000007Z",
        "2025-01-01T00:00:00.000008Z",
    ]
    assert api.ok("GET", "/v1/topics/t/records?start=latest") == {
        "topic": "t",
        "records": [],
        "next_offset": 3,
    }
    status, _, error = api.call("GET", "/v1/topics/t/records?time=yesterday")
    assert status == 400 and error["code"] == "invalid_request"


def test_a_failed_expectation_writes_nothing_and_answers_409(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "accounts"})
    assert _produce(api, "accounts", [{"key": "a-1", "value": "opened"}], expect={"a-1": 0})[0] == 200
    status, error = _produce(api, "accounts", [{"key": "a-1", "value": "again"}], expect={"a-1": 0})
    assert status == 409
    assert error["code"] == "conflict"
    assert error["details"] == {"key_hex": b"a-1".hex(), "expected": 0, "actual": 1}
    status, error = _produce(api, "accounts", [{"value": "x"}], expect_offset=5)
    assert status == 409 and error["details"] == {"key_hex": None, "expected": 5, "actual": 1}
    key_b64 = base64.b64encode(b"a-1").decode()
    status, _ = _produce(
        api, "accounts", [{"key": "a-1", "value": "closed"}], expect_b64={key_b64: 1}, expect_offset=1
    )
    assert status == 200
    assert api.node.engine.describe_topic("accounts").next_offset == 2
    assert api.ok("GET", "/v1/topics/accounts/keys/a-1") == {"topic": "accounts", "key": "a-1", "version": 2}


def test_an_idempotent_retry_is_answered_from_memory(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "t"})
    producer = {"id": "p-1", "sequence": 0}
    first = _produce(api, "t", [{"value": "once"}], producer=producer)[1]
    again = _produce(api, "t", [{"value": "once"}], producer=producer)[1]
    assert again == {**first, "duplicate": True}
    assert api.node.engine.describe_topic("t").next_offset == 1
    status, error = _produce(api, "t", [{"value": "gap"}], producer={"id": "p-1", "sequence": 5})
    assert status == 400 and error["code"] == "sequence_error"


def test_key_versions_and_key_reads(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "t"})
    _produce(api, "t", [{"key": "k/1", "value": str(n)} for n in range(5)])
    _produce(api, "t", [{"key_b64": base64.b64encode(b"\x80").decode(), "value": "binary key"}])
    assert api.ok("GET", "/v1/topics/t/keys/k%2F1")["version"] == 5
    page = api.ok("GET", "/v1/topics/t/keys/k%2F1/records?from_version=2&limit=2")
    assert [record["value"] for record in page["records"]] == ["1", "2"]
    assert page["next_version"] == 4 and page["version"] == 5
    last = api.ok("GET", "/v1/topics/t/keys/k%2F1/records?from_version=4")
    assert [record["version"] for record in last["records"]] == [4, 5] and last["next_version"] is None
    binary = api.ok("GET", "/v1/topics/t/keys/gA==/records?key_encoding=base64")
    assert binary["key_b64"] == "gA==" and binary["records"][0]["value"] == "binary key"
    assert api.ok("GET", "/v1/topics/t/keys/missing")["version"] == 0


def test_schemad_topics_take_and_give_json(api: Api) -> None:
    schema = {"type": "object", "properties": {"amount": {"type": "integer"}}, "required": ["amount"]}
    api.ok("POST", "/v1/topics", {"name": "payments", "schema": schema})
    assert _produce(api, "payments", [{"key": "p", "value": {"amount": 7}}])[0] == 200
    status, error = _produce(api, "payments", [{"key": "p", "value": {"amount": "seven"}}])
    assert status == 400 and error["code"] == "schema_violation"
    assert api.ok("GET", "/v1/topics/payments/records")["records"][0]["value"] == {"amount": 7}
    assert api.ok("GET", "/v1/topics/payments/keys/p/records")["records"][0]["value"] == {"amount": 7}
    described = api.ok("GET", "/v1/topics/payments/schema")
    assert described["schema"]["kind"] == "JSON" and described["schema"]["version"] == 1
    status, _, registry = api.call("GET", described["registry"]["latest"])
    assert status == 200 and registry["subject"] == "payments-value"


def test_topics_are_listed_created_described_altered_and_deleted(api: Api) -> None:
    for name in ("orders.eu.created", "orders.us.created", "billing"):
        assert api.call("POST", "/v1/topics", {"name": name, "retention": "1d"})[0] == 201
    status, _, error = api.call("POST", "/v1/topics", {"name": "billing"})
    assert status == 409 and error["code"] == "topic_exists"
    assert api.call("POST", "/v1/topics", {"name": "billing", "exist_ok": True})[0] == 201
    assert api.ok("GET", "/v1/topics?pattern=orders.*.created")["topics"] == [
        "orders.eu.created",
        "orders.us.created",
    ]
    assert api.ok("GET", "/v1/topics/billing")["config"]["retention_seconds"] == 86400
    altered = api.ok("PATCH", "/v1/topics/billing", {"retention": "30d"})
    assert altered["config"]["retention_seconds"] == 30 * 86400
    status, _, error = api.call("PATCH", "/v1/topics/billing", {"retention": "soon"})
    assert status == 400 and api.ok("GET", "/v1/topics/billing")["config"]["retention_seconds"] == 30 * 86400
    assert api.ok("DELETE", "/v1/topics/billing") == {"deleted": "billing"}
    status, _, error = api.call("GET", "/v1/topics/billing")
    assert status == 404 and error["code"] == "topic_not_found" and error["details"] == {"topic": "billing"}


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/v1/nothing", None, 404, "not_found"),
        ("PUT", "/v1/topics", {}, 405, "method_not_allowed"),
        ("POST", "/v1/topics", ["not", "an", "object"], 400, "invalid_request"),
        ("POST", "/v1/topics", {"name": "bad name!"}, 400, "invalid_request"),
        ("POST", "/v1/topics/t/records", {"records": []}, 400, "invalid_request"),
        ("POST", "/v1/topics/t/records", {"records": [{"value": "v", "extra": 1}]}, 400, "invalid_request"),
        ("POST", "/v1/topics/t/records", {"records": [{"value_b64": "not base64!"}]}, 400, "invalid_request"),
        (
            "POST",
            "/v1/topics/t/records",
            {"records": [{"value": "v", "timestamp": "noon"}]},
            400,
            "invalid_request",
        ),
        ("POST", "/v1/topics/missing/records", {"records": [{"value": "v"}]}, 404, "topic_not_found"),
        ("GET", "/v1/topics/t/records?offset=99", None, 400, "offset_out_of_range"),
        ("GET", "/v1/topics/t/records?limit=0", None, 400, "invalid_request"),
    ],
)
def test_refusals_have_one_shape(api: Api, method: str, path: str, body: Any, status: int, code: str) -> None:
    api.ok("POST", "/v1/topics", {"name": "t"})
    answered, headers, error = api.call(method, path, body)
    assert (answered, error["code"]) == (status, code), error
    assert set(error) == {"code", "message", "details"} and error["message"]
    assert headers["Content-Type"] == "application/json"
    assert api.node.engine.describe_topic("t").next_offset == 0  # nothing was written


def test_bounds_answer_413(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "t"})
    records = [{"value": "v"}] * (limits.http_produce_records_max + 1)
    status, error = _produce(api, "t", records)
    assert status == 413 and error["code"] == "request_too_large"
    # A body declared larger than the bound is refused before any of it is read.
    connection = http.client.HTTPConnection("127.0.0.1", api.listener.port, timeout=60)
    connection.putrequest("POST", "/v1/topics/t/records")
    connection.putheader("Content-Length", str(limits.http_request_body_bytes_max + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["code"] == "request_too_large"
    connection.close()
    assert api.node.engine.describe_topic("t").next_offset == 0


def test_a_stopping_server_answers_503_with_retry_after(api: Api) -> None:
    api.listener.api.drain(0)  # type: ignore[union-attr]
    status, headers, error = api.call("GET", "/v1/topics")
    assert status == 503 and error["code"] == "unavailable" and headers["Retry-After"] == "1"


def test_methods_the_document_does_not_list_are_answered_405_with_allow(api: Api) -> None:
    for method in ("TRACE", "QUERY", "PUT"):
        status, headers, error = api.call(method, "/v1/topics")
        assert (status, error["code"], headers["Allow"]) == (405, "method_not_allowed", "GET, POST")
