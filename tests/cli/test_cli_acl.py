"""`odradek acl add|list|remove` and `odradek serve --auth --authorize`, end to end.

Goal: what an operator does: bind a user's rights offline (--data-dir) before the start,
start the server with --auth --authorize, then manage bindings through the native door
with an admin token; the user may do what its bindings allow and is refused the rest
(exit code 1, the operation and the resource named); bindings survive a restart; a
non-admin managing bindings is refused; bad flags are refused with a clear message;
--authorize without --auth stops the server at start.
Method: real `odradek serve` subprocesses on loopback ports and CLI subprocesses.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from odradek_process import ODRADEK, Server, run


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_bindings_offline_then_through_the_door_and_across_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    _ok(run("user", "add", "alice", "--data-dir", str(data), stdin=b"alice-secret\n"))
    root = {"ODRADEK_TOKEN": _ok(run("token", "create", "root", "--data-dir", str(data))).strip()}
    alice = {"ODRADEK_TOKEN": _ok(run("token", "create", "alice", "--data-dir", str(data))).strip()}
    added = _ok(
        run(
            "acl",
            "add",
            "--principal",
            "alice",
            "--allow",
            "read,create",
            "--topic",
            "orders.>",
            "--data-dir",
            str(data),
        )
    )
    assert "added allow\tUser:alice\tread\ttopic\tmatch\torders.>" in added
    flags = ("--auth", "--authorize", "--kafka-listen", "off", "--registry-listen", "off")
    server = Server(data, *flags)
    try:
        _ok(run("topic", "create", "orders.eu", server=server, env=alice))
        refused = run("produce", "orders.eu", server=server, env=alice, stdin=b"one\n")
        assert refused.returncode == 1
        assert b"User:alice is not authorized to write topic 'orders.eu'" in refused.stderr
        _ok(
            run(
                "acl",
                "add",
                "--principal",
                "User:alice",
                "--allow",
                "write",
                "--topic",
                "orders.eu",
                server=server,
                env=root,
            )
        )
        _ok(run("produce", "orders.eu", server=server, env=alice, stdin=b"one\n"))
        not_admin = run("acl", "list", server=server, env=alice)
        assert not_admin.returncode == 1 and b"admin" in not_admin.stderr
        listed = [
            json.loads(line)
            for line in _ok(run("acl", "list", "--format", "json", server=server, env=root)).splitlines()
        ]
        assert {(entry["operation"], entry["pattern"]) for entry in listed} == {
            ("read", "orders.>"),
            ("create", "orders.>"),
            ("write", "orders.eu"),
        }
    finally:
        code, errors = server.stop()
    assert code == 0 and "alice-secret" not in errors
    server = Server(data, *flags)
    try:
        _ok(run("produce", "orders.eu", server=server, env=alice, stdin=b"two\n"))  # kept across the restart
        removed = _ok(
            run("acl", "remove", "--principal", "alice", "--operation", "write", server=server, env=root)
        )
        assert "removed allow\tUser:alice\twrite\ttopic\tliteral\torders.eu" in removed
        again = run("produce", "orders.eu", server=server, env=alice, stdin=b"three\n")
        assert again.returncode == 1 and b"write topic 'orders.eu'" in again.stderr
        consumed = _ok(
            run("consume", "orders.eu", "--from-beginning", "--max", "2", server=server, env=alice)
        )
        assert len(consumed.splitlines()) == 2
    finally:
        code, _ = server.stop()
    assert code == 0


def test_bad_flags_are_refused(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    both = run(
        "acl",
        "add",
        "--principal",
        "alice",
        "--allow",
        "read",
        "--deny",
        "write",
        "--topic",
        "t",
        "--data-dir",
        data,
    )
    assert both.returncode == 1 and b"one of them" in both.stderr
    nothing = run("acl", "add", "--principal", "alice", "--allow", "read", "--data-dir", data)
    assert nothing.returncode == 1 and b"name a resource" in nothing.stderr
    operation = run(
        "acl", "add", "--principal", "alice", "--allow", "drop", "--topic", "t", "--data-dir", data
    )
    assert operation.returncode == 1 and b"operation must be one of" in operation.stderr
    everything = run("acl", "remove", "--data-dir", data)
    assert everything.returncode == 1 and b"name what to remove" in everything.stderr
    assert _ok(run("acl", "list", "--data-dir", data)) == ""


def test_authorize_without_auth_stops_the_server(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*ODRADEK, "serve", "--data-dir", str(tmp_path / "data"), "--authorize", "--kafka-listen", "off"],
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode == 1 and b"--authorize needs --auth" in refused.stderr
