"""Peer servers as subprocesses: found or installed, started on a free loopback port with
a private data directory, waited for, and stopped.

Rules
-----
* A server binary missing from PATH is installed from Debian's packages when the suite
  runs as root and installing is allowed; otherwise the system is skipped with a note
  that names the package.
* A server runs in its own session (process group) with its output in a log file in
  its data directory; ``stop`` sends SIGTERM, waits, and SIGKILLs only what is left.
* Readiness is probed, never slept for: a callable that connects, or a line in the log.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from odradek.bench.outcomes import Skipped

ready_timeout_seconds = 30.0
stop_timeout_seconds = 15.0
apt_timeout_seconds = 600.0
log_tail_bytes = 2000


def find_or_install(
    binary: str, apt_package: str, allow_install: bool, progress: Callable[[str], None]
) -> str:
    """Path of ``binary``; installs ``apt_package`` if it is missing. Raises Skipped."""
    found = shutil.which(binary) or _in_sbin(binary)
    if found:
        return found
    if not allow_install:
        raise Skipped(f"{binary} not found (install the Debian package {apt_package})")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Skipped(
            f"{binary} not found and cannot install it here (needs root and apt-get): "
            f"install the Debian package {apt_package}"
        )
    progress(f"{binary} not found: installing Debian package {apt_package}")
    if not _apt_install(apt_package):
        progress("apt-get install failed: refreshing the package lists and retrying")
        _apt(["apt-get", "update"])
        if not _apt_install(apt_package):
            raise Skipped(f"{binary} not found and apt-get install {apt_package} failed")
    found = shutil.which(binary) or _in_sbin(binary)
    if not found:
        raise Skipped(f"{apt_package} installed but {binary} is still not on PATH")
    return found


def _in_sbin(binary: str) -> str | None:
    for directory in ("/usr/sbin", "/usr/local/sbin", "/sbin"):
        candidate = os.path.join(directory, binary)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _apt_install(package: str) -> bool:
    return _apt(["apt-get", "install", "-y", "--no-install-recommends", package])


def _apt(argv: list[str]) -> bool:
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    try:
        result = subprocess.run(
            argv,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=apt_timeout_seconds,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


class ServerProcess:
    """One server subprocess with its log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.stop_signal = stop_signal
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def wait_ready(self, probe: Callable[[], bool], timeout: float = ready_timeout_seconds) -> None:
        """Poll ``probe`` until it returns True; raise with the log's tail if the server dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                if probe():
                    return
            except (OSError, ConnectionError):
                pass
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready in {timeout:.0f} s: {self.log_tail()}")

    def wait_for_line(self, text: str, timeout: float = ready_timeout_seconds) -> None:
        self.wait_ready(lambda: text in self._log_text(), timeout)

    def _check_alive(self) -> None:
        if self._process is None:
            raise RuntimeError(f"{self.name} was not started")
        code = self._process.poll()
        if code is not None:
            raise RuntimeError(f"{self.name} exited with code {code}: {self.log_tail()}")

    def _log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        return self._log_text()[-log_tail_bytes:].strip()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(self.stop_signal)
        try:
            process.wait(timeout=stop_timeout_seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=stop_timeout_seconds)
