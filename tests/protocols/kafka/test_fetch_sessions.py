"""The fetch session cache (protocols/kafka/fetch_sessions.py) on its own.

Goal: the cache keeps its bounds (sessions, partitions held together) and evicts as
Kafka's FetchSessionCache does: a stale session (unused for the eviction time) first,
else the smallest session if the new one is larger, else the new session is not kept
(session id 0); an incremental request growing the cache past its partition bound
closes its session; epochs wrap from INT32 max to 1; an incremental answer keeps only
changed partitions and moves those that returned records to the end of the session.

Method: FetchSessions with small bounds and a hand-moved clock, fed decoded Fetch
requests and made-up responses; no door, no sockets.
"""

from __future__ import annotations

import uuid

from odradek.protocols.kafka.codec import messages_data as m
from odradek.protocols.kafka.codec.errors import ErrorCode
from odradek.protocols.kafka.fetch_sessions import FetchSessions, next_epoch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def request(
    session_id: int, epoch: int, *counts: tuple[str, int], forget: str | None = None
) -> m.FetchRequest:
    topics = tuple(
        m.FetchTopic(
            topic=name,
            partitions=tuple(
                m.FetchPartition(partition=i, fetch_offset=0, partition_max_bytes=100) for i in range(count)
            ),
        )
        for name, count in counts
    )
    forgotten = (m.ForgottenTopic(topic=forget, partitions=(0,)),) if forget else ()
    return m.FetchRequest(
        max_wait_ms=0,
        min_bytes=0,
        session_id=session_id,
        session_epoch=epoch,
        topics=topics,
        forgotten_topics_data=forgotten,
    )


def open_session(cache: FetchSessions, *counts: tuple[str, int]) -> int:
    plan = cache.plan(request(0, 0, *counts), by_id=False)
    assert plan.error == ErrorCode.NONE
    return plan.session_id


def test_a_full_cache_evicts_a_stale_session_first() -> None:
    clock = Clock()
    cache = FetchSessions(slots=2, partitions_max=100, eviction_ms=10_000, clock=clock)
    old = open_session(cache, ("a", 5))
    clock.now += 5
    recent = open_session(cache, ("a", 5))
    assert len(cache) == 2 and cache.partitions == 10
    assert open_session(cache, ("a", 1)) == 0  # none stale, none smaller than one partition
    clock.now += 6  # `old` unused for 11 s, `recent` for 6 s
    new = open_session(cache, ("a", 1))
    assert new != 0 and old not in cache and recent in cache and new in cache
    assert cache.partitions == 6
    assert cache.plan(request(old, 1), by_id=False).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_a_full_cache_evicts_the_smallest_session_for_a_larger_one() -> None:
    cache = FetchSessions(slots=2, partitions_max=100, eviction_ms=10_000, clock=Clock())
    small = open_session(cache, ("a", 2))
    large = open_session(cache, ("a", 8))
    assert open_session(cache, ("b", 2)) == 0  # not larger than the smallest
    larger = open_session(cache, ("b", 3))
    assert larger != 0 and small not in cache and large in cache
    assert cache.partitions == 11


def test_the_partition_bound_holds_for_new_and_growing_sessions() -> None:
    cache = FetchSessions(slots=10, partitions_max=10, eviction_ms=10_000, clock=Clock())
    assert open_session(cache, ("a", 11)) == 0  # more than the whole cache
    first = open_session(cache, ("a", 6))
    second = open_session(cache, ("b", 4))
    assert cache.partitions == 10
    # Growing `second` by one passes the bound: the session is closed.
    grown = cache.plan(request(second, 1, ("c", 1)), by_id=False)
    assert grown.error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert second not in cache and cache.partitions == 6
    # Forgetting one partition and adding another keeps the size.
    same = cache.plan(request(first, 1, ("c", 1), forget="a"), by_id=False)
    assert same.error == ErrorCode.NONE and cache.partitions == 6


def test_epochs_are_checked_and_wrap() -> None:
    cache = FetchSessions(clock=Clock())
    session = open_session(cache, ("a", 1))
    assert cache.plan(request(session, 2), by_id=False).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    assert cache.plan(request(session, 1), by_id=False).error == ErrorCode.NONE
    assert cache.plan(request(session, 1), by_id=False).error == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    assert cache.plan(request(session, 2), by_id=True).error == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    assert [next_epoch(e) for e in (0, 1, 2**31 - 2, 2**31 - 1)] == [1, 2, 2**31 - 1, 1]


def partition(index: int, high_watermark: int, records: bytes = b"") -> m.FetchPartitionData:
    return m.FetchPartitionData(
        partition_index=index,
        high_watermark=high_watermark,
        last_stable_offset=high_watermark,
        log_start_offset=0,
        records=records,
    )


def test_incremental_answers_keep_what_changed_and_rotate_partitions() -> None:
    cache = FetchSessions(clock=Clock())
    full = cache.plan(request(0, 0, ("a", 3)), by_id=False)
    everything = (m.FetchableTopicResponse(topic="a", partitions=tuple(partition(i, 5) for i in range(3))),)
    assert cache.answer(full, everything) == everything
    plan = cache.plan(request(full.session_id, 1), by_id=False)
    assert [p.partition for p in plan.topics[0].partitions] == [0, 1, 2]
    answer = (
        m.FetchableTopicResponse(
            topic="a", partitions=(partition(0, 6, b"x"), partition(1, 5), partition(2, 7))
        ),
    )
    kept = cache.answer(plan, answer)
    assert [p.partition_index for p in kept[0].partitions] == [0, 2]
    # Partition 0 returned records: it is read last from now on.
    plan = cache.plan(request(full.session_id, 2), by_id=False)
    assert [p.partition for p in plan.topics[0].partitions] == [1, 2, 0]
    quiet = (
        m.FetchableTopicResponse(topic="a", partitions=(partition(1, 5), partition(2, 7), partition(0, 6))),
    )
    assert cache.answer(plan, quiet) == ()


def test_topic_ids_name_the_partitions_from_fetch_13() -> None:
    cache = FetchSessions(clock=Clock())
    topic_id = uuid.uuid4()
    wanted = m.FetchTopic(
        topic_id=topic_id, partitions=(m.FetchPartition(partition=0, fetch_offset=3, partition_max_bytes=9),)
    )
    full = cache.plan(m.FetchRequest(max_wait_ms=0, min_bytes=0, session_epoch=0, topics=(wanted,)), True)
    plan = cache.plan(
        m.FetchRequest(max_wait_ms=0, min_bytes=0, session_id=full.session_id, session_epoch=1), True
    )
    assert plan.topics == (wanted,)
