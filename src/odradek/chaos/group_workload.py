"""The chaos run's consumer group: members reading the keyed topics while faults hit.

``GroupSettings.members`` threads each run one member of the group ``chaos-consumers``
subscribed to the keyed appends' topics (``chaos.keys``; over several cells the pattern
``chaos.keys.*``, a topic in every cell, so the member is one in every cell: decision
0038), through the agents in turn (member ``n`` starts at agent ``n``). A member polls,
acks what it got and, when its subscription fails (its agent or a cell's agent died or
paused, the store refused), closes it and subscribes again, as an application does.

Every delivery and every acknowledgement is recorded in a shared :class:`GroupLedger`,
and after the run (the appending workers stopped, every topic read back) the members
go on until they have seen every record read back (or ``drain_seconds`` pass). The
checks, over the group's whole history:

* ``undelivered``: a record of the log that no member ever got (at-least-once broken);
* ``phantom_delivery``: a delivery that is not the log's record at that offset;
* ``redelivered_after_ack``: a delivery from a poll that started after an ack that
  settled that record had returned (an acknowledged record must not come again: the
  ack is durable in the record's cell before it is answered).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pyarrow as pa

from odradek import api
from odradek.chaos.workload import TOPIC_KEYS, lanes
from odradek.errors import InvalidRequest

GROUP = "chaos-consumers"
POLL_RECORDS = 500
POLL_SECONDS = 1.0
RESUBSCRIBE_SECONDS = 0.2  # between a failed subscription and the next
EXAMPLES_MAX = 5


@dataclasses.dataclass(frozen=True)
class GroupSettings:
    members: int = 0  # 0: no consumer group in the run
    drain_seconds: float = 120.0  # after the run, to see every record read back

    def __post_init__(self) -> None:
        if self.members < 0 or self.drain_seconds <= 0:
            raise InvalidRequest("a chaos group has 0 or more members and a positive drain time")


def group_pattern(lane_count: int) -> str:
    """What the members subscribe to: the keyed topic, or every lane's."""
    return TOPIC_KEYS if lane_count == 1 else f"{TOPIC_KEYS}.*"


def group_topics(lane_count: int) -> list[str]:
    return [lane.keys for lane in lanes(lane_count)]


Ref = tuple[str, int]


class GroupLedger:
    """What the members got and acknowledged, in one order (a lock and a counter)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self.acked_at: dict[Ref, int] = {}  # when an ack settling the record returned
        self.acked_by: dict[Ref, tuple[str, str]] = {}  # which member, at what time (UTC)
        self.values: dict[Ref, bytes] = {}  # the value first delivered
        self.deliveries = 0
        self.after_ack: list[dict[str, Any]] = []
        self.mismatched: list[dict[str, Any]] = []

    def now(self) -> int:
        with self._lock:
            return next(self._clock)

    def delivered(self, member: str, deliveries: Sequence[Any], poll_started: int) -> None:
        with self._lock:
            for delivery in deliveries:
                ref = (delivery.topic, delivery.offset)
                self.deliveries += 1
                seen = self.values.setdefault(ref, delivery.value)
                if seen != delivery.value:
                    self.mismatched.append({"topic": ref[0], "offset": ref[1], "member": member})
                acked = self.acked_at.get(ref)
                if acked is not None and poll_started > acked:
                    by, at = self.acked_by.get(ref, ("", ""))
                    self.after_ack.append(
                        {
                            "topic": ref[0],
                            "offset": ref[1],
                            "member": member,
                            "attempt": delivery.attempt,
                            "acked_by": by,
                            "acked_at": at,
                            "delivered_at": _utc(),
                        }
                    )

    def acked(self, member: str, deliveries: Sequence[Any], rejected: set[Ref]) -> None:
        with self._lock:
            stamp = next(self._clock)
            now = _utc()
            for delivery in deliveries:
                ref = (delivery.topic, delivery.offset)
                if ref not in rejected and ref not in self.acked_at:
                    self.acked_at[ref] = stamp
                    self.acked_by[ref] = (member, now)

    def seen(self) -> set[Ref]:
        with self._lock:
            return set(self.values)


class GroupWorker:
    """One member, subscribing again after every failure, until ``stop`` is set."""

    def __init__(
        self,
        number: int,
        ledger: GroupLedger,
        connect: Callable[[], api.Client],
        pattern: str,
        seed: int,
    ) -> None:
        self.name = f"g{number}"
        self.ledger = ledger
        self.connect = connect
        self.pattern = pattern
        self.random = random.Random(seed * 7_919 + number)
        self.stop = threading.Event()
        self.subscriptions = 0
        self.failures: Counter[str] = Counter()
        self.events: list[str] = []  # when each subscription began and failed (UTC), the first 500
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"chaos-{self.name}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def figures(self) -> dict[str, Any]:
        return {"subscriptions": self.subscriptions, "failures": dict(self.failures), "events": self.events}

    def _run(self) -> None:
        try:
            while not self.stop.is_set():
                self._member()
        except Exception as exc:  # noqa: BLE001 - a bug of the worker itself: the harness reports it
            self.error = exc

    def _event(self, what: str) -> None:
        if len(self.events) < 500:
            self.events.append(f"{_utc()} {what}")

    def _member(self) -> None:
        """One subscription, until it fails or the run ends."""
        client: api.Client | None = None
        consumer: Any = None
        try:
            client = self.connect()
            consumer = client.subscribe(self.pattern, group=GROUP, start="earliest")
            self.subscriptions += 1
            self._event(f"subscribed as {consumer.member_id} through {getattr(client, 'url', '?')}")
            while not self.stop.is_set():
                started = self.ledger.now()
                got = consumer.poll(POLL_RECORDS, timeout=POLL_SECONDS)
                self.ledger.delivered(self.name, got, started)
                if got:
                    result = consumer.ack(got)
                    self.ledger.acked(self.name, got, {(r.topic, r.offset) for r in result.rejected})
        except Exception as exc:  # noqa: BLE001 - a fault's doing: subscribe again
            self.failures[type(exc).__name__] += 1
            self._event(f"{type(exc).__name__}: {str(exc)[:200]}")
            self.stop.wait(RESUBSCRIBE_SECONDS * (1 + self.random.random()))
        finally:
            if consumer is not None:
                with contextlib.suppress(Exception):
                    consumer.close()
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()


def _utc() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%H:%M:%S.%f")[:-3]


def drain(workers: Sequence[GroupWorker], ledger: GroupLedger, wanted: set[Ref], seconds: float) -> float:
    """Let the members run until they got every record of ``wanted`` (or ``seconds``
    pass), then stop them; how long it took."""
    started = time.monotonic()
    while time.monotonic() - started < seconds and not wanted <= ledger.seen():
        time.sleep(0.2)
    for worker in workers:
        worker.stop.set()
    return time.monotonic() - started


def wanted_records(logs: Mapping[str, pa.Table], topics: Sequence[str]) -> dict[Ref, bytes]:
    """Every record of ``topics`` in the logs read back: (topic, offset) to its value."""
    records: dict[Ref, bytes] = {}
    for topic in topics:
        table = logs.get(topic)
        if table is None:
            continue
        records.update(
            zip(
                ((topic, offset) for offset in table.column("offset").to_pylist()),
                table.column("value").to_pylist(),
                strict=True,
            )
        )
    return records


def check_group(
    ledger: GroupLedger, wanted: Mapping[Ref, bytes]
) -> tuple[dict[str, int], dict[str, list[Any]], dict[str, Any]]:
    """The group's anomalies (the module docstring), an example or a few of each, and
    its figures."""
    seen = ledger.seen()
    undelivered = sorted(set(wanted) - seen)
    phantom = [
        {"topic": ref[0], "offset": ref[1], "value": ledger.values[ref].decode(errors="replace")}
        for ref in sorted(seen)
        if wanted.get(ref) != ledger.values[ref]
    ]
    phantom += ledger.mismatched
    found = {
        "undelivered": [{"topic": topic, "offset": offset} for topic, offset in undelivered],
        "phantom_delivery": phantom,
        "redelivered_after_ack": ledger.after_ack,
    }
    figures = {
        "records": len(wanted),
        "delivered": len(seen),
        "deliveries": ledger.deliveries,
        "redeliveries": ledger.deliveries - len(seen),  # at least once: a record may come again
        "acknowledged": len(ledger.acked_at),
    }
    return (
        {kind: len(rows) for kind, rows in found.items() if rows},
        {kind: rows[:EXAMPLES_MAX] for kind, rows in found.items() if rows},
        figures,
    )
