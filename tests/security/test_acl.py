"""Access control lists: the model's decisions and the store that keeps the bindings.

Goal: a binding allows or denies exactly what its principal, resource type, pattern and
operation say; deny wins; what nothing allows is refused; allowed read/write/delete/alter
imply describe (a deny does not); admins are super users; every pattern type matches as
documented; bad bindings are refused with InvalidRequest; the cache forgets its answers
when the bindings change; the decision equals a brute-force reference over random
bindings (hypothesis); bindings survive a reopen of the data directory and agents
sharing an object store see each other's changes.
Method: pure calls on security/acl.py and security/authorizer.py; stores in temporary
data directories and in-memory object stores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.errors import InvalidRequest, StorageError, Unauthorized
from odradek.security import CredentialStore
from odradek.security.acl import OPERATIONS, Acl, Binding, Decider, binding, covers
from odradek.security.acl_store import AclStore
from odradek.security.authorizer import Authorizer
from odradek.security.principal import Principal
from odradek.storage.objects import open_store

ALICE = Principal("alice")
BOB = Principal("bob")
ROOT = Principal("root", admin=True)


def _acl(*bindings: Binding) -> Acl:
    return Acl.of(bindings)


def test_nothing_allowed_is_refused_and_admins_may_do_everything() -> None:
    acl = _acl()
    assert not acl.decide(ALICE, "read", "topic", "orders")
    assert acl.decide(ROOT, "delete", "cluster", "kafka-cluster")


def test_each_pattern_type() -> None:
    literal = _acl(binding("User:alice", "topic", "literal", "orders", "read", "allow"))
    assert literal.decide(ALICE, "read", "topic", "orders")
    assert not literal.decide(ALICE, "read", "topic", "orders.eu")
    assert not literal.decide(BOB, "read", "topic", "orders")
    star = _acl(binding("User:*", "topic", "literal", "*", "read", "allow"))
    assert star.decide(BOB, "read", "topic", "anything.at.all")
    prefixed = _acl(binding("User:alice", "group", "prefixed", "billing-", "read", "allow"))
    assert prefixed.decide(ALICE, "read", "group", "billing-eu")
    assert not prefixed.decide(ALICE, "read", "group", "billin")
    one = _acl(binding("User:alice", "topic", "match", "orders.*.created", "write", "allow"))
    assert one.decide(ALICE, "write", "topic", "orders.eu.created")
    assert not one.decide(ALICE, "write", "topic", "orders.eu.x.created")
    assert not one.decide(ALICE, "write", "topic", "orders.created")
    tail = _acl(binding("User:alice", "topic", "match", "orders.>", "read", "allow"))
    assert tail.decide(ALICE, "read", "topic", "orders.eu")
    assert tail.decide(ALICE, "read", "topic", "orders.eu.created")
    assert not tail.decide(ALICE, "read", "topic", "orders")
    assert not tail.decide(ALICE, "read", "topic", "ordersx.eu")


def test_deny_wins_and_describe_is_implied_by_allows_only() -> None:
    acl = _acl(
        binding("User:*", "topic", "prefixed", "orders", "all", "allow"),
        binding("User:bob", "topic", "literal", "orders.secret", "read", "deny"),
    )
    assert acl.decide(BOB, "read", "topic", "orders.public")
    assert not acl.decide(BOB, "read", "topic", "orders.secret")
    assert acl.decide(BOB, "describe", "topic", "orders.secret")  # a denied read denies no describe
    assert acl.decide(BOB, "write", "topic", "orders.secret")
    writer = _acl(binding("User:alice", "topic", "literal", "t", "write", "allow"))
    assert writer.decide(ALICE, "describe", "topic", "t")
    assert not writer.decide(ALICE, "read", "topic", "t")
    creator = _acl(binding("User:alice", "topic", "literal", "t", "create", "allow"))
    assert not creator.decide(ALICE, "describe", "topic", "t")  # Kafka: create implies nothing
    everything_denied = _acl(
        binding("User:alice", "topic", "literal", "*", "all", "allow"),
        binding("User:alice", "topic", "literal", "t", "all", "deny"),
    )
    assert not everything_denied.decide(ALICE, "describe", "topic", "t")


@pytest.mark.parametrize(
    "fields, message",
    [
        (("alice smith", "topic", "literal", "t", "read", "allow"), "principal"),
        (("User:alice", "table", "literal", "t", "read", "allow"), "resource type"),
        (("User:alice", "topic", "regex", "t", "read", "allow"), "pattern type"),
        (("User:alice", "topic", "literal", "", "read", "allow"), "pattern"),
        (("User:alice", "topic", "match", "a.>.b", "read", "allow"), "last"),
        (("User:alice", "topic", "literal", "t", "drop", "allow"), "operation"),
        (("User:alice", "topic", "literal", "t", "read", "maybe"), "permission"),
        (("User:alice", "cluster", "prefixed", "k", "alter", "allow"), "cluster"),
    ],
)
def test_bad_bindings_are_refused(fields: tuple[str, ...], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        binding(*fields)


def test_a_bare_name_is_a_user_principal() -> None:
    assert binding("alice", "topic", "literal", "t", "READ", "Allow").principal == "User:alice"


def test_the_cache_forgets_when_the_bindings_change() -> None:
    decider = Decider(_acl())
    assert not decider.allowed(ALICE, "read", "topic", "t")
    decider.use(_acl(binding("User:alice", "topic", "literal", "t", "read", "allow")))
    assert decider.allowed(ALICE, "read", "topic", "t")
    assert decider.filter(ALICE, "read", "topic", ["a", "t", "b"]) == ["t"]


# -- the property: the decision is the brute-force reference's ---------------------------

_SEGMENTS = st.sampled_from(["a", "b", "ab"])
_NAMES = st.lists(_SEGMENTS, min_size=1, max_size=3).map(".".join)


def _match_pattern(draw: st.DrawFn) -> str:
    parts = draw(st.lists(st.sampled_from(["a", "b", "ab", "*"]), min_size=1, max_size=3))
    if draw(st.booleans()):
        parts = [*parts[:-1], ">"]
    return ".".join(parts)


@st.composite
def _bindings(draw: st.DrawFn) -> Binding:
    pattern_type = draw(st.sampled_from(["literal", "prefixed", "match"]))
    if pattern_type == "match":
        pattern = _match_pattern(draw)
    elif pattern_type == "literal":
        pattern = draw(st.one_of(_NAMES, st.just("*")))
    else:
        pattern = draw(st.sampled_from(["a", "a.", "ab", "b.a"]))
    return binding(
        draw(st.sampled_from(["User:alice", "User:bob", "User:*"])),
        draw(st.sampled_from(["topic", "group"])),
        pattern_type,
        pattern,
        draw(st.sampled_from(OPERATIONS)),
        draw(st.sampled_from(["allow", "deny"])),
    )


def _reference_matches(entry: Binding, name: str) -> bool:
    """Every pattern type written out again, the slow obvious way."""
    if entry.pattern_type == "literal":
        return entry.pattern in ("*", name)
    if entry.pattern_type == "prefixed":
        return name[: len(entry.pattern)] == entry.pattern
    wanted, have = entry.pattern.split("."), name.split(".")
    if wanted[-1] == ">":
        if len(have) <= len(wanted) - 1:
            return False
        have = have[: len(wanted) - 1]
        wanted = wanted[:-1]
    return len(wanted) == len(have) and all(w in ("*", h) for w, h in zip(wanted, have, strict=True))


def _reference(bindings: list[Binding], principal: Principal, operation: str, kind: str, name: str) -> bool:
    if principal.admin:
        return True
    relevant = [
        entry
        for entry in bindings
        if entry.principal in (str(principal), "User:*")
        and entry.resource_type == kind
        and _reference_matches(entry, name)
    ]
    denies = {entry.operation for entry in relevant if entry.permission == "deny"}
    if operation in denies or "all" in denies:
        return False
    allows = {entry.operation for entry in relevant if entry.permission == "allow"}
    if operation == "describe" and allows & {"read", "write", "delete", "alter"}:
        return True
    return operation in allows or "all" in allows


@settings(max_examples=300, deadline=None)
@given(
    bindings=st.lists(_bindings(), max_size=8),
    who=st.sampled_from([ALICE, BOB, ROOT]),
    operation=st.sampled_from([op for op in OPERATIONS if op != "all"]),
    kind=st.sampled_from(["topic", "group"]),
    name=_NAMES,
)
def test_decisions_equal_a_brute_force_reference(
    bindings: list[Binding], who: Principal, operation: str, kind: str, name: str
) -> None:
    decider = Decider(Acl.of(bindings))
    expected = _reference(bindings, who, operation, kind, name)
    assert decider.allowed(who, operation, kind, name) is expected
    assert decider.allowed(who, operation, kind, name) is expected  # from the cache
    assert decider.filter(who, operation, kind, [name]) == ([name] if expected else [])


# -- the store -------------------------------------------------------------------------


def test_bindings_survive_a_reopen_and_the_authorizer_follows_changes(tmp_path: Path) -> None:
    store = AclStore.beside(CredentialStore.open(str(tmp_path)))
    authorizer = Authorizer(store)
    with pytest.raises(Unauthorized, match="User:alice is not authorized to write topic 'orders'"):
        authorizer.check(ALICE, "write", "topic", "orders")
    read = binding("User:alice", "topic", "literal", "orders", "write", "allow")
    assert store.add([read, read]) == [read]
    assert store.add([read]) == []
    authorizer.check(ALICE, "write", "topic", "orders")
    reopened = AclStore.open(str(tmp_path))
    assert reopened.bindings() == [read]
    assert store.remove(lambda entry: entry.pattern == "orders") == [read]
    assert not authorizer.allowed(ALICE, "write", "topic", "orders")
    assert AclStore.open(str(tmp_path)).bindings() == []


def test_a_damaged_store_is_refused_not_read_as_empty(tmp_path: Path) -> None:
    store = AclStore.open(str(tmp_path))
    store.add([binding("User:alice", "topic", "literal", "t", "read", "allow")])
    for suffix in ("", ".copy"):
        (tmp_path / "security" / ("acls.json" + suffix)).write_bytes(b"{not json")
    with pytest.raises(StorageError):
        AclStore.open(str(tmp_path))


def test_agents_sharing_an_object_store(tmp_path: Path) -> None:
    objects = open_store(f"file://{os.fspath(tmp_path)}/objects")
    first = AclStore.beside(CredentialStore.in_object_store(objects))
    second = AclStore.in_object_store(objects)
    assert first.shared and second.shared
    authorizer = Authorizer(second)
    allow = binding("User:alice", "topic", "match", "orders.>", "read", "allow")
    first.add([allow])
    assert not authorizer.decider.allowed(ALICE, "read", "topic", "orders.eu")  # not read again yet
    assert authorizer.allowed(ALICE, "read", "topic", "orders.eu")  # a refusal reads the store again
    assert not second.refresh()  # (what its refresh thread does every few seconds)
    deny = binding("User:alice", "topic", "literal", "orders.eu", "read", "deny")
    first.add([deny])
    assert authorizer.allowed(ALICE, "read", "topic", "orders.eu")  # an allow is not read again
    assert second.refresh()
    assert not authorizer.allowed(ALICE, "read", "topic", "orders.eu")
    second.add([binding("User:bob", "topic", "literal", "t", "read", "allow")])  # after reading first's
    first.refresh()
    assert len(first.bindings()) == 3


def test_the_store_holds_a_bounded_number_of_bindings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from odradek import limits

    monkeypatch.setattr(limits, "acl_bindings_max", 2)
    store = AclStore.open(str(tmp_path))
    store.add([binding("User:a", "topic", "literal", "t", "read", "allow")])
    with pytest.raises(InvalidRequest, match="at most 2"):
        store.add([binding("User:a", "topic", "literal", name, "read", "allow") for name in ("u", "v")])
    assert len(store.bindings()) == 1


@pytest.mark.parametrize(
    "binding_fields, pattern, covered",
    [
        (("literal", "*"), "orders.>", True),
        (("literal", "orders.eu"), "orders.*", False),
        (("prefixed", "orders"), "orders.>", True),
        (("prefixed", "orders.eu"), "orders.>", False),
        (("match", "orders.>"), "orders.*.created", True),
        (("match", "orders.*"), "orders.>", False),
        (("match", "orders.*.created"), "orders.*.created", True),
        (("match", "orders.*.created"), "orders.eu.>", False),
    ],
)
def test_a_wildcard_is_covered_only_by_bindings_naming_all_it_can_match(
    binding_fields: tuple[str, str], pattern: str, covered: bool
) -> None:
    acl = _acl(binding("User:alice", "topic", *binding_fields, "read", "allow"))
    assert covers(acl, ALICE, "read", "topic", pattern) is covered
    denied = Acl.of((*acl.bindings, binding("User:alice", "topic", "literal", "orders.hr", "read", "deny")))
    assert not covers(denied, ALICE, "read", "topic", pattern)  # conservative: any deny of reads refuses
    assert covers(denied, ROOT, "read", "topic", pattern)
