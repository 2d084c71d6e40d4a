"""The examples of the command line's --help run as written.

Goal: an example a user copies from `odradek produce --help` (and topic, consume, key)
works against a server: the `produce --help` example failed once (it produced to a
topic that did not exist). Method: every example line of those help texts, in order,
run by bash against a real `odradek serve` (ODRADEK_URL), each expected to exit 0;
lines that need what a test server lacks (a schema file, a stopped server's data
directory, another consumer, a group that exists) or that follow forever are left out,
by rules listed below.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from odradek_process import Server

from odradek.cli import main

# Examples left out, and why.
SKIPPED = (
    re.compile(r"--schema|\.avsc|\.json\b"),  # a schema file
    re.compile(
        r"--data-dir|topic (verify|repair|delete)"
    ),  # damage, a stopped server, or the topic the others need
    re.compile(r"--group|--from-snapshot"),  # another consumer, snapshots (docs/snapshots-and-views.md)
)
# A consume without one of these follows until Ctrl-C.
ENDS = re.compile(r"--max|--wait|--last-per-key")


def _examples() -> list[str]:
    lines = []
    for epilog in (main._PRODUCE_EPILOG, main._TOPIC_EPILOG, main._CONSUME_EPILOG, main._KEY_EPILOG):
        section = epilog.split("examples:", 1)[1]  # as --help shows it (a raw formatter)
        for line in section.splitlines():
            if not line.startswith("  odradek") and "| odradek" not in line:
                if line and not line.startswith(" "):
                    break
                continue
            command = line.strip()
            if any(rule.search(command) for rule in SKIPPED):
                continue
            if " consume " in f" {command} " and not ENDS.search(command):
                continue
            lines.append(command)
    return lines


def test_the_examples_are_found() -> None:
    examples = _examples()
    assert any(line.startswith("seq 1 1000000 | odradek produce") for line in examples)
    assert any("topic alter" in line for line in examples)
    assert any("--last-per-key" in line for line in examples)


@pytest.mark.parametrize("unused", [None])
def test_every_example_runs_as_written(server: Server, unused: None) -> None:
    shell = f'odradek() {{ {sys.executable} -m odradek.cli.main "$@"; }}\n'
    for example in _examples():
        result = subprocess.run(
            ["bash", "-c", shell + example],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=120,
            env={**os.environ, "ODRADEK_URL": server.url},
        )
        assert result.returncode == 0, f"{example}\n{result.stderr.decode()[-2000:]}"
