"""The journal writer wakes only the waiters of the flushes a commit committed.

Goal: at 1,000 single appends a second on a store with 60 ms PUTs, a hundred appenders
wait on the journal at once; a flush landing must not wake those of later flushes, who
would each take the writer's lock and the GIL only to sleep again. A waiter for flush 2
is therefore notified once, when flush 2 commits, not when flush 1 does. Fencing,
closing and a timed-out wait still wake every waiter.

Method: a store whose PUTs are held per slot by events; two flushes cut by hand and
held; one thread waits for each. ``threading.Condition.wait`` is wrapped to record, for
the waiter threads, every notification that reached them while they waited (not their periodic
timeouts). No timing assertions: everything is awaited with generous deadlines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from odradek.storage import journal
from odradek.storage.walwriter import Fenced, JournalWriter, StoreUnavailable

DEADLINE_SECONDS = 30.0


class GatedStore:
    """A dict whose create-if-absent PUT to each key waits for that key's gate."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._gates: dict[str, threading.Event] = {}

    def gate(self, key: str) -> threading.Event:
        with self._lock:
            return self._gates.setdefault(key, threading.Event())

    def put_new(self, key: str, data: bytes) -> bool:
        if not self.gate(key).wait(DEADLINE_SECONDS):
            raise AssertionError(f"the gate of {key} was never opened")
        with self._lock:
            if key in self.objects:
                return False
            self.objects[key] = bytes(data)
            return True

    def get(self, key: str) -> bytes | None:
        with self._lock:
            return self.objects.get(key)


class Notified:
    """Counts the notifications each thread named 'waiter-N' received while it waited.

    A thread registers the condition it waits on before the wait releases the lock and
    leaves it after the wait took the lock back; a notification needs that lock, so it is
    counted exactly when it reaches the waiter (whether or not the waiter ran between two).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.lock = threading.Lock()
        self.waiting: dict[str, threading.Condition] = {}
        self.waits: dict[str, int] = {}
        self.received: dict[str, int] = {}
        wait, notify = threading.Condition.wait, threading.Condition.notify
        recorder = self

        def recording_wait(condition: threading.Condition, timeout: float | None = None) -> bool:
            name = threading.current_thread().name
            if not name.startswith("waiter-"):
                return wait(condition, timeout)
            with recorder.lock:
                recorder.waiting[name] = condition
                recorder.waits[name] = recorder.waits.get(name, 0) + 1
            try:
                return wait(condition, timeout)
            finally:
                with recorder.lock:
                    del recorder.waiting[name]

        def recording_notify(condition: threading.Condition, n: int = 1) -> None:
            with recorder.lock:
                for name, waited in recorder.waiting.items():
                    if waited is condition:
                        recorder.received[name] = recorder.received.get(name, 0) + 1
            notify(condition, n)

        monkeypatch.setattr(threading.Condition, "wait", recording_wait)
        monkeypatch.setattr(threading.Condition, "notify", recording_notify)

    def has_waited(self, name: str) -> bool:
        with self.lock:
            return self.waits.get(name, 0) > 0


def _eventually(predicate: Callable[[], bool]) -> None:
    done = threading.Event()
    for _ in range(int(DEADLINE_SECONDS * 100)):
        if predicate():
            return
        done.wait(0.01)
    raise AssertionError("the condition did not hold within the deadline")


def _writer(store: GatedStore) -> JournalWriter:
    return JournalWriter(
        store,  # type: ignore[arg-type]
        epoch=1,
        first_slot=0,
        flush_seconds=60.0,  # flushes are cut by hand only
        flush_bytes=1 << 20,
        in_flight_max=8,
        backlog_bytes_max=64 << 20,
        wait_seconds=DEADLINE_SECONDS,
    )


def _waiter(writer: JournalWriter, number: int, failures: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            writer.wait(number)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            failures.append(exc)

    thread = threading.Thread(target=run, name=f"waiter-{number}", daemon=True)
    thread.start()
    return thread


def _two_held_flushes(writer: JournalWriter) -> None:
    assert writer.add(journal.Entry(journal.OP_CREATE, "a")) == 1
    assert writer.cut() == 1
    assert writer.add(journal.Entry(journal.OP_CREATE, "b")) == 2
    assert writer.cut() == 2


def test_a_commit_wakes_only_the_waiters_of_the_flushes_it_committed(monkeypatch: pytest.MonkeyPatch) -> None:
    notified = Notified(monkeypatch)
    store = GatedStore()
    writer = _writer(store)
    try:
        _two_held_flushes(writer)
        failures: list[BaseException] = []
        first, second = _waiter(writer, 1, failures), _waiter(writer, 2, failures)
        _eventually(lambda: notified.has_waited("waiter-1") and notified.has_waited("waiter-2"))

        store.gate(journal.slot_key(0)).set()
        first.join(DEADLINE_SECONDS)
        assert not first.is_alive() and writer.committed == 1
        store.gate(journal.slot_key(1)).set()
        second.join(DEADLINE_SECONDS)
        assert not second.is_alive() and writer.committed == 2
        assert failures == []
        # Each waiter was notified once: when its own flush committed.
        assert notified.received == {"waiter-1": 1, "waiter-2": 1}
    finally:
        for key in (journal.slot_key(0), journal.slot_key(1)):
            store.gate(key).set()
        writer.close()


def test_closing_wakes_every_waiter(monkeypatch: pytest.MonkeyPatch) -> None:
    notified = Notified(monkeypatch)
    store = GatedStore()
    writer = _writer(store)
    _two_held_flushes(writer)
    failures: list[BaseException] = []
    waiters = [_waiter(writer, number, failures) for number in (1, 2)]
    _eventually(lambda: notified.has_waited("waiter-1") and notified.has_waited("waiter-2"))
    closer = threading.Thread(target=writer.close, daemon=True)
    closer.start()
    for waiter in waiters:
        waiter.join(DEADLINE_SECONDS)
        assert not waiter.is_alive()
    assert [type(exc) for exc in failures] == [StoreUnavailable, StoreUnavailable]
    assert notified.received == {"waiter-1": 1, "waiter-2": 1}  # told, not left to a periodic check
    for key in (journal.slot_key(0), journal.slot_key(1)):
        store.gate(key).set()  # the uploads end, and with them the close
    closer.join(DEADLINE_SECONDS)
    assert not closer.is_alive()


def test_fencing_wakes_the_waiters_of_later_flushes(monkeypatch: pytest.MonkeyPatch) -> None:
    notified = Notified(monkeypatch)
    store = GatedStore()
    writer = _writer(store)
    try:
        _two_held_flushes(writer)
        failures: list[BaseException] = []
        waiter = _waiter(writer, 2, failures)
        _eventually(lambda: notified.has_waited("waiter-2"))
        # A newer agent's fence sits in the first flush's slot.
        store.objects[journal.slot_key(0)] = journal.encode_fence(2, 0)
        store.gate(journal.slot_key(0)).set()
        waiter.join(DEADLINE_SECONDS)
        assert not waiter.is_alive()
        assert [type(exc) for exc in failures] == [Fenced]
        assert notified.received == {"waiter-2": 1}
    finally:
        store.gate(journal.slot_key(1)).set()
        writer.close()
