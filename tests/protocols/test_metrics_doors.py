"""/metrics covers every door and the engine's group commit.

Goal: an operator sees, per door (flight, kafka, http, registry), the requests by
operation and outcome, the records and bytes appended and fetched, request latency
histograms and connections, plus errors by code and the fsyncs with their group-commit
sizes, with values that match the traffic sent.
Method: a real `odradek serve` (all doors on loopback ports); a few appends and reads
through each door (the Python client, confluent-kafka, plain HTTP) and one refused
request per door; then /metrics is parsed with prometheus_client's text parser and
each family is checked for its door labels and counts.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import odradek
from odradek.errors import OdradekError

sys.path.insert(0, str(Path(__file__).parent.parent / "cli"))

from odradek_process import Server

from odradek.ports import free_port

confluent_kafka = pytest.importorskip("confluent_kafka")

# Generous: a loaded machine may be slow; no assertion is about speed.
WAIT_SECONDS = 60.0
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Doors:
    def __init__(self, server: Server, kafka: int, registry: int, metrics: int) -> None:
        self.server = server
        self.kafka = f"127.0.0.1:{kafka}"
        self.http = f"http://127.0.0.1:{registry}"
        self.metrics = f"http://127.0.0.1:{metrics}/metrics"

    def scrape(self) -> Samples:
        with urllib.request.urlopen(self.metrics, timeout=30) as answer:
            text = answer.read().decode()
        samples: Samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    kafka, registry, metrics = free_port(), free_port(), free_port()
    server = Server(
        tmp_path / "data",
        "--kafka-listen",
        f"127.0.0.1:{kafka}",
        "--registry-listen",
        f"127.0.0.1:{registry}",
        "--metrics-listen",
        f"127.0.0.1:{metrics}",
    )
    try:
        yield Doors(server, kafka, registry, metrics)
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(value for (sample, have), value in samples.items() if sample == name and wanted <= set(have))


def http(method: str, url: str, body: object | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return int(answer.status), json.loads(answer.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_every_door_and_the_group_commit_are_on_metrics(doors: Doors) -> None:
    # Flight: create, two appends (3 records), a fetch of all 3, one refused append.
    client = odradek.connect(doors.server.url)
    client.create_topic("t")
    client.append("t", [{"key": b"a", "value": b"1"}, {"key": b"b", "value": b"2"}])
    client.append("t", [{"key": b"c", "value": b"3"}])
    assert sum(batch.num_rows for batch in client.fetch("t", 0)) == 3
    with pytest.raises(OdradekError):
        client.append("missing", [{"key": b"a", "value": b"1"}])
    # Kafka: 4 records produced (the 9 of the topic are fetched below).
    producer = confluent_kafka.Producer({"bootstrap.servers": doors.kafka, "linger.ms": 0})
    delivered: list[object] = []
    for index in range(4):
        producer.produce(
            "t", key=b"k", value=b"kafka-%d" % index, on_delivery=lambda e, m: delivered.append(e)
        )
    producer.flush(WAIT_SECONDS)
    assert delivered == [None] * 4
    # HTTP: 2 records produced, read back; a refused produce (no such topic).
    status, _ = http(
        "POST", f"{doors.http}/v1/topics/t/records", {"records": [{"value": "h1"}, {"value": "h2"}]}
    )
    assert status == 200
    status, document = http("GET", f"{doors.http}/v1/topics/t/records?offset=0")
    assert status == 200 and isinstance(document, dict) and len(document["records"]) == 9
    status, _ = http("POST", f"{doors.http}/v1/topics/missing/records", {"records": [{"value": "x"}]})
    assert status == 404
    # Kafka fetch: every record of the topic.
    consumer = confluent_kafka.Consumer(
        {"bootstrap.servers": doors.kafka, "group.id": "g", "enable.auto.commit": False}
    )
    consumer.assign([confluent_kafka.TopicPartition("t", 0, confluent_kafka.OFFSET_BEGINNING)])
    seen = 0

    def all_read() -> bool:
        nonlocal seen
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            seen += 1
        return seen == 9

    wait_for(all_read, "the Kafka consumer to read the 9 records")
    consumer.close()
    # Registry: one answered request, one refused.
    assert http("GET", f"{doors.http}/subjects")[0] == 200
    assert http("GET", f"{doors.http}/subjects/none/versions")[0] == 404

    samples = doors.scrape()
    requests = "odradek_door_requests_total"
    assert total(samples, requests, door="flight", operation="append", outcome="ok") == 2
    assert total(samples, requests, door="flight", operation="append", outcome="topic_not_found") == 1
    assert total(samples, requests, door="flight", operation="do_get", outcome="ok") == 1
    assert total(samples, requests, door="kafka", operation="produce", outcome="ok") >= 1
    assert total(samples, requests, door="kafka", operation="fetch", outcome="ok") >= 1
    assert total(samples, requests, door="http", operation="produce", outcome="ok") == 1
    assert total(samples, requests, door="http", operation="read", outcome="ok") == 1
    assert total(samples, requests, door="http", operation="produce", outcome="topic_not_found") == 1
    assert total(samples, requests, door="registry", operation="get", outcome="ok") == 1
    assert total(samples, requests, door="registry", operation="get", outcome="404") == 1
    # Errors by code, across doors.
    assert total(samples, "odradek_errors_total", code="topic_not_found") == 2
    assert total(samples, "odradek_errors_total", code="404") == 1
    # Appended and fetched records, per door.
    assert total(samples, "odradek_door_appended_records_total", door="flight") == 3
    assert total(samples, "odradek_door_appended_records_total", door="kafka") == 4
    assert total(samples, "odradek_door_appended_records_total", door="http") == 2
    assert total(samples, "odradek_door_fetched_records_total", door="flight") == 3
    assert total(samples, "odradek_door_fetched_records_total", door="kafka") >= 9
    assert total(samples, "odradek_door_fetched_records_total", door="http") == 9
    for door in ("flight", "kafka", "http"):
        assert total(samples, "odradek_door_appended_bytes_total", door=door) > 0
        assert total(samples, "odradek_door_fetched_bytes_total", door=door) > 0
    # Latency histograms: one observation per answered request counted above.
    for door, operation in (("flight", "append"), ("kafka", "produce"), ("kafka", "fetch"), ("http", "read")):
        count = total(samples, "odradek_door_request_seconds_count", door=door, operation=operation)
        assert count == total(samples, requests, door=door, operation=operation, outcome="ok") > 0
        assert (
            total(samples, "odradek_door_request_seconds_bucket", door=door, operation=operation, le="+Inf")
            == count
        )
    # Connections: every door accepted some; none refused.
    for door in ("flight", "kafka", "registry"):
        assert total(samples, "odradek_door_connections_accepted_total", door=door) >= 1
        assert total(samples, "odradek_door_connections_refused_total", door=door) == 0
        assert ("odradek_door_connections", (("door", door),)) in samples
    # The group commit: the appends came one at a time, so each had its fsync; every
    # record appended was made durable by one of them.
    fsyncs = total(samples, "odradek_fsync_seconds_count")
    assert fsyncs >= 4  # Flight's two appends, HTTP's one, Kafka's produce
    assert total(samples, "odradek_group_commit_appends_count") == fsyncs
    assert total(samples, "odradek_group_commit_appends_sum") >= 4
    assert total(samples, "odradek_group_commit_records_sum") == 3 + 4 + 2
