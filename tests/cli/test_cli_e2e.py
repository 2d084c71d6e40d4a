"""The command line, end to end, against a real server process.

Goal: `odradek serve` starts, says ready, serves and stops cleanly on SIGTERM; the
client commands do what docs/cli.md says, with the documented exit codes and one-line
errors on stderr. Method: a `odradek serve` subprocess on a free loopback port with a
temporary data directory; each command is run as its own process, with stdin piped in
and stdout parsed.
"""

from __future__ import annotations

import json
import signal
import urllib.request
from pathlib import Path

from odradek_process import Server, run

from odradek.ports import free_port


def test_serve_is_ready_and_stops_cleanly_on_sigterm(server: Server) -> None:
    assert server.url.startswith("grpc://127.0.0.1:")
    assert run("topic", "list", server=server).returncode == 0
    code, errors = server.stop(signal.SIGTERM)
    assert code == 0
    assert "msg=ready" in errors and "msg=stopped" in errors


def test_sigint_stops_too(server: Server) -> None:
    code, errors = server.stop(signal.SIGINT)
    assert code == 0 and "SIGINT" in errors


def test_topic_commands(server: Server) -> None:
    created = run("topic", "create", "orders.eu.created", "--retention", "30d", server=server)
    assert created.returncode == 0 and b"created topic orders.eu.created" in created.stdout
    assert run("topic", "create", "orders.us.created", server=server).returncode == 0
    listed = run("topic", "list", "orders.>", server=server)
    assert listed.stdout.decode().split() == ["orders.eu.created", "orders.us.created"]
    described = json.loads(run("topic", "describe", "orders.eu.created", server=server).stdout)
    assert described["name"] == "orders.eu.created"
    assert described["config"]["retention_seconds"] == 30 * 86400
    again = run("topic", "create", "orders.eu.created", server=server)
    assert again.returncode == 1
    assert again.stderr.decode().count("\n") == 1 and "already exists" in again.stderr.decode()
    assert run("topic", "create", "orders.eu.created", "--exist-ok", server=server).returncode == 0
    assert run("topic", "delete", "orders.us.created", server=server).returncode == 0
    missing = run("topic", "describe", "orders.us.created", server=server)
    assert missing.returncode == 1 and "does not exist" in missing.stderr.decode()
    bad = run("topic", "create", "bad name", server=server)
    assert bad.returncode == 1 and "topic name" in bad.stderr.decode()


def test_produce_and_consume_100k_lines(server: Server) -> None:
    run("topic", "create", "numbers", server=server)
    lines = b"".join(b"%d\n" % i for i in range(100_000))
    produced = run("produce", "numbers", server=server, stdin=lines)
    assert produced.returncode == 0, produced.stderr
    described = json.loads(run("topic", "describe", "numbers", server=server).stdout)
    assert described["records"] == 100_000
    consumed = run("consume", "numbers", "--from-beginning", "--max", "100000", server=server)
    assert consumed.returncode == 0
    assert consumed.stdout == lines
    some = run("consume", "numbers", "--offset", "99998", "--max", "2", "--format", "jsonl", server=server)
    records = [json.loads(line) for line in some.stdout.splitlines()]
    assert [(r["topic"], r["offset"], r["value"], r["key"], r["version"]) for r in records] == [
        ("numbers", 99998, "99998", None, None),
        ("numbers", 99999, "99999", None, None),
    ]
    assert set(records[0]) == {"topic", "offset", "key", "value", "version", "timestamp", "headers"}


def test_keyed_produce_key_and_expectations(server: Server) -> None:
    run("topic", "create", "orders", server=server)
    keyed = run(
        "produce", "orders", "--keyed", server=server, stdin=b"o-1\tcreated\no-2\tcreated\no-1\tpaid\n"
    )
    assert keyed.returncode == 0, keyed.stderr
    history = run("key", "orders", "o-1", "--format", "jsonl", server=server)
    rows = [json.loads(line) for line in history.stdout.splitlines()]
    assert [(r["key"], r["value"], r["version"], r["offset"]) for r in rows] == [
        ("o-1", "created", 1, 0),
        ("o-1", "paid", 2, 2),
    ]
    assert run("key", "orders", "o-1", server=server).stdout == b"created\npaid\n"
    ok = run("produce", "orders", "--key", "o-1", "--expect-version", "2", server=server, stdin=b"shipped\n")
    assert ok.returncode == 0, ok.stderr
    stale = run("produce", "orders", "--key", "o-1", "--expect-version", "2", server=server, stdin=b"again\n")
    assert stale.returncode == 1
    assert "version 2" in stale.stderr.decode() and "version 3" in stale.stderr.decode()
    no_tab = run("produce", "orders", "--keyed", server=server, stdin=b"no tab here\n")
    assert no_tab.returncode == 1 and "TAB" in no_tab.stderr.decode()


def test_consume_wildcard_jsonl_with_binary_values(server: Server) -> None:
    for name in ("a.x", "a.y", "b.x"):
        run("topic", "create", name, server=server)
    run("produce", "a.x", server=server, stdin=b"one\n")
    run("produce", "a.y", server=server, stdin=b"\xff\xfe\n")
    run("produce", "b.x", server=server, stdin=b"other\n")
    consumed = run("consume", "a.*", "--from-beginning", "--max", "2", "--format", "jsonl", server=server)
    rows = sorted((json.loads(line) for line in consumed.stdout.splitlines()), key=lambda r: r["topic"])
    assert [(r["topic"], r.get("value"), r.get("value_b64")) for r in rows] == [
        ("a.x", "one", None),
        ("a.y", None, "//4="),
    ]


def test_consume_wait_ends_when_idle(server: Server) -> None:
    run("topic", "create", "t", server=server)
    run("produce", "t", server=server, stdin=b"a\nb\n")
    consumed = run("consume", "t", "--from-beginning", "--wait", "0.5", server=server)
    assert consumed.returncode == 0 and consumed.stdout == b"a\nb\n"


def test_errors_and_exit_codes(server: Server, tmp_path: Path) -> None:
    missing = run("consume", "nope", "--max", "1", server=server)
    assert missing.returncode == 1 and missing.stderr.decode().startswith("odradek: error: ")
    produce_missing = run("produce", "nope", server=server, stdin=b"x\n")
    assert produce_missing.returncode == 1 and "does not exist" in produce_missing.stderr.decode()
    unreachable = run("--server", "grpc://127.0.0.1:1", "topic", "list")
    assert unreachable.returncode == 3 and "odradek serve" in unreachable.stderr.decode()
    usage = run("topic", "frobnicate")
    assert usage.returncode == 2
    assert run("produce", "t", "--expect-version", "1", server=server).returncode == 1  # needs --key
    by_env = run("topic", "list", env={"ODRADEK_URL": server.url})
    assert by_env.returncode == 0


def test_help_texts_teach_with_examples() -> None:
    for command in ([], ["serve"], ["produce"], ["consume"], ["key"], ["topic"]):
        shown = run(*command, "--help")
        assert shown.returncode == 0
        assert b"odradek" in shown.stdout and b"example" in shown.stdout.lower()


def test_serve_settings_from_config_env_and_metrics(start_server: type[Server], tmp_path: Path) -> None:
    metrics_port = free_port()
    config = tmp_path / "odradek.toml"
    config.write_text(f'[serve]\nmetrics_listen = "127.0.0.1:{metrics_port}"\nlog_format = "json"\n')
    server = start_server(
        tmp_path / "ignored",
        "--config",
        str(config),
        "--kafka-listen",
        f"127.0.0.1:{free_port()}",  # never a fixed port: another server may hold it
        env={"ODRADEK_FSYNC": "false"},
    )
    run("topic", "create", "t", server=server)
    run("produce", "t", server=server, stdin=b"a\nb\nc\n")
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert 'odradek_appended_records_total{topic="t"} 3.0' in text
    assert 'odradek_topic_records{topic="t"} 3.0' in text
    assert "odradek_append_seconds_bucket" in text
    code, errors = server.stop()
    assert code == 0
    events = [json.loads(line) for line in errors.splitlines()]
    assert any(event["msg"] == "ready" and event["fsync"] is False for event in events)
    assert any("Kafka listener" in event["msg"] for event in events)


def test_bad_settings_fail_clearly(tmp_path: Path) -> None:
    bad = run("serve", "--data-dir", str(tmp_path / "d"), "--listen", "nowhere")
    assert bad.returncode == 1 and "HOST:PORT" in bad.stderr.decode()
    config = tmp_path / "bad.toml"
    config.write_text("colour = 'red'\n")
    unknown = run("serve", "--config", str(config))
    assert unknown.returncode == 1 and "unknown setting" in unknown.stderr.decode()


def test_a_data_dir_in_use_is_refused(server: Server) -> None:
    second = run("serve", "--data-dir", str(server.data_dir), "--listen", "127.0.0.1:0")
    assert second.returncode == 1 and "in use" in second.stderr.decode()
