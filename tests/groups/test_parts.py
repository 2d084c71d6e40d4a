"""A poll over the parts of a member of several cells' groups (groups/parts.py,
decision 0038), and the Flight door's member over cells driving it
(protocols/flight/cells_group.py's CellsMember).

Goal: the poll takes what every part has at once, from the part given first and
within ``max_records``; else it waits on every part for its share. A part that fails
does not take the others' records with it: records found are answered (the caller
decides, through ``keep``, whether the failure waits for the next poll), and the
failure is raised only when nothing was found or the caller says so. The Flight door's
member answers the records and raises the failure at its next poll. (Dropped, records
a healthy cell handed out counted a failed attempt each time the member subscribed
again while another cell failed over, and were dead-lettered without ever reaching
it: a chaos run found 12 records of one topic never delivered.)
Method: parts as functions over lists, no IO; CellsMember over parts that are plain
objects.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

from odradek.errors import Unavailable
from odradek.groups import AckResult, GroupOptions
from odradek.groups.parts import poll_parts
from odradek.protocols.flight.cells_group import CellsMember


def _one_after_the_other(
    calls: Sequence[tuple[int, Callable[[], list[Any]]]], _wait: float
) -> list[list[Any]]:
    return [call() for _, call in calls]


class Parts:
    """Parts holding records (strings), each failing when told to."""

    def __init__(self, *held: list[str]) -> None:
        self.held = [list(records) for records in held]
        self.failing: dict[int, Exception] = {}
        self.asked: list[tuple[int, int, float]] = []

    def poll(self, index: int, budget: int, wait: float) -> list[str]:
        self.asked.append((index, budget, wait))
        failure = self.failing.get(index)
        if failure is not None:
            raise failure
        taken, self.held[index] = self.held[index][:budget], self.held[index][budget:]
        return taken

    def run(
        self, first: int, max_records: int, timeout: float, keep: Callable[[Exception], bool] | None = None
    ) -> list[str]:
        extra = {} if keep is None else {"keep": keep}
        return poll_parts(
            len(self.held),
            first,
            max_records,
            timeout,
            self.poll,
            lambda _item: 1,
            _one_after_the_other,
            **extra,
        )


def test_a_poll_takes_what_is_there_from_the_first_part_given_within_its_budget() -> None:
    parts = Parts(["a1", "a2"], ["b1", "b2", "b3"], ["c1"])
    assert parts.run(first=1, max_records=4, timeout=0) == ["b1", "b2", "b3", "c1"]
    assert [index for index, _, _ in parts.asked] == [1, 2]  # the budget was spent at c
    assert parts.run(first=0, max_records=10, timeout=0) == ["a1", "a2"]
    assert parts.run(first=0, max_records=10, timeout=0.05) == []  # waited, nothing came


def test_records_found_are_answered_when_another_part_fails_and_the_failure_is_kept() -> None:
    parts = Parts(["a1", "a2"], [], ["c1"])
    failure = Unavailable("cell 1 is failing over")
    parts.failing[1] = failure
    kept: list[Exception] = []
    got = parts.run(first=0, max_records=10, timeout=1.0, keep=lambda exc: kept.append(exc) is None)
    assert got == ["a1", "a2", "c1"]  # every healthy part's records, none dropped
    assert kept == [failure]
    # Nothing found: the failure is raised.
    with pytest.raises(Unavailable, match="failing over"):
        parts.run(first=0, max_records=10, timeout=0)
    # Found, but the caller will not answer them with this failure: raised.
    parts.held[0] = ["a3"]
    with pytest.raises(Unavailable):
        parts.run(first=0, max_records=10, timeout=0, keep=lambda _exc: False)


def test_a_part_failing_while_the_parts_wait_does_not_take_what_another_brought() -> None:
    parts = Parts([], [], [])
    failure = Unavailable("cell 2's agent died")

    def arrives(calls: Sequence[tuple[int, Callable[[], list[Any]]]], wait: float) -> list[list[Any]]:
        if wait > 0:  # the waiting round: a record arrives in cell 0, cell 2 fails
            parts.held[0] = ["a1"]
            parts.failing[2] = failure
        return _one_after_the_other(calls, wait)

    kept: list[Exception] = []
    got = poll_parts(
        3, 0, 10, 1.0, parts.poll, lambda _item: 1, arrives, lambda exc: kept.append(exc) is None
    )
    assert got == ["a1"] and kept == [failure]


class Part:
    """A cell's part of a member, as a Membership offers it (records as batches are
    not needed: CellsMember passes what a part answers through)."""

    def __init__(self, member_id: str, batches: list[Any]) -> None:
        self.member_id = member_id
        self.batches = batches
        self.failure: Exception | None = None
        self.closed: list[bool] = []

    def poll_batches(self, max_records: int, timeout: float) -> list[Any]:
        if self.failure is not None:
            raise self.failure
        taken, self.batches = self.batches, []
        return taken

    def ack(self, deliveries: Any) -> AckResult:
        return AckResult(len(deliveries), [])

    def nack(self, deliveries: Any, delay: float) -> AckResult:
        return AckResult(len(deliveries), [])

    def close(self, *, failed: bool = False) -> None:
        self.closed.append(failed)


class Batch:
    def __init__(self, rows: int) -> None:
        self.records = type("Records", (), {"num_rows": rows})()


def test_the_flight_member_answers_the_records_then_fails_at_its_next_poll() -> None:
    healthy, failing = Part("m", [Batch(3)]), Part("m", [])
    failing.failure = Unavailable("the agent serving cell _cell.1 did not answer")
    member = CellsMember("g", [healthy, failing], lambda _topic: 0, GroupOptions())
    try:
        got = member.poll_batches(100, 0.5)  # the healthy part is asked first (turn 0)
        assert [batch.records.num_rows for batch in got] == [3]
        with pytest.raises(Unavailable, match="did not answer"):
            member.poll_batches(100, 0.5)
    finally:
        member.close(failed=True)
    assert healthy.closed == [True] and failing.closed == [True]
