"""The Kafka client compatibility matrix of docs/kafka-compatibility.md, from a test run.

    python scripts/kafka_compat_matrix.py            # run the marked tests, rewrite the table
    python scripts/kafka_compat_matrix.py --check    # exit 1 if the table claims a cell no
                                                     # marked test backs (nothing is run)

A test proves a cell by its marker, ``@pytest.mark.compat("kafkajs", "transactions")``
(on the function, or in the module's ``pytestmark``). The run is pytest's, in this
process, with ``-m compat`` over the Kafka door's tests (and any paths given): a cell
reads "yes" when every test marked for it passed, "FAILED" when one failed, "skipped"
when all were skipped (the client is not installed), "n/a" when the client has no such
feature, and "-" when no test is marked for it. Under the table each cell names the
tests behind it. The page is rewritten between its two ``compat-matrix`` comments only.

The markers are found without running anything by reading the test modules' syntax
(:func:`marked_tests`); tests/test_kafka_compat_matrix.py uses that to check that every
cell the page claims is backed by a marked test that exists, so the page cannot lie.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "kafka-compatibility.md"
TESTS = ROOT / "tests" / "protocols" / "kafka"
START = "<!-- compat-matrix:start (written by scripts/kafka_compat_matrix.py; do not edit) -->"
END = "<!-- compat-matrix:end -->"

CLIENTS = ("confluent-kafka", "kafka-python", "aiokafka", "kcat", "kafkajs", "faust", "quix-streams")
FEATURES = (
    "produce",
    "consume",
    "groups",
    "static groups",
    "KIP-848",
    "transactions",
    "compaction",
    "admin",
    "SASL/TLS",
    "share groups",
)
# What a client does not have at all, so no test can show it (the cell reads "n/a").
NOT_IN_CLIENT: Mapping[tuple[str, str], str] = {
    ("kafka-python", "KIP-848"): "kafka-python 3.0 speaks only the classic group protocol",
    ("aiokafka", "KIP-848"): "aiokafka 0.14 speaks only the classic group protocol",
    ("faust", "KIP-848"): "Faust's consumer is aiokafka's",
    ("kafkajs", "static groups"): "kafkajs 2.2.4 has no group.instance.id",
    ("kafkajs", "KIP-848"): "kafkajs 2.2.4 speaks only the classic group protocol",
    ("kcat", "KIP-848"): "Debian's kcat 1.7 is built on librdkafka 2.0, older than KIP-848",
    ("kcat", "admin"): "kcat lists metadata (-L) but creates and deletes nothing",
    ("kafka-python", "share groups"): "kafka-python 3.0 has no share consumer (KIP-932)",
    ("aiokafka", "share groups"): "aiokafka 0.14 has no share consumer (KIP-932)",
    ("kcat", "share groups"): "Debian's kcat 1.7 is built on librdkafka 2.0, older than KIP-932",
    ("kafkajs", "share groups"): "kafkajs 2.2.4 has no share consumer (KIP-932)",
    ("faust", "share groups"): "Faust's consumer is aiokafka's",
    ("quix-streams", "share groups"): "Quix Streams consumes with confluent-kafka's classic Consumer",
    ("quix-streams", "KIP-848"): (
        "Quix Streams 3.28 forces partition.assignment.strategy=range on its consumer, which "
        "librdkafka refuses with group.protocol=consumer"
    ),
}

YES, FAILED, SKIPPED, NOT_APPLICABLE, NONE = "yes", "FAILED", "skipped", "n/a", "-"
CLAIMS = (YES, FAILED, SKIPPED)  # cells that say a test ran


class MatrixError(Exception):
    """A marker naming an unknown client or feature, or a page without its markers."""


@dataclasses.dataclass(frozen=True, order=True)
class Cell:
    client: str
    feature: str


def marked_tests(paths: Iterable[Path]) -> dict[Cell, list[str]]:
    """Every ``compat`` marker of the test modules under ``paths``, read from their
    syntax: cell -> test ids (``path::name``, path relative to the repository)."""
    cells: dict[Cell, list[str]] = {}
    for path in sorted(p for root in paths for p in _modules(root)):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        relative = (path.relative_to(ROOT) if path.is_relative_to(ROOT) else path).as_posix()
        module_cells = [cell for node in tree.body if _is_pytestmark(node) for cell in _cells(node)]
        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
                own = [cell for decorator in node.decorator_list for cell in _cells(decorator)]
                for cell in dict.fromkeys([*module_cells, *own]):
                    cells.setdefault(cell, []).append(f"{relative}::{node.name}")
    return cells


def _modules(root: Path) -> Iterable[Path]:
    return [root] if root.is_file() else root.rglob("test_*.py")


def _is_pytestmark(node: ast.stmt) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(target, ast.Name) and target.id == "pytestmark" for target in node.targets
    )


def _cells(node: ast.AST) -> list[Cell]:
    """The cells of every ``pytest.mark.compat(client, feature)`` call inside ``node``."""
    found = []
    for call in ast.walk(node):
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
            continue
        if call.func.attr != "compat" or not _is_pytest_mark(call.func.value):
            continue
        values = [a.value for a in call.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
        if len(values) != 2 or len(call.args) != 2:
            raise MatrixError(f"line {call.lineno}: compat takes two strings, client and feature")
        cell = Cell(*values)
        if cell.client not in CLIENTS or cell.feature not in FEATURES:
            raise MatrixError(
                f"line {call.lineno}: compat{values}: the client must be one of {CLIENTS} "
                f"and the feature one of {FEATURES}"
            )
        found.append(cell)
    return found


def _is_pytest_mark(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "mark"
        and isinstance(node.value, ast.Name)
        and node.value.id == "pytest"
    )


# -- the run ---------------------------------------------------------------------------


class _Outcomes:
    """A pytest plugin: the outcome of every test marked ``compat``, by cell."""

    def __init__(self) -> None:
        self.cells_of: dict[str, list[Cell]] = {}
        self.outcomes: dict[Cell, dict[str, str]] = {}

    def pytest_collection_modifyitems(self, items: list[Any]) -> None:
        for item in items:
            cells = [Cell(*mark.args) for mark in item.iter_markers(name="compat")]
            self.cells_of[item.nodeid] = list(dict.fromkeys(cells))

    def pytest_runtest_logreport(self, report: Any) -> None:
        outcome = "failed" if report.failed else "skipped" if report.skipped else "passed"
        if report.when != "call" and outcome == "passed":
            return
        for cell in self.cells_of.get(report.nodeid, []):
            known = self.outcomes.setdefault(cell, {})
            if known.get(report.nodeid) != "failed":
                known[report.nodeid] = outcome


def run(paths: list[str], extra: list[str]) -> tuple[int, dict[Cell, dict[str, str]]]:
    """Run the marked tests under ``paths``; pytest's exit code and the outcomes."""
    import pytest

    plugin = _Outcomes()
    code = pytest.main(["-q", "-p", "no:cacheprovider", "-m", "compat", *extra, *paths], plugins=[plugin])
    return int(code), plugin.outcomes


def verdict(outcomes: Mapping[str, str]) -> str:
    values = set(outcomes.values())
    if "failed" in values:
        return FAILED
    if values == {"skipped"}:
        return SKIPPED
    return YES


def render(outcomes: Mapping[Cell, Mapping[str, str]]) -> str:
    """The table and the tests behind its cells, as the page holds them between its
    markers."""
    lines = [
        "| client | " + " | ".join(FEATURES) + " |",
        "|---|" + "---|" * len(FEATURES),
    ]
    for client in CLIENTS:
        row = []
        for feature in FEATURES:
            cell = Cell(client, feature)
            if outcomes.get(cell):
                row.append(verdict(outcomes[cell]))
            elif (client, feature) in NOT_IN_CLIENT:
                row.append(NOT_APPLICABLE)
            else:
                row.append(NONE)
        lines.append(f"| {client} | " + " | ".join(row) + " |")
    lines += ["", "Tests behind each cell:", ""]
    for client in CLIENTS:
        for feature in FEATURES:
            cell = Cell(client, feature)
            if outcomes.get(cell):
                tests = ", ".join(f"`{test}`" for test in sorted({_short(t) for t in outcomes[cell]}))
                lines.append(f"* {client}, {feature}: {tests}")
            elif (client, feature) in NOT_IN_CLIENT:
                lines.append(f"* {client}, {feature}: n/a, {NOT_IN_CLIENT[client, feature]}")
    return "\n".join(lines)


def _short(test_id: str) -> str:
    """A test's id as the page names it: beside the Kafka door's tests, no parameters."""
    return test_id.split("[", 1)[0].removeprefix("tests/protocols/kafka/")


def claims(page: str) -> dict[Cell, tuple[str, list[str]]]:
    """What the page's table says: cell -> (value, the test ids named for it)."""
    body = section(page)
    table = [line for line in body.splitlines() if line.startswith("| ") and not line.startswith("| client")]
    result: dict[Cell, tuple[str, list[str]]] = {}
    for line in table:
        client, *values = [part.strip() for part in line.strip("|").split("|")]
        for feature, value in zip(FEATURES, values, strict=True):
            result[Cell(client, feature)] = (value, [])
    for match in re.finditer(r"^\* ([^,]+), ([^:]+): (.*)$", body, re.MULTILINE):
        cell = Cell(match.group(1), match.group(2))
        named = re.findall(r"`([^`]+)`", match[3])
        tests = [t if "/" in t else f"tests/protocols/kafka/{t}" for t in named]
        if cell in result:
            result[cell][1].extend(tests)
    return result


def section(page: str) -> str:
    if page.count(START) != 1 or page.count(END) != 1 or page.index(START) > page.index(END):
        raise MatrixError(f"the page must hold the markers {START!r} and {END!r} once, in order")
    return page[page.index(START) + len(START) : page.index(END)]


def replace_section(page: str, body: str) -> str:
    section(page)  # checks the markers
    return page[: page.index(START) + len(START)] + "\n" + body + "\n" + page[page.index(END) :]


def problems(page: str, marked: Mapping[Cell, list[str]]) -> list[str]:
    """Where the page's table and the marked tests disagree."""
    found = []
    for cell, (value, tests) in sorted(claims(page).items()):
        backing = set(marked.get(cell, []))
        if value in CLAIMS:
            if not backing:
                found.append(f"{cell.client}, {cell.feature}: the page says {value!r}; no test is marked")
            for test in tests:
                if test not in backing:
                    found.append(f"{cell.client}, {cell.feature}: {test} is named but not marked for it")
        elif backing:
            found.append(f"{cell.client}, {cell.feature}: marked tests exist but the page says {value!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="check the page against the markers")
    parser.add_argument("paths", nargs="*", default=[str(TESTS)], help="test paths (the Kafka door's)")
    parser.add_argument("--pytest-arg", action="append", default=[], help="passed on to pytest")
    args = parser.parse_args(argv)
    page = PAGE.read_text(encoding="utf-8")
    if args.check:
        found = problems(page, marked_tests(Path(p) for p in args.paths))
        for problem in found:
            print(problem, file=sys.stderr)
        return 1 if found else 0
    section(page)  # the markers are there before the run
    code, outcomes = run(args.paths, args.pytest_arg)
    page = PAGE.read_text(encoding="utf-8")  # as it is now, after minutes of tests
    PAGE.write_text(replace_section(page, render(outcomes)), encoding="utf-8")
    print(f"wrote the matrix of {len(outcomes)} cells to {PAGE.relative_to(ROOT)} (pytest exit {code})")
    return 0 if code in (0, 5) else code


if __name__ == "__main__":
    sys.exit(main())
