"""The Grafana dashboard in deploy/grafana/ cannot drift from the metrics served.

Goal: every metric a query of the dashboard uses is exposed by a running server's
/metrics, and the dashboard shows what an operator needs (throughput, latency, lag,
fsyncs, connections, errors, per-principal metering).
Method: a real `odradek serve` with every door on loopback ports; /metrics parsed with
prometheus_client's text parser (a family with no sample yet still counts, with its
type's sample names); the names in the dashboard's PromQL expressions compared with it.
"""

from __future__ import annotations

import json
import re
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).parent / "cli"))

from odradek_process import Server

from odradek.ports import free_port

DASHBOARD = Path(__file__).parent.parent / "deploy" / "grafana" / "odradek.json"
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum")}


@pytest.fixture
def metrics_url(tmp_path: Path) -> Iterator[str]:
    metrics = free_port()
    server = Server(
        tmp_path / "data",
        "--kafka-listen",
        f"127.0.0.1:{free_port()}",
        "--registry-listen",
        f"127.0.0.1:{free_port()}",
        "--metrics-listen",
        f"127.0.0.1:{metrics}",
    )
    try:
        yield f"http://127.0.0.1:{metrics}/metrics"
    finally:
        server.process.kill()
        server.process.communicate()


def exposed(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def queried(dashboard: dict[str, object]) -> set[str]:
    """The odradek metric names of every target's expression (and template query)."""
    text = json.dumps(dashboard)
    expressions = re.findall(r'"(?:expr|definition)": "((?:[^"\\]|\\.)*)"', text)
    assert expressions, "the dashboard has no queries"
    return {name for expression in expressions for name in re.findall(r"\bodradek_[a-z0-9_]+", expression)}


def test_every_metric_the_dashboard_queries_is_served(metrics_url: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used = queried(dashboard)
    missing = used - exposed(metrics_url)
    assert not missing, f"the dashboard queries metrics the server does not expose: {sorted(missing)}"
    # What an operator needs is on it (so this test cannot pass on an empty dashboard).
    for needed in (
        "odradek_door_appended_records_total",
        "odradek_door_fetched_records_total",
        "odradek_door_request_seconds_bucket",
        "odradek_errors_total",
        "odradek_group_lag",
        "odradek_group_partition_lag",
        "odradek_fsync_seconds_bucket",
        "odradek_group_commit_appends_sum",
        "odradek_door_connections",
        "odradek_principal_bytes_in_total",
    ):
        assert needed in used, f"the dashboard does not show {needed}"


def test_the_dashboard_is_importable() -> None:
    """Grafana imports a dashboard with a title, a uid and panels that each have a query."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["uid"] == "odradek"
    panels = dashboard["panels"]
    assert panels and all(panel["targets"] and panel["gridPos"] for panel in panels)
    assert len({panel["id"] for panel in panels}) == len(panels)
