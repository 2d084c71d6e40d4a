"""Quix Streams on the Kafka door: a stateful app restores its state and counts exactly once.

Goal: Quix Streams 3.28 keeps a stateful app's state in a RocksDB store backed by a
changelog topic it creates itself (compacted). On an empty server the app must start
(its changelog auto-created compacted), count, and after a SIGKILL restore its counts
from the changelog alone and go on with correct counts; with
``processing_guarantee="exactly-once"`` a kill in the middle of the stream must leave
every input counted exactly once in the output topic. The topics an app declares are
created with the partitions and config it asks for; a static member (``group.instance.id``)
killed and restarted gets its partition back without a rebalance.

Method: a real `odradek serve` process; the app (quix_counter.py) runs as a subprocess
with the interpreter of the Quix side environment (``.venv-quix``, made by
``./dev setup`` from tests/protocols/kafka/requirements-quix.txt: Quix needs
confluent-kafka < 2.13, the project's kafka extra pins a newer one). Each restart gets
an empty state directory, so only the changelog can restore the state. Words are
produced and the output read with the project's confluent-kafka; the app's
``COUNT word n`` lines and the group's committed offsets are awaited with generous
deadlines, never a sleep.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "cli"))

from odradek_process import Server, run
from word_apps import WORDS, WordCountApp, produce

from odradek.ports import free_port

kafka = pytest.importorskip("confluent_kafka")
kafka_admin = pytest.importorskip("confluent_kafka.admin")

APP = Path(__file__).with_name("quix_counter.py")
QUIX_PYTHON = Path(__file__).parents[3] / ".venv-quix" / "bin" / "python"
CHANGELOG = "changelog__quixcount--words--default"
DEADLINE_SECONDS = 90.0
PARTITION_LINE = re.compile(rb"COUNT (\w+) \d+ (\d+)")

pytestmark = pytest.mark.skipif(
    not QUIX_PYTHON.exists(), reason="the Quix side environment is missing: run ./dev setup"
)


class QuixApp(WordCountApp):
    """The app as a subprocess of the side environment (word_apps.py)."""

    def __init__(
        self,
        bootstrap: str,
        state_dir: Path,
        guarantee: str,
        commit_seconds: float,
        env: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            [str(QUIX_PYTHON), str(APP), bootstrap, str(state_dir), guarantee, str(commit_seconds)],
            DEADLINE_SECONDS,
            env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})},
        )

    def partitions(self) -> dict[str, int]:
        """word -> the partition of the latest record of it the app counted."""
        found = (PARTITION_LINE.search(line) for line in list(self.output))
        return {m.group(1).decode(): int(m.group(2)) for m in found if m}


def committed(bootstrap: str) -> int:
    consumer = kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "quixcount"})
    try:
        (position,) = consumer.committed([kafka.TopicPartition("words", 0)], timeout=30)
        return int(position.offset)
    finally:
        consumer.close()


def wait_committed(bootstrap: str, offset: int, app: QuixApp) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while committed(bootstrap) < offset:
        assert app.process.poll() is None, app.tail()
        assert time.monotonic() < deadline, f"group quixcount never committed {offset}:\n{app.tail()}"
        time.sleep(0.1)


def read_committed(bootstrap: str, topic: str, count: int) -> list[tuple[str, int]]:
    """The first ``count`` records of ``topic`` as a read_committed consumer sees them."""
    consumer = kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "quix-check",
            "isolation.level": "read_committed",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([kafka.TopicPartition(topic, 0, 0)])
    records: list[tuple[str, int]] = []
    deadline = time.monotonic() + DEADLINE_SECONDS
    try:
        while len(records) < count and time.monotonic() < deadline:
            for message in consumer.consume(count - len(records), timeout=0.5):
                assert message.error() is None, message.error()
                records.append((message.key().decode(), int(message.value())))
    finally:
        consumer.close()
    return records


def described(server: Server, topic: str) -> dict[str, object]:
    answer = run("topic", "describe", topic, "--format", "json", server=server)
    assert answer.returncode == 0, answer.stderr
    result: dict[str, object] = json.loads(answer.stdout)
    return result


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    port = free_port()
    started = Server(tmp_path / "data", "--kafka-listen", f"127.0.0.1:{port}")
    started.kafka = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield started
    if started.process.poll() is None:
        started.stop()


@pytest.fixture
def bootstrap(server: Server) -> str:
    address: str = server.kafka  # type: ignore[attr-defined]
    admin = kafka_admin.AdminClient({"bootstrap.servers": address})
    for future in admin.create_topics([kafka_admin.NewTopic("words", 1, 1)]).values():
        future.result(30)
    return address


@pytest.mark.compat("quix-streams", "produce")
@pytest.mark.compat("quix-streams", "consume")
@pytest.mark.compat("quix-streams", "groups")
@pytest.mark.compat("quix-streams", "compaction")
def test_quix_state_restores_from_its_compacted_changelog(
    server: Server, bootstrap: str, tmp_path: Path
) -> None:
    produce(bootstrap, 10)
    app = QuixApp(bootstrap, tmp_path / "state-1", "at-least-once", 0.2)
    try:
        assert app.wait_for({word: 10 for word in WORDS}) == {word: 10 for word in WORDS}
        # The checkpoint flushed the changelog before it committed the input's offset.
        wait_committed(bootstrap, 30, app)
    finally:
        app.kill()
    config = described(server, CHANGELOG)["config"]
    assert isinstance(config, dict) and config["cleanup"] == "compact"
    produce(bootstrap, 3)
    # An empty state directory: only the changelog can give the app its counts back.
    app = QuixApp(bootstrap, tmp_path / "state-2", "at-least-once", 0.2)
    try:
        app.wait_for({word: 13 for word in WORDS})
        assert sorted(app.lines) == sorted((word, n) for word in WORDS for n in (11, 12, 13))
    finally:
        app.kill()


@pytest.mark.compat("quix-streams", "transactions")
def test_quix_exactly_once_counts_every_input_once_across_a_kill(
    server: Server, bootstrap: str, tmp_path: Path
) -> None:
    rounds = 100
    produce(bootstrap, rounds)
    app = QuixApp(bootstrap, tmp_path / "state-1", "exactly-once", 0.2)
    try:
        app.wait_for({word: rounds for word in WORDS})
        wait_committed(bootstrap, rounds * len(WORDS), app)
    finally:
        app.kill()
    produce(bootstrap, rounds)
    # A commit every 2 s: the kill, as soon as a few counts are printed, comes in the
    # middle of an open transaction (its outputs and changelog updates are dropped).
    app = QuixApp(bootstrap, tmp_path / "state-2", "exactly-once", 2.0)
    try:
        app.wait_for({"apple": rounds + 5})
    finally:
        app.kill()
    # Each start restores the counts from the changelog (an empty state directory), then
    # commits transactions on top of it.
    app = QuixApp(bootstrap, tmp_path / "state-3", "exactly-once", 0.2)
    try:
        app.wait_for({word: 2 * rounds for word in WORDS})
        wait_committed(bootstrap, 2 * rounds * len(WORDS), app)
        # The app goes on after its checkpoints: the state it flushed with them is sound.
        produce(bootstrap, 1)
        app.wait_for({word: 2 * rounds + 1 for word in WORDS})
        wait_committed(bootstrap, (2 * rounds + 1) * len(WORDS), app)
    finally:
        app.kill()
    # Every input read once (the offsets committed with the transactions): the output
    # holds exactly one count per input, 1 to 201 for each word, nothing twice.
    total = (2 * rounds + 1) * len(WORDS)
    assert described(server, "counts")["next_offset"] == total
    output = read_committed(bootstrap, "counts", total)
    for word in WORDS:
        assert [n for w, n in output if w == word] == list(range(1, 2 * rounds + 2)), word


@pytest.mark.compat("quix-streams", "admin")
def test_quix_creates_the_topics_it_declares_with_their_config(
    server: Server, bootstrap: str, tmp_path: Path
) -> None:
    """``app.topic(name, config=TopicConfig(...))``: Quix creates the topic at start
    through CreateTopics with the partitions and config it asks for."""
    produce(bootstrap, 1)
    app = QuixApp(bootstrap, tmp_path / "state", "at-least-once", 0.2)
    try:
        app.wait_for({word: 1 for word in WORDS})  # the app is up: its topics exist
    finally:
        app.kill()
    admin = kafka_admin.AdminClient({"bootstrap.servers": bootstrap})
    assert len(admin.list_topics(timeout=30).topics["quix-declared"].partitions) == 3
    resource = kafka_admin.ConfigResource(kafka_admin.ResourceType.TOPIC, "quix-declared")
    configs = admin.describe_configs([resource])[resource].result(30)
    wanted = {"retention.ms": "21600000", "cleanup.policy": "compact,delete", "segment.ms": "3600000"}
    assert {name: configs[name].value for name in wanted} == wanted
    config = described(server, "quix-declared")["config"]
    assert isinstance(config, dict)
    assert (config["retention_seconds"], config["cleanup"], config["segment_seconds"]) == (
        6 * 3600,
        "compact,delete",
        3600,
    )


@pytest.mark.compat("quix-streams", "static groups")
def test_a_restarted_static_quix_app_gets_its_partition_back(server: Server, tmp_path: Path) -> None:
    """Two apps in group ``quixcount`` with ``group.instance.id`` over a topic of two
    partitions: one killed with SIGKILL and restarted with the same instance id (and an
    empty state directory) gets its partition back at once, without a rebalance: the
    generation does not move and each partition is counted by the app that had it."""
    address: str = server.kafka  # type: ignore[attr-defined]
    admin = kafka_admin.AdminClient({"bootstrap.servers": address})
    for future in admin.create_topics([kafka_admin.NewTopic("words", 2, 1)]).values():
        future.result(30)
    producer = kafka.Producer({"bootstrap.servers": address})
    probes = iter(range(1_000_000))

    def start(name: str) -> QuixApp:
        state = tmp_path / f"state-{name}-{next(probes)}"
        return QuixApp(address, state, "at-least-once", 0.2, env={"QUIX_INSTANCE": f"quix-{name}"})

    apps = {name: start(name) for name in ("a", "b")}

    def owners() -> dict[int, str]:
        """Produce a probe word to each partition until both were counted; by whom."""
        deadline = time.monotonic() + DEADLINE_SECONDS
        while True:
            words = {partition: f"probe{next(probes)}" for partition in (0, 1)}
            for partition, word in words.items():
                producer.produce("words", key=word.encode(), value=word.encode(), partition=partition)
            assert producer.flush(30) == 0
            seen: dict[int, str] = {}
            until = time.monotonic() + 2.0
            while time.monotonic() < until and len(seen) < 2:
                for name, app in apps.items():
                    assert app.process.poll() is None, app.tail()
                    counted = app.partitions()
                    seen.update({p: name for p, word in words.items() if counted.get(word) == p})
                time.sleep(0.05)
            if len(seen) == 2:
                return seen
            assert time.monotonic() < deadline, [app.tail() for app in apps.values()]

    def group_state() -> tuple[int, str]:
        answer = json.loads(run("group", "describe", "quixcount", "--format", "json", server=server).stdout)
        return answer["options"]["generation"], answer["state"]

    try:
        before = owners()
        deadline = time.monotonic() + DEADLINE_SECONDS
        while sorted(before.values()) != ["a", "b"]:  # until both joined: one partition each
            assert time.monotonic() < deadline, before
            before = owners()
        generation, state = group_state()
        assert state == "Stable"
        victim = before[1]
        apps[victim].kill()
        apps[victim] = start(victim)
        assert owners() == before
        assert group_state() == (generation, "Stable")
    finally:
        for app in apps.values():
            app.kill()
