"""Helpers of the cluster tests: ``run`` runs a coroutine on a fresh event loop under a
generous deadline (a hang fails the test instead of stalling the suite), ``eventually``
waits for a condition. Nothing here asserts on how long anything took."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
DEADLINE_SECONDS = 60.0


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine``; past DEADLINE_SECONDS fail with the stacks of every task."""

    async def bounded() -> T:
        task = asyncio.ensure_future(coroutine)
        done, _ = await asyncio.wait({task}, timeout=DEADLINE_SECONDS)
        if not done:
            stacks = []
            for other in asyncio.all_tasks():
                buffer = io.StringIO()
                other.print_stack(file=buffer)
                stacks.append(buffer.getvalue())
            task.cancel()
            raise AssertionError(f"no end within {DEADLINE_SECONDS} s; tasks:\n" + "\n".join(stacks))
        return task.result()

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
