"""`odradek key TOPIC KEY --from-snapshot` prints a key from its latest snapshot, and
`topic create --cleanup snapshot` makes a topic that drops what snapshots cover.

Goal: the command line reaches key snapshots. Method: a real `odradek serve` process;
records produced with `produce --keyed`, a snapshot stored through `odradek.connect`,
then `odradek key` read back in JSON lines and text, with and without the flag, and
the flag refused with `--from-version`.
"""

from __future__ import annotations

import json

from odradek_process import Server, run

import odradek


def test_key_from_snapshot(server: Server) -> None:
    assert run("topic", "create", "acc", "--cleanup", "snapshot", server=server).returncode == 0
    config = json.loads(run("topic", "describe", "acc", server=server).stdout)["config"]
    assert config["cleanup"] == "snapshot"
    produced = run("produce", "acc", "--keyed", server=server, stdin=b"k\t1\nk\t2\nk\t3\n")
    assert produced.returncode == 0, produced.stderr.decode()
    with odradek.connect(server.url) as client:
        client.snapshot("acc", b"k", b"state-at-2", version=2)
    lines = run("key", "acc", "k", "--from-snapshot", "--format", "jsonl", server=server).stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(row.get("snapshot", False), row["version"], row["value"]) for row in rows] == [
        (True, 2, "state-at-2"),
        (False, 3, "3"),
    ]
    text = run("key", "acc", "k", "--from-snapshot", server=server).stdout.splitlines()
    assert text == [b"state-at-2", b"3"]
    plain = run("key", "acc", "k", "--format", "jsonl", server=server).stdout.splitlines()
    assert [json.loads(line)["version"] for line in plain] == [1, 2, 3]
    assert all("snapshot" not in json.loads(line) for line in plain)
    refused = run("key", "acc", "k", "--from-snapshot", "--from-version", "2", server=server)
    assert refused.returncode == 1 and "--from-snapshot" in refused.stderr.decode()


def test_key_from_snapshot_of_a_schemad_topic(server: Server) -> None:
    """On a schema'd topic the snapshot row prints its state as its value, as on a topic
    without a schema; the events after it print their typed values."""
    with odradek.connect(server.url) as client:
        schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
        client.create_topic("typed", schema=schema)
        client.append("typed", [{"key": b"k", "value": {"n": n}} for n in range(3)])
        client.snapshot("typed", b"k", b"state-at-2", version=2)
    lines = run(
        "key", "typed", "k", "--from-snapshot", "--format", "jsonl", server=server
    ).stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(row.get("snapshot", False), row["version"], row["value"]) for row in rows] == [
        (True, 2, "state-at-2"),
        (False, 3, {"n": 2}),
    ]
    assert all("state" not in row for row in rows)
