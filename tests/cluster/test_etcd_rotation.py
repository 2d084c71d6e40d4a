"""Requests in flight on one etcd client when another request on it moves to the next member.

Goal: when one request fails on a member and moves on, closing that member's channel,
a request still waiting on the same channel (gRPC cancels it: CancelledError) moves to
the next member too, instead of ending the caller's task with the cancellation; a
cancellation of the caller's own task still ends it. Found by the 3-member test
(test_etcd_members.py): after a follower was killed, the lease keepalive's failure
closed the channel under an acquire, which died with CancelledError.
Method: EtcdCluster over two endpoints whose clients are fakes (no sockets): the first
member's requests wait until its channel is closed, as gRPC's do; the second answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from odradek.cluster import etcd as etcd_module
from odradek.cluster.etcd import EtcdCluster


class _FakeClient:
    """A member's client: on the first member ``ask`` waits until the channel is closed
    and ``fail`` fails; the second member answers both."""

    def __init__(self, host: str, port: int, **_: Any) -> None:
        self.port = port
        self.pending: list[asyncio.Future[str]] = []

    async def ask(self) -> str:
        if self.port == 2:
            return "answered by the second member"
        waiting: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.pending.append(waiting)
        return await waiting

    async def fail(self) -> str:
        if self.port == 2:
            return "answered by the second member"
        raise ConnectionError("the member is gone")

    async def close(self) -> None:
        for waiting in self.pending:
            waiting.cancel()  # what closing a gRPC channel does to its calls


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> EtcdCluster:
    monkeypatch.setattr(etcd_module, "EtcdClient", _FakeClient)
    return EtcdCluster("http://127.0.0.1:1,http://127.0.0.1:2", "c", retry_seconds=10)


def test_a_request_whose_channel_another_request_closed_moves_on(cluster: EtcdCluster) -> None:
    async def scenario() -> tuple[str, str]:
        waiting = asyncio.ensure_future(cluster._call(lambda client: client.ask(), "the waiting request"))
        await asyncio.sleep(0.01)  # it is in flight on the first member
        failing = cluster._call(lambda client: client.fail(), "the failing request")
        return await failing, await waiting

    assert asyncio.run(scenario()) == ("answered by the second member", "answered by the second member")


def test_a_cancelled_caller_is_still_cancelled(cluster: EtcdCluster) -> None:
    async def scenario() -> None:
        waiting = asyncio.ensure_future(cluster._call(lambda client: client.ask(), "the waiting request"))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(scenario())
