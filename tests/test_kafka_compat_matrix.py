"""The client compatibility matrix of docs/kafka-compatibility.md cannot lie.

Goal: every cell of the page's table that claims a run ("yes", "FAILED", "skipped") is
backed by at least one test marked ``compat(client, feature)`` that exists, every test
the page names for a cell carries that cell's marker, and no cell with marked tests is
left out ("-"); markers name only the matrix's clients and features. The script's own
parts behave: the table it renders from outcomes, and the checker, which finds a
claimed cell without a test, a named test not marked for its cell, and a page without
its markers.

Method: scripts/kafka_compat_matrix.py's ``marked_tests`` reads the markers from the
test modules' syntax (nothing is run); its checker compares them with the page as
committed, and with small pages made up here.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "kafka_compat_matrix", ROOT / "scripts" / "kafka_compat_matrix.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


matrix = _script()


def test_the_page_claims_only_what_marked_tests_back() -> None:
    page = matrix.PAGE.read_text(encoding="utf-8")
    marked = matrix.marked_tests([matrix.TESTS])
    assert matrix.problems(page, marked) == []
    claims = matrix.claims(page)
    assert {cell.client for cell in claims} == set(matrix.CLIENTS)
    assert sum(value in matrix.CLAIMS for value, _ in claims.values()) >= len(matrix.CLIENTS)


def test_marked_tests_exist_where_the_markers_are() -> None:
    marked = matrix.marked_tests([matrix.TESTS])
    kafkajs = marked[matrix.Cell("kafkajs", "transactions")]
    assert "tests/protocols/kafka/test_kafkajs.py::test_transactions_commit_abort_and_send_offsets" in kafkajs
    for tests in marked.values():
        for test in tests:
            path, name = test.split("::")
            assert f"def {name}(" in (ROOT / path).read_text(encoding="utf-8")


def page_with(body: str) -> str:
    return f"# Title\n\n{matrix.START}\n{body}\n{matrix.END}\n\nmore\n"


def test_markers_are_read_from_functions_and_modules(tmp_path: Path) -> None:
    module = tmp_path / "test_example.py"
    module.write_text(
        "import pytest\n\n"
        "pytestmark = pytest.mark.compat('kafkajs', 'produce')\n\n\n"
        "@pytest.mark.compat('kafkajs', 'consume')\n"
        "def test_one():\n    pass\n\n\n"
        "def test_two():\n    pass\n",
        encoding="utf-8",
    )
    marked = matrix.marked_tests([module])
    one, two = (f"{module.as_posix()}::test_{n}" for n in ("one", "two"))
    assert marked == {
        matrix.Cell("kafkajs", "produce"): [one, two],
        matrix.Cell("kafkajs", "consume"): [one],
    }


def test_the_checker_finds_a_claim_without_a_test_and_a_test_not_marked() -> None:
    produce, consume = matrix.Cell("kafkajs", "produce"), matrix.Cell("kafkajs", "consume")
    outcomes = {produce: {"tests/x.py::test_a": "passed"}, consume: {"tests/x.py::test_b": "failed"}}
    page = page_with(matrix.render(outcomes))
    row = next(line for line in page.splitlines() if line.startswith("| kafkajs |"))
    assert row.split("|")[2:4] == [" yes ", " FAILED "]
    assert "| n/a |" in row  # kafkajs has no static groups
    marked = {produce: ["tests/x.py::test_a"], consume: ["tests/x.py::test_b"]}
    assert matrix.problems(page, marked) == []
    # The test named for "consume" is marked for something else: a lie.
    wrong = {produce: ["tests/x.py::test_a"], consume: ["tests/x.py::test_c"]}
    assert matrix.problems(page, wrong) == [
        "kafkajs, consume: tests/x.py::test_b is named but not marked for it"
    ]
    # No test at all behind a claimed cell.
    assert matrix.problems(page, {produce: ["tests/x.py::test_a"]}) == [
        "kafkajs, consume: the page says 'FAILED'; no test is marked",
        "kafkajs, consume: tests/x.py::test_b is named but not marked for it",
    ]
    # A marked test the page leaves out.
    extra = {**marked, matrix.Cell("kcat", "produce"): ["tests/x.py::test_d"]}
    assert matrix.problems(page, extra) == ["kcat, produce: marked tests exist but the page says '-'"]


def test_bad_markers_and_pages_are_refused(tmp_path: Path) -> None:
    module = tmp_path / "test_bad.py"
    module.write_text(
        "import pytest\n\n@pytest.mark.compat('kafkajs', 'telepathy')\ndef test_x():\n    pass\n"
    )
    with pytest.raises(matrix.MatrixError, match="the feature one of"):
        matrix.marked_tests([module])
    with pytest.raises(matrix.MatrixError, match="markers"):
        matrix.replace_section("# no markers\n", "| table |")
    replaced = matrix.replace_section(page_with("old"), "new")
    assert matrix.section(replaced) == "\nnew\n"
