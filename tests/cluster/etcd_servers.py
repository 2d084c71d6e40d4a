"""Real etcd servers for tests: Debian's ``etcd-server`` (etcd 3.4) started as
subprocesses on free loopback ports, each member with its data in a temporary directory,
stopped at the end. The members themselves are ``odradek.chaos.etcd``'s (the chaos
harness starts them the same way); this module makes fixtures of them.

Fixtures: ``etcd_server`` (session-scoped: one single-member etcd for the whole run;
tests keep apart by using a cluster name of their own) and ``etcd_cluster3`` (a fresh
3-member cluster per test, for tests that kill members). The context manager
``etcd_cluster(directory, members)`` starts either. Another test directory imports them
the way tests/cluster/conftest.py does.

A missing binary fails the test (it does not skip) and says how to install it:
``./dev setup`` installs ``etcd-server`` with apt-get. A member that does not start fails
the test with its output. Members run with a short heartbeat (50 ms) and election timeout
(500 ms) so that losing the leader costs about a second, not several.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from object_servers import free_ports

from odradek.chaos import etcd
from odradek.chaos.etcd import ELECTION_MS, HEARTBEAT_MS, START_SECONDS_MAX, EtcdServers, Member
from odradek.chaos.processes import HarnessError


@contextlib.contextmanager
def etcd_cluster(directory: Path, members: int = 1) -> Iterator[EtcdServers]:
    """``members`` etcd members on free loopback ports, healthy when yielded; one that
    does not start fails the test with its output."""
    with contextlib.ExitStack() as stack:
        try:
            cluster = stack.enter_context(etcd.etcd_cluster(directory, members))
        except HarnessError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield cluster


@pytest.fixture(scope="session")
def etcd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServers]:
    """One single-member etcd for the whole run."""
    with etcd_cluster(tmp_path_factory.mktemp("etcd"), members=1) as cluster:
        yield cluster


@pytest.fixture
def etcd_cluster3(tmp_path: Path) -> Iterator[EtcdServers]:
    """A fresh 3-member etcd cluster for one test (which may kill members)."""
    with etcd_cluster(tmp_path / "etcd", members=3) as cluster:
        yield cluster


def unique_cluster_name() -> str:
    """A cluster name no other test uses, so tests sharing ``etcd_server`` never meet."""
    return f"t{uuid.uuid4().hex[:12]}"


__all__ = [
    "ELECTION_MS",
    "HEARTBEAT_MS",
    "START_SECONDS_MAX",
    "EtcdServers",
    "Member",
    "etcd_cluster",
    "etcd_cluster3",
    "etcd_server",
    "free_ports",
    "unique_cluster_name",
]
