"""The curl examples of docs/http-api.md work, and a stopping server ends its tails.

Goal: every ```bash block of the page runs as written (in order, in one data
directory) against a real ``odradek serve`` and answers what the page says it answers;
on SIGTERM an open event stream ends with an ``end`` event and the server exits 0.
Method: the blocks run with bash (curl and jq) with ODRADEK_HTTP naming the server's
listener; their output is checked for the answers the page quotes; the tail is read
with http.client until its end event (a generous socket deadline, no timing asserted).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
from http_api_client import EventReader, Served

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "http-api.md"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    server = Served(str(tmp_path / "data"))
    yield server
    server.kill()


def _blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)


@pytest.mark.skipif(shutil.which("curl") is None or shutil.which("jq") is None, reason="needs curl and jq")
def test_the_curl_examples_run(served: Served, tmp_path: Path) -> None:
    outputs = []
    for block in _blocks():
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            capture_output=True,
            cwd=tmp_path,
            env={"PATH": "/usr/bin:/bin:/usr/local/bin", "ODRADEK_HTTP": served.base},
            timeout=120,
        )
        assert run.returncode == 0, (block, run.stderr.decode())
        outputs.append(run.stdout.decode())
    produce, expectations, keys, tail, topics, groups = outputs
    assert '"base_offset": 0, "count": 2' in produce and '"next_offset": 2' in produce
    assert '"code": "conflict"' in expectations and '"expected": 1, "actual": 2' in expectations
    assert '"duplicate": false' in expectations
    assert '"version": 2' in keys
    # order-1 from its snapshot: the state as of version 1, then its second event
    snapshot_page = json.loads(keys.splitlines()[-1])
    rows = [(row["snapshot"], row["version"], row["value"]) for row in snapshot_page["records"]]
    assert rows == [(True, 1, '{"status": "created"}'), (False, 2, "paid")]
    assert tail.count("event: record") == 3 and "event: end" in tail
    assert '"orders.eu"' in topics and '"retention_seconds": 2592000' in topics
    # one record of a key at a time: order-1's second waits for the first's ack
    assert '"settled": 3' in groups and '"lag": 1' in groups


def test_a_stopping_server_ends_its_tails(served: Served) -> None:
    port = urllib.parse.urlsplit(served.base).port
    assert port is not None
    create = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{served.base}/v1/topics", "-d", json.dumps({"name": "t"})],
        capture_output=True,
        timeout=60,
    )
    assert create.returncode == 0, create.stderr
    tail = EventReader(port, "/v1/topics/t/events")
    assert tail.next() == {"retry": "1000"}
    served.process.terminate()
    end = tail.next()
    assert end["event"] == "end" and "shutting down" in end["data"]["reason"]
    assert tail.next() == {}
    tail.close()
    _, errors = served.process.communicate(timeout=60)
    assert served.process.returncode == 0, errors.decode()[-2000:]
