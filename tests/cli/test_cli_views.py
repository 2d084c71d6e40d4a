"""Views through a real `odradek serve`: the CLI, the HTTP GET, and a kill -9 while one applies.

Goal: `odradek view create/get/scan/describe/list/delete` and `GET
/v1/views/{view}/keys/{key}` on the registry's listener answer what the view holds, with
clear errors for what is missing; and a view survives a kill -9 of the server while it
applies: after the restart it equals the fold of the log for an idempotent reducer
(at least once: records applied again change nothing) and is never behind the fold for
a counting one (a record may count twice, none is skipped). Method: `odradek serve`
subprocesses with the tests' reducers on their PYTHONPATH; records appended through the
remote client; the fold computed from the log read back; every wait is an append with
``wait_for`` (generous timeouts), never a sleep.
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

from odradek_process import Server, run

import odradek
from odradek.ports import free_port

REDUCERS = str(Path(__file__).parents[1] / "views")
ENV = {"PYTHONPATH": REDUCERS}
WAIT_SECONDS = 120.0


def start(start_server: type[Server], data: Path, registry_port: int = 0) -> Server:
    registry = f"127.0.0.1:{registry_port}" if registry_port else "off"
    return start_server(data, "--registry-listen", registry, "--kafka-listen", "off", env=ENV)


def test_view_commands_and_the_http_get(start_server: type[Server], tmp_path: Path) -> None:
    port = free_port()
    server = start(start_server, tmp_path / "data", port)
    assert run("topic", "create", "orders.eu", server=server).returncode == 0
    create = run("view", "create", "last", "orders.>", "odradek.views.reducers:latest", server=server)
    assert create.returncode == 0, create.stderr
    with odradek.connect(server.url) as client:
        records = [{"key": b"k1", "value": b"one"}, {"key": b"k2", "value": b"\xff\xfe"}]
        client.append("orders.eu", records, wait_for=["view:last"], timeout=WAIT_SECONDS)
    got = run("view", "get", "last", "k1", server=server)
    assert (got.returncode, got.stdout) == (0, b"one\n")
    missing = run("view", "get", "last", "nope", server=server)
    assert missing.returncode == 1
    assert b"no state" in missing.stderr
    scan = run("view", "scan", "last", "k", "--format", "jsonl", server=server)
    assert [json.loads(line) for line in scan.stdout.splitlines()] == [
        {"key": "k1", "state": "one"},
        {"key": "k2", "state_b64": "//4="},
    ]
    described = json.loads(run("view", "describe", "last", server=server).stdout)
    assert described["offsets"] == {"orders.eu": 2}
    assert run("view", "list", server=server).stdout == b"last\n"
    assert (
        b"cannot be imported" in run("view", "create", "x", "orders.>", "nope_module:f", server=server).stderr
    )

    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/v1/views/last/keys/k1", timeout=WAIT_SECONDS) as answer:
        assert json.loads(answer.read()) == {"view": "last", "key": "k1", "state": "one"}
    try:
        urllib.request.urlopen(f"{base}/v1/views/nope/keys/k1", timeout=WAIT_SECONDS)
        raise AssertionError("an unknown view was answered")
    except urllib.error.HTTPError as exc:
        assert exc.code == 404

    assert run("view", "delete", "last", server=server).returncode == 0
    gone = run("view", "get", "last", "k1", server=server)
    assert gone.returncode == 1
    assert b"no view" in gone.stderr


def test_view_create_on_a_schemad_topic_typed_and_json(start_server: type[Server], tmp_path: Path) -> None:
    """A view created by the CLI reduces a schema'd topic's typed values; with
    ``--value-format json`` another gets their JSON text."""
    server = start(start_server, tmp_path / "data")
    schema = {"type": "object", "properties": {"customer": {"type": "string"}, "amount": {"type": "integer"}}}
    with odradek.connect(server.url) as client:
        client.create_topic("orders.typed", schema=schema)
    typed = run(
        "view", "create", "totals", "orders.typed", "view_reducers:typed_total",
        "--key", "view_reducers:typed_customer", server=server,
    )  # fmt: skip
    assert typed.returncode == 0, typed.stderr
    text = run(
        "view",
        "create",
        "sums",
        "orders.typed",
        "view_reducers:total",
        "--value-format",
        "json",
        server=server,
    )
    assert text.returncode == 0, text.stderr
    with odradek.connect(server.url) as client:
        client.append(
            "orders.typed",
            [{"key": b"o1", "value": {"customer": "c1", "amount": 5}}],
            wait_for=["view:totals", "view:sums"],
            timeout=WAIT_SECONDS,
        )
    assert run("view", "get", "totals", "c1", server=server).stdout == b"5\n"
    assert run("view", "get", "sums", "o1", server=server).stdout == b"5\n"
    assert json.loads(run("view", "describe", "sums", server=server).stdout)["value_format"] == "json"
    bad = run(
        "view", "create", "x", "orders.typed", "view_reducers:total", "--value-format", "wire", server=server
    )
    assert bad.returncode != 0
    assert b"invalid choice" in bad.stderr
    server.stop()


def test_a_view_equals_the_fold_after_a_kill_while_it_applies(
    start_server: type[Server], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    server = start(start_server, data)
    with odradek.connect(server.url) as client:
        client.create_topic("orders.eu")
        client.create_view("by_customer", "orders.>", "view_reducers:orders", key="view_reducers:customer")
        client.create_view("totals", "orders.>", "view_reducers:total", key="view_reducers:customer")
        for batch in range(40):
            records = [
                {
                    "key": f"o{batch}-{index}".encode(),
                    "value": json.dumps({"customer": f"c{index % 13}", "amount": 1}).encode(),
                }
                for index in range(250)
            ]
            client.append("orders.eu", records)
        lag = client.describe_view("by_customer")["lag"]
    server.stop(signal.SIGKILL)  # while the views are still applying (or just done)
    print(f"lag of the idempotent view at the kill: {lag}", file=sys.stderr)

    server = start(start_server, data)
    with odradek.connect(server.url) as client:
        client.append(
            "orders.eu",
            [{"key": b"last", "value": b'{"customer": "c0", "amount": 1}'}],
            wait_for=["view:by_customer", "view:totals"],
            timeout=WAIT_SECONDS,
        )
        expected_ids: dict[str, set[str]] = defaultdict(set)
        expected_totals: dict[str, int] = defaultdict(int)
        for batch in client.read("orders.eu", start="earliest", wait=0):
            for row in batch.select(["key", "value"]).to_pylist():
                customer = json.loads(row["value"])["customer"]
                expected_ids[customer].add(row["key"].decode())
                expected_totals[customer] += 1
        view = {
            row["key"].decode(): json.loads(row["state"])
            for row in client.view_scan("by_customer").to_pylist()
        }
        assert view == {customer: sorted(ids) for customer, ids in expected_ids.items()}
        totals = {row["key"].decode(): int(row["state"]) for row in client.view_scan("totals").to_pylist()}
        assert totals.keys() == expected_totals.keys()
        for customer, total in expected_totals.items():
            assert totals[customer] >= total  # at least once: never a record skipped
    server.stop()
