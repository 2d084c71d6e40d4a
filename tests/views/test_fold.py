"""Property: a view equals folding the log with its reducer.

Goal: whatever appends are made, to whichever topics of its pattern, a view's table
(``view_get`` of every key and ``view_scan`` of every prefix) equals the fold of the
records with the reducer: per key, in offset order per topic. Method: hypothesis draws
appends of small keys to two topics; one view sums amounts over both topics (the sum
does not depend on how topics interleave), another keeps each key's values in order on
one topic (an order-sensitive reducer); the table's delta is merged every few changes
(``view_delta_entries_max`` lowered) so that the sorted Arrow part is exercised; the
last append waits for both views, then the tables are compared with the model.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import odradek
from odradek import limits

KEYS = [b"a", b"ab", b"b", b"ba", b"c"]
appends = st.lists(
    st.tuples(
        st.sampled_from(["p.one", "p.two"]),
        st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 9)), min_size=1, max_size=6),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(appends=appends, merge_every=st.sampled_from([1, 3, 1000]))
def test_a_view_equals_the_fold_of_the_log(
    appends: list[tuple[str, list[tuple[bytes, int]]]], merge_every: int
) -> None:
    sums: dict[bytes, int] = defaultdict(int)
    trails: dict[bytes, list[bytes]] = defaultdict(list)
    with pytest.MonkeyPatch.context() as patch, tempfile.TemporaryDirectory() as directory:
        patch.setattr(limits, "view_delta_entries_max", merge_every)
        with odradek.open(Path(directory) / "data") as client:
            client.create_topic("p.one")
            client.create_topic("p.two")
            client.create_view("sums", "p.>", "view_reducers:total")
            client.create_view("trail", "p.one", "view_reducers:trail")
            for topic, records in appends:
                batch = [
                    {"key": key, "value": json.dumps({"amount": amount}).encode()} for key, amount in records
                ]
                client.append(topic, batch)
                for key, amount in records:
                    sums[key] += amount
                    if topic == "p.one":
                        trails[key].append(json.dumps({"amount": amount}).encode())
            client.append("p.one", [{"key": None, "value": b"{}"}], wait_for=["view:sums", "view:trail"])
            client.append("p.two", [{"key": None, "value": b"{}"}], wait_for=["view:sums"])
            for key in KEYS:
                expected_sum = b"%d" % sums[key] if key in sums else None
                assert client.view_get("sums", key) == expected_sum
                expected_trail = b",".join(trails[key]) if key in trails else None
                assert client.view_get("trail", key) == expected_trail
            for prefix in [b"", b"a", b"b", b"c", b"d"]:
                rows = client.view_scan("sums", prefix).to_pylist()
                expected = [
                    {"key": key, "state": b"%d" % sums[key]} for key in sorted(sums) if key.startswith(prefix)
                ]
                assert rows == expected
