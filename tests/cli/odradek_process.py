"""Real `odradek serve` processes on free loopback ports, and a runner for CLI commands."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

ODRADEK = [sys.executable, "-m", "odradek.cli.main"]
READY_SECONDS_MAX = 30.0


class Server:
    """One `odradek serve` subprocess; ``url`` is known once it printed its ready line."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        command = [*ODRADEK, "serve", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0", *args]
        self.process = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, **(env or {})},
        )
        self.url = self._wait_ready()

    def _wait_ready(self) -> str:
        assert self.process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self.process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + READY_SECONDS_MAX
        while time.monotonic() < deadline:
            if not selector.select(timeout=0.5):
                if self.process.poll() is not None:
                    break
                continue
            line = self.process.stdout.readline().decode()
            if not line:
                break
            match = re.search(r"ready url=(\S+)", line)
            if match:
                selector.close()
                return match.group(1)
        selector.close()
        self.process.kill()
        _, errors = self.process.communicate()
        raise AssertionError(f"odradek serve did not become ready: {errors.decode()[-2000:]}")

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 20.0) -> tuple[int, str]:
        """Send ``signum``, wait for the exit; (exit code, stderr)."""
        self.process.send_signal(signum)
        _, errors = self.process.communicate(timeout=timeout)
        return self.process.returncode, errors.decode()


def run(
    *args: str,
    server: Server | None = None,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[bytes]:
    """Run `odradek ARGS` against ``server``; the result has returncode, stdout, stderr."""
    command = [*ODRADEK, *(["--server", server.url] if server is not None else []), *args]
    return subprocess.run(
        command, input=stdin, capture_output=True, timeout=timeout, env={**os.environ, **(env or {})}
    )
