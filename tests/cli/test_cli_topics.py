"""`odradek topic alter`, and `topic describe` / `group describe` as people read them.

Goal: `topic alter` changes retention, segment and cleanup settings on a live topic
(through the new `alter_topic` of every client and the Flight door) and refuses an
unknown or bad value without changing anything; `describe --format text` shows sizes,
durations and dates a person reads at a glance and a group's lag per topic; scripts
keep their JSON (the default when stdout is not a terminal). Method: the commands in
a subprocess against a real `odradek serve`, the settings read back as JSON.
"""

from __future__ import annotations

import json

from odradek_process import Server, run


def _config(server: Server, topic: str) -> dict[str, object]:
    described = run("topic", "describe", topic, server=server)
    assert described.returncode == 0, described.stderr
    config: dict[str, object] = json.loads(described.stdout)["config"]
    return config


def test_alter_changes_the_settings_and_refuses_bad_ones_whole(server: Server) -> None:
    assert run("topic", "create", "orders", server=server).returncode == 0
    altered = run(
        "topic", "alter", "orders", "--retention", "30d", "--segment-bytes", "64MiB",
        "--cleanup", "compact,delete", "--delete-retention", "12h", server=server,
    )  # fmt: skip
    assert altered.returncode == 0, altered.stderr
    assert b"retention 30d" in altered.stdout and b"segment bytes 64.0 MiB" in altered.stdout
    config = _config(server, "orders")
    assert config["retention_seconds"] == 30 * 86400
    assert config["segment_bytes"] == 64 * 1024 * 1024
    assert (config["cleanup"], config["delete_retention_seconds"]) == ("compact,delete", 12 * 3600)
    for arguments, message in [
        (["--retention", "banana"], b"retention"),
        (["--min-cleanable-dirty-ratio", "2"], b"min_cleanable_dirty_ratio"),
        (["--retention", "1d", "--cleanup", "shred"], b"cleanup"),
        ([], b"needs a setting to change"),
    ]:
        refused = run("topic", "alter", "orders", *arguments, server=server)
        assert refused.returncode == 1 and message in refused.stderr, (arguments, refused.stderr)
    assert _config(server, "orders") == config  # nothing half-changed
    missing = run("topic", "alter", "nope", "--retention", "1d", server=server)
    assert missing.returncode == 1 and b"does not exist" in missing.stderr


def test_describe_reads_as_text_or_json(server: Server) -> None:
    assert run("produce", "t", "--create", "--keyed", server=server, stdin=b"a\t1\nb\t2\n").returncode == 0
    text = run("topic", "describe", "t", "--format", "text", server=server)
    assert text.returncode == 0, text.stderr
    lines = dict(line.split(None, 1) for line in text.stdout.decode().splitlines() if line.strip())
    assert lines["records"] == "2 records, 2 keys"
    assert lines["retention"] == "7d"
    assert lines["size"].endswith("in 1 segment") and "B" in lines["size"]
    assert lines["created"].endswith("Z")
    assert json.loads(run("topic", "describe", "t", server=server).stdout)["records"] == 2  # a pipe: JSON
    consumed = run("consume", "t", "--group", "billing", "--from-beginning", "--max", "1", server=server)
    assert consumed.returncode == 0, consumed.stderr
    group = run("group", "describe", "billing", "--format", "text", server=server)
    assert group.returncode == 0, group.stderr
    table = group.stdout.decode().splitlines()
    header = next(index for index, line in enumerate(table) if line.startswith("TOPIC"))
    assert table[header + 1].split() == ["t", "-", "1", "2", "1"]  # committed 1 of 2: lag 1
    assert json.loads(run("group", "describe", "billing", server=server).stdout)["group"] == "billing"
