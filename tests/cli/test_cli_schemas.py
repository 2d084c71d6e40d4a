"""`odradek schema ...`, `odradek topic create --schema` and `odradek asyncapi`, end to end.

Goal: the schema commands do what docs/cli.md says: set/get/versions/check a topic's
schema from .avsc, .json and stdin, print every problem of an incompatible change and
exit 1, refuse bad input with one clean line (no traceback); `odradek asyncapi` prints
a valid AsyncAPI 3.0.0 document for the matching topics and exits 1 when none matches.
Method: a real `odradek serve` subprocess; each command is its own process; documents
are validated against the vendored AsyncAPI 3.0.0 JSON Schema, offline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.exceptions
from odradek_process import Server, run
from referencing.jsonschema import DRAFT7

SPEC_PATH = Path(__file__).parent.parent / "data" / "asyncapi-3.0.0-schema.json"

PAYMENT_V1 = {
    "type": "record",
    "name": "Payment",
    "fields": [{"name": "id", "type": "string"}, {"name": "amount", "type": "double"}],
}
# Compatible (backward): the added field has a default.
PAYMENT_V2 = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "id", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "currency", "type": "string", "default": "EUR"},
    ],
}
# Incompatible (backward) twice over: a new field without a default, a changed type.
PAYMENT_BROKEN = {
    "type": "record",
    "name": "Payment",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "amount", "type": "double"},
        {"name": "country", "type": "string"},
    ],
}
ORDER_JSON_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {"order": {"type": "string"}, "total": {"type": "number"}},
    "required": ["order", "total"],
}


def _write(path: Path, document: dict[str, Any]) -> str:
    path.write_text(json.dumps(document))
    return str(path)


def _one_clean_error(result: Any) -> str:
    errors: str = result.stderr.decode()
    assert result.returncode == 1, (result.returncode, errors)
    assert "Traceback" not in errors
    assert errors.startswith("odradek: error: ")
    return errors


def _spec_validator() -> jsonschema.Draft7Validator:
    spec = json.loads(SPEC_PATH.read_text())
    resource = referencing.Resource.from_contents(spec, default_specification=DRAFT7)

    def refuse(uri: str) -> referencing.Resource[Any]:
        raise referencing.exceptions.NoSuchResource(ref=uri)

    registry = referencing.Registry(retrieve=refuse).with_resource(spec["$id"], resource).crawl()
    return jsonschema.Draft7Validator(spec, registry=registry)


def test_schema_lifecycle_with_avro_files(server: Server, tmp_path: Path) -> None:
    v1 = _write(tmp_path / "payment.avsc", PAYMENT_V1)
    created = run("topic", "create", "payments", "--schema", v1, server=server)
    assert created.returncode == 0, created.stderr
    got = json.loads(run("schema", "get", "payments", server=server).stdout)
    assert {key: got[key] for key in ("topic", "version", "kind", "compatibility")} == {
        "topic": "payments",
        "version": 1,
        "kind": "AVRO",
        "compatibility": "backward",
    }
    assert isinstance(got["id"], int)
    assert [field["name"] for field in got["schema"]["fields"]] == ["id", "amount"]

    v2 = _write(tmp_path / "payment-v2.avsc", PAYMENT_V2)
    checked = run("schema", "check", "payments", v2, server=server)
    assert checked.returncode == 0 and b"compatible" in checked.stdout
    updated = run("schema", "set", "payments", v2, server=server)
    assert updated.returncode == 0, updated.stderr
    assert b"is now version 2" in updated.stdout
    again = run("schema", "set", "payments", v2, server=server)
    assert again.returncode == 0 and b"unchanged at version 2" in again.stdout

    broken = _write(tmp_path / "payment-broken.avsc", PAYMENT_BROKEN)
    for action in ("check", "set"):
        refused = run("schema", action, "payments", broken, server=server)
        errors = _one_clean_error(refused)
        problems = [line for line in errors.splitlines()[1:] if line.startswith("  - ")]
        assert len(problems) >= 2, errors  # every problem, one line each
        assert "id" in errors and "country" in errors
    versions = json.loads(run("schema", "versions", "payments", server=server).stdout)
    assert [version["version"] for version in versions] == [1, 2]  # the refused set added nothing
    first = json.loads(run("schema", "get", "payments", "--version", "1", server=server).stdout)
    assert first["schema"]["fields"] == PAYMENT_V1["fields"]

    # A mode given with set is checked and becomes the topic's mode.
    forced = run("schema", "set", "payments", broken, "--compatibility", "none", server=server)
    assert forced.returncode == 0, forced.stderr
    assert b"version 3" in forced.stdout and b"compatibility none" in forced.stdout


def test_json_schema_from_stdin_and_kind_checks(server: Server, tmp_path: Path) -> None:
    assert run("topic", "create", "orders", server=server).returncode == 0
    _one_clean_error(run("schema", "get", "orders", server=server))  # no schema yet
    assert run("schema", "versions", "orders", server=server).stdout.strip() == b"[]"
    text = json.dumps(ORDER_JSON_SCHEMA).encode()
    wrong_kind = run("schema", "set", "orders", "-", "--kind", "avro", server=server, stdin=text)
    _one_clean_error(wrong_kind)
    made = run("schema", "set", "orders", "-", "--kind", "json", server=server, stdin=text)
    assert made.returncode == 0, made.stderr
    got = json.loads(run("schema", "get", "orders", server=server).stdout)
    assert got["kind"] == "JSON" and got["schema"]["required"] == ["order", "total"]
    # An Avro document that says it is JSON Schema is refused, not stored as Avro.
    avro = _write(tmp_path / "payment.json", PAYMENT_V1)
    _one_clean_error(run("schema", "check", "orders", avro, "--kind", "json", server=server))

    not_json = tmp_path / "bad.json"
    not_json.write_text("{not json")
    assert "not a JSON schema document" in _one_clean_error(
        run("schema", "set", "orders", str(not_json), server=server)
    )
    missing = _one_clean_error(run("schema", "set", "orders", str(tmp_path / "none.avsc"), server=server))
    assert "none.avsc" in missing
    _one_clean_error(run("schema", "get", "nothing.here", server=server))
    _one_clean_error(run("schema", "set", "orders", str(avro), "--compatibility", "sideways", server=server))
    usage = run("topic", "create", "other", "--compatibility", "full", server=server)
    assert "--schema" in _one_clean_error(usage)


def test_asyncapi_document_of_a_pattern(server: Server, tmp_path: Path) -> None:
    run(
        "topic",
        "create",
        "orders.eu.created",
        "--schema",
        _write(tmp_path / "o.json", ORDER_JSON_SCHEMA),
        server=server,
    )
    run(
        "topic",
        "create",
        "orders.eu.paid",
        "--schema",
        _write(tmp_path / "p.avsc", PAYMENT_V1),
        server=server,
    )
    run("topic", "create", "orders.us.log", server=server)
    run("topic", "create", "payments", server=server)
    printed = run("asyncapi", "orders.>", "--kafka", "127.0.0.1:9092", "--title", "Orders", server=server)
    assert printed.returncode == 0, printed.stderr
    document = json.loads(printed.stdout)
    errors = list(_spec_validator().iter_errors(document))
    assert not errors, [error.message[:200] for error in errors]
    assert list(document["channels"]) == ["orders.eu.created", "orders.eu.paid", "orders.us.log"]
    assert document["info"]["title"] == "Orders"
    assert document["servers"]["flight"]["host"] == server.url.split("://", 1)[1]
    assert document["servers"]["kafka"]["host"] == "127.0.0.1:9092"
    schemas = document["components"]["schemas"]
    assert schemas["orders.eu.created"]["schema"] == ORDER_JSON_SCHEMA
    assert schemas["orders.eu.paid"]["schemaFormat"].startswith("application/vnd.apache.avro")
    assert schemas["orders.us.log"]["contentEncoding"] == "binary"
    assert document["channels"]["orders.eu.paid"]["x-odradek-schema-version"] == 1

    nothing = _one_clean_error(run("asyncapi", "shipments.>", server=server))
    assert "no topic matches" in nothing


def test_asyncapi_yaml(server: Server) -> None:
    yaml = pytest.importorskip("yaml")
    run("topic", "create", "logs", server=server)
    printed = run("asyncapi", "logs", "--format", "yaml", server=server)
    assert printed.returncode == 0, printed.stderr
    document = yaml.safe_load(printed.stdout)
    assert document["asyncapi"] == "3.0.0" and list(document["channels"]) == ["logs"]
