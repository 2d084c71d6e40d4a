"""moto's S3 server for the object-store rows: a subprocess on a free loopback port,
objects in its memory, one bucket created at start, stopped with the system.

moto (``moto[server]``) comes with the ``stores`` extra; without it ``require_moto``
raises Skipped naming the extra, as other systems are skipped when their server is
missing. The same server the tests start (tests/storage/object_servers.py), without
pytest: the bench cannot import the tests.
"""

from __future__ import annotations

import importlib.util
import sys
import urllib.request
from pathlib import Path

from odradek.bench import servers
from odradek.bench.outcomes import Skipped
from odradek.ports import free_port
from odradek.storage.objects import ObjectStore, open_store

BUCKET = "odradek-bench"
# moto accepts any credentials; the client needs some to sign its requests.
ACCESS_KEY_ID = "odradekbenchkey"
SECRET_ACCESS_KEY = "odradek-bench-secret"
REGION = "us-east-1"
# moto imports Flask and boto at start: a few seconds on a loaded 2-core machine.
start_seconds_max = 90.0
probe_seconds = 5.0
#: What the server needs beyond this package: moto and the web server it runs on.
REQUIRED_MODULES = ("moto", "flask", "flask_cors")
MISSING = "install odradek[stores] (moto[server], moto's S3 server)"


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
        return {
            "endpoint": self.endpoint,
            "access_key_id": ACCESS_KEY_ID,
            "secret_access_key": SECRET_ACCESS_KEY,
            "region": REGION,
            "allow_http": True,
        }

    def open(self, prefix: str) -> ObjectStore:
        return open_store(f"s3://{BUCKET}/{prefix}", options=self.options)

    def stop(self) -> None:
        self._process.stop()
