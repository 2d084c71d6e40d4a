"""A program's first append costs a round trip and the stream's opening, not an import.

Goal: the remote client's first single append does not import pandas. pyarrow's
``pa.array(list)`` first asks whether the list is a pandas object, which imports pandas
when it is installed: that import (0.2-0.5 s on the dev machine) was most of the
~660 ms a program's first append took, against ~1 ms for the next ones.

Method: a real ``odradek serve``; a fresh Python process (so that nothing imported
pandas before) connects, pings, appends one record of a key and a value (bytes, then
text), and reports whether ``pandas`` is in ``sys.modules`` after each step, and what
the server stored.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))  # odradek_process.py, by name
from odradek_process import Server

PROGRAM = """
import json, sys
import odradek

steps = {}
with odradek.connect(sys.argv[1]) as client:
    client.create_topic("first")
    client.ping()
    steps["ping"] = "pandas" in sys.modules
    client.append("first", [{"key": b"k", "value": b"one"}])
    steps["first append"] = "pandas" in sys.modules
    client.append("first", [{"key": "k", "value": "d\\u00e9j\\u00e0"}])
    client.append("first", [{"value": b""}])
    steps["text and keyless appends"] = "pandas" in sys.modules
    print(json.dumps(steps))
"""


def test_the_first_append_imports_no_pandas(tmp_path: Path) -> None:
    pytest.importorskip("pandas")  # without pandas installed there is nothing to import
    server = Server(tmp_path / "data")
    try:
        ran = subprocess.run([sys.executable, "-c", PROGRAM, server.url], capture_output=True, timeout=120)
        assert ran.returncode == 0, ran.stderr.decode()[-3000:]
        assert json.loads(ran.stdout) == {
            "ping": False,
            "first append": False,
            "text and keyless appends": False,
        }
        import odradek

        with odradek.connect(server.url) as client:
            rows = client.read_key("first", b"k").to_pylist()
            assert [row["value"] for row in rows] == [b"one", "déjà".encode()]
            assert client.describe_topic("first").next_offset == 3
    finally:
        code, errors = server.stop()
    assert code == 0, errors[-2000:]
