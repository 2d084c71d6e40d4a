"""An ObjectStore whose requests are slow or fail on demand, as a real store's do.

Tests and benchmarks wrap any store and switch faults on and off while it is used::

    store = FaultyObjectStore(open_store("memory://"), seed=7)
    store.set_latency(PUT, 0.06)                        # every PUT takes 60 ms
    store.set_latency(GET, (0.005, 0.020))              # GETs 5-20 ms, drawn from the seed
    store.inject(Fault.SLOWDOWN, kinds=PUT, probability=0.1)       # 503 SlowDown, 10 %
    store.inject(Fault.TIMEOUT, kinds=(PUT, GET), at=[1, 2])       # the next two time out
    store.inject(Fault.WRITTEN_THEN_TIMEOUT, keys="wal/", at=[1])  # written, answer lost
    store.inject(Fault.TIMEOUT_THEN_WRITTEN, at=[1])    # answer lost, write lands later
    store.land_late_writes()                            # ... now
    store.go_down()                                     # every request fails ...
    store.come_back()                                   # ... until now
    store.clear()                                       # no faults, no latency

The faults sit *under* the store's retries (between the ObjectStore's policy and its
backend), so they exercise the real retry, backoff and unknown-outcome code; every
injected failure costs a counted request, as a real one would.

``at`` numbers the requests a fault matches, from 1, counted from when it was injected;
``probability`` draws from the store's seeded generator, so a single-threaded run is
the same every time. Latency is real time (``time.sleep``), inside the request's slot of
the requests in flight, as a slow store holds its connection (``pause`` replaces it); the
backoff between retries uses the store's ``sleep`` (give one that records, for tests).
"""

from __future__ import annotations

import dataclasses
import enum
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TypeVar

from odradek.errors import InvalidRequest
from odradek.storage.objects import (
    DELETE,
    GET,
    HEAD,
    KINDS,
    LIST,
    PUT,
    Backend,
    Listed,
    ObjectHead,
    ObjectStore,
    RetryPolicy,
    StoreRefused,
    StoreUnavailable,
)

T = TypeVar("T")


class Fault(enum.StrEnum):
    SLOWDOWN = "slowdown"  # 503 SlowDown: refused before anything was done
    INTERNAL_ERROR = "internal_error"  # 500: a write's outcome is unknown (nothing written here)
    TIMEOUT = "timeout"  # no answer in time, nothing done
    WRITTEN_THEN_TIMEOUT = "written_then_timeout"  # done, then the answer was lost
    TIMEOUT_THEN_WRITTEN = "timeout_then_written"  # answer lost; done later (land_late_writes)
    ACCESS_DENIED = "access_denied"  # 403: refused for good


@dataclasses.dataclass
class _Rule:
    fault: Fault
    kinds: frozenset[str]
    keys: str
    probability: float
    at: frozenset[int]
    delay_seconds: float
    seen: int = 0


class FaultyBackend:
    """A Backend that delays or fails the requests of the one it wraps (objects.Backend)."""

    def __init__(
        self,
        inner: Backend,
        *,
        prefix: str = "",
        seed: int = 0,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.inner = inner
        self._pause = pause  # how latency and a timeout's delay pass: real time by default
        self._prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self._rules: list[_Rule] = []
        self._latency: dict[str, tuple[float, float]] = {}
        self._down = False
        self._late: list[Callable[[], object]] = []
        self.injected: Counter[str] = Counter()

    # -- Switches -----------------------------------------------------------------------

    def set_latency(self, kind: str, seconds: float | tuple[float, float]) -> None:
        low, high = (seconds, seconds) if isinstance(seconds, int | float) else seconds
        if kind not in KINDS or not 0 <= low <= high:
            raise InvalidRequest(f"latency of {kind!r} requests: need a kind of {KINDS} and 0 <= low <= high")
        with self._lock:
            self._latency[kind] = (float(low), float(high))

    def inject(
        self,
        fault: Fault,
        *,
        kinds: str | Iterable[str] = KINDS,
        keys: str = "",
        probability: float = 0.0,
        at: Iterable[int] = (),
        delay_seconds: float = 0.0,
    ) -> None:
        chosen = frozenset([kinds] if isinstance(kinds, str) else kinds)
        numbers = frozenset(at)
        if not chosen <= set(KINDS) or not 0.0 <= probability <= 1.0 or any(n < 1 for n in numbers):
            raise InvalidRequest(f"fault {fault}: kinds among {KINDS}, 0 <= probability <= 1, at >= 1")
        if not probability and not numbers:
            raise InvalidRequest(f"fault {fault}: give a probability or the request numbers it hits (at=)")
        with self._lock:
            self._rules.append(_Rule(Fault(fault), chosen, keys, probability, numbers, delay_seconds))

    def go_down(self) -> None:
        """Every request fails (connection refused) until ``come_back``."""
        self._down = True

    def come_back(self) -> None:
        self._down = False

    def clear(self) -> None:
        """No faults, no latency, the store up. Late writes still pending stay pending."""
        with self._lock:
            self._rules.clear()
            self._latency.clear()
        self._down = False

    def land_late_writes(self) -> int:
        """Perform the writes whose answer was lost before they happened; how many."""
        with self._lock:
            late, self._late = self._late, []
        for write in late:
            write()
        return len(late)

    @property
    def late_writes_pending(self) -> int:
        with self._lock:
            return len(self._late)

    # -- Backend ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def compare_and_swap(self) -> bool:
        return self.inner.compare_and_swap

    @property
    def sorted_listing(self) -> bool:
        return self.inner.sorted_listing

    def put(
        self, path: str, data: memoryview, *, create: bool = False, expect: str | None = None
    ) -> str | None:
        return self._through(PUT, path, lambda: self.inner.put(path, data, create=create, expect=expect))

    def get(self, path: str) -> tuple[memoryview, str | None] | None:
        return self._through(GET, path, lambda: self.inner.get(path))

    def get_range(self, path: str, start: int, end: int) -> memoryview | None:
        return self._through(GET, path, lambda: self.inner.get_range(path, start, end))

    def head(self, path: str) -> ObjectHead | None:
        return self._through(HEAD, path, lambda: self.inner.head(path))

    def list(self, prefix: str, after: str | None) -> Iterator[Sequence[Listed]]:
        chunks = self._through(LIST, prefix, lambda: list(self.inner.list(prefix, after)))
        yield from chunks

    def delete(self, path: str) -> None:
        self._through(DELETE, path, lambda: self.inner.delete(path))

    def _through(self, kind: str, path: str, call: Callable[[], T]) -> T:
        rule, pause = self._draw(kind, path.removeprefix(self._prefix))
        if pause:
            self._pause(pause)
        if self._down:
            self._count("outage")
            raise StoreUnavailable("connection refused (injected outage)")
        if rule is None:
            return call()
        fault = rule.fault
        self._count(fault)
        what = f"{kind} {path}"
        written = kind in (PUT, DELETE)
        if fault is Fault.SLOWDOWN:
            raise StoreUnavailable(f"503 SlowDown: please reduce your request rate (injected, {what})")
        if fault is Fault.INTERNAL_ERROR:
            raise StoreUnavailable(f"500 InternalError (injected, {what})", outcome_unknown=written)
        if fault is Fault.ACCESS_DENIED:
            raise StoreRefused(f"403 AccessDenied (injected, {what})")
        if fault is Fault.WRITTEN_THEN_TIMEOUT:
            call()
        elif fault is Fault.TIMEOUT_THEN_WRITTEN and written:
            with self._lock:
                self._late.append(lambda: _quietly(call))
        if rule.delay_seconds:
            self._pause(rule.delay_seconds)
        raise StoreUnavailable(f"timed out (injected {fault}, {what})", outcome_unknown=written)

    def _draw(self, kind: str, key: str) -> tuple[_Rule | None, float]:
        with self._lock:
            low, high = self._latency.get(kind, (0.0, 0.0))
            pause = low if low == high else self._random.uniform(low, high)
            for rule in self._rules:
                if kind not in rule.kinds or not key.startswith(rule.keys):
                    continue
                rule.seen += 1
                if rule.seen in rule.at or (rule.probability and self._random.random() < rule.probability):
                    return rule, pause
            return None, pause

    def _count(self, what: str) -> None:
        with self._lock:
            self.injected[what] += 1


def _quietly(call: Callable[[], object]) -> None:
    """A late write lands, or loses a race it could not know about (a create-if-absent
    that finds the key taken): its caller gave up long ago."""
    try:
        call()
    except Exception:  # noqa: BLE001 - nobody is waiting for this answer any more
        return


class FaultyObjectStore(ObjectStore):
    """``inner``'s objects behind a fault-injecting backend, with its own retries and
    counters (the inner store's counters do not move). See the module's docstring."""

    def __init__(
        self,
        inner: ObjectStore,
        *,
        seed: int = 0,
        retry: RetryPolicy | None = None,
        requests_in_flight: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
        pause: Callable[[float], None] = time.sleep,
    ) -> None:
        self.faults = FaultyBackend(inner.backend, prefix=inner.prefix, seed=seed, pause=pause)
        super().__init__(
            self.faults,
            prefix=inner.prefix,
            retry=retry or inner.retry,
            requests_in_flight=requests_in_flight or inner.requests_in_flight,
            sleep=sleep,
            seed=seed,
        )
        self.inner = inner

    # The switches, on the store itself for brevity.
    def set_latency(self, kind: str, seconds: float | tuple[float, float]) -> None:
        self.faults.set_latency(kind, seconds)

    def inject(
        self,
        fault: Fault,
        *,
        kinds: str | Iterable[str] = KINDS,
        keys: str = "",
        probability: float = 0.0,
        at: Iterable[int] = (),
        delay_seconds: float = 0.0,
    ) -> None:
        self.faults.inject(
            fault, kinds=kinds, keys=keys, probability=probability, at=at, delay_seconds=delay_seconds
        )

    def go_down(self) -> None:
        self.faults.go_down()

    def come_back(self) -> None:
        self.faults.come_back()

    def clear(self) -> None:
        self.faults.clear()

    def land_late_writes(self) -> int:
        return self.faults.land_late_writes()

    @property
    def injected(self) -> Counter[str]:
        return self.faults.injected
