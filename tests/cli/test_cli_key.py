"""`odradek key`: a key without records is an error, and --last prints the latest record.

Goal: asking for a key that has no records (or none from --from-version on) exits 1
with a message saying so, instead of printing nothing and exiting 0; `--last` prints
only the key's latest record; templates work as in consume. Method: the command in a
subprocess against a real `odradek serve`.
"""

from __future__ import annotations

from odradek_process import Server, run


def test_missing_keys_exit_1_and_last_prints_the_latest(server: Server) -> None:
    assert run("topic", "create", "accounts", server=server).returncode == 0
    produced = run("produce", "accounts", "--keyed", server=server, stdin=b"a\t10\nb\t5\na\t12\na\t15\n")
    assert produced.returncode == 0, produced.stderr
    missing = run("key", "accounts", "nobody", server=server)
    assert missing.returncode == 1 and missing.stdout == b""
    assert b"key 'nobody' has no records" in missing.stderr
    beyond = run("key", "accounts", "a", "--from-version", "9", server=server)
    assert beyond.returncode == 1
    assert b"no records from version 9 (its latest is 3)" in beyond.stderr
    last = run("key", "accounts", "a", "--last", "--format", r"%V=%v\n", server=server)
    assert last.returncode == 0, last.stderr
    assert last.stdout == b"3=15\n"
    whole = run("key", "accounts", "a", server=server)
    assert whole.stdout == b"10\n12\n15\n"
    refused = run("key", "accounts", "a", "--last", "--from-version", "2", server=server)
    assert refused.returncode == 1 and b"--last" in refused.stderr
