"""The dispatcher's rules, directly and under random schedules.

Goal: per-key order and the in-flight bound hold whatever members, acks, nacks,
timeouts, leaves and restarts do; every record ends settled exactly once (acked, or
dead-lettered); the vectorized key ids never merge two keys that a test tells apart.

Method: unit tests drive a :class:`Cursor` with hand-made batches; the simulation
drives a real engine's groups with a fake clock through thousands of random steps per
seed, checking after every poll that each delivered record's earlier records of the
same unit were already settled (or, with a pipelining limit, are held by the same
member), and at the end that acked + dead-lettered = every offset, disjointly.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from odradek.groups import dispatcher
from odradek.groups.delivery import Delivery
from odradek.groups.dispatcher import DONE, IN_FLIGHT, PENDING, Cursor
from odradek.groups.keys import KeyTable, hash_keys, prepare
from odradek.records import STORED_SCHEMA


def stored(keys: list[bytes | None], first: int = 0) -> pa.RecordBatch:
    count = len(keys)
    return pa.RecordBatch.from_arrays(
        [
            pa.array(range(first, first + count), pa.int64()),
            pa.array([0] * count, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            pa.array(keys, pa.binary()),
            pa.array([b"v"] * count, pa.binary()),
            pa.nulls(count, STORED_SCHEMA.field("headers").type),
            pa.array([1] * count, pa.int64()),
        ],
        schema=STORED_SCHEMA,
    )


def cursor_with(keys: list[bytes | None], *, limit: int = 1, ordering: str = "key") -> Cursor:
    cursor = Cursor("t", 0.0, 0, ordering, limit)
    prepared = prepare([stored(keys)], ordering)
    assert prepared is not None
    cursor.install(prepared)
    return cursor


# -- keys ---------------------------------------------------------------------------


def test_key_hashes_tell_keys_apart_and_ignore_slicing() -> None:
    keys = [b"", b"a", b"b", b"ab", b"ba", b"\x00", b"\x00\x00", b"x" * 4096] + [
        b"k%d" % i for i in range(5000)
    ]
    array = pa.array(keys, pa.binary())
    hashes = hash_keys(array)
    assert len(set(hashes.tolist())) == len(keys)
    assert (hash_keys(array.slice(3, 100)) == hashes[3:103]).all()
    assert (hash_keys(pa.array(keys[3:103], pa.large_binary())) == hashes[3:103]).all()


def test_key_table_assigns_stable_dense_ids_and_compacts() -> None:
    table = KeyTable()
    first = table.ids(hash_keys(pa.array([b"a", b"b", b"a"], pa.binary())))
    second = table.ids(hash_keys(pa.array([b"c", b"b"], pa.binary())))
    a, b, c = int(first[0]), int(first[1]), int(second[0])
    assert first.tolist() == [a, b, a] and second.tolist() == [c, b]
    assert sorted({a, b, c}) == [0, 1, 2]
    remap = table.compact(np.array(sorted([b, c]), dtype=np.int32))
    assert remap[a] == -1 and sorted([remap[b], remap[c]]) == [0, 1]
    again = table.ids(hash_keys(pa.array([b"b", b"c", b"a"], pa.binary())))
    assert again.tolist() == [remap[b], remap[c], 2]


# -- the cursor ---------------------------------------------------------------------


def test_dispatch_takes_one_record_per_key_in_offset_order() -> None:
    cursor = cursor_with([b"a", b"a", b"b", None, b"b", None])
    assert cursor.dispatch(10, member=0, lease=1, now=0.0).tolist() == [0, 2, 3, 5]
    assert cursor.waiting() == 2  # offsets 1 and 4 wait behind their keys
    assert cursor.dispatch(10, member=0, lease=2, now=0.0).tolist() == []
    status, slots = cursor.classify(np.array([0, 2]), np.array([1, 1]))
    assert status.tolist() == [0, 0]
    cursor.settle(slots)
    assert cursor.dispatch(10, member=1, lease=3, now=0.0).tolist() == [1, 4]
    assert cursor.committed == 1  # offset 1 is in flight


def test_budget_cut_keeps_the_oldest_units_first() -> None:
    cursor = cursor_with([b"k%d" % i for i in range(100)])
    assert cursor.dispatch(10, member=0, lease=1, now=0.0).tolist() == list(range(10))
    assert cursor.dispatch(10, member=0, lease=2, now=0.0).tolist() == list(range(10, 20))
    assert len(cursor.ready) == 80


def test_a_poll_examines_units_not_the_window() -> None:
    """Ten hot keys with 20,000 records waiting behind them: after the first records
    are in flight, the ready queue is empty, so a poll looks at nothing."""
    cursor = cursor_with([b"k%d" % (i % 10) for i in range(20_000)])
    assert len(cursor.dispatch(100, member=0, lease=1, now=0.0)) == 10
    assert len(cursor.ready) == 0 and len(cursor.loose) == 0
    assert len(cursor.dispatch(100, member=0, lease=2, now=0.0)) == 0
    cursor.settle(cursor.classify(np.array([3]), np.array([1]))[1])
    assert len(cursor.ready) == 1
    assert cursor.dispatch(100, member=0, lease=3, now=0.0).tolist() == [13]


def test_classify_statuses() -> None:
    cursor = cursor_with([b"a", b"a", b"b"])
    cursor.dispatch(10, member=0, lease=7, now=0.0)  # offsets 0 and 2
    status, slots = cursor.classify(np.array([0, 0, 1, 2, 9]), np.array([7, 7, 7, 6, 7]))
    # settled, duplicate (done), never delivered (unknown), other lease (stale), beyond (unknown)
    assert status.tolist() == [0, 1, 3, 2, 3]
    assert slots.tolist() == [0]


def test_failure_counts_once_and_rewinds_the_rest_of_the_unit() -> None:
    cursor = cursor_with([b"a"] * 4, limit=3)
    assert cursor.dispatch(10, member=0, lease=1, now=0.0).tolist() == [0, 1, 2]
    released = cursor.fail(np.array([1]), count=True, now=0.0, delay=0.0, max_deliveries=5)
    assert (released.failed, released.rewound) == (1, 1)  # 1 failed, 2 rewound, 0 untouched
    assert cursor.state[:4].tolist() == [IN_FLIGHT, PENDING, PENDING, PENDING]
    assert cursor.attempts[:3].tolist() == [1, 1, 0]
    assert cursor.dispatch(10, member=0, lease=2, now=0.0).tolist() == [1, 2]


def test_dead_lettering_holds_the_key_until_finished() -> None:
    cursor = cursor_with([b"a", b"a"])
    cursor.dispatch(10, member=0, lease=1, now=0.0)
    released = cursor.fail(np.array([0]), count=True, now=0.0, delay=0.0, max_deliveries=1)
    assert released.dead.tolist() == [0]
    assert cursor.dispatch(10, member=0, lease=2, now=0.0).tolist() == []
    cursor.finish_dead_letters(released.dead)
    assert cursor.state[0] == DONE and cursor.committed == 1
    assert cursor.dispatch(10, member=0, lease=3, now=0.0).tolist() == [1]


def test_delay_blocks_the_key_not_others() -> None:
    cursor = cursor_with([b"a", b"a", b"b"])
    cursor.dispatch(10, member=0, lease=1, now=0.0)
    cursor.fail(np.array([0]), count=True, now=0.0, delay=5.0, max_deliveries=9)
    _, slots = cursor.classify(np.array([2]), np.array([1]))
    cursor.settle(slots)
    assert cursor.dispatch(10, member=0, lease=2, now=4.0).tolist() == []
    assert cursor.dispatch(10, member=0, lease=3, now=5.0).tolist() == [0]


def test_topic_ordering_is_one_unit() -> None:
    cursor = cursor_with([b"a", None, b"b"], ordering="topic", limit=2)
    assert cursor.dispatch(10, member=0, lease=1, now=0.0).tolist() == [0, 1]
    assert cursor.dispatch(10, member=1, lease=2, now=0.0).tolist() == []


def test_restart_presets_mark_settled_runs_done() -> None:
    cursor = Cursor("t", 0.0, 2, "key", 1, np.array([4, 8]), np.array([6, 9]))
    prepared = prepare([stored([b"k%d" % i for i in range(2, 10)], first=2)], "key")
    assert prepared is not None
    cursor.install(prepared)
    assert cursor.dispatch(10, member=0, lease=1, now=0.0).tolist() == [2, 3, 6, 7, 9]


def test_trim_drops_settled_batches_and_keeps_offsets() -> None:
    cursor = Cursor("t", 0.0, 0, "key", 1)
    for first in range(0, 40_000, 10_000):
        prepared = prepare([stored([b"k%d" % (i % 7) for i in range(10_000)], first=first)], "key")
        assert prepared is not None
        cursor.install(prepared)
    lease = 1
    while cursor.committed < 30_000:
        offsets = cursor.dispatch(5000, member=0, lease=lease, now=0.0)
        cursor.settle(cursor.classify(offsets, np.full(len(offsets), lease))[1])
        lease += 1
    assert cursor.base >= 20_000
    offsets = cursor.dispatch(3, member=0, lease=lease, now=0.0)
    assert cursor.records(offsets).column("offset").to_pylist() == offsets.tolist()


def test_an_ack_that_trims_the_window_requeues_the_right_keys() -> None:
    """Regression: settling could trim the window (shifting every slot) before the
    acked records' keys were looked up, so another key was queued instead."""
    cursor = Cursor("t", 0.0, 0, "key", 1)
    first_keys: list[bytes | None] = [b"k%d" % i for i in range(16_383)] + [b"x"]
    for keys, first in ((first_keys, 0), ([b"y", b"x"], 16_384)):
        prepared = prepare([stored(keys, first=first)], "key")
        assert prepared is not None
        cursor.install(prepared)
    offsets = cursor.dispatch(20_000, member=0, lease=1, now=0.0)
    assert offsets[-1] == 16_384  # y; x at 16_385 waits for x at 16_383
    cursor.settle(cursor.classify(offsets, np.full(len(offsets), 1))[1])
    assert cursor.base == 16_384, "the ack should have trimmed the first batch"
    assert cursor.dispatch(10, member=0, lease=2, now=0.0).tolist() == [16_385]


# -- random schedules -----------------------------------------------------------------


class Simulation:
    """Random members, polls, acks, nacks, time, appends and restarts against a group."""

    def __init__(self, open_client: Any, seed: int, ordering: str, limit: int | None) -> None:
        self.open_client = open_client
        self.rng = random.Random(seed)
        self.ordering = ordering
        self.limit = limit
        self.now = 1000.0
        self.client = self._open()
        self.client.create_topic("sim")
        self.keys: list[bytes | None] = []
        self.acked: set[int] = set()
        self.latest: dict[int, tuple[str, Delivery]] = {}  # offset -> (member, latest delivery)
        self.members: dict[str, Any] = {}
        self.held: dict[str, list[Delivery]] = defaultdict(list)
        self.rejoin = 0

    def _open(self) -> Any:
        client = self.open_client()
        client.node.groups.clock = lambda: self.now
        return client

    def subscribe(self) -> Any:
        return self.client.subscribe(
            "sim",
            group="g",
            ordering=self.ordering,
            max_in_flight_per_key=self.limit,
            ack_timeout=10,
            max_deliveries=3,
        )

    def unit(self, offset: int) -> object:
        if self.ordering == "topic":
            return "topic"
        return self.keys[offset]

    def dead_letters(self) -> set[int]:
        if "dlq.g" not in self.client.list_topics():
            return set()
        rows = [row for batch in self.client.read("dlq.g", wait=0) for row in batch.to_pylist()]
        return {int(dict(row["headers"])["odradek.dlq.offset"]) for row in rows}

    def check_delivery(self, name: str, delivery: Delivery) -> None:
        unit = self.unit(delivery.offset)
        if self.ordering == "none" or unit is None:
            return
        settled = self.acked | self.dead_letters()
        for earlier in range(delivery.offset):
            if self.unit(earlier) != unit or earlier in settled:
                continue
            holder = self.latest.get(earlier)
            assert (self.limit or 1) > 1 or self.ordering == "topic", (
                f"offset {delivery.offset} delivered while earlier {earlier} of its unit is unsettled"
            )
            assert holder is not None and holder[0] == name, (
                f"offset {delivery.offset} went to {name} while {earlier} of its unit is elsewhere"
            )

    def step(self) -> None:
        action = self.rng.random()
        names = list(self.members)
        if action < 0.08 or not names:
            consumer = self.subscribe()
            self.members[consumer.member_id] = consumer
        elif action < 0.12:
            name = self.rng.choice(names)
            self.members.pop(name).close()
            self.held.pop(name, None)
        elif action < 0.45:
            name = self.rng.choice(names)
            consumer = self.members[name]
            before = consumer.member_id
            deliveries = consumer.poll(self.rng.randint(1, 20), timeout=0)
            if consumer.member_id != before:  # it had expired and joined again
                self.members[consumer.member_id] = self.members.pop(name)
                self.held[consumer.member_id] = self.held.pop(name, [])
                name = consumer.member_id
                self.rejoin += 1
            for delivery in deliveries:
                self.check_delivery(name, delivery)
                self.latest[delivery.offset] = (name, delivery)
            self.held[name].extend(deliveries)
        elif action < 0.75:
            name = self.rng.choice(names)
            held = self.held[name]
            chosen = [d for d in held if self.rng.random() < 0.6]
            if chosen:
                result = self.members[name].ack(chosen)
                rejected = {(r.offset, r.lease) for r in result.rejected}
                for delivery in chosen:
                    if (delivery.offset, delivery.lease) not in rejected:
                        assert delivery.offset not in self.acked, f"offset {delivery.offset} acked twice"
                        self.acked.add(delivery.offset)
                self.held[name] = [d for d in held if d not in chosen]
        elif action < 0.85:
            name = self.rng.choice(names)
            held = self.held[name]
            chosen = [d for d in held if self.rng.random() < 0.3]
            if chosen:
                self.members[name].nack(chosen, delay=self.rng.choice([0.0, 0.0, 3.0]))
                self.held[name] = [d for d in held if d not in chosen]
        elif action < 0.93:
            self.now += self.rng.choice([0.5, 2.0, 11.0])
        elif action < 0.99:
            keys = [
                self.rng.choice([b"a", b"b", b"c", b"d", b"e", None]) for _ in range(self.rng.randint(1, 30))
            ]
            result = self.client.append("sim", [{"key": k, "value": b"v"} for k in keys])
            assert result.base_offset == len(self.keys)
            self.keys.extend(keys)
        else:
            self.restart()

    def restart(self) -> None:
        self.client.close()
        self.client = self._open()
        self.members = {}
        self.held = defaultdict(list)
        self.latest = {}

    def finish(self) -> None:
        for consumer in self.members.values():
            consumer.close()
        self.now += 100
        consumer = self.subscribe()
        for _ in range(10_000):
            deliveries = consumer.poll(100, timeout=0)
            if not deliveries:
                self.now += 20  # let delays pass and dead letters be written
                deliveries = consumer.poll(100, timeout=0)
                if not deliveries:
                    break
            result = consumer.ack(deliveries)
            assert result.ok, result.rejected
            for delivery in deliveries:
                assert delivery.offset not in self.acked, f"offset {delivery.offset} acked twice"
                self.acked.add(delivery.offset)
        dead = self.dead_letters()
        assert not (dead & self.acked), f"acked and dead-lettered: {sorted(dead & self.acked)}"
        assert dead | self.acked == set(range(len(self.keys))), "some records were never settled"
        info = self.client.describe_group("g")
        assert info.lag == 0 and info.in_flight == 0


@pytest.mark.parametrize(
    ("ordering", "limit"), [("key", None), ("key", 3), ("topic", None), ("topic", 1), ("none", None)]
)
@pytest.mark.parametrize("seed", range(6))
def test_random_schedules_keep_order_and_settle_everything(
    open_client: Any, ordering: str, limit: int | None, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if seed % 2:  # trim the window at every chance: slots move under every operation
        monkeypatch.setattr(dispatcher, "_TRIM_RECORDS_MIN", 4)
    simulation = Simulation(open_client, seed * 7919 + len(ordering), ordering, limit)
    for _ in range(400):
        simulation.step()
    simulation.finish()
