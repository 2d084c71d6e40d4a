"""``append_many`` after a redirect sends what was not acknowledged, then the rest.

Goal: the batches ``RemoteClient.append_many`` keeps for a redirect: iterating again
gives the batches taken but not acknowledged (refused by an agent that gave the topic
up mid-stream, or never answered) followed by the rest of the caller's iterable, which
is read only once (a generator's batches are not lost), and acknowledged batches are
never given again (they would be written twice). Method: the helper driven by hand;
the redirect itself is tested against three agents in tests/cluster/test_cells_groups.py.
"""

from __future__ import annotations

from odradek.client.remote import _Unacknowledged


def test_a_second_pass_gives_the_unacknowledged_batches_then_the_rest() -> None:
    source = _Unacknowledged(f"b{n}" for n in range(6))  # a generator: read once
    first = iter(source)
    assert [next(first) for _ in range(4)] == ["b0", "b1", "b2", "b3"]
    source.acknowledged()  # b0 and b1 written; b2 refused (the agent gave the topic up), b3 in flight
    source.acknowledged()
    assert list(source) == ["b2", "b3", "b4", "b5"]
    for _ in range(4):
        source.acknowledged()
    assert list(source) == []
