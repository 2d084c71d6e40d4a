"""The Schema Registry routes: Confluent's REST API over a topic's schema and stored subjects.

Goal: every endpoint Confluent's clients call answers with the fields and error codes
they expect; ``<topic>-value`` maps onto the topic's schema history, other subjects
are stored (and survive a restart); refusals never become crashes.
Method: ``Registry.handle`` called directly with requests, over the in-memory backend
and schema languages of conftest.py; a hypothesis test throws arbitrary paths and
bodies at it and requires a well-formed answer below 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.errors import StorageError
from odradek.protocols.registry.routes import CONTENT_TYPE, Registry, Request


def avro_record(*fields: str, defaults: tuple[str, ...] = ()) -> str:
    """An Avro record schema as text; the fields named in ``defaults`` have a default."""
    entries: list[dict[str, Any]] = [{"name": name, "type": "string"} for name in fields]
    entries += [{"name": name, "type": "string", "default": ""} for name in defaults]
    return json.dumps({"type": "record", "name": "Order", "fields": entries})


def json_object(*required: str, optional: tuple[str, ...] = ()) -> str:
    properties = {name: {"type": "string"} for name in (*required, *optional)}
    return json.dumps({"type": "object", "properties": properties, "required": list(required)})


def register(registry: Any, subject: str, schema: str, schema_type: str | None = None) -> Any:
    body: dict[str, Any] = {"schema": schema}
    if schema_type is not None:
        body["schemaType"] = schema_type
    return registry.call("POST", f"/subjects/{subject}/versions", body)


def assert_error(response: Any, status: int, error_code: int, *fragments: str) -> None:
    assert response.status == status, response.body
    document = response.document()
    assert document["error_code"] == error_code
    for fragment in fragments:
        assert fragment in document["message"]


# -- a topic's value subject --------------------------------------------------------------


def test_registering_a_value_subject_creates_the_topic_with_that_schema(registry: Any) -> None:
    response = register(registry, "orders-value", avro_record("id"))
    assert response.status == 200
    assert response.content_type == CONTENT_TYPE
    document = response.document()
    assert document["subject"] == "orders-value"
    assert document["version"] == 1
    assert "schemaType" not in document  # AVRO is the default, left out as Confluent does
    info = registry.backend.get_schema("orders")
    assert document["id"] == info.id
    assert json.loads(document["schema"]) == json.loads(avro_record("id"))


def test_a_value_subjects_versions_are_the_topics_schema_versions(registry: Any) -> None:
    first = register(registry, "orders-value", avro_record("id")).document()
    second = register(registry, "orders-value", avro_record("id", defaults=("note",))).document()
    assert (first["version"], second["version"]) == (1, 2)
    assert [info.version for info in registry.backend.schema_versions("orders")] == [1, 2]
    assert registry.call("GET", "/subjects/orders-value/versions").document() == [1, 2]
    for latest in ("latest", "-1"):
        assert registry.call("GET", f"/subjects/orders-value/versions/{latest}").document() == second
    assert registry.call("GET", "/subjects/orders-value/versions/1").document() == first
    text = registry.call("GET", "/subjects/orders-value/versions/1/schema")
    assert json.loads(text.body) == json.loads(avro_record("id"))
    assert registry.call("GET", "/subjects").document() == ["orders-value"]


def test_registering_the_same_schema_again_returns_the_same_version(registry: Any) -> None:
    first = register(registry, "orders-value", avro_record("id")).document()
    again = register(registry, "orders-value", avro_record("id")).document()
    assert again == first
    assert len(registry.backend.schema_versions("orders")) == 1


def test_an_existing_schemaless_topic_gets_its_first_schema(registry: Any) -> None:
    registry.backend.create_topic("payments")
    assert_error(registry.call("GET", "/subjects/payments-value/versions"), 404, 40401)
    assert registry.call("GET", "/subjects").document() == []
    assert register(registry, "payments-value", json_object("amount"), "JSON").status == 200
    assert registry.backend.get_schema("payments").kind == "JSON"


def test_an_incompatible_evolution_is_refused_with_409_and_the_problems(registry: Any) -> None:
    register(registry, "orders-value", avro_record("id"))
    response = register(registry, "orders-value", avro_record("id", "customer"))
    assert_error(response, 409, 409, "customer: a new field needs a default")
    assert len(registry.backend.schema_versions("orders")) == 1


def test_a_value_subject_cannot_be_deleted(registry: Any) -> None:
    register(registry, "orders-value", avro_record("id"))
    for path in ("/subjects/orders-value", "/subjects/orders-value/versions/1"):
        assert_error(registry.call("DELETE", path), 422, 42205, "delete the topic")
    assert registry.call("GET", "/subjects/orders-value/versions").document() == [1]


def test_a_value_subject_with_an_invalid_topic_name_is_refused(registry: Any) -> None:
    assert_error(register(registry, "bad..name-value", avro_record("id")), 422, 42208, "bad..name")


def test_a_schema_whose_language_differs_from_its_schema_type_is_refused(registry: Any) -> None:
    response = register(registry, "orders-value", avro_record("id"), "JSON")
    assert_error(response, 422, 42201, "JSON", "AVRO")
    assert "orders" not in registry.backend.topics


# -- stored subjects -----------------------------------------------------------------------


def test_other_subjects_are_stored_with_global_ids(registry: Any) -> None:
    value = register(registry, "orders-value", avro_record("id")).document()
    key = register(registry, "orders-key", avro_record("id")).document()
    assert key["subject"] == "orders-key"
    assert key["version"] == 1
    assert key["id"] == value["id"]  # same schema, same id everywhere
    other = register(registry, "com.example.Order", avro_record("sku")).document()
    assert other["id"] != value["id"]
    assert registry.call("GET", "/subjects").document() == ["com.example.Order", "orders-key", "orders-value"]
    subjects = registry.call("GET", f"/schemas/ids/{value['id']}/subjects").document()
    assert subjects == ["orders-key", "orders-value"]
    versions = registry.call("GET", f"/schemas/ids/{value['id']}/versions").document()
    assert versions == [{"subject": "orders-key", "version": 1}, {"subject": "orders-value", "version": 1}]


def test_stored_subjects_check_compatibility_with_their_mode(registry: Any) -> None:
    register(registry, "orders-key", avro_record("id"))
    assert_error(
        register(registry, "orders-key", avro_record("id", "region")), 409, 409, "region", "BACKWARD"
    )
    assert registry.call("PUT", "/config/orders-key", {"compatibility": "NONE"}).document() == {
        "compatibility": "NONE"
    }
    assert register(registry, "orders-key", avro_record("id", "region")).document()["version"] == 2


def test_transitive_modes_check_every_earlier_version(registry: Any) -> None:
    registry.call("PUT", "/config/events", {"compatibility": "NONE"})
    register(registry, "events", avro_record("a"))
    register(registry, "events", avro_record("b"))  # NONE: anything goes
    registry.call("PUT", "/config/events", {"compatibility": "BACKWARD"})
    assert register(registry, "events", avro_record("b", defaults=("c",))).status == 200
    registry.call("PUT", "/config/events", {"compatibility": "BACKWARD_TRANSITIVE"})
    # "b" is new relative to version 1 and has no default: only a transitive check sees it.
    assert_error(register(registry, "events", avro_record("b", defaults=("c", "d"))), 409, 409, "b:")


def test_stored_subjects_survive_a_restart(registry: Any) -> None:
    registered = register(registry, "orders-key", avro_record("id")).document()
    registry.call("PUT", "/config/orders-key", {"compatibility": "FULL"})
    registry.call("PUT", "/config", {"compatibility": "FORWARD"})
    registry.reopen()
    assert registry.call("GET", "/subjects/orders-key/versions/latest").document() == registered
    assert registry.call("GET", "/config/orders-key").document() == {"compatibilityLevel": "FULL"}
    assert registry.call("GET", "/config").document() == {"compatibilityLevel": "FORWARD"}


def test_soft_then_permanent_deletion_of_a_stored_subject(registry: Any) -> None:
    registry.call("PUT", "/config/orders-key", {"compatibility": "NONE"})
    register(registry, "orders-key", avro_record("a"))
    register(registry, "orders-key", avro_record("b"))
    assert_error(registry.call("DELETE", "/subjects/orders-key", permanent="true"), 404, 40405)
    assert registry.call("DELETE", "/subjects/orders-key").document() == [1, 2]
    assert_error(registry.call("GET", "/subjects/orders-key/versions"), 404, 40401)
    assert registry.call("GET", "/subjects").document() == []
    assert registry.call("GET", "/subjects", deleted="true").document() == ["orders-key"]
    assert registry.call("GET", "/subjects", deleted_only="true").document() == ["orders-key"]
    assert registry.call("GET", "/subjects/orders-key/versions", deleted="true").document() == [1, 2]
    assert_error(registry.call("DELETE", "/subjects/orders-key"), 404, 40404)
    assert registry.call("DELETE", "/subjects/orders-key", permanent="true").document() == [1, 2]
    assert_error(registry.call("GET", "/subjects/orders-key/versions", deleted="true"), 404, 40401)
    # Version numbers are not reused after a permanent delete.
    assert register(registry, "orders-key", avro_record("c")).document()["version"] == 3


def test_deleting_one_version_of_a_stored_subject(registry: Any) -> None:
    registry.call("PUT", "/config/orders-key", {"compatibility": "NONE"})
    register(registry, "orders-key", avro_record("a"))
    register(registry, "orders-key", avro_record("b"))
    assert_error(registry.call("DELETE", "/subjects/orders-key/versions/1", permanent="true"), 404, 40407)
    assert registry.call("DELETE", "/subjects/orders-key/versions/latest").document() == 2
    assert registry.call("GET", "/subjects/orders-key/versions").document() == [1]
    assert_error(registry.call("DELETE", "/subjects/orders-key/versions/2"), 404, 40406)
    assert registry.call("DELETE", "/subjects/orders-key/versions/2", permanent="true").document() == 2
    assert_error(registry.call("DELETE", "/subjects/orders-key/versions/9"), 404, 40402)
    assert register(registry, "orders-key", avro_record("c")).document()["version"] == 3


# -- lookups and schemas by id -------------------------------------------------------------


def test_lookup_finds_a_registered_schema_by_its_canonical_form(registry: Any) -> None:
    registered = register(registry, "orders-value", avro_record("id")).document()
    spaced = json.dumps(json.loads(avro_record("id")), indent=4)  # same schema, other spelling
    found = registry.call("POST", "/subjects/orders-value", {"schema": spaced})
    assert found.document() == registered
    assert_error(registry.call("POST", "/subjects/orders-value", {"schema": avro_record("x")}), 404, 40403)
    assert_error(registry.call("POST", "/subjects/nothing-value", {"schema": avro_record("x")}), 404, 40401)
    assert_error(registry.call("POST", "/subjects/nothing", {"schema": avro_record("x")}), 404, 40401)


def test_schemas_by_id(registry: Any) -> None:
    avro = register(registry, "orders-value", avro_record("id")).document()
    json_schema = register(registry, "payments-value", json_object("amount"), "JSON").document()
    assert json_schema["schemaType"] == "JSON"
    by_id = registry.call("GET", f"/schemas/ids/{avro['id']}", subject="orders-value").document()
    assert by_id == {"schema": avro["schema"]}
    assert registry.call("GET", f"/schemas/ids/{json_schema['id']}").document() == {
        "schema": json_schema["schema"],
        "schemaType": "JSON",
    }
    assert registry.call("GET", f"/schemas/ids/{avro['id']}/schema").body == avro["schema"].encode()
    for unknown in ("999", "0", "abc"):
        assert_error(registry.call("GET", f"/schemas/ids/{unknown}"), 404, 40403)
    assert_error(registry.call("GET", "/schemas/guids/0f4a"), 404, 40403)


# -- compatibility tests, config and mode ---------------------------------------------------


def test_compatibility_endpoint_answers_without_registering(registry: Any) -> None:
    register(registry, "orders-value", avro_record("id"))
    bad = {"schema": avro_record("id", "customer")}
    path = "/compatibility/subjects/orders-value/versions/latest"
    assert registry.call("POST", path, bad).document() == {"is_compatible": False}
    verbose = registry.call("POST", path, bad, verbose="true").document()
    assert verbose["is_compatible"] is False
    assert any("customer" in message for message in verbose["messages"])
    good = {"schema": avro_record("id", defaults=("customer",))}
    assert registry.call("POST", "/compatibility/subjects/orders-value/versions", good).document() == {
        "is_compatible": True
    }
    assert registry.call("POST", "/compatibility/subjects/orders-value/versions/1", bad).document() == {
        "is_compatible": False
    }
    assert_error(registry.call("POST", "/compatibility/subjects/orders-value/versions/7", bad), 404, 40402)
    assert len(registry.backend.schema_versions("orders")) == 1
    register(registry, "orders-key", avro_record("id"))
    assert registry.call("POST", "/compatibility/subjects/orders-key/versions/latest", bad).document() == {
        "is_compatible": False
    }
    assert registry.call("POST", "/compatibility/subjects/new-key/versions/latest", bad).document() == {
        "is_compatible": True
    }


def test_a_value_subjects_config_is_the_topics_mode(registry: Any) -> None:
    register(registry, "orders-value", avro_record("id"))
    assert registry.call("GET", "/config/orders-value").document() == {"compatibilityLevel": "BACKWARD"}
    assert registry.call("PUT", "/config/orders-value", {"compatibility": "FULL_TRANSITIVE"}).status == 200
    assert registry.backend.modes["orders"] == "full_transitive"
    assert registry.call("GET", "/config/orders-value").document() == {
        "compatibilityLevel": "FULL_TRANSITIVE"
    }
    deleted = registry.call("DELETE", "/config/orders-value").document()
    assert deleted == {"compatibilityLevel": "FULL_TRANSITIVE"}
    assert registry.backend.modes["orders"] == "backward"


def test_a_mode_set_before_the_topic_exists_applies_when_it_is_created(registry: Any) -> None:
    assert registry.call("PUT", "/config/later-value", {"compatibility": "NONE"}).status == 200
    assert registry.call("GET", "/config/later-value").document() == {"compatibilityLevel": "NONE"}
    register(registry, "later-value", avro_record("id"))
    assert registry.backend.modes["later"] == "none"
    assert register(registry, "later-value", avro_record("id", "other")).status == 200


def test_the_default_config_applies_to_new_subjects(registry: Any) -> None:
    assert registry.call("GET", "/config").document() == {"compatibilityLevel": "BACKWARD"}
    assert registry.call("PUT", "/config", {"compatibility": "none"}).document() == {"compatibility": "NONE"}
    register(registry, "fresh-value", avro_record("id"))
    assert registry.backend.modes["fresh"] == "none"
    assert registry.call("GET", "/config/any-subject").document() == {"compatibilityLevel": "NONE"}
    assert registry.call("DELETE", "/config").document() == {"compatibilityLevel": "NONE"}
    assert registry.call("GET", "/config").document() == {"compatibilityLevel": "BACKWARD"}


def test_invalid_compatibility_levels_are_refused(registry: Any) -> None:
    for body in ({"compatibility": "SIDEWAYS"}, {"compatibility": 3}, {}):
        assert_error(registry.call("PUT", "/config", body), 422, 42203)
        assert_error(registry.call("PUT", "/config/orders-key", body), 422, 42203)


def test_mode_is_read_write(registry: Any) -> None:
    assert registry.call("GET", "/mode").document() == {"mode": "READWRITE"}
    assert registry.call("GET", "/mode/orders-value").document() == {"mode": "READWRITE"}
    assert registry.call("PUT", "/mode", {"mode": "READWRITE"}).document() == {"mode": "READWRITE"}
    assert_error(registry.call("PUT", "/mode", {"mode": "READONLY"}), 422, 42204)


def test_small_endpoints_clients_probe(registry: Any) -> None:
    assert registry.call("GET", "/").document() == {}
    assert registry.call("GET", "/schemas/types").document() == ["AVRO", "JSON"]
    assert registry.call("GET", "/contexts").document() == ["."]
    associations = "/associations/resources/-/orders"
    assert registry.call("GET", associations, resourceType="topic").document() == []
    register(registry, "orders-value", avro_record("id"))
    assert registry.call("GET", "/subjects/orders-value/versions/1/referencedby").document() == []


def test_listings_page_and_filter(registry: Any) -> None:
    for name in ("a-key", "b-key", "c-key", "x.d-key"):
        register(registry, name, avro_record("id"))
    assert registry.call("GET", "/subjects", offset="1", limit="2").document() == ["b-key", "c-key"]
    assert registry.call("GET", "/subjects", subjectPrefix="x.").document() == ["x.d-key"]
    assert_error(registry.call("GET", "/subjects", offset="one"), 400, 400)


# -- refusals ---------------------------------------------------------------------------------


def test_unsupported_schema_types_and_features_are_refused(registry: Any) -> None:
    assert_error(register(registry, "o-value", "syntax = 'proto3';", "PROTOBUF"), 422, 42201, "Protobuf")
    assert_error(register(registry, "o-value", avro_record("id"), "THRIFT"), 422, 42201, "THRIFT")
    refs = {"schema": avro_record("id"), "references": [{"name": "x", "subject": "y", "version": 1}]}
    assert_error(registry.call("POST", "/subjects/o-value/versions", refs), 422, 42201, "references")
    rules = {"schema": avro_record("id"), "ruleSet": {"domainRules": [{"name": "r"}]}}
    assert_error(registry.call("POST", "/subjects/o-value/versions", rules), 422, 42201, "ruleSet")
    assert "o" not in registry.backend.topics


def test_malformed_requests_are_4xx(registry: Any) -> None:
    assert_error(registry.call("POST", "/subjects/o-value/versions", b"{not json"), 400, 400)
    assert_error(registry.call("POST", "/subjects/o-value/versions", b"[1, 2]"), 400, 400)
    assert_error(registry.call("POST", "/subjects/o-value/versions", {"schemaType": "AVRO"}), 422, 42201)
    assert_error(registry.call("POST", "/subjects/o-value/versions", {"schema": "{oops"}), 422, 42201)
    assert_error(registry.call("POST", "/subjects/o-value/versions", {"schema": "[]"}), 422, 42201)
    assert_error(registry.call("GET", "/nowhere"), 404, 404)
    assert_error(registry.call("PATCH", "/subjects"), 405, 405)
    assert_error(registry.call("GET", "/subjects/o-value/versions/0"), 422, 42202)
    assert_error(registry.call("GET", "/subjects/o-value/versions/one"), 422, 42202)
    register(registry, "o-value", avro_record("id"))
    assert_error(registry.call("GET", "/subjects/o-value/versions/2"), 404, 40402)


def test_subject_names_are_url_decoded(registry: Any) -> None:
    assert register(registry, "team%2Forders", avro_record("id")).document()["subject"] == "team/orders"
    assert registry.call("GET", "/subjects").document() == ["team/orders"]


def test_backend_failures_are_500_with_a_store_error_code(registry: Any) -> None:
    registry.backend.fail_with = StorageError("disk full")
    assert_error(register(registry, "orders-value", avro_record("id")), 500, 50001, "disk full")
    registry.backend.fail_with = RuntimeError("a bug")
    assert_error(registry.call("GET", "/subjects"), 500, 50001)


_SEGMENTS = st.sampled_from(
    [
        "subjects",
        "versions",
        "schemas",
        "ids",
        "config",
        "mode",
        "compatibility",
        "latest",
        "-1",
        "1",
        "x-value",
        "%",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    segments=st.lists(_SEGMENTS | st.text(max_size=8), max_size=6),
    body=st.one_of(
        st.binary(max_size=64),
        st.dictionaries(
            st.sampled_from(["schema", "schemaType", "references", "compatibility", "mode"]),
            st.one_of(st.none(), st.integers(), st.text(max_size=12), st.lists(st.integers(), max_size=2)),
        ).map(lambda document: json.dumps(document).encode()),
    ),
)
def test_any_request_gets_a_well_formed_answer(
    new_registry: Callable[[], Registry], method: str, segments: list[str], body: bytes
) -> None:
    response = new_registry().handle(Request(method, "/" + "/".join(segments), {}, body))
    assert 200 <= response.status < 500, response.body
    document = json.loads(response.body) if response.body[:1] in (b"{", b"[") else None
    if response.status >= 400:
        assert isinstance(document, dict)
        assert isinstance(document["error_code"], int)
        assert isinstance(document["message"], str)


def test_stored_subjects_with_the_engines_own_avro_compiler_and_checker(registry: Any) -> None:
    from odradek.protocols.registry.routes import OdradekSchemaLanguages
    from odradek.protocols.registry.subjects import SubjectStore

    real = Registry(registry.backend, SubjectStore(registry.data_dir), OdradekSchemaLanguages())

    def call(method: str, path: str, body: Any) -> Any:
        return real.handle(Request(method, path, {}, json.dumps(body).encode()))

    key = {"type": "record", "name": "Key", "fields": [{"name": "id", "type": "string"}]}
    first = call("POST", "/subjects/orders-key/versions", {"schema": json.dumps(key)}).document()
    assert first["version"] == 1
    spaced = json.dumps(key, indent=2)
    assert call("POST", "/subjects/orders-key", {"schema": spaced}).document()["id"] == first["id"]
    breaking = dict(key, fields=[*key["fields"], {"name": "region", "type": "string"}])
    assert_error(
        call("POST", "/subjects/orders-key/versions", {"schema": json.dumps(breaking)}), 409, 409, "region"
    )
    evolved = dict(key, fields=[*key["fields"], {"name": "region", "type": "string", "default": "eu"}])
    assert (
        call("POST", "/subjects/orders-key/versions", {"schema": json.dumps(evolved)}).document()["version"]
        == 2
    )
    primitive = call("POST", "/subjects/orders-key/versions", {"schema": '"string"'})
    assert_error(primitive, 422, 42201)
