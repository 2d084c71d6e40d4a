"""Stopping an agent while its object store is down.

Goal: an engine closed during a store outage, with unflushed appends on several topics,
returns after about one ``store_sync_timeout_seconds`` in all (not one per topic plus
one more for the journal), says in its log that it closed without committing the
journal (those writes were never acknowledged), and loses nothing it acknowledged.

Method: an embedded engine over objectfaults.FaultyObjectStore on a named memory store,
with a 3 s wait for the store; four topics each get an acknowledged append, then the
store goes down and one append per topic is written and left waiting for the store;
the engine is closed from the test's thread. The only bound on time is generous: the
close returns before two timeouts (before the fix it took more: one for the first topic
still waiting, one more for the journal at detach, then the upload threads' backoff
sleeps, which closing did not cut short). A new agent started once the store is back finds every
acknowledged record.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from stores import DEADLINE_SECONDS, read_all, wait_for

import odradek
from odradek.errors import OdradekError
from odradek.storage.agent import StoreSettings
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objectfaults import FaultyObjectStore
from odradek.storage.objects import RetryPolicy, open_store

WAIT_SECONDS = 3.0
SETTINGS = StoreSettings(flush_seconds=0.002, wait_seconds=WAIT_SECONDS)
RETRY = RetryPolicy(attempts=2, backoff_base_seconds=0.01, backoff_max_seconds=0.02)
TOPICS = [f"orders.t{number}" for number in range(4)]


@pytest.fixture
def memory_url() -> Iterator[str]:
    name = f"shutdown-{uuid.uuid4().hex}"
    yield f"memory://{name}"
    forget_memory_store(name)


def test_closing_during_an_outage_takes_about_one_timeout(
    memory_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = FaultyObjectStore(open_store(memory_url), seed=3, retry=RETRY)
    client = odradek.open(tmp_path / "agent", store=store, store_settings=SETTINGS)
    disk = client.engine.store.disk  # type: ignore[union-attr]
    acknowledged = {}
    for topic in TOPICS:
        client.create_topic(topic)
        acknowledged[topic] = client.append(topic, [{"key": b"k", "value": topic.encode()}]).base_offset
    store.go_down()
    failures: list[BaseException] = []
    successes: list[str] = []

    def append(topic: str) -> None:
        try:
            client.append(topic, [{"key": b"k", "value": b"unacknowledged"}])
            successes.append(topic)
        except OdradekError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=append, args=(topic,)) for topic in TOPICS]
    for thread in threads:
        thread.start()

    def all_written() -> bool:  # every topic holds a write the store has not taken
        pending = {path.split("/")[1] for path in disk.uncommitted() if path.startswith("topics/")}
        return len(pending) >= len(TOPICS)

    wait_for(all_written, "an unacknowledged write in every topic")
    caplog.set_level(logging.WARNING)
    started = time.monotonic()
    client.close()
    took = time.monotonic() - started
    for thread in threads:
        thread.join(DEADLINE_SECONDS)
    assert took < 2 * WAIT_SECONDS, f"closing took {took:.1f} s, {took / WAIT_SECONDS:.1f} timeouts"
    assert not successes, "an append was acknowledged while the store was down"
    assert len(failures) == len(TOPICS)
    assert any(
        "closed without committing the journal" in record.getMessage() and record.levelno == logging.ERROR
        for record in caplog.records
    ), [record.getMessage() for record in caplog.records]
    store.come_back()
    with odradek.open(tmp_path / "next", store=memory_url, store_settings=SETTINGS) as restarted:
        for topic in TOPICS:
            table = read_all(restarted, topic)
            values = table.column("value").to_pylist()
            assert values[acknowledged[topic]] == topic.encode()
