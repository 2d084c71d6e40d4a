"""The ready line of `odradek serve` names every listener.

Goal: a user starting a server sees on stdout where each door listens (Flight, Kafka,
Schema Registry, metrics), with the real port when a port 0 was asked for, and `off`
for a door that is not listening. Method: start `odradek serve` with every door on a
free port, read its ready line, connect to each address named; then again with the
doors off.
"""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

from odradek_process import ODRADEK

READY_SECONDS_MAX = 60.0


def _ready_line(data_dir: Path, *arguments: str) -> str:
    process = subprocess.Popen(
        [*ODRADEK, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *arguments],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()  # the server prints nothing on stdout before it
        assert "ready" in line, process.stderr.read() if process.stderr else ""
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        for door in ("url", "kafka", "registry", "metrics"):
            address = fields[door]
            if address == "off":
                continue
            host, port = re.sub(r"^\w+(\+\w+)?://", "", address).split("/")[0].rsplit(":", 1)
            with socket.create_connection((host, int(port)), timeout=READY_SECONDS_MAX):
                pass  # the door listens where the line says
        return line
    finally:
        process.kill()  # how it stops is not what this test is about
        process.communicate(timeout=READY_SECONDS_MAX)


def test_the_ready_line_names_every_listener(tmp_path: Path) -> None:
    line = _ready_line(
        tmp_path / "a",
        "--kafka-listen", "127.0.0.1:0", "--registry-listen", "127.0.0.1:0",
        "--metrics-listen", "127.0.0.1:0",
    )  # fmt: skip
    assert re.search(r"ready url=grpc://127\.0\.0\.1:\d+ kafka=127\.0\.0\.1:\d+ registry=http://127", line), (
        line
    )
    assert re.search(r"metrics=http://127\.0\.0\.1:[1-9]\d*/metrics", line), line  # the real port, not 0
    off = _ready_line(tmp_path / "b", "--kafka-listen", "off", "--registry-listen", "off")
    assert " kafka=off registry=off metrics=off " in off, off
