"""The request-rate quota on the HTTP doors: 429 with Retry-After.

Goal: a server made inside serving_quotas answers a request over its principal's
request_rate with 429 Too Many Requests and a Retry-After of whole seconds (its handler
never runs, its connection is closed), and the probes stay open whatever the rate.
Method: the metrics endpoint of a node on a free port, its quota settings in the data
directory; requests with urllib. The count of requests decides, never a timing: the
span of the rate is at least 10 s, longer than the test takes.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

from odradek import limits
from odradek.node import Node
from odradek.protocols import connections
from odradek.protocols.bounded_http import serving_quotas
from odradek.protocols.metrics import Metrics
from odradek.security.quotas import REQUEST, QuotaEntity, QuotaManager, QuotaSettings


def _get(port: int, path: str) -> tuple[int, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            answer.read()
            return answer.status, dict(answer.headers)
    except urllib.error.HTTPError as refused:
        refused.read()
        return refused.code, dict(refused.headers)


def test_a_request_over_the_rate_is_answered_429_with_retry_after(tmp_path: Path) -> None:
    node = Node.open(tmp_path / "data", fsync=False)
    settings = QuotaSettings.open(str(tmp_path / "data"))
    settings.set(QuotaEntity.parse("user=ANONYMOUS"), {REQUEST: 1.0})
    with serving_quotas(QuotaManager(settings)):
        endpoint = Metrics(node).serve("127.0.0.1", 0, connections.METRICS)
    try:
        allowed = int((limits.quota_window_count - 1) * limits.quota_window_seconds)  # 1/s over 10 s
        assert [_get(endpoint.port, "/metrics")[0] for _ in range(allowed)] == [200] * allowed
        status, headers = _get(endpoint.port, "/metrics")
        assert status == 429 and int(headers["Retry-After"]) >= 1
        assert headers["Connection"] == "close"
        assert _get(endpoint.port, "/healthz")[0] == 200  # probes are not counted
    finally:
        endpoint.close()
        node.close()
