"""The chaos workers, the prober and the read-back, against an embedded engine whose
answers get lost: a correct engine passes the checker.

Goal: the workers record every operation as what it implies (a conflict is a ``fail``,
a lost answer an ``info``), retry idempotent appends with the same producer, sequence
and record (and never retry a plain append with the same record), so that the history
of a correct engine, read back in full, has no anomaly, while retries and races really
happen; the prober finds the first successful append after a moment, or says there was
none. Method: ``odradek.open`` behind a client wrapper that, at random (seeded), loses
an append before it reaches the engine or loses its answer after it was written; four
workers run until the history holds enough operations of every kind (a condition with a
generous deadline), then the topics are read back and checked.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest

import odradek
from odradek import api
from odradek.chaos.checker import check
from odradek.chaos.history import History
from odradek.chaos.processes import wait_until
from odradek.chaos.workload import (
    TOPIC_HOT,
    TOPIC_IDEMPOTENT,
    TOPIC_PROBE,
    TOPICS,
    Prober,
    Worker,
    WorkloadSettings,
    create_topics,
    lanes,
    probe_topics,
    read_back,
    workload_topics,
)
from odradek.errors import Unavailable
from odradek.types import AppendResult

DEADLINE_SECONDS = 120.0


class LossyClient:
    """The embedded client, with appends lost before or after they are written, and
    closing left to the test."""

    def __init__(self, inner: api.Client, seed: int, loss: float = 0.15) -> None:
        self.inner = inner
        self.loss = loss
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.lost_before = 0
        self.lost_after = 0

    def _draw(self) -> float:
        with self.lock:
            return self.random.random()

    def append(self, topic: str, records: Any, **options: Any) -> AppendResult:
        draw = self._draw()
        if draw < self.loss:
            self.lost_before += 1
            raise Unavailable("injected: the append never reached the server")
        result = self.inner.append(topic, records, **options)
        if draw < 2 * self.loss:
            self.lost_after += 1
            raise Unavailable("injected: the answer was lost")
        return result

    def key_version(self, topic: str, key: api.Key) -> int:
        if self._draw() < self.loss:
            raise Unavailable("injected: the read never reached the server")
        version = self.inner.key_version(topic, key)
        time.sleep(0.001)  # the answer travels: other workers append meanwhile (races)
        return version

    def close(self) -> None:
        """The engine is the test's to close."""


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[api.Client]:
    client = odradek.open(tmp_path / "data")
    create_topics(client)
    yield client
    client.close()


def test_workers_on_a_correct_engine_leave_a_history_without_anomaly(engine: api.Client) -> None:
    lossy = LossyClient(engine, seed=3)
    history = History()
    settings = WorkloadSettings(workers=4, keys=50, hot_keys=2, retries_max=20)
    workers = [Worker(number, history, lambda: lossy, settings, seed=9) for number in range(settings.workers)]  # type: ignore[arg-type, return-value]
    for worker in workers:
        worker.start()

    def enough() -> bool:
        counts = history.counts()
        return counts["ok"] >= 1500 and counts["fail"] >= 20 and counts["info"] >= 100

    try:
        wait_until(enough, DEADLINE_SECONDS, "enough operations of every outcome")
    finally:
        for worker in workers:
            worker.stop.set()
        for worker in workers:
            worker.thread.join(DEADLINE_SECONDS)
    assert not any(worker.thread.is_alive() for worker in workers)
    assert [worker.error for worker in workers] == [None] * 4
    logs, bounds = read_back(engine)
    table = history.table()
    report = check(table, logs, bounds=bounds)
    assert report.valid, report.to_text()
    # What happened is what the test is for: races lost, answers lost, retries answered.
    appends = table.filter(pc.equal(table.column("kind"), "append"))
    hot = appends.filter(pc.equal(appends.column("topic"), TOPIC_HOT))
    assert pc.sum(pc.starts_with(pc.fill_null(hot.column("error"), ""), "conflict")).as_py() > 0
    idempotent = appends.filter(pc.equal(appends.column("topic"), TOPIC_IDEMPOTENT))
    retried = idempotent.group_by("value").aggregate([("id", "count")])
    assert pc.max(retried.column("id_count")).as_py() > 1, "some idempotent append was retried"
    assert lossy.lost_after > 0 and lossy.lost_before > 0
    assert report.topics[TOPIC_IDEMPOTENT]["records"] == pc.count_distinct(
        idempotent.filter(pc.equal(idempotent.column("outcome"), "ok")).column("value")
    ).as_py() + _visible_in_flight(idempotent, logs[TOPIC_IDEMPOTENT])


def _visible_in_flight(appends: Any, log: Any) -> int:
    """Idempotent values never acknowledged but written (their every answer lost)."""
    acked = appends.filter(pc.equal(appends.column("outcome"), "ok")).column("value")
    visible = log.column("value").cast("string")
    return int(pc.sum(pc.invert(pc.is_in(visible, value_set=acked))).as_py() or 0)


def test_a_plain_append_retried_with_its_record_would_be_caught(engine: api.Client) -> None:
    """The checker is not blind to the worker's own mistakes: an unknown-outcome plain
    append sent again with the same record is a duplicate."""
    history = History()
    operation = history.invoke_append("w0", "chaos.keys", "k", "w0-0")
    engine.append("chaos.keys", [{"key": b"k", "value": b"w0-0"}])
    history.info(operation, "unavailable: lost")
    operation = history.invoke_append("w0", "chaos.keys", "k", "w0-0")
    result = engine.append("chaos.keys", [{"key": b"k", "value": b"w0-0"}])
    history.ok(operation, offset=result.base_offset, version=result.versions[b"k"])
    logs, bounds = read_back(engine)
    with pytest.raises(odradek.InvalidRequest, match="unique per append"):
        check(history.table(), logs, bounds=bounds)


def test_the_prober_finds_the_first_append_after_a_moment(engine: api.Client) -> None:
    history = History()
    client = LossyClient(engine, seed=1, loss=0.0)
    prober = Prober(history, lambda: ["one", "two"], lambda url: client, interval_seconds=0.01)  # type: ignore[arg-type, return-value]
    since = time.monotonic()
    served = prober.served_after(since, DEADLINE_SECONDS)
    assert served is not None and served >= 0
    assert prober.join(DEADLINE_SECONDS) == 0
    logs, _ = read_back(engine, [TOPIC_PROBE])
    assert logs[TOPIC_PROBE].num_rows >= 1


def test_the_prober_says_when_nothing_succeeded(engine: api.Client) -> None:
    history = History()

    def unreachable(url: str) -> api.Client:
        raise Unavailable(f"{url} refused the connection")

    prober = Prober(history, lambda: ["grpc://127.0.0.1:1"], unreachable, interval_seconds=0.01)
    assert prober.served_after(time.monotonic(), 0.2) is None
    assert prober.join(DEADLINE_SECONDS) == 0
    table = history.table()
    assert table.num_rows > 0 and set(table.column("outcome").to_pylist()) == {"info"}


def test_a_topic_that_is_gone_reads_back_empty(engine: api.Client) -> None:
    engine.delete_topic(TOPIC_PROBE)
    logs, bounds = read_back(engine)
    assert logs[TOPIC_PROBE].num_rows == 0 and TOPIC_PROBE not in bounds
    assert set(logs) == set(TOPICS)


def test_lanes_give_topics_of_each_kind_per_lane_probes_first() -> None:
    assert workload_topics(1) == TOPICS and probe_topics(1) == (TOPIC_PROBE,)
    topics = workload_topics(3)
    assert topics[:3] == probe_topics(3) == ("chaos.probe.0", "chaos.probe.1", "chaos.probe.2")
    assert topics[3:6] == ("chaos.keys.0", "chaos.keys.1", "chaos.keys.2")
    assert len(set(topics)) == 12
    assert {topic for lane in lanes(3) for topic in (lane.keys, lane.hot, lane.idempotent)} == set(topics[3:])
    with pytest.raises(odradek.InvalidRequest, match="lanes"):
        WorkloadSettings(lanes=0)


def test_workers_over_lanes_keep_a_client_and_a_producer_sequence_per_topic(tmp_path: Path) -> None:
    engine = odradek.open(tmp_path / "lanes")
    topics = workload_topics(3)
    create_topics(engine, topics)
    lossy = LossyClient(engine, seed=5)
    connections: list[int] = []
    history = History()
    settings = WorkloadSettings(workers=2, keys=20, hot_keys=2, retries_max=20, lanes=3)

    def connect() -> api.Client:
        connections.append(1)
        return lossy  # type: ignore[return-value]

    workers = [Worker(number, history, connect, settings, seed=4) for number in range(settings.workers)]
    worked = [topic for topic in topics if not topic.startswith(TOPIC_PROBE)]

    def every_topic_written() -> bool:
        table = history.table()
        done = table.filter(pc.equal(table.column("outcome"), "ok"))
        return set(done.column("topic").to_pylist()) >= set(worked) and done.num_rows >= 600

    try:
        for worker in workers:
            worker.start()
        wait_until(every_topic_written, DEADLINE_SECONDS, "acknowledged appends to every lane's topics")
    finally:
        for worker in workers:
            worker.stop.set()
        for worker in workers:
            worker.thread.join(DEADLINE_SECONDS)
    try:
        assert [worker.error for worker in workers] == [None, None]
        assert [sorted(worker.clients) for worker in workers] == [sorted(worked)] * 2
        assert len(connections) == 2 * len(worked)
        logs, bounds = read_back(engine, topics)
        table = history.table()
        report = check(table, logs, bounds=bounds)
        assert report.valid, report.to_text()
        # A producer's sequences are per topic: none was refused for a gap.
        idempotent = table.filter(pc.is_valid(table.column("producer")))
        assert set(idempotent.column("topic").to_pylist()) == {lane.idempotent for lane in lanes(3)}
        assert "fail" not in idempotent.column("outcome").to_pylist()
    finally:
        engine.close()
