"""Two agents on one store prefix never both acknowledge a write.

Goal: a second engine attached to the store of a first one that is appending from
several threads fences it: the first one's appends start failing with the non-retryable
``Fenced`` error (said once in its log, at error level), every append it acknowledged is
in the second one's log exactly once with dense offsets, it keeps serving reads, and
its refusal crosses the doors as itself (Flight: ``odradek.Fenced``; Kafka: a
non-retriable code; registry: an error naming the takeover).

Method: two embedded engines in one process on different cache directories and one
store (a directory, and moto's S3 server), four appender threads on the first recording
every acknowledged (offset, key, value) in a history that is compared with the second
engine's log; no timing assertion (conditions are awaited with generous deadlines).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from stores import History, StoreURL, read_all, wait_for

import odradek
from odradek.errors import Fenced, StorageError
from odradek.protocols.flight.server import FlightService
from odradek.protocols.kafka.broker import error_code_of
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.registry.routes import _translate
from odradek.storage.agent import StoreSettings
from odradek.storage.objects import open_store

SETTINGS = StoreSettings(flush_seconds=0.002)
WRITERS = 4
ACKS_BEFORE_TAKEOVER = 300


def _open(directory: Path, store: StoreURL) -> odradek.EmbeddedClient:
    # The store object carries the S3 options in this process (a server would read AWS_*).
    return odradek.open(
        directory, store=open_store(store.url, options=store.options), store_settings=SETTINGS
    )


def _append_until_fenced(
    client: odradek.EmbeddedClient, writer: int, history: History, fenced: list[Fenced]
) -> None:
    sequence = 0
    while True:
        keys = [b"key-%d" % ((sequence + index) % 13) for index in range(1 + sequence % 3)]
        values = [b"w%d-s%d-r%d" % (writer, sequence, index) for index in range(len(keys))]
        try:
            result = client.append("orders", [{"key": k, "value": v} for k, v in zip(keys, values)])
        except Fenced as exc:
            fenced.append(exc)
            return
        except Exception as exc:  # noqa: BLE001  (anything else fails the test)
            history.fail(exc)
            return
        history.record(result.base_offset, keys, values)
        sequence += 1


def test_a_second_agent_fences_the_first_while_it_appends(
    store_url: StoreURL, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    first = _open(tmp_path / "first", store_url)
    first.create_topic("orders")
    history = History()
    fenced: list[Fenced] = []
    threads = [
        threading.Thread(target=_append_until_fenced, args=(first, writer, history, fenced))
        for writer in range(WRITERS)
    ]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(history.acked) >= ACKS_BEFORE_TAKEOVER or bool(history.failures), "appends")
    second = _open(tmp_path / "second", store_url)
    try:
        for thread in threads:
            thread.join(timeout=60)
        assert not any(thread.is_alive() for thread in threads), "an appender never saw the fence"
        assert not history.failures, history.failures
        assert len(fenced) == WRITERS
        assert all(not error.retryable and "another agent" in error.message for error in fenced)
        assert len(history.acked) >= ACKS_BEFORE_TAKEOVER
        # Every acknowledged record is in the second agent's log exactly once.
        history.check(read_all(second, "orders"))
        # The first keeps serving reads (what it acknowledged at least), refuses writes.
        served = read_all(first, "orders").column("value").to_pylist()
        assert {value for _, _, value in history.acked} <= set(served)
        with pytest.raises(Fenced):
            first.append("orders", [{"key": b"late", "value": b"late"}])
        with pytest.raises(Fenced):
            first.create_topic("late")
        # The second accepts writes after the first one's records.
        result = second.append("orders", [{"key": b"key-0", "value": b"after"}])
        assert result.base_offset == len(read_all(second, "orders")) - 1
    finally:
        first.close()  # a fenced agent closes without raising
        second.close()
    takeovers = [
        record
        for record in caplog.records
        if record.levelno >= logging.ERROR and "another agent took over" in record.getMessage()
    ]
    assert len(takeovers) == 1, [record.getMessage() for record in takeovers]


def test_a_fenced_agent_refuses_through_flight_as_fenced(tmp_path: Path) -> None:
    store = StoreURL(f"file://{tmp_path / 'store'}", {}, {})
    first = _open(tmp_path / "first", store)
    first.create_topic("orders")
    first.append("orders", [{"key": b"a", "value": b"1"}])
    service = FlightService(first.node, "grpc://127.0.0.1:0")
    second = _open(tmp_path / "second", store)
    try:
        with odradek.connect(f"grpc://127.0.0.1:{service.port}") as remote:
            with pytest.raises(odradek.Fenced) as caught:
                # Its first append may be the one whose flush meets the fence.
                for _ in range(3):
                    remote.append("orders", [{"key": b"a", "value": b"2"}])
            assert caught.value.retryable is False
            assert caught.value.code == "fenced"
            # Reads through the door still work.
            assert read_all(remote, "orders").column("value").to_pylist()[0] == b"1"
    finally:
        service.drain(5.0)
        first.close()
        second.close()


def test_the_kafka_door_and_the_registry_name_a_fenced_agent() -> None:
    error = Fenced("another agent took over the store")
    assert error_code_of(error) == ErrorCode.BROKER_NOT_AVAILABLE  # not retriable
    assert error_code_of(StorageError("disk full")) == ErrorCode.KAFKA_STORAGE_ERROR  # retriable
    answer = _translate(error)
    assert answer.status == 500
    assert b"another agent took over" in answer.body
