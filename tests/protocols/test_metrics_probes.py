"""The metrics endpoint answers Kubernetes' probes: /healthz and /readyz.

Goal: a liveness probe that says the process answers, and a readiness probe that says
whether the server can take clients (its data open; for a cluster agent, joined with a
live lease), with the reason in the body, as the Helm chart's probes expect.
Method: a real metrics listener on a loopback port, asked over HTTP, before and after
a node is attached, and with a readiness of its own (as a cluster agent sets).
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from odradek.node import Node
from odradek.protocols.metrics import Metrics


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_healthz_answers_and_readyz_follows_the_data_being_open(tmp_path: Path) -> None:
    metrics = Metrics(None)
    listener = metrics.serve("127.0.0.1", 0)
    base = f"http://127.0.0.1:{listener.port}"
    node = Node.open(tmp_path / "data")
    try:
        assert _get(f"{base}/healthz") == (200, "ok\n")
        assert _get(f"{base}/readyz") == (503, "not ready: no data open\n")
        metrics.attach(node)
        assert _get(f"{base}/readyz") == (200, "ready: serving\n")
        metrics.detach()
        assert _get(f"{base}/readyz")[0] == 503
        metrics.readiness = lambda: (True, "agent a1 is the standby of cluster c")
        assert _get(f"{base}/readyz") == (200, "ready: agent a1 is the standby of cluster c\n")
        metrics.readiness = lambda: (False, "agent a1 is joining")
        assert _get(f"{base}/readyz") == (503, "not ready: agent a1 is joining\n")
        status, body = _get(f"{base}/metrics")
        assert status == 200 and "odradek_request_errors" in body  # the metrics, as before
    finally:
        listener.close()
        node.close()
