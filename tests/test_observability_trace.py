"""OpenTelemetry trace context crosses every door unchanged, in record headers.

Goal: a record's W3C ``traceparent`` and ``tracestate`` headers, written through any door
(Kafka produce, native append, HTTP produce with the headers as record fields or with a
``traceparent`` request header), come out byte for byte on every other door (native
fetch, Kafka fetch, HTTP read and SSE tail); a malformed ``traceparent`` request header
is refused with a clear error and appends nothing.
Method: a real `odradek serve` with every door on loopback ports; one record written
through each door, then the topic read through each door and the headers compared.
"""

from __future__ import annotations

import base64
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import odradek

sys.path.insert(0, str(Path(__file__).parent / "cli"))

from odradek_process import Server

from odradek.ports import free_port

confluent_kafka = pytest.importorskip("confluent_kafka")

# Generous: a loaded machine may be slow; no assertion is about speed.
WAIT_SECONDS = 60.0
# One trace context per door that writes (W3C Trace Context examples' shape).
FROM_KAFKA = (
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
)
FROM_NATIVE = ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "vendor=opaque")
FROM_HTTP_FIELDS = ("00-11111111111111111111111111111111-2222222222222222-00", "a=1")
FROM_HTTP_HEADER = ("00-33333333333333333333333333333333-4444444444444444-01", "b=2")


class Doors:
    def __init__(self, server: Server, kafka: int, http: int) -> None:
        self.url = server.url
        self.kafka = f"127.0.0.1:{kafka}"
        self.http = f"http://127.0.0.1:{http}"


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    kafka, http = free_port(), free_port()
    server = Server(
        tmp_path / "data",
        "--kafka-listen",
        f"127.0.0.1:{kafka}",
        "--registry-listen",
        f"127.0.0.1:{http}",
    )
    try:
        yield Doors(server, kafka, http)
    finally:
        server.process.kill()
        server.process.communicate()


def post(url: str, body: object, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=30) as answer:
        return bytes(answer.read())


def traces(headers: dict[str, bytes]) -> tuple[str, str]:
    return headers.get("traceparent", b"").decode(), headers.get("tracestate", b"").decode()


def http_headers(record: dict[str, Any]) -> dict[str, bytes]:
    found = {name: value.encode() for name, value in record.get("headers", {}).items()}
    found.update({name: base64.b64decode(value) for name, value in record.get("headers_b64", {}).items()})
    return found


def test_trace_context_crosses_every_door(doors: Doors) -> None:
    client = odradek.connect(doors.url)
    client.create_topic("traced")
    # Written through each door, in this order (offsets 0..3).
    producer = confluent_kafka.Producer({"bootstrap.servers": doors.kafka})
    producer.produce(
        "traced", value=b"kafka", headers=[("traceparent", FROM_KAFKA[0]), ("tracestate", FROM_KAFKA[1])]
    )
    assert producer.flush(WAIT_SECONDS) == 0
    client.append(
        "traced",
        [
            {
                "value": b"native",
                "headers": {"traceparent": FROM_NATIVE[0].encode(), "tracestate": FROM_NATIVE[1]},
            }
        ],
    )
    fields = {"traceparent": FROM_HTTP_FIELDS[0], "tracestate": FROM_HTTP_FIELDS[1]}
    status, _ = post(
        f"{doors.http}/v1/topics/traced/records", {"records": [{"value": "fields", "headers": fields}]}
    )
    assert status == 200
    status, _ = post(
        f"{doors.http}/v1/topics/traced/records",
        {"records": [{"value": "header"}]},
        {"traceparent": FROM_HTTP_HEADER[0], "tracestate": FROM_HTTP_HEADER[1]},
    )
    assert status == 200
    expected = [FROM_KAFKA, FROM_NATIVE, FROM_HTTP_FIELDS, FROM_HTTP_HEADER]

    # Native fetch.
    batches = client.fetch("traced", 0)
    native = [traces(dict(row or [])) for batch in batches for row in batch.column("headers").to_pylist()]
    assert native == expected
    # HTTP read.
    document = json.loads(get(f"{doors.http}/v1/topics/traced/records?offset=0"))
    assert [traces(http_headers(record)) for record in document["records"]] == expected
    # SSE tail (a limit ends the stream).
    events = get(f"{doors.http}/v1/topics/traced/events?offset=0&limit=4").decode()
    blocks = [block.splitlines() for block in events.split("\n\n")]
    records = [block for block in blocks if "event: record" in block]
    data = [
        json.loads(line[len("data:") :]) for block in records for line in block if line.startswith("data:")
    ]
    assert [traces(http_headers(record)) for record in data] == expected
    # Kafka fetch.
    consumer = confluent_kafka.Consumer({"bootstrap.servers": doors.kafka, "group.id": "g"})
    consumer.assign([confluent_kafka.TopicPartition("traced", 0, confluent_kafka.OFFSET_BEGINNING)])
    consumed: list[tuple[str, str]] = []
    deadline = time.monotonic() + WAIT_SECONDS
    while len(consumed) < 4:
        assert time.monotonic() < deadline, f"the Kafka consumer read only {consumed}"
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            consumed.append(traces(dict(message.headers() or [])))
    consumer.close()
    assert consumed == expected


MALFORMED = (
    "not-a-trace",
    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
    "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero parent id
    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # version ff
)


def test_a_malformed_trace_context_request_header_is_refused(doors: Doors) -> None:
    client = odradek.connect(doors.url)
    client.create_topic("traced")
    url = f"{doors.http}/v1/topics/traced/records"
    good = FROM_HTTP_HEADER[0]
    refusals = [{"traceparent": parent} for parent in MALFORMED]
    refusals += [
        {"traceparent": good, "tracestate": "no member"},
        {"traceparent": good, "tracestate": "a=1," * 33},
    ]
    for headers in refusals:
        status, document = post(url, {"records": [{"value": "x"}]}, headers)
        assert status == 400 and document["code"] == "invalid_request", headers
        assert "trace" in document["message"], document
    assert client.describe_topic("traced").records == 0
