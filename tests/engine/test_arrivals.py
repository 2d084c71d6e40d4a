"""The engine's arrival hook: what it reports, when, and with which locks released.

Goal: whoever serves the engine (consumer groups, the Kafka door) learns of every change
a reader waits for without polling: records made durable (topic and durable offset),
topics created, deleted or changed, and the engine closing, last. A listener is called
after the change's locks are released, a listener that raises fails nothing, and a
removed listener hears nothing more.

Method: an engine in a temp dir; listeners record the events and, while being called,
whether the engine's topics lock (create/delete) or the topic's writer lock is held.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from odradek.engine import Engine
from odradek.engine.arrivals import CHANGED, CLOSING, CREATED, DELETED, DURABLE, Arrival


def test_listeners_hear_every_change_after_its_locks_are_released(tmp_path: Path) -> None:
    engine = Engine(tmp_path / "data", fsync=False)
    heard: list[tuple[str, str | None, int]] = []
    held: list[str] = []

    def listener(arrival: Arrival) -> None:
        heard.append((arrival.kind, arrival.topic, arrival.offset))
        if engine._topics_lock._is_owned():  # type: ignore[attr-defined]
            held.append(f"topics lock during {arrival.kind}")
        topic = engine._topics.get(arrival.topic or "")
        if topic is not None and topic._write_lock.locked():
            held.append(f"writer lock during {arrival.kind}")

    engine.on_arrival(listener)
    engine.create_topic("orders")
    engine.append("orders", [{"value": b"a"}, {"value": b"b"}])
    engine.create_topic("typed")
    engine.set_schema("typed", {"type": "object", "properties": {"id": {"type": "integer"}}})
    engine.delete_topic("orders")
    engine.close()
    assert heard == [
        (CREATED, "orders", 0),
        (DURABLE, "orders", 2),
        (CREATED, "typed", 0),
        (CHANGED, "typed", 0),
        (DELETED, "orders", 0),
        (CLOSING, None, 0),
    ]
    assert held == []


def test_a_failing_listener_fails_nothing_and_a_removed_one_hears_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = Engine(tmp_path / "data", fsync=False)
    heard: list[str] = []

    def broken(arrival: Arrival) -> None:
        raise RuntimeError("a listener's bug")

    engine.on_arrival(broken)
    remove = engine.on_arrival(lambda arrival: heard.append(arrival.kind))
    engine.create_topic("t")
    with caplog.at_level(logging.ERROR, logger="odradek.engine.arrivals"):
        assert engine.append("t", [{"value": b"x"}]).base_offset == 0  # acknowledged regardless
    assert "an arrival listener failed" in caplog.text
    remove()
    engine.append("t", [{"value": b"y"}])
    engine.close()
    assert heard == [CREATED, DURABLE]
    assert engine.closed
