"""`odradek consume` as a kcat user expects it: templates, --since, --last-per-key, and
Ctrl-C that ends a follow at once.

Goal: a `--format` template prints kcat's fields; `--since` starts at a moment (a
duration ago or a date); `--last-per-key` prints each key's latest record; bad
options are refused clearly; Ctrl-C ends a follow that has nothing to print, with and
without `--group` (before, a follow without a group waited inside the Flight read for
a record to arrive before it saw the signal). Method: the command in a subprocess
against a real `odradek serve`; SIGINT sent once the command is waiting (a generous
deadline for the exit, never a timing assertion); the template also in-process on a
hand-made batch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow as pa
import pytest
from odradek_process import ODRADEK, Server, run

EXIT_SECONDS_MAX = 30.0  # a generous deadline on a loaded machine; the old code never exited


def _produce(server: Server, topic: str, lines: bytes, *arguments: str) -> None:
    result = run("produce", topic, "--create", *arguments, server=server, stdin=lines)
    assert result.returncode == 0, result.stderr


def test_a_template_prints_kcat_fields() -> None:
    from odradek.cli.output import Template

    batch = pa.RecordBatch.from_pydict(
        {
            "offset": pa.array([5, 6], pa.int64()),
            "key": pa.array([b"k", None], pa.binary()),
            "value": pa.array([b"v1", b"v2"], pa.binary()),
            "version": pa.array([3, None], pa.int64()),
            "timestamp": pa.array([1_700_000_000_000_000, 5_000], pa.timestamp("us", tz="UTC")),
            "headers": pa.array([[("a", b"1"), ("b", b"2")], None], pa.map_(pa.utf8(), pa.binary())),
        }
    )
    template = Template(r"%t|%o|%k|%v|%s|%h|%T|%V|%K|%S|%%\t\\\n")
    assert template.format(batch, "orders") == (
        b"orders|5|k|v1|v1|a=1,b=2|1700000000000|3|1|2|%\t\\\norders|6||v2|v2||5||0|2|%\t\\\n"
    )
    assert template.format(batch.slice(1), "orders").startswith(b"orders|6||v2")


def test_template_since_and_last_per_key_end_to_end(server: Server) -> None:
    _produce(server, "orders", b"a:1\nb:1\na:2\nc:1\nb:2\n", "-K", ":", "-H", "source=shop")
    _produce(server, "orders", b"keyless\n")
    template = run(
        "consume", "orders", "--from-beginning", "--max", "2", "--format", r"%o %k=%v [%h]\n", server=server
    )
    assert template.stdout == b"0 a=1 [source=shop]\n1 b=1 [source=shop]\n", template.stderr
    latest = run("consume", "orders", "--last-per-key", "-f", r"%o %k=%v v%V\n", server=server)
    assert latest.returncode == 0, latest.stderr
    assert latest.stdout == b"2 a=2 v2\n3 c=1 v1\n4 b=2 v2\n"
    since_minutes = run("consume", "orders", "--since", "10m", "--wait", "0.5", "-f", r"%o\n", server=server)
    assert since_minutes.stdout == b"0\n1\n2\n3\n4\n5\n", since_minutes.stderr
    future = run("consume", "orders", "--since", "2999-01-01T00:00:00Z", "--wait", "0.5", server=server)
    assert future.returncode == 0 and future.stdout == b""
    past = run("consume", "orders", "--since", "2000-01-01", "--max", "1", "-f", r"%v\n", server=server)
    assert past.stdout == b"1\n"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--format", "%x"], b"%x is not a field"),
        (["--format", "yaml"], b"--format is text, jsonl or a template"),
        (["--since", "last tuesday"], b"is not a moment"),
        (["--since", "1m", "--from-beginning"], b"each say where to start"),
        (["--last-per-key", "--group", "g"], b"cannot share it with a group"),
    ],
)
def test_bad_consume_options_are_refused(server: Server, arguments: list[str], message: bytes) -> None:
    result = run("consume", "t", *arguments, server=server)
    assert result.returncode == 1, result.stderr
    assert message in result.stderr


def _connected(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds an established TCP connection to ``port`` (Linux)."""
    inodes = set()
    for descriptor in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(descriptor)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                if remote_port == port and fields[3] == "01" and fields[9] in inodes:
                    return True
    return False


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads /proc to see the connection")
@pytest.mark.parametrize("group", [[], ["--group", "watchers"]], ids=["alone", "in a group"])
def test_ctrl_c_ends_a_follow_at_once(server: Server, group: list[str]) -> None:
    assert run("topic", "create", "quiet", server=server).returncode == 0
    process = subprocess.Popen(
        [*ODRADEK, "--server", server.url, "consume", "quiet", *group],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    port = int(server.url.rsplit(":", 1)[1])
    try:
        deadline = time.monotonic() + EXIT_SECONDS_MAX
        while not _connected(process.pid, port):  # then it waits for records that never come
            assert process.poll() is None and time.monotonic() < deadline, "the consumer never connected"
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)  # nothing will arrive: only the signal can end it
        code = process.wait(timeout=EXIT_SECONDS_MAX)
    finally:
        if process.poll() is None:
            process.kill()
        _, errors = process.communicate()
    assert code == 130, errors


def test_progress_on_a_terminal_while_records_go_to_a_pipe(server: Server) -> None:
    """stderr a terminal, stdout a pipe: a progress line that ends with the count."""
    import pty

    _produce(server, "counted", b"1\n2\n3\n")
    controller, terminal = pty.openpty()
    result = subprocess.run(
        [*ODRADEK, "--server", server.url, "consume", "counted", "--from-beginning", "--max", "3"],
        stdout=subprocess.PIPE,
        stderr=terminal,
        timeout=60,
    )
    os.close(terminal)
    written = b""
    with contextlib.suppress(OSError):  # the other end is closed once all was read
        while chunk := os.read(controller, 65536):
            written += chunk
    os.close(controller)
    assert result.returncode == 0 and result.stdout == b"1\n2\n3\n"
    last = written.rstrip(b"\r\n").split(b"\r")[-1]
    assert last.startswith(b"counted: 3 records in ") and last.endswith(b" s\x1b[K"), written
    quiet = run("consume", "counted", "--from-beginning", "--max", "1", server=server)
    assert quiet.stderr == b""  # stderr not a terminal: nothing
