"""The command line starts without loading what the command does not use.

Goal: `odradek --help`, a command's `--help` and a usage error stay fast (docs/cli.md,
start time): they must not import pyarrow, NumPy, pandas, the Flight client or rich
(the progress bars), which cost most of half a second. Method: a structural check, not
a timing: run the command in a fresh interpreter and look at `sys.modules` when it
exits. And since the parser names its handlers lazily (cli/lazy.py), check that every
handler it names exists.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
from odradek_process import Server

from odradek.cli.main import build_parser

HEAVY = (
    "pyarrow",
    "numpy",
    "pandas",
    "grpc",
    "rich",
    "odradek.engine",
    "odradek.client",
    "odradek.protocols",
)

_PROBE = """
import json, sys
from odradek.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
heavy = sorted(name for name in sys.modules if name.startswith(tuple(json.loads(HEAVY))))
sys.stdout.write("\\nMODULES " + json.dumps(heavy) + "\\n")
"""


def _heavy_modules(*arguments: str) -> list[str]:
    probe = _PROBE.replace("json.loads(HEAVY)", f"json.loads({json.dumps(json.dumps(HEAVY))})")
    result = subprocess.run(
        [sys.executable, "-c", probe, *arguments], capture_output=True, timeout=60, text=True
    )
    marker = [line for line in result.stdout.splitlines() if line.startswith("MODULES ")]
    assert marker, result.stderr
    modules: list[str] = json.loads(marker[-1].removeprefix("MODULES "))
    return modules


@pytest.mark.parametrize(
    "arguments",
    [
        ["--help"],
        ["topic", "--help"],
        ["produce", "--help"],
        ["consume", "--help"],
        ["topic", "list", "--no-such-option"],
        ["completion", "bash"],
    ],
    ids=lambda arguments: " ".join(arguments),
)
def test_help_and_usage_errors_import_no_arrow(arguments: list[str]) -> None:
    assert _heavy_modules(*arguments) == []


@pytest.mark.parametrize(
    "arguments",
    [["topic", "list"], ["topic", "describe", "orders"], ["group", "list"]],
    ids=lambda arguments: " ".join(arguments),
)
def test_listing_commands_import_no_arrow_compute(start_server: type[Server], arguments: list[str]) -> None:
    # Listing and describing need the Flight client (pyarrow) but no compute kernels,
    # whose import is about a quarter of `odradek topic list`'s start (docs/cli.md).
    server = start_server()
    created = subprocess.run(
        [sys.executable, "-m", "odradek.cli.main", "--server", server.url, "topic", "create", "orders"],
        capture_output=True,
        timeout=60,
    )
    assert created.returncode == 0, created.stderr
    loaded = _heavy_modules("--server", server.url, *arguments)
    assert "pyarrow.flight" in loaded  # the command did reach the server
    assert "pyarrow.compute" not in loaded


def test_import_odradek_is_cheap_and_still_offers_the_api() -> None:
    script = (
        "import sys, odradek; heavy = [m for m in sys.modules if m.startswith(('pyarrow', 'numpy'))]; "
        "assert not heavy, heavy; "
        "assert callable(odradek.connect) and odradek.TopicInfo.__name__ == 'TopicInfo'; "
        "assert 'pyarrow' in sys.modules; print('ok')"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "ok", result.stderr


def _handlers(parser: argparse.ArgumentParser) -> list[object]:
    found = [parser.get_default("handler")]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                found.extend(_handlers(child))
    return [handler for handler in found if handler is not None]


def test_every_handler_the_parser_names_exists() -> None:
    from odradek.cli import lazy

    handlers = _handlers(build_parser())
    assert len(handlers) >= 20
    for handler in handlers:
        if isinstance(handler, lazy.Handler):
            assert callable(lazy.resolve(handler)), handler
        else:
            assert callable(handler), handler
