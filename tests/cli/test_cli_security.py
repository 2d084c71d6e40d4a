"""`odradek user` and `odradek token`, and `odradek serve --auth`, end to end.

Goal: what an operator does: add the first admin offline (--data-dir, password on
stdin, never a flag), start the server with --auth, then manage users and tokens
through the native door with an admin token; a client without credentials, a revoked
token, or a non-admin managing users is refused with exit code 1 and a clear message;
a token is printed once and never listed. A door on 0.0.0.0 without authentication is
refused at start unless --insecure, and a server without authentication says so in
its ready line.
Method: real `odradek serve` subprocesses on loopback ports and CLI subprocesses.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from odradek_process import ODRADEK, Server, run


def _ok(result: subprocess.CompletedProcess[bytes]) -> str:
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_users_and_tokens_offline_then_through_the_door(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _ok(run("user", "add", "root", "--admin", "--data-dir", str(data), stdin=b"root-secret\n"))
    admin_token = _ok(run("token", "create", "root", "--data-dir", str(data))).strip()
    assert admin_token.startswith("odr_")
    server = Server(data, "--auth", "--kafka-listen", "off", "--registry-listen", "off")
    try:
        refused = run("topic", "list", server=server)
        assert refused.returncode == 1 and b"unauthenticated" in refused.stderr.lower()
        admin = {"ODRADEK_TOKEN": admin_token}
        _ok(run("tenant", "create", "shop", server=server, env=admin))
        _ok(run("user", "add", "bob", "--tenant", "shop", server=server, stdin=b"bob-secret\n", env=admin))
        listing = _ok(run("user", "list", server=server, env=admin))
        assert "bob\ttenant=shop" in listing and "root\ttenant=- admin" in listing
        bob_token = _ok(run("token", "create", "bob", "--expires", "30d", server=server, env=admin)).strip()
        _ok(run("topic", "create", "orders", server=server, env={"ODRADEK_TOKEN": bob_token}))
        not_admin = run("user", "list", server=server, env={"ODRADEK_TOKEN": bob_token})
        assert not_admin.returncode == 1 and b"admin" in not_admin.stderr
        tokens = _ok(run("token", "list", server=server, env=admin))
        assert bob_token not in tokens and admin_token not in tokens
        bob_id = bob_token.split("_")[1]
        _ok(run("token", "revoke", bob_id, server=server, env=admin))
        revoked = run("topic", "list", server=server, env={"ODRADEK_TOKEN": bob_token})
        assert revoked.returncode == 1 and b"revoked" in revoked.stderr
    finally:
        code, errors = server.stop()
    assert code == 0
    assert "root-secret" not in errors and "bob-secret" not in errors and bob_token not in errors


def test_a_door_beyond_loopback_without_authentication_is_refused(tmp_path: Path) -> None:
    refused = subprocess.run(
        [*ODRADEK, "serve", "--data-dir", str(tmp_path / "data"), "--listen", "0.0.0.0:0"],
        capture_output=True,
        timeout=60,
    )
    assert refused.returncode == 1
    assert b"not a loopback address and no authentication is configured" in refused.stderr
    assert b"--insecure" in refused.stderr


def _ready_line(*args: str) -> str:
    process = subprocess.Popen([*ODRADEK, "serve", *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        line = process.stdout.readline().decode()  # the ready line (or nothing if it failed)
    finally:
        process.terminate()
        process.communicate(timeout=30)
    assert "ready" in line, line
    return line


def test_a_server_without_authentication_says_so(tmp_path: Path) -> None:
    doors = ["--kafka-listen", "off", "--registry-listen", "off"]
    plain = _ready_line("--data-dir", str(tmp_path / "a"), "--listen", "127.0.0.1:0", *doors)
    assert "no authentication" in plain
    insecure = _ready_line("--data-dir", str(tmp_path / "b"), "--listen", "0.0.0.0:0", "--insecure", *doors)
    assert "no authentication" in insecure
    secured = _ready_line("--data-dir", str(tmp_path / "c"), "--listen", "0.0.0.0:0", "--auth", *doors)
    assert "no authentication" not in secured
