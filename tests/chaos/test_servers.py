"""The chaos harness's servers start, take their faults and come back.

Goal: what the harness does to processes is what it means (SIGSTOP stops, SIGCONT
resumes, SIGKILL kills, a server that exits early fails with its log); a killed etcd
member (the leader included) starts again on its data and the cluster is healthy again;
the store proxy forwards every kind of S3 request faithfully and, on demand, refuses
requests with 503 SlowDown or delays them, counting what it did. Method: real
subprocesses (a sleeping Python, etcd, moto, SeaweedFS), the process state read from /proc, an
ObjectStore through the proxy; waits on conditions with generous deadlines, nothing
asserts a duration.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from odradek.chaos.etcd import etcd_cluster
from odradek.chaos.processes import HarnessError, Process, wait_until
from odradek.chaos.stores import SERVERS, S3Store, StoreFaults, s3_store
from odradek.errors import InvalidRequest
from odradek.storage.objects import ObjectStore, RetryPolicy, StoreUnavailable, open_store

DEADLINE_SECONDS = 60.0


def _state(process: Process) -> str:
    """The process's state letter in /proc (R, S, T for stopped, ...)."""
    stat = Path(f"/proc/{process.pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0]


def test_a_process_is_paused_resumed_and_killed(tmp_path: Path) -> None:
    process = Process("sleeper", [sys.executable, "-c", "import time; time.sleep(600)"], tmp_path / "log")
    process.start()
    try:
        process.pause()
        wait_until(lambda: _state(process) == "T", DEADLINE_SECONDS, "stopped")
        assert process.paused and process.alive()
        process.resume()
        wait_until(lambda: _state(process) != "T", DEADLINE_SECONDS, "running again")
        process.pause()
        process.kill()  # a paused process dies too
        assert not process.alive() and not process.paused
        process.start()  # and starts again, its log appended to
        assert process.alive()
        assert process.log_path.read_text().count("sleeper started") == 2
    finally:
        process.kill()


def test_a_process_that_exits_early_fails_the_wait_with_its_log(tmp_path: Path) -> None:
    command = [sys.executable, "-c", "print('no luck today'); raise SystemExit(3)"]
    process = Process("quitter", command, tmp_path / "log")
    process.start()
    with pytest.raises(HarnessError, match=r"(?s)quitter exited \(status 3\) before ready.*no luck today"):
        process.wait_for(lambda: False, DEADLINE_SECONDS, "ready")


def test_a_wait_past_its_deadline_says_what_it_waited_for() -> None:
    with pytest.raises(HarnessError, match=r"the moon: not within 0\.1 s"):
        wait_until(lambda: False, 0.1, "the moon")


def test_killed_etcd_members_start_again_on_their_data(tmp_path: Path) -> None:
    with etcd_cluster(tmp_path / "etcd", members=3) as etcd:
        leader = etcd.leader()
        leader.kill()
        assert not etcd.healthy()
        survivor = etcd.leader()  # the two left elect another
        assert survivor is not leader
        follower = next(m for m in etcd.members if m is not leader and m is not survivor)
        follower.kill()
        assert not survivor.healthy(), "one member of three has no quorum"
        leader.start()
        follower.start()
        etcd.wait_healthy(DEADLINE_SECONDS)
        assert etcd.leader() in etcd.members


@pytest.fixture(scope="module", params=SERVERS)
def s3(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Store]:
    with s3_store(tmp_path_factory.mktemp("s3"), seed=5, server=request.param) as store:
        assert store.kind == request.param
        yield store


def test_an_unknown_server_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="unknown S3 server 'minio'"), s3_store(tmp_path, server="minio"):
        pass


def test_the_proxy_forwards_every_request(s3: S3Store) -> None:
    store = _open(s3, "forward")
    data = bytes(range(256)) * 4096  # 1 MiB
    store.put("a/one", data)
    store.put("a/two", b"")
    got = store.get("a/one")
    assert got == data
    head = store.head("a/one")
    assert head is not None and head.size == len(data)  # a HEAD's length is the object's
    assert sorted(listed.key for listed in store.list("a/")) == ["a/one", "a/two"]
    assert store.put_new("a/three", b"x")
    assert not store.put_new("a/three", b"y")  # If-None-Match: the server's 412 went through
    store.delete("a/one")
    assert store.head("a/one") is None
    assert s3.proxy.counts["refused"] == 0 and s3.proxy.counts["requests"] >= 9


def test_the_proxy_refuses_and_delays_on_demand(s3: S3Store) -> None:
    store = _open(s3, "faults")
    before = dict(s3.proxy.counts)
    s3.proxy.set_faults(StoreFaults(error_probability=1.0))
    try:
        with pytest.raises(StoreUnavailable, match="503"):
            store.put("k", b"v")
        s3.proxy.set_faults(StoreFaults(latency_seconds=(0.01, 0.02)))
        store.put("k", b"v")
    finally:
        s3.proxy.clear()
    assert s3.proxy.counts["refused"] > before.get("refused", 0)
    assert s3.proxy.counts["delayed"] > before.get("delayed", 0)
    refused = s3.proxy.counts["refused"]
    assert store.get("k") is not None and s3.proxy.counts["refused"] == refused


@pytest.mark.parametrize(
    "faults", [{"latency_seconds": (0.2, 0.1)}, {"error_probability": 1.5}, {"latency_seconds": (0.0, 99.0)}]
)
def test_impossible_store_faults_are_refused(faults: dict[str, object]) -> None:
    with pytest.raises(InvalidRequest, match="store faults"):
        StoreFaults(**faults)  # type: ignore[arg-type]


def _open(s3: S3Store, prefix: str) -> ObjectStore:
    return open_store(s3.url(prefix), options=s3.options, retry=RetryPolicy(attempts=1))
