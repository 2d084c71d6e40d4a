"""Real etcd members on loopback ports: Debian's ``etcd-server`` (etcd 3.4) started as
subprocesses on free ports, each member with its data in a directory of its own, for
the chaos harness and the cluster tests (tests/cluster/etcd_servers.py wraps these in
fixtures).

``etcd_cluster(directory, members)`` starts them and yields an ``EtcdServers`` once
every member is healthy; a member can be killed (SIGKILL, its data kept), started again
and asked who leads. Members run with a short heartbeat (50 ms) and election timeout
(500 ms) so that losing the leader costs about a second, not several, and with their
history trimmed and database bounded, as production should (docs/cluster.md).

A missing binary or a member that does not start raises HarnessError saying why
(``./dev setup`` installs ``etcd-server`` with apt-get).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import signal
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

from odradek.chaos.processes import HarnessError, free_ports

START_SECONDS_MAX = 60.0  # generous: a loaded machine starts three members slowly
STOP_SECONDS_MAX = 15.0
PROBE_SECONDS = 2.0  # one health or status request to a member
HEARTBEAT_MS = 50
ELECTION_MS = 500


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

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

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
            with urllib.request.urlopen(request, timeout=PROBE_SECONDS) as answer:
                body = json.loads(answer.read())
        except (OSError, ValueError):
            return None
        return {"member": str(body["header"]["member_id"]), "leader": str(body.get("leader", "0"))}

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.endpoint}/health", timeout=PROBE_SECONDS) as answer:
                return bool(json.loads(answer.read()).get("health") == "true")
        except (OSError, ValueError):
            return False


@dataclasses.dataclass
class EtcdServers:
    members: list[Member]

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
    member_name: str, directory: Path, client: int, peer: int, initial: str, token: str
) -> list[str]:
    return [
        etcd_binary(),
        f"--name={member_name}",
        f"--data-dir={directory / member_name}",
        f"--listen-client-urls=http://127.0.0.1:{client}",
        f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster={initial}",
        "--initial-cluster-state=new",
        f"--initial-cluster-token={token}",
        f"--heartbeat-interval={HEARTBEAT_MS}",
        f"--election-timeout={ELECTION_MS}",
        "--logger=zap",
        "--log-level=warn",
        "--enable-v2=false",
        # As production should: history trimmed, the database bounded (docs/cluster.md).
        "--auto-compaction-mode=revision",
        "--auto-compaction-retention=1000",
        "--quota-backend-bytes=268435456",
    ]


@contextlib.contextmanager
def etcd_cluster(directory: Path, members: int = 1) -> Iterator[EtcdServers]:
    """``members`` etcd members on free loopback ports, healthy when yielded, stopped
    at the end."""
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
                _command(name, directory, ports[2 * i], ports[2 * i + 1], initial, token),
            )
            for i, name in enumerate(names)
        ]
    )
    try:
        for member in cluster.members:
            member.start()
        try:
            cluster.wait_healthy(START_SECONDS_MAX)
        except HarnessError as exc:
            raise HarnessError(f"etcd did not start: {exc}") from None
        yield cluster
    finally:
        cluster.stop()
