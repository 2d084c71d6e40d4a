"""Quotas and metering through the doors: the native (Flight) door and /metrics.

Goal: the native door delays a call over its principal's quota (never refuses it) and
meters it, appends and reads; /metrics shows each principal's bytes, records and throttle time with a
``principal`` label, from the Kafka door and the native door alike.
Method: a node with a Flight server and a Kafka listener sharing one quota manager and
one Metrics object, its endpoint on a free port; appends through the Python client,
produce through the wire; what is throttled is checked through the metering (the time
counted), never by timing a call.
"""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import confluent_kafka
import pytest

import odradek
from odradek import limits
from odradek.node import Node
from odradek.protocols import connections
from odradek.protocols.flight.server import FlightService
from odradek.protocols.kafka import start_kafka_listener
from odradek.protocols.metrics import Metrics
from odradek.security.quotas import PRODUCE, QuotaEntity, QuotaManager, QuotaSettings


class Doors:
    def __init__(self, data_dir: Path) -> None:
        self.node = Node.open(data_dir, fsync=False)
        self.settings = QuotaSettings.open(str(data_dir))
        quotas = QuotaManager(self.settings)
        self.metrics = Metrics(self.node)
        self.endpoint = self.metrics.serve("127.0.0.1", 0, connections.METRICS)
        self.flight = FlightService(self.node, "grpc://127.0.0.1:0", observer=self.metrics, quotas=quotas)
        self.kafka = start_kafka_listener(
            self.node, "127.0.0.1", 0, quotas=quotas, metering=self.metrics.metering
        )
        self.client = odradek.connect(f"grpc://127.0.0.1:{self.flight.port}")

    def scrape(self) -> str:
        url = f"http://127.0.0.1:{self.endpoint.port}/metrics"
        with urllib.request.urlopen(url, timeout=30) as answer:
            text: str = answer.read().decode()
        return text

    def close(self) -> None:
        self.client.close()
        self.kafka.close()
        self.flight.drain(5.0)
        self.endpoint.close()
        self.node.close()


@pytest.fixture
def doors(tmp_path: Path) -> Iterator[Doors]:
    opened = Doors(tmp_path / "data")
    try:
        yield opened
    finally:
        opened.close()


def _value(text: str, name: str, principal: str) -> float:
    prefix = f'{name}{{principal="{principal}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    raise AssertionError(f"no {prefix!r} line in /metrics")


def test_the_native_door_delays_calls_over_quota_and_meters_them(doors: Doors) -> None:
    topic = f"quotas.t{uuid.uuid4().hex[:8]}"
    doors.client.create_topic(topic)
    doors.client.append(topic, [{"value": b"first"}])
    size = doors.metrics.metering.snapshot()["ANONYMOUS"]["bytes_in"]
    # An append of that size per span of 10 s fits; two go about 5 % over: a throttle
    # of about half a second.
    span = (limits.quota_window_count - 1) * limits.quota_window_seconds
    doors.settings.set(QuotaEntity.parse("user=ANONYMOUS"), {PRODUCE: size * 1.9 / span})
    for number in range(2):
        doors.client.append(topic, [{"value": b"v%04d" % number}])
    assert doors.client.describe_topic(topic).next_offset == 3  # nothing refused
    metered = doors.metrics.metering.snapshot()["ANONYMOUS"]
    assert metered["throttle_seconds"] > 0
    assert metered["records_in"] == 3 and metered["bytes_in"] >= 3 * size
    # Reads are metered too: a streaming read and one key's records.
    assert sum(batch.num_rows for batch in doors.client.read(topic, start="earliest", wait=0)) == 3
    assert doors.client.read_key(topic, b"none").num_rows == 0
    metered = doors.metrics.metering.snapshot()["ANONYMOUS"]
    assert metered["records_out"] == 3 and metered["bytes_out"] > 0
    # And appends in a DoPut stream (append_many), with the quota lifted.
    doors.settings.set(QuotaEntity.parse("user=ANONYMOUS"), {PRODUCE: None})
    doors.client.append_many(topic, [[{"value": b"a"}, {"value": b"b"}], [{"value": b"c"}]])
    assert doors.metrics.metering.snapshot()["ANONYMOUS"]["records_in"] == 6


def test_metrics_name_each_principal(doors: Doors) -> None:
    topic = f"quotas.t{uuid.uuid4().hex[:8]}"
    doors.client.create_topic(topic)
    doors.client.append(topic, [{"value": b"native"}])
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": f"127.0.0.1:{doors.kafka.port}", "linger.ms": 0}
    )
    producer.produce(topic, b"a")
    producer.produce(topic, b"b")
    assert producer.flush(30) == 0
    text = doors.scrape()
    assert _value(text, "odradek_principal_records_in_total", "ANONYMOUS") == 3
    assert _value(text, "odradek_principal_bytes_in_total", "ANONYMOUS") > 0
    assert _value(text, "odradek_principal_throttle_seconds_total", "ANONYMOUS") == 0
