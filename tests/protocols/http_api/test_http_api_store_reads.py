"""The HTTP API's reads of another cell's topic from the cell's store (decision 0042,
``odradek.protocols.http_api.routes.read_from_store``).

Goal: an agent that does not serve a topic's cell answers ``GET
/v1/topics/{topic}/records?offset=N`` from the cell's sealed segments exactly as the
owner's API answers it (values as text or JSON, a tenant's names as it says them);
whatever it should not or cannot answer (a principal without ``read``, a name that is
not one, another route, a start that is not an offset, the owner's tail) it leaves to
the owner (None: the request is forwarded), which answers or refuses it as ever.
Method: an owner's node attached to an in-memory store and checkpointed; a
``CellReplica`` over that store; the owner's ``HttpApi`` answers the same requests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from odradek.engine.replica import CellReplica
from odradek.node import Node
from odradek.protocols.http_api import ApiRequest, HttpApi
from odradek.protocols.http_api.routes import read_from_store
from odradek.security import Authenticator, CredentialStore
from odradek.security.authorizer import enable_authorization
from odradek.security.tenants import RAW, Namespace
from odradek.storage.agent import StoreSettings
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import open_store

ORDER = pa.schema([("id", pa.int64()), ("item", pa.string())])
RECORDS = 2000


class Cell:
    def __init__(self, root: Path) -> None:
        self.name = f"api-replica-{uuid.uuid4().hex}"
        store = open_store(f"memory://{self.name}/cell")
        settings = StoreSettings(flush_seconds=0.002, checkpoint_seconds=3600.0)
        self.node = Node.open(str(root / "owner"), store=store, store_settings=settings)
        engine = self.node.engine
        engine.create_topic("plain", segment_bytes="64KiB")
        engine.create_topic("typed", segment_bytes="64KiB", schema=ORDER)
        engine.create_topic("_t.acme.orders", segment_bytes="64KiB")  # tenant acme's "orders"
        for start in range(0, RECORDS, 100):
            numbers = range(start, start + 100)
            engine.append(
                "plain", [{"key": b"k%d" % (n % 9), "value": b"%06d" % n + bytes(150)} for n in numbers]
            )
            engine.append("typed", [{"value": {"id": n, "item": "x" * 150}} for n in numbers])
            engine.append("_t.acme.orders", [{"value": b"acme %06d" % n + bytes(150)} for n in numbers])
        engine.disk.checkpoint()  # type: ignore[attr-defined]
        self.replica = CellReplica(store, str(root / "replica"))  # type: ignore[arg-type]
        self.api = HttpApi(self.node)

    def close(self) -> None:
        self.node.close()
        forget_memory_store(self.name)


@pytest.fixture
def cell(tmp_path: Path) -> Iterator[Cell]:
    made = Cell(tmp_path)
    yield made
    made.close()


def _get(path: str, namespace: Namespace = RAW, **query: str) -> ApiRequest:
    return ApiRequest("GET", path, query, namespace=namespace)


def test_a_page_of_the_history_is_the_owners_page(cell: Cell) -> None:
    for topic in ("plain", "typed"):
        for offset, limit in (("0", "1"), ("0", "500"), ("17", "100"), ("1200", "250")):
            request = _get(f"/v1/topics/{topic}/records", offset=offset, limit=limit)
            answer = read_from_store(request, lambda name: cell.replica)
            owners = cell.api.handle(request)
            assert answer is not None and owners.status == 200  # type: ignore[union-attr]
            assert answer.document() == owners.document(), (topic, offset)  # type: ignore[union-attr]
            assert answer.records == int(limit)
    request = _get("/v1/topics/typed/records", offset="3", value_encoding="base64")
    answer = read_from_store(request, lambda name: cell.replica)
    assert answer is not None and answer.document() == cell.api.handle(request).document()  # type: ignore[union-attr]
    # A tenant's read: its name as it says it, the engine's name asked of the store.
    asked: list[str] = []
    acme = Namespace.of_tenant("acme")

    def replica_of(name: str) -> CellReplica:
        asked.append(name)
        return cell.replica

    request = _get("/v1/topics/orders/records", acme, offset="5", limit="2")
    answer = read_from_store(request, replica_of)
    assert answer is not None and asked == ["_t.acme.orders"]
    document = answer.document()
    assert document["topic"] == "orders" and document["next_offset"] == 7
    assert [record["offset"] for record in document["records"]] == [5, 6]
    assert document == cell.api.handle(request).document()  # type: ignore[union-attr]


def test_what_the_store_should_not_answer_is_left_to_the_owner(cell: Cell, tmp_path: Path) -> None:
    def declined(request: ApiRequest) -> bool:
        return read_from_store(request, lambda name: cell.replica) is None

    tail = cell.node.engine._topic("plain").log.active.base_offset
    assert not declined(_get("/v1/topics/plain/records", offset=str(tail - 1)))
    for request in (
        _get("/v1/topics/plain/records", offset=str(tail)),  # the owner's tail
        _get("/v1/topics/plain/records"),  # no offset: earliest, latest or a time are the owner's
        _get("/v1/topics/plain/records", start="earliest"),
        _get("/v1/topics/plain/records", offset="-1"),  # refused by the owner, as ever
        _get("/v1/topics/plain/records", offset="0", limit="0"),
        _get("/v1/topics/plain/records", offset="0", value_encoding="rot13"),
        _get("/v1/topics/missing/records", offset="0"),
        _get("/v1/topics/plain/events", offset="0"),
        _get("/v1/topics/plain", offset="0"),
        ApiRequest("POST", "/v1/topics/plain/records", {"offset": "0"}),
        _get("/v1/topics/_t.acme.orders/records", Namespace.of_tenant("other"), offset="0"),
    ):
        assert declined(request), request
    assert read_from_store(_get("/v1/topics/plain/records", offset="0"), lambda name: None) is None
    # A principal without read on the topic: the owner refuses it, nothing is read here.
    store = CredentialStore.open(str(tmp_path / "credentials"))
    store.add_user("alice", "alice-secret")
    authenticator = Authenticator(store)
    authorizer = enable_authorization(authenticator)
    alice = authenticator.password("alice", "alice-secret")
    request = ApiRequest(
        "GET", "/v1/topics/plain/records", {"offset": "0"}, principal=alice, authorizer=authorizer
    )
    before = cell.replica.stats.fetches
    assert declined(request)
    assert cell.replica.stats.fetches == before
