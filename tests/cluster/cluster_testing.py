"""Helpers of the cluster tests: ``run`` runs a coroutine on a fresh event loop under a
generous deadline (a hang fails the test instead of stalling the suite), ``eventually``
waits for a condition. Nothing here asserts on how long anything took."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
DEADLINE_SECONDS = 120.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coroutine, DEADLINE_SECONDS)

    return asyncio.run(bounded())


async def eventually(
    attempt: Callable[[], Awaitable[T | None]], what: str, deadline_seconds: float = 60.0
) -> T:
    """``await attempt()`` until it returns something other than None."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        result = await attempt()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {deadline_seconds} s")
        await asyncio.sleep(0.05)
