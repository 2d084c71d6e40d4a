"""The credential store: what it keeps, what it never keeps, and agents sharing it.

Goal: a user's password and a token's secret are never stored (only salted SCRAM keys
and a hash), nor shown by repr; PLAIN checks the password against the stored SCRAM key;
an expired, revoked or malformed token authenticates nobody; bad names and passwords
are refused with InvalidRequest and change nothing; a damaged document is refused
rather than read as empty; two agents sharing a store in an object store see each
other's users and revocations, and concurrent changes lose nothing.
Method: stores in temporary data directories and in an in-memory object store.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from odradek.errors import DataDamaged, InvalidRequest, StorageError, Unauthenticated
from odradek.security import Authenticator, CredentialStore
from odradek.security.credentials import DOCUMENT
from odradek.storage.objects import open_store


def _document_bytes(data_dir: Path) -> bytes:
    return (data_dir / DOCUMENT).read_bytes() + (data_dir / (DOCUMENT + ".copy")).read_bytes()


def test_no_secret_is_stored_or_shown(tmp_path: Path) -> None:
    store = CredentialStore.open(str(tmp_path))
    store.create_tenant("shop")
    user = store.add_user("alice", "correct horse battery staple", tenant="shop")
    token, entry = store.create_token("alice", expires_seconds=3600)
    stored = _document_bytes(tmp_path)
    assert b"correct horse" not in stored
    assert token.encode() not in stored and token.split("_", 2)[2].encode() not in stored
    for shown in (repr(store), repr(user), repr(entry), repr(user.credentials), repr(Authenticator(store))):
        assert "correct horse" not in shown and token not in shown and "stored_key" not in shown
    again = CredentialStore.open(str(tmp_path))  # durable
    principal = Authenticator(again).password("alice", "correct horse battery staple")
    assert (principal.name, principal.tenant, principal.admin) == ("alice", "shop", False)
    assert Authenticator(again).bearer(token).principal.name == "alice"


def test_refusals_change_nothing(tmp_path: Path) -> None:
    store = CredentialStore.open(str(tmp_path))
    store.add_user("alice", "pw")
    before = _document_bytes(tmp_path)
    for bad in (lambda: store.add_user("bad name", "pw"), lambda: store.add_user("bob", ""),
                lambda: store.add_user("alice", "pw2"), lambda: store.add_user("bob", "x" * 5000),
                lambda: store.create_token("nobody"), lambda: store.revoke_token("0" * 16),
                lambda: store.remove_user("nobody")):  # fmt: skip
        with pytest.raises(InvalidRequest):
            bad()
    assert _document_bytes(tmp_path) == before


def test_bad_tokens_and_passwords_authenticate_nobody(tmp_path: Path) -> None:
    store = CredentialStore.open(str(tmp_path))
    store.add_user("alice", "pw")
    authenticator = Authenticator(store)
    expired, _ = store.create_token("alice", expires_seconds=-1)
    for token in (expired, "odr_zz", "odr_" + "0" * 16 + "_" + "A" * 43, "", "x" * 20_000):
        with pytest.raises(Unauthenticated):
            authenticator.bearer(token)
    with pytest.raises(Unauthenticated, match="expired"):
        authenticator.bearer(expired)
    for name, password in (("alice", "wrong"), ("bob", "pw"), ("alice", "")):
        with pytest.raises(Unauthenticated):
            authenticator.password(name, password)
    assert authenticator.password("alice", "pw").name == "alice"
    assert authenticator.password("alice", "pw").name == "alice"  # the remembered check
    store.remove_user("alice")
    with pytest.raises(Unauthenticated):
        authenticator.password("alice", "pw")  # a removed user's remembered check is void


def test_a_damaged_document_is_refused(tmp_path: Path) -> None:
    store = CredentialStore.open(str(tmp_path))
    store.add_user("alice", "pw")
    for name in (DOCUMENT, DOCUMENT + ".copy"):
        path = tmp_path / name
        data = bytearray(path.read_bytes())
        data[5] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(DataDamaged):
        CredentialStore.open(str(tmp_path))


def test_agents_sharing_an_object_store(tmp_path: Path) -> None:
    objects = open_store(f"file://{os.fspath(tmp_path)}/objects")
    first, second = CredentialStore.in_object_store(objects), CredentialStore.in_object_store(objects)
    first.add_user("alice", "pw")
    assert Authenticator(second).password("alice", "pw").name == "alice"  # found on a miss
    second.add_user("bob", "pw")  # reads first's change before writing: nothing lost
    first.refresh()
    assert [user.name for user in first.users()] == ["alice", "bob"]
    token, entry = first.create_token("bob")
    second.refresh()  # what its refresh thread does every few seconds
    assert Authenticator(second).bearer(token).principal.name == "bob"
    first.revoke_token(entry.id)
    second.refresh()
    with pytest.raises(Unauthenticated, match="revoked"):
        Authenticator(second).bearer(token)


def test_a_concurrent_writer_is_told_to_retry(tmp_path: Path) -> None:
    objects = open_store("memory://credentials")
    if not objects.supports_compare_and_swap:
        pytest.skip("the store cannot compare-and-swap")
    first, second = CredentialStore.in_object_store(objects), CredentialStore.in_object_store(objects)
    first.add_user("alice", "pw")
    second.refresh()
    persistence = second._persistence
    changed = persistence.changed
    persistence.changed = lambda: False  # type: ignore[method-assign]  # as if first wrote just after the check
    first.add_user("bob", "pw")
    with pytest.raises(StorageError, match="retry"):
        second.add_user("carol", "pw")
    persistence.changed = changed  # type: ignore[method-assign]
    second.add_user("carol", "pw")
    first.refresh()
    assert [user.name for user in first.users()] == ["alice", "bob", "carol"]
