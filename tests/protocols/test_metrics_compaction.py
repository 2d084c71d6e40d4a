"""/metrics says how far compaction lags on each compacted topic.

Goal: an operator sees, per topic with ``cleanup="compact"``, the bytes of its sealed
segments not yet compacted, their ratio to the sealed bytes and the ratio that triggers a
round, how long a round has been due, when the latest round finished and how many ran;
once the server's own compaction thread ran a round the dirty bytes have fallen, the
round is counted and its time is there. A topic that is not compacted has none of these.
Method: a real `odradek serve` with its metrics door on a loopback port; a compacted
topic with 64 KiB segments filled through the Python client with many versions of a few
keys; /metrics parsed with prometheus_client's text parser before the round and after
it (waited for on its round counter, with a generous deadline: the server looks for
due rounds every ``compaction_check_seconds``).
"""

from __future__ import annotations

import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

import odradek
from odradek import limits
from odradek.ports import free_port

sys.path.insert(0, str(Path(__file__).parent.parent / "cli"))

from odradek_process import Server

# The server's compaction thread looks every compaction_check_seconds; a loaded machine
# may take longer. No assertion is about speed.
WAIT_SECONDS = 8 * limits.compaction_check_seconds
Samples = dict[tuple[str, str], float]  # (sample name, topic label) -> value


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    port = free_port()
    server = Server(tmp_path / "data", "--metrics-listen", f"127.0.0.1:{port}")
    try:
        yield server, f"http://127.0.0.1:{port}/metrics"
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.communicate()


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=30) as answer:
        text = answer.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("odradek_topic_compaction_"):
                samples[(sample.name, sample.labels["topic"])] = sample.value
    return samples


def test_the_lag_of_compaction_per_topic_and_its_fall_after_a_round(served: tuple[Server, str]) -> None:
    server, url = served
    with odradek.connect(server.url) as client:
        # min_compaction_lag holds every record back until it is altered: until then the
        # rounds the server runs (the ratio is over the trigger) compact nothing.
        client.create_topic(
            "prices",
            cleanup="compact",
            segment_bytes="64KiB",
            min_cleanable_dirty_ratio=0.4,
            min_compaction_lag="1d",
        )
        client.create_topic("plain", segment_bytes="64KiB")
        for version in range(40):
            rows = [
                {"key": f"k{j}".encode(), "value": f"{version}-{j}".encode().ljust(200)} for j in range(25)
            ]
            client.append("prices", rows)
            client.append("plain", rows)
        before = scrape(url)
        assert not any(topic == "plain" for _, topic in before)  # not compacted: no such series
        dirty = before[("odradek_topic_compaction_dirty_bytes", "prices")]
        assert dirty > 0, "the test needs sealed segments"
        assert before[("odradek_topic_compaction_dirty_ratio", "prices")] == 1.0  # nothing compacted
        assert before[("odradek_topic_compaction_trigger_ratio", "prices")] == 0.4
        assert before[("odradek_topic_compaction_behind_seconds", "prices")] >= 0

        client.alter_topic("prices", min_compaction_lag=0)
        deadline = time.monotonic() + WAIT_SECONDS
        after = before
        while after[("odradek_topic_compaction_dirty_ratio", "prices")] >= 0.4:
            assert time.monotonic() < deadline, "the server's compaction thread compacted nothing"
            time.sleep(0.5)
            after = scrape(url)
    assert after[("odradek_topic_compaction_dirty_bytes", "prices")] < dirty
    assert after[("odradek_topic_compaction_rounds_total", "prices")] >= 1
    finished = after[("odradek_topic_compaction_last_round_timestamp_seconds", "prices")]
    assert 0 < finished <= time.time() + 1  # seconds since the epoch, not a monotonic clock
    assert after[("odradek_topic_compaction_behind_seconds", "prices")] == 0.0
