"""The tenants' namespaces (security/tenants.py, decision 0028) and their store.

Goal: the one translation every door uses is sound: a tenant's names reach the engine
under its prefix and come back unchanged; no name or pattern said in a tenant's
namespace (or the default one) ever reaches or matches another tenant's topics, or an
untenanted one from a tenant; nobody forges a tenant's name; a principal of a tenant
that does not exist is refused; a tenant's principal is never a cluster admin; tenants
are kept with the users, a user joins an existing tenant only and a tenant with users
(or topics) left is not deleted.
Method: hypothesis over names, patterns and tenants against names.compile_pattern (the
engine's matcher); the credential store on a temporary data directory.
"""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek import limits
from odradek.errors import InvalidRequest, Unauthorized
from odradek.names import compile_pattern, dead_letter_topic, tenant_of, validate_topic_name
from odradek.security.credentials import CredentialStore
from odradek.security.principal import Principal
from odradek.security.tenants import DEFAULT, RAW, Namespace, check_tenant_name, namespace_of

SEGMENT = st.sampled_from(["a", "b", "orders", "t", "_t", "acme", "x-1", "_x", "B9"])
TENANT = st.sampled_from(["acme", "globex", "a", "acme-2", "t", "acm"])
LOCAL_NAMES = st.lists(SEGMENT.filter(lambda s: not s.startswith("_")), min_size=1, max_size=4).map(".".join)


@st.composite
def local_patterns(draw: st.DrawFn) -> str:
    segments = draw(st.lists(st.one_of(SEGMENT, st.just("*")), min_size=0, max_size=4))
    if not segments or draw(st.booleans()):
        segments.append(">")
    return ".".join(segments)


@st.composite
def engine_names(draw: st.DrawFn) -> str:
    """Any topic the engine may hold: untenanted, or some tenant's."""
    local = draw(LOCAL_NAMES)
    if draw(st.booleans()):
        return f"_t.{draw(TENANT)}.{local}"
    return local


@settings(max_examples=400, deadline=None, database=None)
@given(TENANT, LOCAL_NAMES)
def test_a_tenant_name_round_trips_and_stays_in_its_namespace(tenant: str, name: str) -> None:
    namespace = Namespace.of_tenant(tenant)
    engine = namespace.topic(name)
    assert engine == f"_t.{tenant}.{name}"
    assert validate_topic_name(engine) == engine  # the engine accepts it
    assert tenant_of(engine) == tenant
    assert namespace.owns(engine) and namespace.local(engine) == name
    assert not DEFAULT.owns(engine)
    for other in ("globex", "acme-2", "acm"):
        if other != tenant:
            assert not Namespace.of_tenant(other).owns(engine)
    assert namespace.locals([engine, name, f"_t.{tenant}x.{name}"]) == [name]


@settings(max_examples=600, deadline=None, database=None)
@given(TENANT, local_patterns(), engine_names())
def test_a_tenants_pattern_never_matches_outside_its_namespace(tenant: str, pattern: str, name: str) -> None:
    namespace = Namespace.of_tenant(tenant)
    try:
        engine_pattern = namespace.pattern(pattern)
    except InvalidRequest:
        assert pattern.startswith("_")  # only a reserved first segment is refused
        return
    if compile_pattern(engine_pattern)(name):
        assert name.startswith(f"_t.{tenant}.")
        assert compile_pattern(pattern)(namespace.local(name))  # what the tenant asked for


@settings(max_examples=600, deadline=None, database=None)
@given(local_patterns(), engine_names())
def test_the_default_namespace_never_matches_a_tenants_topic(pattern: str, name: str) -> None:
    try:
        engine_pattern = DEFAULT.pattern(pattern)
    except InvalidRequest:
        assert pattern.startswith("_")
        return
    assert engine_pattern == pattern
    if compile_pattern(engine_pattern)(name):
        assert tenant_of(name) is None and DEFAULT.owns(name)


@settings(max_examples=200, deadline=None, database=None)
@given(TENANT, TENANT, LOCAL_NAMES)
def test_nobody_names_another_namespace_directly(tenant: str, other: str, name: str) -> None:
    forged = f"_t.{other}.{name}"
    for namespace in (DEFAULT, Namespace.of_tenant(tenant)):
        with pytest.raises(InvalidRequest, match="reserved"):
            namespace.topic(forged)
        with pytest.raises(InvalidRequest, match="reserved"):
            namespace.pattern(f"_t.{other}.>")
    assert RAW.topic(forged) == forged  # a cluster admin names the engine's topics


def test_patterns_of_the_cluster_admin_reach_tenants_only_by_naming_them() -> None:
    assert RAW.pattern(">") == ">"
    assert not compile_pattern(">")("_t.acme.orders")
    assert not compile_pattern("*.acme.orders")("_t.acme.orders")
    assert compile_pattern("_t.>")("_t.acme.orders")
    assert compile_pattern("_t.*.orders")("_t.acme.orders")


def test_a_tenants_names_are_shorter_by_its_prefix() -> None:
    namespace = Namespace.of_tenant("acme")
    longest = "a" * (limits.topic_name_length_max - len("_t.acme."))
    assert namespace.topic(longest) == "_t.acme." + longest
    with pytest.raises(InvalidRequest, match=f"at most {len(longest)} characters"):
        namespace.topic(longest + "a")
    with pytest.raises(InvalidRequest):
        namespace.pattern(longest + ".>")


@settings(max_examples=100, deadline=None, database=None)
@given(TENANT, st.lists(LOCAL_NAMES, min_size=0, max_size=6))
def test_columns_round_trip_through_arrow(tenant: str, names: list[str]) -> None:
    namespace = Namespace.of_tenant(tenant)
    column = pa.array(names, pa.utf8())
    engine = namespace.engine_column(column)
    assert engine.to_pylist() == [namespace.topic(name) for name in names]
    assert namespace.local_column(engine).to_pylist() == names
    batch = pa.record_batch({"offset": pa.array(range(len(names)), pa.int64()), "topic": engine})
    local = namespace.local_batch(batch)
    assert local.schema.equals(batch.schema) and local.column(1).to_pylist() == names


def test_answers_name_the_tenants_topics_as_it_says_them() -> None:
    namespace = Namespace.of_tenant("acme")
    answer = {
        "name": "_t.acme.orders",
        "topics": ["_t.acme.a", "_t.acme.b.c"],
        "unavailable": {"_t.acme.x": "damaged"},
        "message": "topic '_t.acme.gone' does not exist",
        "count": 3,
    }
    assert namespace.local_value(answer) == {
        "name": "orders",
        "topics": ["a", "b.c"],
        "unavailable": {"x": "damaged"},
        "message": "topic '_t.acme.gone' does not exist",  # only whole names change
        "count": 3,
    }
    assert namespace.local_text("topic '_t.acme.gone' does not exist") == "topic 'gone' does not exist"


def test_a_tenants_dead_letters_stay_in_its_namespace() -> None:
    assert dead_letter_topic("billing") == "dlq.billing"
    assert dead_letter_topic("_t.acme.billing") == "_t.acme.dlq.billing"
    assert tenant_of(dead_letter_topic("_t.acme.billing")) == "acme"


@pytest.mark.parametrize(
    "name", ["", "_acme", "-a", "a.b", "a b", "a" * (limits.tenant_name_length_max + 1), 7]
)
def test_bad_tenant_names_are_refused(name: object) -> None:
    with pytest.raises(InvalidRequest, match="tenant name"):
        check_tenant_name(name)


def test_the_namespace_of_a_principal() -> None:
    assert namespace_of(Principal("root", None, admin=True)) is RAW
    assert namespace_of(Principal("bob")) is DEFAULT
    alice = Principal("alice", "acme", admin=True)
    assert alice.admin is False  # a tenant's principal is never a cluster admin
    assert namespace_of(alice, lambda tenant: tenant == "acme") == Namespace("acme")
    with pytest.raises(Unauthorized, match="tenant 'acme', which does not exist"):
        namespace_of(alice, lambda tenant: False)
    with pytest.raises(Unauthorized):
        namespace_of(Principal("eve", "a.b"), lambda tenant: True)  # not a tenant name


def test_tenants_are_kept_with_the_users(tmp_path: Path) -> None:
    store = CredentialStore.open(str(tmp_path))
    with pytest.raises(InvalidRequest, match="no tenant 'acme'"):
        store.add_user("alice", "secret", tenant="acme")
    store.create_tenant("acme")
    with pytest.raises(InvalidRequest, match="exists"):
        store.create_tenant("acme")
    with pytest.raises(InvalidRequest, match="cannot be a cluster admin"):
        store.add_user("alice", "secret", tenant="acme", admin=True)
    store.add_user("alice", "secret", tenant="acme")
    store.add_user("root", "secret", admin=True)
    with pytest.raises(InvalidRequest, match="1 user"):
        store.delete_tenant("acme", lambda tenant: [])
    store.remove_user("alice")
    with pytest.raises(InvalidRequest, match="still holds 1 topic"):
        store.delete_tenant("acme", lambda tenant: ["_t.acme.orders"])
    assert "acme" in CredentialStore.open(str(tmp_path)).tenants()  # durable; nothing half-done
    store.delete_tenant("acme", lambda tenant: [])
    reopened = CredentialStore.open(str(tmp_path))
    assert reopened.tenants() == {} and not reopened.tenant_exists("acme")
    assert reopened.user("root") is not None  # users kept across tenant changes


REGEX_PIECES = st.sampled_from(
    ["^", "(^", ")", "(", ".*", "orders", "o", "[^a]", "[a-z]+", "|", "\\.", "_t", "acme", "\\A", "$", "(?i)"]
)


@settings(max_examples=800, deadline=None, database=None)
@given(TENANT, st.lists(REGEX_PIECES, min_size=1, max_size=6).map("".join), engine_names())
def test_a_subscription_regex_never_matches_outside_its_namespace(tenant: str, regex: str, name: str) -> None:
    """A Kafka consumer's regex (KIP-848), fully matched by the engine against its topics:
    a tenant's matches only inside its prefix, and what the tenant asked for; the default
    namespace's never matches a tenant's topic; it round-trips to what was said."""
    try:
        asked = re.compile(regex)
    except re.error:
        return
    for namespace in (Namespace.of_tenant(tenant), DEFAULT):
        engine = namespace.regex(regex)
        said = regex.replace("\\A", "^") if namespace.translates else regex
        assert namespace.local_regex(engine) == said
        try:
            matches = re.compile(engine).fullmatch(name) is not None
        except re.error:  # a global flag not at the start: refused as the client's own would be
            assert "(?i)" in regex
            continue
        if matches:
            assert namespace.owns(name)
            assert asked.fullmatch(namespace.local(name))
