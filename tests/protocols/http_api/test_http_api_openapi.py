"""The OpenAPI document is the API: schemathesis checks a running server against it.

Goal: every answer of a real ``odradek serve`` to requests generated from
/openapi.json (valid and invalid, and sequences that join the links between
operations) is one the document allows: no server error, a documented status, content
type, headers and body schema; a method the document does not list is answered 405
with Allow; invalid requests are refused. Also: the document is valid OpenAPI 3.1 and
names every route the API answers. Method: schemathesis's command line against the
server's listener, bounded to a few hundred cases (fuzzing and stateful phases, a fixed
seed); the tail operations (endless streams) are left to test_http_api_events.py and
tests/console/test_console_api.py.
Schema-valid requests the engine refuses for reasons a JSON Schema cannot say (a
setting's range, a group that does not exist yet) are not counted as failures
(positive_data_acceptance is left out).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_api_client import Served

from odradek.console.openapi import ROUTES as CONSOLE_ROUTES
from odradek.protocols.http_api import openapi
from odradek.protocols.http_api.routes import ROUTES

EXAMPLES_PER_OPERATION = 6


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(str(tmp_path / "data"))
    yield server
    server.kill()


def test_the_running_server_conforms_to_its_document(served: Served, tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{served.base}/openapi.json",
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--phases", "fuzzing,stateful", "--max-examples", str(EXAMPLES_PER_OPERATION),
        "--exclude-operation-id", "tail", "--exclude-operation-id", "consoleTail",
        "--seed", "1", "--request-timeout", "60", "--workers", "1",
        "--report-dir", str(tmp_path / "report"),
    ]  # fmt: skip
    # In the test's directory: schemathesis keeps its example database in the working one.
    run = subprocess.run(command, capture_output=True, timeout=600, cwd=tmp_path)
    output = run.stdout.decode(errors="replace")
    assert run.returncode == 0, output[-6000:]
    assert " passed" in output


def test_the_document_is_valid_openapi_and_names_every_route() -> None:
    from schemathesis.openapi import from_dict

    schema = from_dict(openapi.DOCUMENT)
    operations = {(result.ok().method.upper(), result.ok().path) for result in schema.get_all_operations()}
    routed = {(method, "/" + "/".join(pattern)) for pattern, handlers in ROUTES for method in handlers}
    assert routed | set(CONSOLE_ROUTES) == operations | {("GET", "/openapi.json")}
