"""kafkajs (2.2.4, from npm) against a real `odradek serve`.

Goal: the Node.js client most JavaScript services use works unchanged: produce keyed
records with headers and read them back in a consumer group, with the admin client's
lag at zero once everything is read (committed offsets equal each partition's end);
two members of one group share a topic's partitions and read each record once; admin
createTopics, fetchTopicMetadata, listTopics and deleteTopics; SASL PLAIN and SCRAM
(a wrong password refused as an authentication error); transactions (one
committed, one aborted, one committing a group's offsets with sendOffsets) of which a
read_committed consumer sees exactly the committed records, where kafkajs used to fail
with a misleading KafkaJSGroupCoordinatorNotFound; a producer fenced by a second one
with the same transactional id is refused with the broker's reason (INVALID_PRODUCER_EPOCH)
and none of its records is read; a compacted topic created through
kafkajs's admin (cleanup.policy=compact), refusing keyless records, read back after a
compaction with gaps and each key's latest value.

Method: `odradek serve` runs as a subprocess (one per module, Kafka door on a free port,
3 partitions per auto-created topic; a second one with ``--auth`` and a user added
before it starts; the compaction test uses the in-process door of conftest instead,
to compact at once); each test runs a scenario of js/scenarios.js with
Node (`node scenarios.js NAME JSON`), which prints what kafkajs saw as JSON. Skipped
when Node or the npm package is missing (`./dev setup` installs Debian's nodejs and npm
and runs `npm ci` in js/).
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

JS = Path(__file__).parent / "js"
NODE = shutil.which("node") or shutil.which("nodejs")
KAFKAJS = JS / "node_modules" / "kafkajs" / "package.json"
PARTITIONS = 3
READY_SECONDS_MAX = 60.0
SCENARIO_SECONDS_MAX = 120.0  # a scenario's own waits give up after 30 s each

pytestmark = pytest.mark.skipif(
    NODE is None or not KAFKAJS.exists(),
    reason="Node.js or kafkajs is missing (./dev setup: apt nodejs npm, npm ci in tests/protocols/kafka/js)",
)


class Serve:
    """One `odradek serve` subprocess with its Kafka door on a free loopback port."""

    def __init__(self, data_dir: Path, *options: str) -> None:
        command = [
            sys.executable,
            "-m",
            "odradek.cli.main",
            "serve",
            "--data-dir",
            str(data_dir),
            "--no-fsync",
            "--kafka-partitions",
            str(PARTITIONS),
            *("--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"),
            *("--registry-listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"),
            *options,
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.bootstrap = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + READY_SECONDS_MAX
            while time.monotonic() < deadline and self.process.poll() is None:
                if not selector.select(timeout=0.5):
                    continue
                line = self.process.stdout.readline().decode()
                match = re.search(r"ready .*kafka=(\S+)", line)
                if match:
                    return match.group(1)
        self.stop()
        raise AssertionError("odradek serve did not print its ready line")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            _, errors = self.process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, errors = self.process.communicate()
        return errors.decode(errors="replace")


@pytest.fixture(scope="module")
def serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    server = Serve(tmp_path_factory.mktemp("kafkajs") / "data")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sasl_serve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Serve]:
    """A server that requires authentication, with the user alice added before it starts."""
    data_dir = tmp_path_factory.mktemp("kafkajs-sasl") / "data"
    added = subprocess.run(
        [sys.executable, "-m", "odradek.cli.main", "user", "add", "alice", "--data-dir", str(data_dir)],
        input=b"alice-secret\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert added.returncode == 0, added.stderr.decode()
    server = Serve(data_dir, "--auth")
    try:
        yield server
    finally:
        server.stop()


def run_scenario(serve: Serve | Any, name: str, **args: Any) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    return subprocess.run(
        [NODE, str(JS / "scenarios.js"), name, json.dumps({"brokers": [serve.bootstrap], **args})],
        capture_output=True,
        text=True,
        timeout=SCENARIO_SECONDS_MAX,
        check=False,
        cwd=JS,
        env={**os.environ, "KAFKAJS_NO_PARTITIONER_WARNING": "1"},
    )


def scenario(serve: Serve | Any, name: str, **args: Any) -> Any:
    """Run a scenario of js/scenarios.js against ``serve`` (or an in-process door: anything
    with a ``bootstrap``); what it printed, decoded."""
    done = run_scenario(serve, name, **args)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout)


def fresh(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


@pytest.mark.compat("kafkajs", "produce")
@pytest.mark.compat("kafkajs", "consume")
@pytest.mark.compat("kafkajs", "groups")
def test_produce_consume_and_lag(serve: Serve) -> None:
    topic, group = fresh("js.orders"), fresh("js-group")
    seen = scenario(serve, "produceConsume", topic=topic, group=group, count=30)
    assert all(sent["errorCode"] == 0 for sent in seen["sent"])
    records = seen["seen"]
    assert sorted(r["value"] for r in records) == sorted(f"v{i}" for i in range(30))
    for record in records:
        number = record["value"][1:]
        assert (record["key"], record["headers"]) == (f"k{number}", {"n": number})
    # Within a partition, offsets rise in the order records were read.
    for partition in range(PARTITIONS):
        offsets = [r["offset"] for r in records if r["partition"] == partition]
        assert offsets == sorted(offsets)
    # Lag 0: the group committed each partition's end (or nothing where it is empty).
    ends = {int(p["partition"]): int(p["high"]) for p in seen["ends"]}
    committed = {int(p["partition"]): int(p["offset"]) for p in seen["committed"][0]["partitions"]}
    assert set(ends) == set(range(PARTITIONS))
    for partition, end in ends.items():
        read = [r for r in records if r["partition"] == partition]
        assert committed[partition] == (end if read else -1), (committed, ends)
        if read:
            assert end == read[-1]["offset"] + 1


@pytest.mark.compat("kafkajs", "groups")
def test_two_members_share_a_topic(serve: Serve) -> None:
    topic, group = fresh("js.shared"), fresh("js-group")
    seen = scenario(serve, "group", topic=topic, group=group, count=30, partitions=PARTITIONS)
    first, second = (set(partitions) for partitions in seen["assigned"])
    assert first and second and not first & second and first | second == set(range(PARTITIONS))
    values = seen["members"][0] + seen["members"][1]
    assert sorted(values) == sorted(f"g{i}" for i in range(30))


@pytest.mark.compat("kafkajs", "admin")
def test_admin(serve: Serve) -> None:
    topic = fresh("js.admin")
    seen = scenario(serve, "admin", topic=topic)
    assert seen == {"created": True, "partitions": [0, 1, 2], "listed": True, "afterDelete": False}


@pytest.mark.compat("kafkajs", "transactions")
def test_transactions_commit_abort_and_send_offsets(serve: Serve) -> None:
    topic, source = fresh("js.txn.out"), fresh("js.txn.in")
    group, transactional_id = fresh("js-txn"), fresh("js-txn-id")
    seen = scenario(
        serve,
        "transactions",
        topic=topic,
        source=source,
        group=group,
        transactionalId=transactional_id,
        partitions=PARTITIONS,
    )
    expected = ["committed0", "committed1", "committed2", "offsets0", "offsets1"]
    assert sorted(seen["values"]) == expected
    committed = {int(p["partition"]): int(p["offset"]) for p in seen["committed"][0]["partitions"]}
    assert committed[0] == 5


@pytest.mark.compat("kafkajs", "transactions")
def test_a_second_producer_fences_the_first(serve: Serve) -> None:
    topic, group = fresh("js.fenced"), fresh("js-fenced")
    seen = scenario(
        serve, "fencing", topic=topic, group=group, transactionalId=fresh("js-fence"), partitions=PARTITIONS
    )
    # The broker's reason, not a coordinator error: kafkajs names the producer's old epoch.
    for step in ("send", "commit"):
        assert seen["refused"][step]["type"] == "INVALID_PRODUCER_EPOCH", seen["refused"]
    assert seen["values"] == ["second0"]


@pytest.mark.compat("kafkajs", "SASL/TLS")
@pytest.mark.parametrize("mechanism", ["plain", "scram-sha-256", "scram-sha-512"])
def test_sasl(sasl_serve: Serve, mechanism: str) -> None:
    topic, group = fresh("js.sasl"), fresh("js-sasl")
    sasl = {"mechanism": mechanism, "username": "alice", "password": "alice-secret"}
    seen = scenario(sasl_serve, "produceConsume", topic=topic, group=group, count=3, sasl=sasl)
    assert sorted(r["value"] for r in seen["seen"]) == ["v0", "v1", "v2"]


def test_a_wrong_password_is_refused_with_the_reason(sasl_serve: Serve) -> None:
    sasl = {"mechanism": "scram-sha-256", "username": "alice", "password": "wrong"}
    done = run_scenario(sasl_serve, "admin", topic=fresh("js.sasl"), sasl=sasl)
    assert done.returncode != 0
    assert "KafkaJSSASLAuthenticationError" in done.stderr, done.stderr[-2000:]


@pytest.mark.compat("kafkajs", "compaction")
def test_a_compacted_topic(kafka_door: Any, topic_name: str) -> None:
    """Against the in-process door (conftest), whose engine can be told to compact now."""
    # 60 rounds of 20 keys of 200 B over 64 KiB segments: closed segments to compact.
    made = scenario(
        kafka_door,
        "compactedProduce",
        topic=topic_name,
        rounds=60,
        keys=20,
        padding=200,
        segmentBytes=65536,
    )
    assert made == {"policy": "compact", "keyless": "INVALID_RECORD"}
    assert kafka_door.engine.compact(force=True)[topic_name].records_removed > 0
    seen = scenario(kafka_door, "readToEnd", topic=topic_name, group=fresh("js-compacted"))
    records = seen["records"]
    offsets = [r["offset"] for r in records]
    assert offsets == sorted(offsets) and len(offsets) < 60 * 20 + 1  # gaps skipped
    latest = {r["key"]: r["value"] and r["value"].split(":")[0] for r in records}
    assert latest.pop("k0", None) is None  # the tombstone, or nothing once it is gone
    assert latest == {f"k{k}": "59" for k in range(1, 20)}
