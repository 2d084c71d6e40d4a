"""`odradek produce` as a kcat user expects it: --create, -K SEP, -H headers, timestamps,
and a progress line that ends clean.

Goal: producing to a missing topic says how to create it and `--create` does; a line
splits at a separator of choice; headers and a timestamp reach every record; bad
input is refused whole with a clear message; the progress line (only on a terminal)
ends as "1 record" with nothing of a longer line left behind. Method: the command in a
subprocess against a real `odradek serve`, read back with `consume --format jsonl`;
the progress line through a pseudo-terminal on stderr.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess

from odradek_process import ODRADEK, Server, run


def _records(server: Server, topic: str, count: int) -> list[dict[str, object]]:
    result = run(
        "consume", topic, "--from-beginning", "--max", str(count), "--format", "jsonl", server=server
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_a_missing_topic_names_create_and_create_creates_it(server: Server) -> None:
    refused = run("produce", "fresh.topic", server=server, stdin=b"one\n")
    assert refused.returncode == 1
    assert b"does not exist" in refused.stderr and b"--create" in refused.stderr
    assert run("topic", "list", server=server).stdout == b""  # nothing was created
    created = run("produce", "fresh.topic", "--create", server=server, stdin=b"one\ntwo\n")
    assert created.returncode == 0, created.stderr
    assert [record["value"] for record in _records(server, "fresh.topic", 2)] == ["one", "two"]
    again = run("produce", "fresh.topic", "--create", server=server, stdin=b"three\n")
    assert again.returncode == 0, again.stderr  # an existing topic is fine


def test_key_separator_headers_and_timestamp_reach_every_record(server: Server) -> None:
    lines = b"order-1:created:eu\norder-2:paid\n"
    result = run(
        "produce", "orders", "--create", "-K", ":", "-H", "source=shop", "-H", "trace=a=b",
        "--timestamp", "2026-12-05T19:00:00Z", server=server, stdin=lines,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = _records(server, "orders", 2)
    assert [(r["key"], r["value"]) for r in records] == [("order-1", "created:eu"), ("order-2", "paid")]
    assert all(r["headers"] == {"source": "shop", "trace": "a=b"} for r in records)
    assert all(r["timestamp"] == "2026-12-05T19:00:00.000000Z" for r in records)
    tabbed = run(
        "produce", "orders", "-K", "\\t", "--timestamp", "1700000000000", server=server, stdin=b"k\tv\n"
    )
    assert tabbed.returncode == 0, tabbed.stderr
    last = _records(server, "orders", 3)[-1]
    assert (last["key"], last["value"], last["timestamp"]) == ("k", "v", "2023-11-14T22:13:20.000000Z")


def test_bad_input_is_refused_whole(server: Server) -> None:
    assert run("topic", "create", "t", server=server).returncode == 0
    cases = [
        (["-K", ":"], b"a:1\nno separator here\n", b"no ':' between key and value"),
        (["-H", "novalue"], b"x\n", b"-H takes NAME=VALUE"),
        (["--timestamp", "yesterday"], b"x\n", b"is not a moment"),
        (["-K", ""], b"x\n", b"-K needs a separator"),
    ]
    for arguments, stdin, message in cases:
        result = run("produce", "t", *arguments, server=server, stdin=stdin)
        assert result.returncode == 1, (arguments, result.stderr)
        assert message in result.stderr, (arguments, result.stderr)
    consumed = run("consume", "t", "--from-beginning", "--wait", "0.2", server=server)
    assert consumed.stdout == b""  # not even the good line before the bad one


def _stderr_through_a_terminal(server: Server, *arguments: str, stdin: bytes) -> bytes:
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [*ODRADEK, "--server", server.url, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=terminal,
    )
    os.close(terminal)
    process.communicate(stdin, timeout=60)
    assert process.returncode == 0
    written = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal's other end is closed: all was read
            break
        if not chunk:
            break
        written += chunk
    os.close(controller)
    return written


def test_the_progress_line_ends_clean_and_counts_one_record(server: Server) -> None:
    assert run("topic", "create", "one", server=server).returncode == 0
    written = _stderr_through_a_terminal(server, "produce", "one", stdin=b"only\n")
    last = written.rstrip(b"\r\n").split(b"\r")[-1]
    assert last.startswith(b"one: 1 record in "), written
    assert last.endswith(b" s\x1b[K"), written  # erased to the end: nothing of a longer line stays
    quiet = run("produce", "one", server=server, stdin=b"again\n")
    assert quiet.returncode == 0 and quiet.stderr == b""  # not a terminal: no progress
