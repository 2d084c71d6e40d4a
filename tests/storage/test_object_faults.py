"""Retries, backoff, bounded concurrency and the unknown-outcome rule, under injected faults.

Goal: a retryable failure (503 SlowDown, 500, a timeout, an outage) is retried a bounded
number of times with capped, jittered exponential backoff, then raised naming the
operation, the key and the store, and saying whether the write may have happened; a
refusal (403) is never retried; at most ``requests_in_flight`` requests run at once and
retries wait outside that bound; and — what makes acknowledgements safe — put_new and
put_if answer True (a version) exactly when the object at the key is the one they wrote,
even when the answer to their write was lost (written, then a timeout; or a timeout,
then the write landing later), and exactly one of many racing writers wins.

Method: FaultyObjectStore over memory (and over moto's S3 server for the real-server
case) with a seed; the store's backoff ``sleep`` and the faults' latency ``pause`` are
recorders, so nothing waits and nothing is timed; conditions between threads are
awaited with generous deadlines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from object_servers import S3Server, unique_prefix

from odradek.storage.objectfaults import Fault, FaultyObjectStore
from odradek.storage.objects import (
    GET,
    PUT,
    Listed,
    ObjectHead,
    ObjectStore,
    RetryPolicy,
    StoreRefused,
    StoreUnavailable,
    open_store,
)

DEADLINE = 60.0


class Recorder:
    """A sleep that records what it was asked to wait and returns at once (then runs
    ``then``, if given, for what a test wants to happen during the wait)."""

    def __init__(self, then: Callable[[int], None] | None = None) -> None:
        self.waits: list[float] = []
        self.then = then

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.then is not None:
            self.then(len(self.waits))


def faulty(
    inner: ObjectStore | None = None, *, seed: int = 1, sleep: Recorder | None = None, **settings: Any
) -> FaultyObjectStore:
    """A fault store over ``inner`` (a fresh memory store) whose backoff and latency are
    recorded, never waited (``backoffs(store)`` is what the retries asked to wait)."""
    sleep = sleep or Recorder()
    store = FaultyObjectStore(
        inner or open_store("memory://"), seed=seed, sleep=sleep, pause=Recorder(), **settings
    )
    _recorders[id(store)] = sleep
    return store


_recorders: dict[int, Recorder] = {}


def waits(store: FaultyObjectStore) -> list[float]:
    return _recorders[id(store)].waits


# -- Retries and backoff ------------------------------------------------------------------


def test_slowdown_is_retried_with_capped_exponential_backoff() -> None:
    store = faulty()
    store.inject(Fault.SLOWDOWN, kinds=PUT, at=[1, 2, 3])
    store.put("k", b"v")
    assert store.get("k") == b"v"
    counts = store.counts()
    assert (counts.puts, counts.retries) == (4, 3)
    policy = store.retry
    assert len(waits(store)) == 3
    for retry, wait in enumerate(waits(store), start=1):
        assert 0 <= wait <= policy.backoff_cap(retry)
    assert [policy.backoff_cap(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]


def test_backoff_stops_growing_at_its_maximum() -> None:
    policy = RetryPolicy(attempts=10, backoff_base_seconds=0.1, backoff_max_seconds=0.5)
    store = faulty(retry=policy)
    store.inject(Fault.SLOWDOWN, kinds=PUT, at=range(1, 10))
    store.put("k", b"v")
    assert [policy.backoff_cap(n) for n in range(1, 10)] == [0.1, 0.2, 0.4] + [0.5] * 6
    assert all(wait <= 0.5 for wait in waits(store)) and len(waits(store)) == 9


def test_attempts_are_bounded_and_the_error_says_where() -> None:
    store = faulty()
    store.inject(Fault.SLOWDOWN, kinds=PUT, probability=1.0)
    with pytest.raises(StoreUnavailable) as failed:
        store.put("wal/00000000000000000001", b"v")
    error = failed.value
    assert error.retryable and error.attempts == store.retry.attempts == 6
    assert (error.operation, error.key, error.store) == (PUT, "wal/00000000000000000001", store.url)
    assert "PUT 'wal/00000000000000000001' on memory://" in str(error)
    assert "SlowDown" in str(error) and "after 6 attempts" in str(error)
    assert not error.outcome_unknown  # a 503 SlowDown is refused before anything is done
    assert store.counts().puts == 6 and len(waits(store)) == 5
    assert store.get("wal/00000000000000000001") is None


def test_a_timed_out_write_that_never_succeeds_may_have_happened() -> None:
    store = faulty()
    store.inject(Fault.TIMEOUT, kinds=PUT, probability=1.0)
    with pytest.raises(StoreUnavailable) as failed:
        store.put_new("k", b"v")
    assert failed.value.outcome_unknown
    assert "may have taken effect" in str(failed.value)


def test_a_timed_out_read_is_retried() -> None:
    store = faulty()
    store.put("k", b"v")
    store.inject(Fault.TIMEOUT, kinds=GET, at=[1, 2])
    assert store.get("k") == b"v"
    assert store.get_range("k", 0, 1) == b"v"
    assert store.counts().gets == 4


def test_access_denied_is_not_retried() -> None:
    store = faulty()
    store.inject(Fault.ACCESS_DENIED, kinds=PUT, at=[1])
    with pytest.raises(StoreRefused) as refused:
        store.put("k", b"v")
    assert not refused.value.retryable and refused.value.attempts == 1
    assert store.counts().puts == 1 and waits(store) == []


def test_an_outage_fails_requests_and_recovery_ends_it() -> None:
    store = faulty()
    store.put("k", b"before")
    store.go_down()
    with pytest.raises(StoreUnavailable, match="outage"):
        store.get("k")
    with pytest.raises(StoreUnavailable) as failed:
        store.put("k", b"during")
    assert not failed.value.outcome_unknown  # refused connections send nothing
    store.come_back()
    assert store.get("k") == b"before"
    store.put("k", b"after")
    assert store.get("k") == b"after"


def test_a_store_that_recovers_while_a_request_retries_answers_it() -> None:
    store = faulty(sleep=Recorder(then=lambda waited: store.come_back() if waited == 3 else None))
    store.go_down()
    store.put("k", b"v")
    assert store.get("k") == b"v" and store.counts().retries == 3


def test_faults_can_target_keys_and_kinds() -> None:
    store = faulty()
    store.inject(Fault.SLOWDOWN, kinds=PUT, keys="wal/", probability=1.0)
    store.put("segments/a", b"x")
    assert store.put_new("segments/b", b"x")
    with pytest.raises(StoreUnavailable):
        store.put("wal/1", b"x")
    assert store.head("segments/a") == ObjectHead(1, store.head("segments/a").etag)  # type: ignore[union-attr]
    assert store.list("segments") == [Listed("segments/a", 1), Listed("segments/b", 1)]
    assert store.injected[Fault.SLOWDOWN] == store.retry.attempts


def test_seeded_faults_repeat_exactly() -> None:
    def pattern(seed: int) -> list[bool]:
        store = faulty(seed=seed, retry=RetryPolicy(attempts=1))
        store.inject(Fault.SLOWDOWN, probability=0.3)
        store.set_latency(PUT, (0.01, 0.05))
        outcome = []
        for n in range(60):
            try:
                store.put(f"k/{n}", b"x")
                outcome.append(True)
            except StoreUnavailable:
                outcome.append(False)
        return outcome

    assert pattern(5) == pattern(5)
    assert pattern(5) != pattern(6)
    assert 0 < pattern(5).count(False) < 60


def test_latency_is_drawn_within_its_range() -> None:
    pauses = Recorder()
    store = FaultyObjectStore(open_store("memory://"), seed=3, sleep=Recorder(), pause=pauses)
    store.set_latency(PUT, 0.06)
    store.set_latency(GET, (0.005, 0.02))
    store.put("k", b"v")
    for _ in range(20):
        store.get("k")
    assert pauses.waits[0] == 0.06
    assert all(0.005 <= pause <= 0.02 for pause in pauses.waits[1:]) and len(pauses.waits) == 21
    assert len(set(pauses.waits[1:])) > 1


# -- The unknown-outcome rule -------------------------------------------------------------


def test_put_new_whose_answer_was_lost_is_told_it_won() -> None:
    store = faulty()
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds=PUT, at=[1])
    assert store.put_new("epochs/1", b"agent a, token 1") is True
    assert store.get("epochs/1") == b"agent a, token 1"
    counts = store.counts()
    assert (counts.puts, counts.gets) == (2, 2)  # the retry, the read-back, and the check above


def test_put_new_after_a_lost_answer_loses_to_another_writer() -> None:
    inner = open_store("memory://")

    def rival_writes(_waited: int) -> None:
        inner.put_new("epochs/1", b"agent b, token 2")  # ... and a rival takes the key

    store = faulty(inner, sleep=Recorder(then=rival_writes))
    store.inject(Fault.TIMEOUT, kinds=PUT, at=[1])  # nothing written by us ...
    assert store.put_new("epochs/1", b"agent a, token 1") is False
    assert store.get("epochs/1") == b"agent b, token 2"


def test_a_late_write_landing_before_the_retry_is_recognized() -> None:
    store = faulty(sleep=Recorder(then=lambda _waited: store.land_late_writes() and None))
    store.inject(Fault.TIMEOUT_THEN_WRITTEN, kinds=PUT, at=[1])
    assert store.put_new("k", b"mine") is True
    assert store.faults.late_writes_pending == 0 and store.injected[Fault.TIMEOUT_THEN_WRITTEN] == 1
    assert store.get("k") == b"mine"


def test_a_late_write_landing_after_the_retry_changes_nothing() -> None:
    store = faulty()
    store.inject(Fault.TIMEOUT_THEN_WRITTEN, kinds=PUT, at=[1])
    assert store.put_new("k", b"mine") is True
    assert store.faults.late_writes_pending == 1
    assert store.land_late_writes() == 1  # a create-if-absent that finds the key taken
    assert store.get("k") == b"mine"


def test_put_if_whose_answer_was_lost_returns_the_new_version() -> None:
    store = faulty()
    etag = store.put("manifest", b"v1") or ""
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds=PUT, at=[1])
    token = store.put_if("manifest", b"v2 by agent a", etag)
    assert token is not None and token != etag
    assert store.get_versioned("manifest") == (b"v2 by agent a", token)


def test_put_if_after_a_lost_answer_loses_to_another_writer() -> None:
    inner = open_store("memory://")
    etag = inner.put("manifest", b"v1") or ""
    store = faulty(
        inner, sleep=Recorder(then=lambda _: inner.put_if("manifest", b"v2 by agent b", etag) and None)
    )
    store.inject(Fault.TIMEOUT, kinds=PUT, at=[1])
    assert store.put_if("manifest", b"v2 by agent a", etag) is None
    assert store.get("manifest") == b"v2 by agent b"


def test_a_failed_read_back_leaves_the_outcome_unknown() -> None:
    store = faulty()
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds=PUT, at=[1])
    store.inject(Fault.ACCESS_DENIED, kinds=GET, at=[1])
    with pytest.raises(StoreUnavailable) as failed:
        store.put_new("k", b"mine")
    assert failed.value.operation == PUT and failed.value.outcome_unknown
    assert "reading it back" in str(failed.value)


def test_a_delete_whose_answer_was_lost_is_retried() -> None:
    store = faulty()
    store.put("k", b"v")
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds="DELETE", at=[1])
    store.delete("k")
    assert store.get("k") is None and store.counts().deletes == 2


def _race(store: ObjectStore, key: str, writers: int) -> list[bool]:
    barrier = threading.Barrier(writers)

    def write(writer: int) -> bool:
        barrier.wait(timeout=DEADLINE)
        return store.put_new(key, f"{key} by writer {writer}".encode())

    with ThreadPoolExecutor(writers) as pool:
        return list(pool.map(write, range(writers)))


def test_racing_writers_with_lost_answers_have_exactly_one_winner() -> None:
    store = faulty(seed=11, retry=RetryPolicy(attempts=20))
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds=PUT, probability=0.3)
    store.inject(Fault.TIMEOUT, kinds=PUT, probability=0.2)
    store.inject(Fault.SLOWDOWN, kinds=(PUT, GET), probability=0.1)
    for round_ in range(20):
        key = f"race/{round_}"
        answers = _race(store, key, 8)
        assert answers.count(True) == 1, answers
        assert store.get(key) == f"{key} by writer {answers.index(True)}".encode()
    assert store.injected[Fault.WRITTEN_THEN_TIMEOUT] > 0


def test_unknown_outcomes_against_a_real_s3_server(moto_s3: S3Server) -> None:
    store = faulty(moto_s3.open(unique_prefix()), seed=5, retry=RetryPolicy(attempts=20))
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds=PUT, probability=0.3)
    store.inject(Fault.TIMEOUT, kinds=PUT, probability=0.2)
    for round_ in range(5):
        key = f"race/{round_}"
        answers = _race(store, key, 8)
        assert answers.count(True) == 1, answers
        assert store.get(key) == f"{key} by writer {answers.index(True)}".encode()
    etag = store.put("manifest", b"v1") or ""
    store.clear()
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, kinds=PUT, at=[1])
    token = store.put_if("manifest", b"v2", etag)
    assert token is not None and store.get_versioned("manifest") == (b"v2", token)


# -- Concurrency --------------------------------------------------------------------------


class HeldBackend:
    """Wraps a backend: every put waits at a gate, and the most puts inside at once is
    recorded."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.changed = threading.Condition()
        self.inside = 0
        self.most = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put(self, path: str, data: memoryview, **mode: Any) -> str | None:
        with self.changed:
            self.inside += 1
            self.most = max(self.most, self.inside)
            self.changed.notify_all()
        try:
            self.gate.wait(DEADLINE)
            return self.inner.put(path, data, **mode)  # type: ignore[no-any-return]
        finally:
            with self.changed:
                self.inside -= 1


def test_requests_in_flight_are_bounded() -> None:
    held = HeldBackend(open_store("memory://").backend)
    store = ObjectStore(held, requests_in_flight=4)  # type: ignore[arg-type]
    with ThreadPoolExecutor(16) as pool:
        done = [pool.submit(store.put, f"k/{n}", b"x") for n in range(16)]
        try:
            with held.changed:
                assert held.changed.wait_for(lambda: held.inside >= 4, DEADLINE)
                # The other twelve threads had every chance to enter; none may.
                held.changed.wait(0.2)
                assert held.inside == 4
        finally:
            held.gate.set()
        for future in done:
            future.result(DEADLINE)
    assert held.most == 4 and len(store.list("k")) == 16


def test_a_retry_waits_outside_the_bound() -> None:
    """With one request in flight allowed, a request whose retry is waiting its backoff
    does not hold the slot: another thread's request runs meanwhile."""
    other_done = threading.Event()
    started_waiting = threading.Event()

    def backoff(_waited: int) -> None:
        started_waiting.set()
        assert other_done.wait(DEADLINE)

    store = faulty(sleep=Recorder(then=backoff), requests_in_flight=1)
    store.put("other", b"x")
    store.inject(Fault.SLOWDOWN, kinds=PUT, keys="slow", at=[1])
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(store.put, "slow", b"y")
        assert started_waiting.wait(DEADLINE)
        assert pool.submit(store.get, "other").result(DEADLINE) == b"x"
        other_done.set()
        slow.result(DEADLINE)
    assert store.get("slow") == b"y"
