"""A Kafka fetch long-poll is woken by the engine's arrival hook, not by polling.

Goal: a fetch waiting for data answers as soon as records arrive through another door
(here the engine itself, as the embedded client and the Flight door append), with no
poll interval involved: the door used to look again every ``kafka_fetch_poll_seconds``
(10 ms) because the engine could not tell it about arrivals. Made huge, that interval
would have kept the fetch waiting for its whole ``max_wait_ms``.

Method: an empty topic; a raw Fetch (the door's codec over a socket) with the longest
wait the door allows. The engine's ``resolve_start`` is wrapped to signal once the
fetch has looked at the log and found nothing, so the append certainly comes while it
waits. The answer must hold the record, received well before the fetch's own deadline
(the socket's timeout is two thirds of it). The poll interval, if any is left, is set
to an hour.
"""

from __future__ import annotations

import socket
import struct
import threading
from typing import Any

import pytest

from odradek import limits
from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.api import ApiKey, decode_response, encode_request
from odradek.protocols.kafka.codec.records import decode_batches

FETCH_VERSION = 12


def _receive(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def test_an_append_through_another_door_wakes_a_waiting_fetch(
    kafka_door: Any, topic_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "kafka_fetch_poll_seconds", 3600.0, raising=False)
    engine = kafka_door.engine
    engine.create_topic(topic_name)
    looked = threading.Event()
    resolve_start = engine.resolve_start

    def watched(topic: str, start: Any) -> int:
        offset = resolve_start(topic, start)
        if topic == topic_name and start == "latest":
            looked.set()  # the fetch has seen the end of the log (nothing for it yet)
        return offset

    monkeypatch.setattr(engine, "resolve_start", watched)
    wait_ms = limits.kafka_fetch_wait_ms_max
    sock = socket.create_connection(("127.0.0.1", kafka_door.listener.port), timeout=wait_ms / 1000 * 2 / 3)
    request = m.FetchRequest(
        max_wait_ms=wait_ms,
        min_bytes=1,
        max_bytes=1 << 20,
        topics=(
            m.FetchTopic(
                topic=topic_name,
                partitions=(m.FetchPartition(partition=0, fetch_offset=0, partition_max_bytes=1 << 20),),
            ),
        ),
    )
    sock.sendall(encode_request(ApiKey.FETCH, FETCH_VERSION, 7, request))
    assert looked.wait(timeout=30), "the fetch never looked at the log"
    engine.append(topic_name, [{"value": b"arrived"}])
    size = struct.unpack(">i", _receive(sock, 4))[0]  # times out unless the append woke it
    correlation, response = decode_response(ApiKey.FETCH, FETCH_VERSION, _receive(sock, size))
    assert correlation == 7
    data = response.responses[0].partitions[0]
    assert data.error_code == 0 and data.high_watermark == 1
    (decoded,) = decode_batches(data.records or b"")
    assert decoded.records.column("value").to_pylist() == [b"arrived"]
    sock.close()
