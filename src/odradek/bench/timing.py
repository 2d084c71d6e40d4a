"""Clocks, pacing and order statistics shared by the probes and the workloads.

Every figure the suite reports is a median over runs; every latency is measured from the
moment the request was *scheduled* to go out, not from when the client got round to
sending it, so a client that falls behind its schedule shows that as latency instead of
hiding it (coordinated omission).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Sequence

import numpy as np

# time.sleep and the asyncio loop wake up late by tens of microseconds (sleep) to a whole
# millisecond (asyncio rounds epoll timeouts up to 1 ms). Pacing sleeps until this much
# before the deadline and spins the rest, so the spin costs at most this share of a core.
spin_seconds = 0.0002
async_spin_seconds = 0.0015


def now() -> float:
    return time.perf_counter()


def wait_until(deadline: float) -> None:
    """Return at ``deadline`` (a ``now()`` value) with sub-0.1 ms precision."""
    remaining = deadline - time.perf_counter()
    if remaining > spin_seconds:
        time.sleep(remaining - spin_seconds)
    while time.perf_counter() < deadline:
        pass


async def async_wait_until(deadline: float) -> None:
    """``wait_until`` for coroutines: yield to the loop while far off, spin when close."""
    remaining = deadline - time.perf_counter()
    if remaining > async_spin_seconds:
        await asyncio.sleep(remaining - async_spin_seconds)
    while time.perf_counter() < deadline:
        pass


def schedule(count: int, rate_per_second: float, lead_seconds: float = 0.01) -> list[float]:
    """Send times of ``count`` requests at a fixed rate, starting shortly from now."""
    start = time.perf_counter() + lead_seconds
    return [float(t) for t in start + np.arange(count, dtype=np.float64) / rate_per_second]


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` (0..1) quantile, by linear interpolation between samples."""
    if not values:
        raise ValueError("no samples")
    return float(np.quantile(np.asarray(values, dtype=np.float64), fraction))
