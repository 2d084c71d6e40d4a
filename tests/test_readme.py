"""The README's Python snippets run as written.

Goal: every name a snippet uses is defined (by it or by an earlier snippet), and the
calls work against the current API — a README that does not run is a doc that lies.
Method: run the README's ```python blocks in order in one namespace, in a temporary
directory, against an embedded client (a block that connects to a server is skipped;
the tour's `client.close()` is followed by a fresh client for the next block).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import odradek

README = Path(__file__).parents[1] / "README.md"


def test_the_readme_snippets_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict[str, object] = {}
    ran = 0
    for block in blocks:
        if "connect(" in block or "await " in block:
            continue
        client = namespace.get("client")
        if isinstance(client, odradek.EmbeddedClient) and client.engine.closed:
            namespace["client"] = odradek.open("./odradek-data")
        exec(compile(block, str(README), "exec"), namespace)
        ran += 1
    assert ran >= 3
    client = namespace["client"]
    assert isinstance(client, odradek.EmbeddedClient)
    client.close()
