"""examples/read_your_writes.py against a real `odradek serve`: concurrent writers
append orders with ``wait_for=["view:orders_by_customer"]`` and each ``view_get``
right after its append sees the order, every time.

Method: a server process with examples/ on its PYTHONPATH (it imports the example's
reducer by path); the example run as a user runs it, with ``$ODRADEK_URL`` set and a
small number of writers; its JSON summary read back. Then the view itself is read
through a client: every order of the run is in its customer's state, once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parents[1] / "cli"))  # odradek_process.py, by name
from odradek_process import Server

import odradek

EXAMPLES = Path(__file__).parents[2] / "examples"
WRITERS, ORDERS, CUSTOMERS = 6, 15, 4


def test_every_read_after_its_append_sees_the_order(tmp_path: Path) -> None:
    path = os.pathsep.join(filter(None, [str(EXAMPLES), os.environ.get("PYTHONPATH")]))
    server = Server(tmp_path / "data", env={"PYTHONPATH": path})
    try:
        ran = subprocess.run(
            [
                sys.executable,
                str(EXAMPLES / "read_your_writes.py"),
                "--writers",
                str(WRITERS),
                "--orders",
                str(ORDERS),
                "--customers",
                str(CUSTOMERS),
                "--json",
            ],
            capture_output=True,
            timeout=240,
            env={**os.environ, "ODRADEK_URL": server.url},
        )
        assert ran.returncode == 0, (ran.stdout.decode(), ran.stderr.decode()[-3000:])
        summary = json.loads(ran.stdout)
        assert summary["server"] == server.url
        assert (summary["orders"], summary["appends"]) == (WRITERS * ORDERS, WRITERS * ORDERS)
        assert (summary["violations"], summary["errors"]) == (0, 0), summary
        with odradek.connect(server.url) as client:
            appended = pa.Table.from_batches(list(client.read("orders.eu", wait=0)))
            assert appended.num_rows == WRITERS * ORDERS
            expected: dict[str, list[str]] = {}
            for key, value in zip(appended.column("key").to_pylist(), appended.column("value").to_pylist()):
                expected.setdefault(json.loads(value)["customer"], []).append(key.decode())
            assert len(expected) == CUSTOMERS
            for who, orders in expected.items():
                state = client.view_get("orders_by_customer", who)
                assert state is not None and json.loads(state) == sorted(orders), who
    finally:
        code, errors = server.stop()
    assert code == 0, errors[-2000:]
