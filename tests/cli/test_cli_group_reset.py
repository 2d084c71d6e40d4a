"""`odradek group reset-offsets`: Kafka's --reset-offsets for both kinds of group.

Goal: against a real server, the command prints its plan as a table (a row per topic,
per Kafka partition for a Kafka group) and changes nothing without --execute; with
--execute the group's next member starts where the reset put it; a group with an
active member is refused (exit 1) with a message saying why, and so are a bad --to
and a group that does not exist. A Kafka consumer group of the running Kafka door
(the listener attached, so the door's coordinator answers) is reset the same way.

Method: a real `odradek serve` (with its Kafka listener on a free port for the Kafka
case); each CLI command is its own process; an active member is a `consume --group`
process that follows until it is interrupted; kafka-python commits a Kafka group's
offsets and joins as a member.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
import warnings

from odradek_process import ODRADEK, Server, run

from odradek.ports import free_port

with warnings.catch_warnings():  # kafka-python's protocol tables use a deprecated importlib call
    warnings.simplefilter("ignore", DeprecationWarning)
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

DEADLINE_SECONDS = 60.0


def _members(server: Server, group: str) -> int:
    described = run("group", "describe", group, "--format", "json", server=server)
    return len(json.loads(described.stdout)["members"]) if described.returncode == 0 else 0


def _wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_reset_an_odradek_group(server: Server) -> None:
    lines = b"".join(b"k%d\tv%d\n" % (i, i) for i in range(6))
    assert run("produce", "orders.eu", "--create", "--keyed", server=server, stdin=lines).returncode == 0
    consumed = run(
        "consume", "orders.>", "--group", "billing", "--from-beginning", "--max", "6", server=server
    )
    assert consumed.stdout.split() == [b"v%d" % i for i in range(6)]

    planned = run("group", "reset-offsets", "billing", "--to", "offset", "4", server=server)
    assert planned.returncode == 0, planned.stderr
    assert [line.split() for line in planned.stdout.decode().splitlines()] == [
        ["TOPIC", "PARTITION", "OLD", "NEW"],
        ["orders.eu", "-", "6", "4"],
    ]
    assert b"dry run, nothing changed" in planned.stderr and b"--execute" in planned.stderr
    described = json.loads(run("group", "describe", "billing", "--format", "json", server=server).stdout)
    assert described["topics"][0]["committed"] == 6
    as_json = run("group", "reset-offsets", "billing", "--to", "latest", "--format", "json", server=server)
    assert json.loads(as_json.stdout) == [{"topic": "orders.eu", "partition": None, "old": 6, "new": 6}]

    done = run(
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders.*",
        "--to",
        "offset",
        "4",
        "--execute",
        server=server,
    )
    assert done.returncode == 0, done.stderr
    assert b"reset 1 offset" in done.stderr
    again = run("consume", "orders.>", "--group", "billing", "--max", "2", server=server)
    assert again.stdout.split() == [b"v4", b"v5"]

    member = subprocess.Popen(
        [*ODRADEK, "--server", server.url, "consume", "orders.>", "--group", "billing"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        _wait_for(lambda: _members(server, "billing") == 1, "the consumer to join")
        refused = run("group", "reset-offsets", "billing", "--to", "earliest", "--execute", server=server)
        assert refused.returncode == 1
        assert b"1 active member" in refused.stderr and b"stop its consumers" in refused.stderr
    finally:
        member.send_signal(signal.SIGINT)
        member.communicate(timeout=DEADLINE_SECONDS)
    _wait_for(lambda: _members(server, "billing") == 0, "the consumer to leave")
    assert (
        run("group", "reset-offsets", "billing", "--to", "earliest", "--execute", server=server).returncode
        == 0
    )
    assert run("consume", "orders.>", "--group", "billing", "--max", "6", server=server).stdout.split() == [
        b"v%d" % i for i in range(6)
    ]


def test_bad_input(server: Server) -> None:
    assert run("produce", "orders", "--create", server=server, stdin=b"a\n").returncode == 0
    assert (
        run(
            "consume", "orders", "--group", "billing", "--from-beginning", "--max", "1", server=server
        ).returncode
        == 0
    )
    cases = [
        (("--to", "soon"), 1, b"--to takes"),
        (("--to", "offset", "-3"), 1, b"whole number"),
        (("--to", "datetime", "someday"), 1, b"is not a moment"),
        (("--to", "earliest", "--topic", "payments"), 1, b"no topic matches"),
        (("--to", "earliest", "--dry-run", "--execute"), 2, b"not allowed with"),
    ]
    for extra, code, message in cases:
        result = run("group", "reset-offsets", "billing", *extra, server=server)
        assert (result.returncode, message in result.stderr) == (code, True), (extra, result.stderr)
    missing = run("group", "reset-offsets", "nobody", "--to", "earliest", server=server)
    assert missing.returncode == 1 and b"does not exist" in missing.stderr


def test_reset_a_kafka_group_of_the_running_door(start_server: type[Server]) -> None:
    port = free_port()
    server = start_server(None, "--kafka-listen", f"127.0.0.1:{port}")
    lines = b"".join(b"k%d\tv%d\n" % (i, i) for i in range(8))
    assert run("produce", "orders", "--create", "--keyed", server=server, stdin=lines).returncode == 0
    consumer = KafkaConsumer(
        bootstrap_servers=f"127.0.0.1:{port}", group_id="kafka-billing", enable_auto_commit=False
    )
    consumer.assign([TopicPartition("orders", 0)])
    consumer.commit({TopicPartition("orders", 0): OffsetAndMetadata(5, "", -1)})
    consumer.close()

    planned = run("group", "reset-offsets", "kafka-billing", "--to", "earliest", server=server)
    assert [line.split() for line in planned.stdout.decode().splitlines()] == [
        ["TOPIC", "PARTITION", "OLD", "NEW"],
        ["orders", "0", "5", "0"],
    ]
    assert (
        run(
            "group", "reset-offsets", "kafka-billing", "--to", "earliest", "--execute", server=server
        ).returncode
        == 0
    )
    described = json.loads(
        run("group", "describe", "kafka-billing", "--format", "json", server=server).stdout
    )
    assert described["topics"][0]["partitions"] == [
        {"partition": 0, "committed": 0, "lag": 8, "metadata": ""}
    ]

    member = KafkaConsumer(
        "orders", bootstrap_servers=f"127.0.0.1:{port}", group_id="kafka-billing", enable_auto_commit=False
    )
    try:
        _wait_for(
            lambda: bool(member.poll(timeout_ms=200)) or bool(member.assignment()), "the Kafka member to join"
        )
        refused = run("group", "reset-offsets", "kafka-billing", "--to", "latest", "--execute", server=server)
        assert refused.returncode == 1 and b"active member" in refused.stderr, refused.stderr
    finally:
        member.close()
    code, errors = server.stop()
    assert code == 0, errors
