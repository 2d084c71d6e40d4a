"""Tailing a topic with Server-Sent Events.

Goal: a tail delivers records appended through the native (Flight) client as they
come, one event per record whose id is its offset; a client that reconnects with
Last-Event-ID resumes right after it, losing and repeating nothing; a quiet stream
sends heartbeats; a limit ends the stream with an ``end`` event, as does a server that
stops; event streams are bounded per principal (503 with Retry-After beyond).
Method: the real listener and a real Flight door in-process over one node; the tail
read with http.client; every wait is for an event, with a generous socket deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from http_api_client import Api, EventReader

import odradek
from odradek import limits
from odradek.protocols.flight.server import FlightService


@pytest.fixture
def native(api: Api) -> Iterator[Any]:
    server = FlightService(api.node, "grpc://127.0.0.1:0")
    client = odradek.connect(f"grpc://127.0.0.1:{server.port}")
    yield client
    client.close()
    server.drain(5.0)


def test_a_tail_receives_native_appends_and_resumes_from_last_event_id(api: Api, native: Any) -> None:
    native.create_topic("orders")
    native.append("orders", [{"key": "a", "value": "before"}])
    tail = EventReader(api.listener.port, "/v1/topics/orders/events")  # from the end
    assert tail.status == 200 and tail.headers["Content-Type"] == "text/event-stream"
    native.append("orders", [{"key": "a", "value": "one", "headers": {"h": b"1"}}, {"value": "two"}])
    first, second = tail.records(2)
    assert (first["id"], first["data"]["value"], first["data"]["version"]) == ("1", "one", 2)
    assert first["data"]["headers"] == {"h": "1"}
    assert (second["id"], second["data"]["value"]) == ("2", "two")
    tail.close()
    native.append("orders", [{"value": "three"}, {"value": "four"}])
    resumed = EventReader(api.listener.port, "/v1/topics/orders/events", {"Last-Event-ID": "1"})
    assert [event["data"]["value"] for event in resumed.records(3)] == ["two", "three", "four"]
    resumed.close()


def test_a_tail_starts_where_asked_and_ends_after_its_limit(api: Api, native: Any) -> None:
    native.create_topic("t")
    native.append("t", [{"value": str(n)} for n in range(5)])
    tail = EventReader(api.listener.port, "/v1/topics/t/events?offset=1&limit=3&value_encoding=base64")
    assert [event["data"]["value_b64"] for event in tail.records(3)] == ["MQ==", "Mg==", "Mw=="]
    end = tail.next()
    assert end["event"] == "end" and end["data"]["next_offset"] == 4
    assert tail.next() == {}  # and the connection closes
    tail.close()


def test_a_quiet_tail_sends_heartbeats(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "http_sse_heartbeat_seconds", 0.05)
    api.ok("POST", "/v1/topics", {"name": "quiet"})
    tail = EventReader(api.listener.port, "/v1/topics/quiet/events")
    assert tail.next() == {"retry": "1000"}
    assert tail.next() == {"comment": "heartbeat"}
    tail.close()


def test_a_stopping_server_ends_its_tails_cleanly(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "t"})
    tail = EventReader(api.listener.port, "/v1/topics/t/events")
    assert tail.next() == {"retry": "1000"}
    closer = threading.Thread(target=api.listener.close)
    closer.start()
    end = tail.next()
    assert end["event"] == "end" and "shutting down" in end["data"]["reason"]
    assert tail.next() == {}
    closer.join()
    assert api.listener.api is not None and api.listener.api.streams.open == 0
    tail.close()


def test_a_deleted_topic_ends_its_tail_with_an_error_event(api: Api) -> None:
    api.ok("POST", "/v1/topics", {"name": "t"})
    tail = EventReader(api.listener.port, "/v1/topics/t/events")
    assert tail.next() == {"retry": "1000"}
    api.ok("DELETE", "/v1/topics/t")
    error = tail.next()
    assert error["event"] == "error" and error["data"]["code"] == "topic_not_found"
    tail.close()


def test_event_streams_are_bounded_per_principal(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    assert api.listener.api is not None
    monkeypatch.setattr(api.listener.api.streams, "per_owner_max", 2)
    api.ok("POST", "/v1/topics", {"name": "t"})
    tails = [EventReader(api.listener.port, "/v1/topics/t/events") for _ in range(2)]
    for tail in tails:
        assert tail.next() == {"retry": "1000"}
    status, headers, error = api.call("GET", "/v1/topics/t/events")
    assert status == 503 and error["code"] == "unavailable" and headers["Retry-After"] == "1"
    assert "per principal" in error["message"]
    tails.pop().close()
    # The slot comes back once the server notices the closed stream (at its next write).
    api.ok("POST", "/v1/topics/t/records", {"records": [{"value": "wake"}]})
    reopened = _open_when_free(api)
    assert reopened.records(1)[0]["data"]["value"] == "wake"
    reopened.close()
    for tail in tails:
        tail.close()


def _open_when_free(api: Api) -> EventReader:
    """A tail from the start, retried while the server still counts the closed one."""
    import time

    deadline = time.monotonic() + 60
    while True:
        tail = EventReader(api.listener.port, "/v1/topics/t/events?start=earliest")
        if tail.status == 200 or time.monotonic() > deadline:
            assert tail.status == 200
            return tail
        tail.close()
        time.sleep(0.05)
