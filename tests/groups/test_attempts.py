"""Which ways of giving deliveries back count as attempts (groups/group.py, "Attempts").

Goal: a delivery handed to a member counts as an attempt unless the member explicitly
and cleanly returns it: ``close()``, a ``with`` block left normally (or by
KeyboardInterrupt), ``{"op": "leave"}`` on a DoExchange stream. A consumer left by an
exception, ``close(failed=True)``, and a DoExchange stream that ends without ``leave``
count one attempt per delivery held, so the next delivery of each record carries
``attempt`` 2 and the group's counters say why.

Method: one record per key, polled by a member that then goes away in each of those
ways; a second member polls and reads the ``attempt`` of what comes back. The Flight
cases use ``pyarrow.flight`` directly with the documented JSON messages.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek.protocols.flight.server import FlightService

TOPIC = "t"
REFS_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.utf8(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("lease", pa.int64(), nullable=False),
    ]
)


@pytest.fixture
def keyed(client: odradek.EmbeddedClient, append_keyed: Any) -> odradek.EmbeddedClient:
    client.create_topic(TOPIC)
    append_keyed(client, TOPIC, [b"a", b"b"])
    return client


def _attempts_after(client: Any) -> list[int]:
    """The attempts of what a fresh member of the group gets next."""
    with client.subscribe(TOPIC, group="g") as other:
        return sorted(d.attempt for d in other.poll(10, timeout=0))


def test_close_and_a_with_block_left_normally_do_not_count(keyed: odradek.EmbeddedClient) -> None:
    consumer = keyed.subscribe(TOPIC, group="g")
    assert len(consumer.poll(10, timeout=0)) == 2
    consumer.close()
    with keyed.subscribe(TOPIC, group="g") as consumer:
        assert [d.attempt for d in consumer.poll(10, timeout=0)] == [1, 1]
    assert _attempts_after(keyed) == [1, 1]
    assert keyed.describe_group("g").counters["members_failed"] == 0


def test_a_with_block_left_by_an_exception_counts(keyed: odradek.EmbeddedClient) -> None:
    with pytest.raises(ValueError, match="processing failed"):
        with keyed.subscribe(TOPIC, group="g") as consumer:
            assert len(consumer.poll(10, timeout=0)) == 2
            raise ValueError("processing failed")
    assert _attempts_after(keyed) == [2, 2]
    counters = keyed.describe_group("g").counters
    assert (counters["members_failed"], counters["abandoned"]) == (1, 2)


def test_a_keyboard_interrupt_stops_a_consumer_cleanly(keyed: odradek.EmbeddedClient) -> None:
    with pytest.raises(KeyboardInterrupt):
        with keyed.subscribe(TOPIC, group="g") as consumer:
            assert len(consumer.poll(10, timeout=0)) == 2
            raise KeyboardInterrupt
    assert _attempts_after(keyed) == [1, 1]


def test_close_failed_counts_and_dead_letters_at_max_deliveries(keyed: odradek.EmbeddedClient) -> None:
    for _ in range(2):
        consumer = keyed.subscribe(TOPIC, group="g", max_deliveries=2)
        assert len(consumer.poll(10, timeout=0)) == 2
        consumer.close(failed=True)
    assert keyed.describe_group("g").counters["dead_lettered"] == 2
    letters = pa.Table.from_batches(list(keyed.read("dlq.g", wait=0)))
    assert sorted(letters.column("key").to_pylist()) == [b"a", b"b"]


@pytest.fixture
def url(keyed: odradek.EmbeddedClient) -> Iterator[str]:
    server = FlightService(keyed.engine, "grpc://127.0.0.1:0")
    yield f"grpc://127.0.0.1:{server.port}"
    server.drain(5.0)


def _member_holding_everything(url: str) -> tuple[flight.FlightStreamWriter, flight.FlightStreamReader]:
    command = {"kind": "subscribe", "group": "g", "pattern": TOPIC, "options": {}}
    writer, reader = flight.connect(url).do_exchange(flight.FlightDescriptor.for_command(json.dumps(command)))
    writer.begin(REFS_SCHEMA)
    assert "member" in json.loads(reader.read_chunk().app_metadata.to_pybytes())
    writer.write_metadata(pa.py_buffer(b'{"op": "poll", "max_records": 10, "timeout": 0}'))
    assert reader.read_chunk().data.num_rows == 2
    assert json.loads(reader.read_chunk().app_metadata.to_pybytes())["polled"] == 1
    return writer, reader


def _read_to_the_end(reader: flight.FlightStreamReader) -> list[dict[str, Any]]:
    replies = []
    while True:
        try:
            chunk = reader.read_chunk()
        except StopIteration:
            return replies
        replies.append(json.loads(chunk.app_metadata.to_pybytes()))


def test_a_leave_request_returns_the_deliveries_uncounted(url: str, keyed: odradek.EmbeddedClient) -> None:
    writer, reader = _member_holding_everything(url)
    writer.write_metadata(pa.py_buffer(b'{"op": "leave"}'))
    writer.done_writing()
    (left,) = _read_to_the_end(reader)
    assert isinstance(left["left"], str)
    writer.close()
    assert _attempts_after(keyed) == [1, 1]


def test_a_stream_ended_without_leave_counts(url: str, keyed: odradek.EmbeddedClient) -> None:
    writer, reader = _member_holding_everything(url)
    writer.done_writing()  # the stream ends, but the member never said it returns them
    assert _read_to_the_end(reader) == []
    writer.close()
    # The server leaves the group once it sees the end: wait for that, not for a time.
    with odradek.connect(url) as remote, remote.subscribe(TOPIC, group="g") as other:
        deliveries = other.poll(10, timeout=60)
        while len(deliveries) < 2:
            more = other.poll(10, timeout=60)
            assert more, "the deliveries did not come back"
            deliveries += more
        assert sorted(d.attempt for d in deliveries) == [2, 2]
    assert keyed.describe_group("g").counters["members_failed"] == 1


def test_a_remote_consumer_left_by_an_exception_counts(url: str, keyed: odradek.EmbeddedClient) -> None:
    with odradek.connect(url) as remote:
        with pytest.raises(ValueError, match="processing failed"):
            with remote.subscribe(TOPIC, group="g") as consumer:
                assert len(consumer.poll(10, timeout=0)) == 2
                raise ValueError("processing failed")
        with remote.subscribe(TOPIC, group="g") as consumer:
            deliveries = consumer.poll(10, timeout=60)
            while len(deliveries) < 2:
                more = consumer.poll(10, timeout=60)
                assert more, "the deliveries did not come back"
                deliveries += more
            assert sorted(d.attempt for d in deliveries) == [2, 2]
        consumer = remote.subscribe(TOPIC, group="g")
        assert [d.attempt for d in consumer.poll(10, timeout=60)] == [2, 2]
        consumer.close()  # a clean close sends leave: these deliveries did not count
    assert _attempts_after(keyed) == [2, 2]
