"""The object-store rows of ``odradek bench`` (issue 13's measurements).

Goal: the three object-store systems (``odradek-store`` on moto's S3 server,
``odradek-store-10ms`` and ``odradek-store-60ms`` on a store with injected latency) run
every workload the issue asks for beside the directory row, and the results say what
they measured: a figure for each row, the requests an agent sends, its restart on an
empty cache, a catch-up read whose bytes came from the store, and a section comparing
them with the directory backend. Without moto the S3 row is skipped with a note saying
what to install, and the suite goes on.

Method: run the bench's entry point in this process with ``--quick --runs 1`` and a
small restart topic, into a temporary directory, and read results.json and results.md
back. For the missing-moto case, hide moto from the import system (``sys.modules``
entry set to None, which is what Python does for a module that cannot be imported)
and run the S3 row alone. No speed is asserted: only that each figure exists, is
positive where it counts work, and is explained.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from odradek.bench import runner, s3server
from odradek.bench.outcomes import Skipped
from odradek.bench.systems.odradek_store import OdradekStore

STORE_ROWS = ("odradek-store", "odradek-store-10ms", "odradek-store-60ms")
WORKLOADS = "ingest_100b,append_latency,catchup_read,store_requests,store_restart"
RESTART_RECORDS = 30_000


def _bench(tmp_path: Path, systems: str, workloads: str) -> tuple[int, dict[str, Any], str]:
    out = tmp_path / "results"
    code = runner.main(
        [
            "--quick",
            "--runs",
            "1",
            "--restart-records",
            str(RESTART_RECORDS),
            "--systems",
            systems,
            "--workloads",
            workloads,
            "--no-install",
            "--no-charts",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
        ]
    )
    document = json.loads((out / "results.json").read_text())
    return code, document, (out / "results.md").read_text()


@pytest.mark.slow
def test_store_rows_run_every_workload_beside_the_directory_row(tmp_path: Path) -> None:
    code, document, markdown = _bench(tmp_path, "odradek," + ",".join(STORE_ROWS), WORKLOADS)
    assert code == 0, [f for f in document["figures"] if f["status"] == "error"]

    systems = {info["name"]: info for info in document["systems"]}
    assert set(systems) == {"odradek", *STORE_ROWS}
    for name in STORE_ROWS:
        assert systems[name]["status"] == "ok", systems[name]
        assert "StoreSettings" in systems[name]["tuning"]  # the journal settings are reported
    assert "moto" in systems["odradek-store"]["versions"]
    assert "60 ms" in systems["odradek-store-60ms"]["tuning"]

    figures = {(f["metric"], f["system"]): f for f in document["figures"]}
    measured = {
        "ingest_100b",
        "append_latency_p50",
        "append_latency_p99",
        "catchup_read",
        "store_puts",
        "store_restart",
        "store_restart_read",
    }
    for name in STORE_ROWS:
        for metric in measured:
            figure = figures[(metric, name)]
            assert figure["status"] == "ok", figure
            assert figure["value"] > 0 and len(figure["runs"]) == 1, figure
        assert figures[("store_gets", name)]["status"] == "ok"
        assert figures[("store_gets", name)]["value"] >= 0
        # The catch-up read ran on a fresh agent and says where its bytes came from.
        assert "fresh agent" in figures[("catchup_read", name)]["note"]
        assert f"{RESTART_RECORDS:,} keyed records" in figures[("store_restart", name)]["note"]
    # The directory row restarts too (on its data directory); it sends no requests.
    assert figures[("store_restart", "odradek")]["status"] == "ok"
    assert figures[("store_puts", "odradek")]["status"] == "skipped"
    assert "no object-store requests" in figures[("store_puts", "odradek")]["note"]

    assert "## Object storage against the directory backend" in markdown
    assert "| Keyed ingest, 100 B values | records/s |" in markdown
    assert "x dir.)" in markdown
    assert "`odradek-store-60ms` keyed ingest" in markdown  # the targets are checked


def test_moto_missing_skips_the_s3_row_with_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "moto", None)  # as if moto[server] were not installed

    with pytest.raises(Skipped, match=r"install odradek\[stores\]"):
        OdradekStore().prepare(allow_install=False, progress=print)

    code, document, markdown = _bench(tmp_path, "odradek-store", "ingest_100b")
    assert code == 0
    (info,) = document["systems"]
    assert info["status"] == "skipped"
    assert "install odradek[stores]" in info["note"]
    assert all(f["status"] == "skipped" for f in document["figures"])
    assert "install odradek[stores]" in markdown


def test_moto_present_is_not_skipped() -> None:
    s3server.require_moto()  # the stores extra is installed where the suite runs
