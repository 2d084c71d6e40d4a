"""Consumer groups on the wire: one DoExchange stream per member.

Goal: the DoExchange protocol of docs/flight-protocol.md is usable from a plain Flight
client; a refused request is answered in-band and the member stays; malformed
subscriptions are refused with clear errors; and a member whose process dies gives
its deliveries back to the group at once, not after its ack timeout. Method: an
in-process server; ``pyarrow.flight`` used directly with the documented JSON; a
consumer in a subprocess that is SIGKILLed while it holds deliveries.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import odradek
from odradek.engine import Engine
from odradek.node import Node

REFS_SCHEMA = pa.schema(
    [
        pa.field("topic", pa.utf8(), nullable=False),
        pa.field("offset", pa.int64(), nullable=False),
        pa.field("lease", pa.int64(), nullable=False),
    ]
)


def _subscribe(
    url: str, command: dict[str, object]
) -> tuple[flight.FlightStreamWriter, flight.FlightStreamReader]:
    plain = flight.connect(url)
    descriptor = flight.FlightDescriptor.for_command(json.dumps(command).encode())
    return plain.do_exchange(descriptor)


def _metadata(reader: flight.FlightStreamReader) -> dict[str, object]:
    chunk = reader.read_chunk()
    assert chunk.data is None
    return dict(json.loads(chunk.app_metadata.to_pybytes()))


def test_a_plain_flight_client_polls_and_acks(url: str, engine: Engine, node: Node) -> None:
    engine.create_topic("t")
    engine.append("t", [{"key": b"k", "value": b"v1"}, {"key": b"k", "value": b"v2"}])
    writer, reader = _subscribe(url, {"kind": "subscribe", "group": "g", "pattern": "t", "options": {}})
    joined = _metadata(reader)
    assert isinstance(joined["member"], str) and joined["options"]["ordering"] == "key"  # type: ignore[index]
    writer.begin(REFS_SCHEMA)
    writer.write_metadata(pa.py_buffer(b'{"op": "poll", "max_records": 10, "timeout": 0}'))
    chunk = reader.read_chunk()
    header = json.loads(chunk.app_metadata.to_pybytes())
    assert header["topic"] == "t"
    assert chunk.data.column("value").to_pylist() == [b"v1"]
    assert chunk.data.column("attempt").to_pylist() == [1]
    assert _metadata(reader) == {"polled": 1, "member": joined["member"]}
    refs = pa.RecordBatch.from_pydict(
        {"topic": ["t"], "offset": [0], "lease": [header["lease"]]}, schema=REFS_SCHEMA
    )
    writer.write_with_metadata(refs, pa.py_buffer(b'{"op": "ack"}'))
    assert _metadata(reader) == {"settled": 1, "rejected": []}
    writer.write_metadata(pa.py_buffer(b'{"op": "rewind"}'))  # refused in-band: the member stays
    refusal = _metadata(reader)
    assert refusal["error"]["code"] == "invalid_request"  # type: ignore[index]
    writer.write_metadata(pa.py_buffer(b'{"op": "poll", "max_records": 10, "timeout": 0}'))
    assert reader.read_chunk().data.column("value").to_pylist() == [b"v2"]
    assert _metadata(reader)["polled"] == 1
    writer.done_writing()
    with pytest.raises(StopIteration):
        reader.read_chunk()
    writer.close()
    assert node.groups.describe_group("g").members == []  # the stream's end left the group


@pytest.mark.parametrize(
    "command",
    [
        {"kind": "read", "group": "g", "pattern": "t"},
        {"kind": "subscribe", "pattern": "t"},
        {"kind": "subscribe", "group": "bad group!", "pattern": "t"},
        {"kind": "subscribe", "group": "g", "pattern": "t", "options": {"colour": "red"}},
        {"kind": "subscribe", "group": "g", "pattern": "t", "options": {"ack_timeout": -1}},
    ],
)
def test_malformed_subscriptions_are_refused(url: str, command: dict[str, object]) -> None:
    writer, reader = _subscribe(url, command)
    with pytest.raises(flight.FlightServerError) as caught:
        reader.read_chunk()
    with contextlib.suppress(flight.FlightError):
        writer.close()  # raises the same error again
    assert json.loads(caught.value.extra_info)["code"] == "invalid_request"


def test_a_path_descriptor_is_refused(url: str) -> None:
    writer, reader = flight.connect(url).do_exchange(flight.FlightDescriptor.for_path("t"))
    with pytest.raises(flight.FlightServerError) as caught:
        reader.read_chunk()
    with contextlib.suppress(flight.FlightError):
        writer.close()  # raises the same error again
    assert json.loads(caught.value.extra_info)["code"] == "invalid_request"


_HOLDER = """
import sys, odradek
consumer = odradek.connect(sys.argv[1]).subscribe("t", group="g", ack_timeout=600)
held = consumer.poll(10, timeout=10)
print(len(held), flush=True)
sys.stdin.read()
"""


def test_a_killed_member_gives_its_deliveries_back_at_once(url: str, engine: Engine) -> None:
    engine.create_topic("t")
    engine.append("t", [{"key": b"a", "value": b"1"}, {"key": b"b", "value": b"2"}])
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "2"
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    assert holder.stdin is not None
    holder.stdin.close()
    with odradek.connect(url) as client, client.subscribe("t", group="g", ack_timeout=600) as consumer:
        # Without the leave, these would come back only after the 600 s ack timeout.
        deliveries = consumer.poll(10, timeout=60)
        while len(deliveries) < 2:
            more = consumer.poll(10, timeout=60)
            assert more, "the killed member's deliveries did not come back"
            deliveries += more
    # They come back counted: the member died holding them (one may have killed it).
    assert sorted((d.key, d.attempt) for d in deliveries) == [(b"a", 2), (b"b", 2)]
