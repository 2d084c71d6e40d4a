"""Consumer groups from the command line: consume --group, group list|describe|delete.

Goal: `odradek consume PATTERN --group G` prints records as a member of G and
acknowledges what it printed, so a second run continues where the first stopped
with nothing lost and nothing repeated; `group list|describe|delete` administer
groups with the documented exit codes; the server's /metrics shows the group's
progress. Method: a real `odradek serve` subprocess (with a metrics endpoint on a free
port); each command runs as its own process and its stdout is parsed.
"""

from __future__ import annotations

import json
import urllib.request

from odradek_process import Server, run

from odradek.ports import free_port


def test_consume_as_a_group_and_administer_it(start_server: type[Server]) -> None:
    metrics_port = free_port()
    server = start_server(None, "--metrics-listen", f"127.0.0.1:{metrics_port}")
    run("topic", "create", "orders", server=server)
    lines = b"".join(b"k%d\tv%d-%d\n" % (i % 5, i % 5, i // 5) for i in range(10))
    assert run("produce", "orders", "--keyed", server=server, stdin=lines).returncode == 0

    first = run(
        "consume", "orders", "--group", "billing", "--from-beginning", "--max", "6", "--format", "jsonl",
        server=server,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    first_records = [json.loads(line) for line in first.stdout.splitlines()]
    assert len(first_records) == 6
    rest = run("consume", "orders", "--group", "billing", "--wait", "1", server=server)
    assert rest.returncode == 0, rest.stderr
    values = [record["value"] for record in first_records] + rest.stdout.decode().split()
    assert sorted(values) == sorted(f"v{i % 5}-{i // 5}" for i in range(10))  # each once
    versions = {}
    for record in first_records:  # a key's records come in version order
        assert record["version"] == versions.get(record["key"], 0) + 1
        versions[record["key"]] = record["version"]

    nothing = run("consume", "orders", "--group", "billing", "--wait", "0.5", server=server)
    assert nothing.returncode == 0 and nothing.stdout == b""
    assert run("group", "list", server=server).stdout.decode().split() == ["billing"]
    described = json.loads(run("group", "describe", "billing", server=server).stdout)
    assert described["group"] == "billing" and described["members"] == []
    assert [(t["topic"], t["committed"], t["lag"]) for t in described["topics"]] == [("orders", 10, 0)]

    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'odradek_group_committed_offset{group="billing",topic="orders"} 10.0' in text
    assert 'odradek_group_lag{group="billing",topic="orders"} 0.0' in text
    assert 'odradek_group_events_total{event="acked",group="billing"}' in text

    refused = run("consume", "orders", "--group", "billing", "--offset", "3", server=server)
    assert refused.returncode == 1 and "--offset" in refused.stderr.decode()
    assert run("group", "delete", "billing", server=server).returncode == 0
    missing = run("group", "describe", "billing", server=server)
    assert missing.returncode == 1 and "does not exist" in missing.stderr.decode()
    assert run("group", "list", server=server).stdout == b""


def test_group_help_has_examples() -> None:
    for command, expected in ((["group"], b"odradek group describe"), (["consume"], b"--group")):
        shown = run(*command, "--help")
        assert shown.returncode == 0 and expected in shown.stdout
