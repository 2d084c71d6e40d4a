"""Key-index runs stay bounded when the engine is restarted often.

Goal: the number of key-index runs of a topic is bounded (each open maps every run and
each ``read_key`` searches every run), however often the engine is opened and closed.
Found by the power-loss soak, whose topic held 477 runs after about 500 restarts, and
whose cycles slowed from about 2 to about 20 seconds.

Method: with a memtable of 4 entries, 40 sessions each append 6 keyed records (one run
of 6 entries, the second size tier), then 1 more (left in the memtable, written as a
1-entry run, the first tier, by the clean close), and close. Size-tiered merging merges
``key_index_merge_fan_in`` adjacent runs of one tier; the small runs of the closes sit
between the others, so no window ever qualifies and every run stays: 80 of them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

import odradek
from odradek import limits

SESSIONS = 40
# Two runs a session, 80 in all: merged 4 at a time per size tier, at most 3 runs of
# each tier stay unmerged, and 80 runs of up to 6 entries span 4 tiers: 12, with room.
RUNS_MAX = 20


def test_restarts_do_not_pile_up_key_index_runs(
    open_client: Callable[..., odradek.EmbeddedClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(limits, "key_index_memtable_entries_max", 4)
    for _ in range(SESSIONS):
        client = open_client(retention_check_seconds=3600)
        client.create_topic("t", exist_ok=True)
        client.append("t", [{"key": b"k%d" % i, "value": b"v"} for i in range(6)])
        client.append("t", [{"key": b"x", "value": b"v"}])
        client.close()  # the memtable's last entry becomes a run
    client = open_client(retention_check_seconds=3600)
    client.engine._topic("t").keys.wait_idle()  # merges run after flushes, in the background
    runs = client.engine.topic_stats("t")["key_index_runs"]
    assert runs <= RUNS_MAX, f"{runs} key-index runs after {SESSIONS} sessions"
