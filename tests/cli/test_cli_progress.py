"""Progress bars of long commands (cli/progress.py): rich on a terminal, nothing elsewhere.

Goal: on a terminal a long produce, a consume into a file or a pipe and an offline
verify draw a rich progress bar on stderr (a bar, what is done, and the total when it
is known: a produce from a file counts its bytes), then erase it, leaving one plain
line erased to its end; when stderr is not a terminal nothing is written and rich is
not even imported. Method: the Bar itself on a stream that says it is a terminal and
on one that does not (the import checked in a fresh interpreter), and `odradek
produce` and `odradek consume` with stderr on a pseudo-terminal against a real server.
"""

from __future__ import annotations

import contextlib
import io
import os
import pty
import subprocess
import sys
from pathlib import Path

from odradek_process import ODRADEK, Server, run

from odradek.cli.progress import Bar

BAR = "━".encode()


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_bar_on_a_terminal_is_erased_for_its_last_line() -> None:
    stream = _Terminal()
    bar = Bar("orders", total=2000, unit="bytes", stream=stream)
    bar.advance(1000, description="orders: 10 records")
    bar.finish("orders: 20 records in 0.1 s")
    written = stream.getvalue()
    assert "━" in written and "1.0/2.0 kB" in written and "orders: 10 records" in written
    assert written.endswith("\rorders: 20 records in 0.1 s\x1b[K\n")


def test_no_terminal_no_bar_and_no_rich() -> None:
    script = (
        "import io, sys\n"
        "from odradek.cli.progress import Bar\n"
        "stream = io.StringIO()\n"
        "bar = Bar('orders', total=10, stream=stream)\n"
        "bar.advance(5)\n"
        "bar.finish('orders: 5 records in 0.0 s')\n"
        "assert stream.getvalue() == '', stream.getvalue()\n"
        "assert not [m for m in sys.modules if m.startswith('rich')]\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def _stderr_on_a_terminal(
    server: Server, *arguments: str, stdin: object = subprocess.DEVNULL
) -> tuple[bytes, bytes]:
    controller, terminal = pty.openpty()
    result = subprocess.run(
        [*ODRADEK, "--server", server.url, *arguments],
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=terminal,
        timeout=120,
    )
    os.close(terminal)
    written = b""
    with contextlib.suppress(OSError):  # the other end is closed once all was read
        while chunk := os.read(controller, 65536):
            written += chunk
    os.close(controller)
    assert result.returncode == 0, written
    return result.stdout, written


def test_produce_from_a_file_and_consume_to_a_pipe_show_bars(server: Server, tmp_path: Path) -> None:
    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"".join(b"value-%06d\n" % index for index in range(50_000)))
    with lines.open("rb") as stdin:
        _, produced = _stderr_on_a_terminal(server, "produce", "big", "--create", stdin=stdin)
    assert BAR in produced and b"/650.0 kB" in produced, produced[-2000:]  # the file's size is the total
    assert produced.rstrip(b"\r\n").split(b"\r")[-1].startswith(b"big: 50,000 records in ")

    out, consumed = _stderr_on_a_terminal(server, "consume", "big", "--from-beginning", "--wait", "0")
    assert len(out.splitlines()) == 50_000
    assert BAR in consumed and b"/50000" in consumed, consumed[-2000:]  # the offsets to the end
    assert consumed.rstrip(b"\r\n").split(b"\r")[-1].startswith(b"big: 50,000 records in ")

    quiet = run("produce", "big", server=server, stdin=b"one more\n")
    assert quiet.returncode == 0 and quiet.stderr == b""
