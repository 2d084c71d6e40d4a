"""What the kill -9 crash tests of the engine share: running a writer child process
until it is killed, and finding the temporary files a crash left.

A writer child prints one JSON line per acknowledged operation on stdout; the test
SIGKILLs it at a random moment once it acknowledged something, and gets the complete
lines back (a torn last line was never a complete acknowledgement).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any


def run_writer_until_killed(
    writer: Path,
    tmp_path: Path,
    arguments: list[str],
    rng: random.Random,
    power_loss: bool = False,
    kill_after_seconds: float = 0.6,
    lines_before_kill: int = 1,
) -> list[dict[str, Any]]:
    """Run ``python writer DATA_DIR *arguments [powerloss]``, SIGKILL it between 0 and
    ``kill_after_seconds`` after its first ``lines_before_kill`` lines (so that a loaded
    machine does as much work per cycle as an idle one), return its acknowledgements."""
    data_dir = tmp_path / "data"
    stderr_path = tmp_path / "writer.stderr"
    command = [sys.executable, str(writer), str(data_dir), *arguments]
    if power_loss:
        command.append("powerloss")
    with open(stderr_path, "wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    lines: list[bytes] = []

    def drain() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while len(lines) < lines_before_kill and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if not lines:
        process.kill()
        process.wait()
        reader.join(timeout=10)
        raise AssertionError(f"writer acknowledged nothing: {stderr_path.read_text()}")
    time.sleep(rng.uniform(0.0, kill_after_seconds))
    process.send_signal(signal.SIGKILL)
    process.wait()
    reader.join(timeout=10)
    assert process.stdout is not None
    process.stdout.close()
    return [json.loads(line) for line in lines if line.endswith(b"\n")]


def temporary_files(data_dir: Path) -> list[str]:
    return [
        os.path.join(root, name)
        for root, _, names in os.walk(data_dir)
        for name in names
        if name.endswith(".tmp")
    ]
