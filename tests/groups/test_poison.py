"""A poison record reaches the dead-letter topic; the healthy records are all acked.

Goal: issue 11's finding, reproduced: a record no consumer can decode (a header name
that is not UTF-8, stored before appends refused them) made every poll fail, and a
consumer that died on a record gave its deliveries back without counting an attempt,
so a group with ``max_deliveries=3`` redelivered the record forever, acked none of 50
healthy records and dead-lettered nothing. Now a poll nacks what it cannot decode and
delivers the rest, and a consumer that dies holding deliveries spends an attempt of
each, so the record is dead-lettered after three deliveries and every healthy record
is acked, through the embedded consumer and through the Flight door.

Method: 50 keyed healthy records and one poison record in the middle (offset 25). The
undecodable one is appended with the append-time name check switched off, as data
written by an older version. Consumers: plain poll/ack loops (embedded and remote); an
embedded consumer whose ``with`` block raises on the record; consumer processes over
Flight that die on it, either by an uncaught exception (the interpreter then closes
the stream as if cleanly) or by SIGKILL. Loops are bounded; nothing waits on time.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import odradek
from odradek import records
from odradek.groups.deadletters import HEADER_ATTEMPTS, HEADER_OFFSET, HEADER_REASON
from odradek.protocols.flight.server import FlightService

TOPIC = "orders"
HEALTHY = 50
POISON_OFFSET = 25
BAD_NAME = b"\xff\xfetrace"


def _bad_headers(count: int, bad_row: int) -> pa.MapArray:
    """One header per record, ``trace``; the one of ``bad_row`` is named BAD_NAME."""
    names = [b"trace"] * count
    names[bad_row] = BAD_NAME
    offsets = np.arange(count + 1, dtype=np.int32)
    data_offsets = np.concatenate(([0], np.cumsum([len(n) for n in names]))).astype(np.int32)
    keys = pa.Array.from_buffers(
        pa.utf8(), count, [None, pa.py_buffer(data_offsets), pa.py_buffer(b"".join(names))]
    )
    return pa.MapArray.from_arrays(pa.array(offsets), keys, pa.array([b"t"] * count))


def _store(client: Any, monkeypatch: pytest.MonkeyPatch, *, undecodable: bool) -> None:
    """50 healthy records and, at offset 25, the poison record (value b"poison")."""
    count = HEALTHY + 1
    keys = [f"h{i}".encode() for i in range(count)]
    values = [f"v{i}".encode() for i in range(count)]
    keys[POISON_OFFSET], values[POISON_OFFSET] = b"poison", b"poison"
    headers = _bad_headers(count, POISON_OFFSET) if undecodable else pa.nulls(count, records.HEADERS_TYPE)
    batch = pa.RecordBatch.from_arrays(
        [pa.array(keys, pa.binary()), pa.array(values, pa.binary()), headers], ["key", "value", "headers"]
    )
    client.create_topic(TOPIC)
    with monkeypatch.context() as patch:
        if undecodable:  # written before appends refused such names
            patch.setattr(records, "_check_header_names", lambda headers: None)
        client.append(TOPIC, batch)


def _check_outcome(client: Any, reason: str, acked: list[int]) -> None:
    assert sorted(acked) == [o for o in range(HEALTHY + 1) if o != POISON_OFFSET], "a healthy record was lost"
    (letter,) = pa.Table.from_batches(list(client.read("dlq.g", wait=0))).to_pylist()
    headers = dict(letter["headers"])
    assert (letter["key"], letter["value"]) == (b"poison", b"poison")
    assert headers[HEADER_OFFSET] == str(POISON_OFFSET).encode()
    assert headers[HEADER_ATTEMPTS] == b"3"
    assert headers[HEADER_REASON] == reason.encode()
    info = client.describe_group("g")
    assert info.counters["dead_lettered"] == 1 and info.counters["acked"] == HEALTHY
    (lag,) = info.topics
    assert (lag.committed, lag.lag) == (HEALTHY + 1, 0)


@pytest.fixture(params=["embedded", "remote"])
def door(request: pytest.FixtureRequest, client: odradek.EmbeddedClient) -> Iterator[Any]:
    """The test's data directory through the embedded client or a Flight server."""
    if request.param == "embedded":
        yield client
        return
    server = FlightService(client.engine, "grpc://127.0.0.1:0")
    try:
        with odradek.connect(f"grpc://127.0.0.1:{server.port}") as remote:
            yield remote
    finally:
        server.drain(5.0)


def test_a_record_no_consumer_can_decode_is_dead_lettered_and_the_rest_acked(
    door: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(door, monkeypatch, undecodable=True)
    acked: list[int] = []
    with door.subscribe(TOPIC, group="g", max_deliveries=3) as consumer:
        for _ in range(20):  # three polls nack the record; then it is a dead letter
            deliveries = consumer.poll(500, timeout=0)
            assert all(d.offset != POISON_OFFSET for d in deliveries)
            assert consumer.ack(deliveries).ok
            acked += [d.offset for d in deliveries]
            if consumer.describe().topics[0].lag == 0:
                break
    _check_outcome(door, "nacked", acked)
    letter = pa.Table.from_batches(list(door.read("dlq.g", wait=0))).to_pylist()[0]
    # The dead letter could not keep the name as it was (an append refuses it): base64.
    assert ("//50cmFjZQ==_b64", b"t") in letter["headers"]


def test_a_consumer_that_dies_on_a_record_counts_its_attempts(
    client: odradek.EmbeddedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    _store(client, monkeypatch, undecodable=False)
    acked: list[int] = []
    deaths = 0
    for _ in range(10):
        try:
            with client.subscribe(TOPIC, group="g", max_deliveries=3) as consumer:
                while deliveries := consumer.poll(1, timeout=0):
                    (delivery,) = deliveries
                    if delivery.value == b"poison":
                        raise RuntimeError("the consumer dies on this record")
                    assert consumer.ack(delivery).ok
                    acked.append(delivery.offset)
            break
        except RuntimeError:
            deaths += 1
    assert deaths == 3, "the record did not reach the dead-letter topic after three deliveries"
    _check_outcome(client, "member_failed", acked)


# A consumer process over Flight: acks records one by one until the group has nothing
# left, and dies on the poison record: by an uncaught exception (no `with`, no close:
# the interpreter ends the stream on its way out) or by SIGKILL.
_CHILD = """
import os, signal, sys
import odradek
url, death = sys.argv[1], sys.argv[2]
consumer = odradek.connect(url).subscribe("orders", group="g", max_deliveries=3, ack_timeout=600)
while consumer.describe().topics[0].lag:
    for delivery in consumer.poll(1, timeout=1.0):
        if delivery.value == b"poison":
            if death == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("the consumer dies on this record")
        consumer.ack(delivery)
        print(delivery.offset, flush=True)
consumer.close()
"""


@pytest.mark.parametrize("death", ["exception", "kill"])
def test_consumer_processes_that_die_on_a_record_dead_letter_it(
    client: odradek.EmbeddedClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, death: str
) -> None:
    _store(client, monkeypatch, undecodable=False)
    server = FlightService(client.engine, "grpc://127.0.0.1:0")
    acked: list[int] = []
    deaths = 0
    try:
        for _ in range(8):
            child = subprocess.run(
                [sys.executable, "-c", _CHILD, f"grpc://127.0.0.1:{server.port}", death],
                capture_output=True,
                text=True,
                timeout=120,
            )
            acked += [int(line) for line in child.stdout.split()]
            if child.returncode == 0:
                break
            deaths += 1
    finally:
        server.drain(5.0)
    assert deaths == 3, "the record did not reach the dead-letter topic after three deliveries"
    _check_outcome(client, "member_failed", acked)


def test_the_undecodable_record_is_nacked_by_every_poll_door(
    client: odradek.EmbeddedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``GroupManager.poll`` (the engine's object API) skips and nacks it too."""
    _store(client, monkeypatch, undecodable=True)
    groups = client.node.groups
    member = groups.join("g", TOPIC, max_deliveries=3)
    seen: Callable[[], list[int]] = lambda: [d.offset for d in groups.poll("g", member, 500, 0)]  # noqa: E731
    first = seen()
    assert len(first) == HEALTHY and POISON_OFFSET not in first
    assert groups.describe_group("g").counters["nacked"] == 1
    groups.leave("g", member)
