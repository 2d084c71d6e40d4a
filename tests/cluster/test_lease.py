"""A lease's safe window on the local clock (cluster/lease.py), without etcd.

Goal: an agent acts on its lease only until ``sent_at + ttl - margin`` of its last
successful renewal, strictly before etcd can expire it (``sent_at + ttl`` at the
earliest); once it stopped, it never resumes, even after a late renewal; a renewal
answered with TTL <= 0 (etcd no longer has the lease) loses it at once. Method:
hypothesis drives sequences of renewals and clock readings and checks the invariants
against a model of the earliest expiry etcd could apply.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from odradek import limits
from odradek.cluster.lease import LeaseClock
from odradek.errors import InvalidRequest

STEPS = st.lists(
    st.tuples(st.floats(0.0, 2.0), st.floats(0.0, 0.5), st.sampled_from([3.0, 3.0, 3.0, 0.0])),
    max_size=30,
)


@given(st.floats(1.0, 60.0), STEPS)
def test_the_agent_stops_before_etcd_could_expire_and_never_resumes(
    ttl: float, steps: list[tuple[float, float, float]]
) -> None:
    now = 100.0
    clock = LeaseClock.granted(1, now, ttl)
    earliest_expiry = now + ttl  # etcd expires no earlier than the last renewal it got + TTL
    was_lost = False
    for wait, latency, answered_ttl in steps:
        now += wait
        held = clock.held(now)
        if held:
            assert now < earliest_expiry - ttl * limits.cluster_lease_margin_ratio + 1e-9
        was_lost = was_lost or not held
        assert held == (not was_lost)
        sent_at, now = now, now + latency
        clock.renewed(sent_at, answered_ttl * ttl / 3.0, now)
        if answered_ttl > 0 and not was_lost and clock.held(now):
            earliest_expiry = max(earliest_expiry, sent_at + answered_ttl * ttl / 3.0)
        if answered_ttl <= 0:
            assert not clock.held(now)
        was_lost = was_lost or not clock.held(now)
        assert clock.remaining(now) == 0.0 or not was_lost


def test_a_renewal_keeps_it_and_silence_loses_it() -> None:
    clock = LeaseClock.granted(7, 0.0, 3.0)
    assert clock.keepalive_seconds == pytest.approx(1.0)
    assert clock.safe_until == pytest.approx(2.0)
    assert clock.held(1.9)
    assert clock.renewed(1.0, 3.0, 1.1)
    assert clock.safe_until == pytest.approx(3.0)
    assert not clock.held(3.0)
    assert not clock.renewed(3.1, 3.0, 3.2)  # a late renewal does not bring it back
    assert clock.remaining(3.2) == 0.0


def test_a_lease_etcd_no_longer_has_is_lost_at_once() -> None:
    clock = LeaseClock.granted(7, 0.0, 3.0)
    assert not clock.renewed(0.5, 0.0, 0.6)
    assert not clock.held(0.6)


def test_a_grant_without_ttl_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        LeaseClock.granted(7, 0.0, 0.0)
