"""A cluster's security documents as etcd keys (cluster/documents.py, decision 0029).

Goal: the credential store, the bindings and the quotas kept as keys of a cluster's
etcd prefix behave as the object store's copies did, and better: a change is a
compare-and-swap on the key's mod_revision (a concurrent writer is refused with a
retryable error and nothing changes; writers that retry all land), a document over
``limits.security_document_bytes_max`` is refused before it is sent, a watch makes every
reader refresh at once (the periodic refresh set to an hour here, so only the watch can
have done it), a store object of the previous version is imported once, and an
unreachable etcd is a clear retryable error.
Method: the real etcd of tests/cluster/etcd_servers.py; two ``EtcdDocuments`` on the
same cluster stand for two agents.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents import wait_for
from etcd_servers import EtcdServers, unique_cluster_name

from odradek import limits
from odradek.cluster.documents import EtcdDocuments, InEtcd, import_from_store
from odradek.cluster.etcd import EtcdUnavailable
from odradek.errors import InvalidRequest, RequestTooLarge, StorageError
from odradek.ports import free_port
from odradek.security import CredentialStore
from odradek.security.acl import binding_of
from odradek.security.acl_store import AclStore
from odradek.security.credentials import DOCUMENT as CREDENTIALS
from odradek.security.quotas import DOCUMENT as QUOTAS
from odradek.security.quotas import QuotaEntity, QuotaSettings
from odradek.storage.objects import open_store

HOUR = 3600.0


@pytest.fixture
def two(etcd_server: EtcdServers) -> Iterator[tuple[EtcdDocuments, EtcdDocuments]]:
    cluster = unique_cluster_name()
    first, second = EtcdDocuments(etcd_server.url, cluster), EtcdDocuments(etcd_server.url, cluster)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def test_a_concurrent_change_is_refused_and_changes_nothing(two: tuple[EtcdDocuments, EtcdDocuments]) -> None:
    first, second = two
    mine, theirs = first.persistence(CREDENTIALS), second.persistence(CREDENTIALS)
    assert mine.load() is None and theirs.load() is None
    mine.save({"version": 1, "users": {}, "tokens": {}, "tenants": {"a": {"created": 1.0}}})
    with pytest.raises(StorageError, match="changed by another agent meanwhile; retry") as refused:
        theirs.save({"version": 1, "users": {}, "tokens": {}, "tenants": {"b": {"created": 2.0}}})
    assert refused.value.retryable
    assert set(theirs.load()["tenants"]) == {"a"}  # the refused change left nothing
    theirs.save({"version": 1, "users": {}, "tokens": {}, "tenants": {"a": {"created": 1.0}, "b": {}}})
    assert mine.changed()
    assert set(mine.load()["tenants"]) == {"a", "b"}
    assert not mine.changed()


def test_writers_on_two_agents_that_retry_all_land(two: tuple[EtcdDocuments, EtcdDocuments]) -> None:
    stores = [CredentialStore(documents.persistence(CREDENTIALS)) for documents in two]
    refusals: list[str] = []

    def make(store: CredentialStore, names: list[str]) -> None:
        for name in names:
            while True:
                try:
                    store.create_tenant(name)
                    break
                except StorageError as exc:  # the other agent wrote meanwhile
                    refusals.append(exc.message)

    threads = [
        threading.Thread(target=make, args=(store, [f"t{index}x{n}" for n in range(15)]))
        for index, store in enumerate(stores)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    expected = {f"t{index}x{n}" for index in range(2) for n in range(15)}
    for store in stores:
        store.refresh()
        assert set(store.tenants()) == expected
    assert all("retry" in refusal for refusal in refusals)


def test_a_revocation_reaches_the_other_agent_through_the_watch(
    two: tuple[EtcdDocuments, EtcdDocuments],
) -> None:
    first, second = two
    here = CredentialStore(first.persistence(CREDENTIALS))
    here.add_user("bob", "bob-secret")
    token, entry = here.create_token("bob")
    there = CredentialStore(second.persistence(CREDENTIALS))
    assert there.token_user(token) is not None
    second.watch()
    stop = there.refresh_every(HOUR)  # only the watch refreshes it within this test
    try:
        here.revoke_token(entry.id)
        wait_for(lambda: there.token_user(token) is None, "the revoked token refused on the other agent")
        here.remove_user("bob")
        wait_for(lambda: there.user("bob") is None, "the removed user gone on the other agent")
    finally:
        stop.set()


def test_bindings_and_quotas_changed_on_one_agent_apply_on_the_other(
    two: tuple[EtcdDocuments, EtcdDocuments],
) -> None:
    first, second = two
    second.watch()
    bindings_there = AclStore.beside(CredentialStore(second.persistence(CREDENTIALS)))
    assert bindings_there.shared
    from odradek.security.acl_store import refresh_every

    refresh_every(bindings_there, HOUR)
    quotas_there = QuotaSettings(second.persistence(QUOTAS))
    stop = quotas_there.refresh_every(HOUR)
    try:
        bindings_here = AclStore.beside(CredentialStore(first.persistence(CREDENTIALS)))
        allow = binding_of(
            {"principal": "bob", "resource_type": "topic", "pattern": "orders", "operation": "read"}
        )
        bindings_here.add([allow])
        wait_for(lambda: bindings_there.bindings() == [allow], "the binding on the other agent")
        bindings_here.remove(lambda entry: True)
        wait_for(lambda: bindings_there.bindings() == [], "the binding's removal on the other agent")
        noisy = QuotaEntity.parse("client-id=noisy")
        QuotaSettings(first.persistence(QUOTAS)).set(noisy, {"producer_byte_rate": 1000.0})
        wait_for(lambda: noisy in quotas_there.entities(), "the quota on the other agent")
        assert quotas_there.entities()[noisy] == {"producer_byte_rate": 1000.0}
    finally:
        stop.set()


def test_a_document_over_the_bound_is_refused_and_nothing_changes(
    two: tuple[EtcdDocuments, EtcdDocuments],
) -> None:
    first, _ = two
    store = AclStore(first.persistence("security/acls.json"))
    small = binding_of({"principal": "bob", "resource_type": "topic", "pattern": "a", "operation": "read"})
    store.add([small])
    # Long patterns: the bindings' JSON alone is over the bound.
    many = [
        binding_of(
            {"principal": f"user{n:06d}", "resource_type": "topic", "pattern": f"{n:06d}" + "p" * 200,
             "operation": "read"}
        )
        for n in range(limits.acl_bindings_max - 1)
    ]  # fmt: skip
    assert len(json.dumps([entry.to_json() for entry in many])) > limits.security_document_bytes_max
    with pytest.raises(RequestTooLarge, match=r"over limits\.security_document_bytes_max") as refused:
        store.add(many)
    assert isinstance(refused.value, InvalidRequest) and "nothing was changed" in refused.value.message
    assert store.bindings() == [small]
    assert AclStore(first.persistence("security/acls.json")).bindings() == [small]  # etcd too
    store.add(many[:10])  # a change within the bound still goes through
    assert len(store.bindings()) == 11


def test_the_store_object_is_imported_once(two: tuple[EtcdDocuments, EtcdDocuments], tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/bucket")
    old = CredentialStore.in_object_store(store)
    old.add_user("root", "root-secret", admin=True)
    first, second = two
    persistences: list[InEtcd] = [first.persistence(CREDENTIALS), second.persistence(CREDENTIALS)]
    imported = [False, False]

    def run(index: int) -> None:
        imported[index] = import_from_store(persistences[index], store)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(imported) == [False, True]  # one of the two imported it
    here = CredentialStore(first.persistence(CREDENTIALS))
    assert here.user("root") is not None and here.user("root").admin  # type: ignore[union-attr]
    here.add_user("alice", "alice-secret")
    assert not import_from_store(first.persistence(CREDENTIALS), store)  # etcd has it: no import
    assert CredentialStore.in_object_store(store).user("alice") is None  # the object is not written
    assert CredentialStore(second.persistence(CREDENTIALS)).user("alice") is not None


def test_an_unreachable_etcd_is_a_clear_retryable_error() -> None:
    documents = EtcdDocuments(f"http://127.0.0.1:{free_port()}", unique_cluster_name(), retry_seconds=1.0)
    try:
        with pytest.raises(EtcdUnavailable, match="etcd did not answer") as refused:
            CredentialStore(documents.persistence(CREDENTIALS))
        assert refused.value.retryable
    finally:
        documents.close()
