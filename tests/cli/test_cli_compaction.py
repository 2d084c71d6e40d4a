"""`odradek topic create` makes compacted topics; `topic describe` shows their settings.

Goal: the command line reaches every compaction setting of a topic (cleanup policy,
tombstone retention, compaction lag, dirty ratio) and refuses bad ones clearly. Method:
a real `odradek serve` process; create topics with the flags, read `topic describe`'s
JSON back, produce keyless records to a compacted topic (refused), and give bad values.
"""

from __future__ import annotations

import json

from odradek_process import Server, run


def test_topic_create_takes_the_compaction_settings(server: Server) -> None:
    created = run(
        "topic",
        "create",
        "app.changelog",
        "--cleanup",
        "compact",
        "--delete-retention",
        "2h",
        "--min-compaction-lag",
        "10m",
        "--min-cleanable-dirty-ratio",
        "0.25",
        server=server,
    )
    assert created.returncode == 0, created.stderr.decode()
    config = json.loads(run("topic", "describe", "app.changelog", server=server).stdout)["config"]
    assert config["cleanup"] == "compact"
    assert config["delete_retention_seconds"] == 7200
    assert config["min_compaction_lag_seconds"] == 600
    assert config["min_cleanable_dirty_ratio"] == 0.25
    both = run(
        "topic", "create", "app.both", "--cleanup", "compact,delete", "--retention", "1d", server=server
    )
    assert both.returncode == 0, both.stderr.decode()
    config = json.loads(run("topic", "describe", "app.both", server=server).stdout)["config"]
    assert config["cleanup"] == "compact,delete" and config["retention_seconds"] == 86400
    assert run("topic", "create", "app.plain", server=server).returncode == 0
    config = json.loads(run("topic", "describe", "app.plain", server=server).stdout)["config"]
    assert config["cleanup"] == "delete"
    keyless = run("produce", "app.changelog", server=server, stdin=b"no key\n")
    assert keyless.returncode == 1 and "key" in keyless.stderr.decode()


def test_bad_compaction_settings_are_refused(server: Server) -> None:
    for flags, words in [
        (["--cleanup", "shred"], "cleanup"),
        (["--cleanup", "compact", "--min-cleanable-dirty-ratio", "1.5"], "min_cleanable_dirty_ratio"),
        (["--cleanup", "compact", "--delete-retention", "soon"], "soon"),
    ]:
        refused = run("topic", "create", "app.bad", *flags, server=server)
        assert refused.returncode == 1, flags
        assert refused.stderr.decode().startswith("odradek: error: ") and words in refused.stderr.decode(), (
            refused.stderr.decode()
        )
    assert run("topic", "describe", "app.bad", server=server).returncode == 1  # nothing half-made
