"""Real etcd members on loopback ports: Debian's ``etcd-server`` (etcd 3.4) started as
subprocesses on free ports, each member with its data in a directory of its own, for
the chaos harness and the cluster tests (tests/cluster/etcd_servers.py wraps these in
fixtures).

``etcd_cluster(directory, members)`` starts them and yields an ``EtcdServers`` once
every member is healthy; a member can be killed (SIGKILL, its data kept), started again
and asked who leads. Members run with a short heartbeat (50 ms) and election timeout
(500 ms) so that losing the leader costs about a second, not several, and with their
history trimmed and database bounded, as production should (docs/cluster.md).

Optionally (tests of a secured etcd): ``tls=EtcdTls(...)`` serves the client port over
TLS (``https://`` endpoints; with ``client_cert_auth``, etcd's ``--client-cert-auth``)
from PEM files the caller made, and ``auth=EtcdAuth(...)`` enables authentication once
the members are healthy: a ``root`` user, and a user whose role may read and write one
key prefix (through etcd's gRPC Auth API: no ``etcdctl`` needed). Without them the
members start exactly as before.

A missing binary or a member that does not start raises HarnessError saying why
(``./dev setup`` installs ``etcd-server`` with apt-get).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from odradek.chaos.processes import HarnessError
from odradek.ports import free_ports

START_SECONDS_MAX = 60.0  # generous: a loaded machine starts three members slowly
STOP_SECONDS_MAX = 15.0
PROBE_SECONDS = 2.0  # one health or status request to a member
HEARTBEAT_MS = 50
ELECTION_MS = 500


@dataclasses.dataclass(frozen=True)
class EtcdTls:
    """The members' client port over TLS: their certificate and key, the CA that signed
    it (and, with ``client_cert_auth``, the clients' certificates), and the client
    certificate the harness itself presents (health probes, enabling auth)."""

    ca: Path
    cert: Path
    key: Path
    client_cert: Path | None = None
    client_key: Path | None = None
    client_cert_auth: bool = False

    def context(self) -> ssl.SSLContext:
        """What the harness's HTTPS probes verify and present."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if self.client_cert is not None and self.client_key is not None:
            context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


@dataclasses.dataclass(frozen=True)
class EtcdAuth:
    """Authentication enabled once the members are healthy: ``root`` (with
    ``root_password``) and ``user`` whose role ``role`` reads and writes ``prefix``."""

    user: str = "odradek"
    password: str = "odradek-test-password"
    root_password: str = "root-test-password"
    role: str = "odradek"
    prefix: bytes = b"/odradek/"
    # etcd's --auth-token-ttl: seconds a simple token lives unused (etcd's default 300).
    token_ttl_seconds: int | None = None


def etcd_binary() -> str:
    path = shutil.which("etcd")
    if path is None:
        raise HarnessError(
            "etcd is not installed: run ./dev setup (it installs Debian's etcd-server with apt-get)"
        )
    return path


@dataclasses.dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    directory: Path
    command: list[str]
    process: subprocess.Popen[bytes] | None = None
    tls: EtcdTls | None = None

    @property
    def endpoint(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}"

    def _open(self, request: urllib.request.Request | str) -> Any:
        context = self.tls.context() if self.tls is not None else None
        return urllib.request.urlopen(request, timeout=PROBE_SECONDS, context=context)

    @property
    def log_path(self) -> Path:
        return self.directory / f"{self.name}.log"

    def start(self) -> None:
        """Start the member (again: with the data it had, as after a crash)."""
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: the member's data directory stays for a restart."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(STOP_SECONDS_MAX)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_SECONDS_MAX)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(STOP_SECONDS_MAX)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:] if self.log_path.exists() else ""

    def status(self) -> dict[str, str] | None:
        """This member's view (its id, the leader's id), through etcd's JSON gateway; None
        if it does not answer."""
        request = urllib.request.Request(f"{self.endpoint}/v3/maintenance/status", data=b"{}", method="POST")
        try:
            with self._open(request) as answer:
                body = json.loads(answer.read())
        except (OSError, ValueError):
            return None
        return {"member": str(body["header"]["member_id"]), "leader": str(body.get("leader", "0"))}

    def healthy(self) -> bool:
        try:
            with self._open(f"{self.endpoint}/health") as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


@dataclasses.dataclass
class EtcdServers:
    members: list[Member]
    tls: EtcdTls | None = None
    auth: EtcdAuth | None = None

    @property
    def endpoints(self) -> list[str]:
        return [member.endpoint for member in self.members]

    @property
    def url(self) -> str:
        """What ``odradek serve --etcd`` takes: the client URLs, comma-separated."""
        return ",".join(self.endpoints)

    def leader(self, seconds: float = START_SECONDS_MAX) -> Member:
        """The member that is leader now, once the live members agree on one (waits up to
        ``seconds``, then raises HarnessError)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            live = [member for member in self.members if member.alive()]
            views = [member.status() for member in live]
            leaders = {view["leader"] for view in views if view is not None}
            if len(leaders) == 1 and None not in views:
                (leader_id,) = leaders
                for member, view in zip(live, views, strict=True):
                    if view is not None and view["member"] == leader_id:
                        return member
            time.sleep(0.05)
        raise HarnessError(f"the live etcd members agree on no leader within {seconds} s")

    def get_prefix(self, prefix: bytes) -> dict[bytes, bytes]:
        """Every key under ``prefix`` and its value, read (linearizably) through the JSON
        gateway of the first member that answers; HarnessError if none does. For the
        harness's own checks (a cluster's placements), never the agents' work."""
        end = prefix[:-1] + bytes([prefix[-1] + 1]) if prefix and prefix[-1] < 0xFF else b"\0"
        body = json.dumps(
            {"key": base64.b64encode(prefix).decode(), "range_end": base64.b64encode(end).decode()}
        ).encode()
        for member in self.members:
            if not member.alive():
                continue
            request = urllib.request.Request(f"{member.endpoint}/v3/kv/range", data=body, method="POST")
            try:
                with member._open(request) as answer:
                    found = json.loads(answer.read())
            except (OSError, ValueError):
                continue
            return {
                base64.b64decode(kv["key"]): base64.b64decode(kv.get("value", ""))
                for kv in found.get("kvs", [])
            }
        raise HarnessError(f"no etcd member answered a read of {prefix!r}")

    def healthy(self) -> bool:
        """Every member runs and says it is healthy (it has a leader, a quorum)."""
        return all(member.alive() and member.healthy() for member in self.members)

    def wait_healthy(self, seconds: float = START_SECONDS_MAX) -> None:
        deadline = time.monotonic() + seconds
        while not self.healthy():
            exited = [member.name for member in self.members if not member.alive()]
            if exited or time.monotonic() > deadline:
                why = f"{exited} exited" if exited else f"not healthy within {seconds} s"
                raise HarnessError(f"etcd is not serving: {why}\n{self.output()}")
            time.sleep(0.05)

    def output(self) -> str:
        return "\n".join(f"--- {member.name} ---\n{member.output()}" for member in self.members)

    def stop(self) -> None:
        for member in self.members:
            member.stop()


def _command(
    member_name: str,
    directory: Path,
    client: int,
    peer: int,
    initial: str,
    token: str,
    tls: EtcdTls | None = None,
    auth: EtcdAuth | None = None,
    log_level: str = "warn",
) -> list[str]:
    scheme = "https" if tls is not None else "http"
    secured = []
    if tls is not None:
        secured += [f"--cert-file={tls.cert}", f"--key-file={tls.key}"]
        if tls.client_cert_auth:  # (etcd 3.4 asks for a client certificate whenever it has a CA)
            secured += ["--client-cert-auth", f"--trusted-ca-file={tls.ca}"]
    if auth is not None and auth.token_ttl_seconds is not None:
        secured.append(f"--auth-token-ttl={auth.token_ttl_seconds}")
    return [
        etcd_binary(),
        f"--name={member_name}",
        f"--data-dir={directory / member_name}",
        f"--listen-client-urls={scheme}://127.0.0.1:{client}",
        f"--advertise-client-urls={scheme}://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster={initial}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={token}",
        f"--heartbeat-interval={HEARTBEAT_MS}",
        f"--election-timeout={ELECTION_MS}",
        "--logger=zap",
        f"--log-level={log_level}",
        "--enable-v2=false",
        # As production should: history trimmed, the database bounded (docs/cluster.md).
        "--auto-compaction-mode=revision",
        "--auto-compaction-retention=1000",
        "--quota-backend-bytes=268435456",
        *secured,
    ]


@contextlib.contextmanager
def etcd_cluster(
    directory: Path,
    members: int = 1,
    *,
    tls: EtcdTls | None = None,
    auth: EtcdAuth | None = None,
    log_level: str = "warn",
) -> Iterator[EtcdServers]:
    """``members`` etcd members on free loopback ports, healthy when yielded (with
    ``auth``, authentication enabled), stopped at the end. ``log_level`` is etcd's
    (``info`` logs each simple token it deletes)."""
    directory.mkdir(parents=True, exist_ok=True)
    ports = free_ports(2 * members)
    names = [f"m{index}" for index in range(members)]
    initial = ",".join(f"{name}=http://127.0.0.1:{ports[2 * i + 1]}" for i, name in enumerate(names))
    token = f"odradek-test-{uuid.uuid4().hex[:8]}"
    cluster = EtcdServers(
        [
            Member(
                name,
                ports[2 * i],
                ports[2 * i + 1],
                directory,
                _command(
                    name, directory, ports[2 * i], ports[2 * i + 1], initial, token, tls, auth, log_level
                ),
                tls=tls,
            )
            for i, name in enumerate(names)
        ],
        tls=tls,
        auth=auth,
    )
    try:
        for member in cluster.members:
            member.start()
        try:
            cluster.wait_healthy(START_SECONDS_MAX)
        except HarnessError as exc:
            raise HarnessError(f"etcd did not start: {exc}") from None
        if auth is not None:
            enable_auth(cluster.members[0], auth)
        yield cluster
    finally:
        cluster.stop()


def enable_auth(member: Member, auth: EtcdAuth) -> None:
    """Create ``root`` and ``auth.user`` (its role reads and writes ``auth.prefix``), then
    enable authentication, as ``etcdctl user add``, ``role add``, ``role
    grant-permission``, ``user grant-role`` and ``auth enable`` do."""
    import aetcd.rpc  # the cluster extra
    import grpc

    target = f"127.0.0.1:{member.client_port}"
    tls = member.tls
    if tls is None:
        channel = grpc.insecure_channel(target)
    else:

        def read(path: Path | None) -> bytes | None:
            return None if path is None else path.read_bytes()

        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca.read_bytes(),
            private_key=read(tls.client_key),
            certificate_chain=read(tls.client_cert),
        )
        channel = grpc.secure_channel(target, credentials)
    end = bytearray(auth.prefix)
    end[-1] += 1  # the prefix's range end: its last byte plus one
    permission = aetcd.rpc.Permission(
        permType=aetcd.rpc.Permission.READWRITE, key=auth.prefix, range_end=bytes(end)
    )
    stub = aetcd.rpc.AuthStub(channel)
    try:
        for call, request in (
            (stub.UserAdd, aetcd.rpc.AuthUserAddRequest(name="root", password=auth.root_password)),
            (stub.RoleAdd, aetcd.rpc.AuthRoleAddRequest(name="root")),
            (stub.UserGrantRole, aetcd.rpc.AuthUserGrantRoleRequest(user="root", role="root")),
            (stub.RoleAdd, aetcd.rpc.AuthRoleAddRequest(name=auth.role)),
            (
                stub.RoleGrantPermission,
                aetcd.rpc.AuthRoleGrantPermissionRequest(name=auth.role, perm=permission),
            ),
            (stub.UserAdd, aetcd.rpc.AuthUserAddRequest(name=auth.user, password=auth.password)),
            (stub.UserGrantRole, aetcd.rpc.AuthUserGrantRoleRequest(user=auth.user, role=auth.role)),
            (stub.AuthEnable, aetcd.rpc.AuthEnableRequest()),
        ):
            call(request, timeout=PROBE_SECONDS * 5)
    except grpc.RpcError as exc:
        raise HarnessError(f"enabling authentication in etcd failed: {exc}") from exc
    finally:
        channel.close()
