"""A FIFO of integers in one NumPy array, for the dispatcher's queues."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

I64 = npt.NDArray[np.int64]


class IntQueue:
    """A FIFO of int64 in one array: push at the back, take or put back at the front."""

    def __init__(self) -> None:
        self._items = np.zeros(1024, dtype=np.int64)
        self._head = 0
        self._tail = 0

    def __len__(self) -> int:
        return self._tail - self._head

    def peek(self, count: int) -> I64:
        return self._items[self._head : self._head + min(count, len(self))]

    def drop(self, count: int) -> None:
        self._head += min(count, len(self))

    def push(self, values: npt.NDArray[np.integer]) -> None:
        if len(values) == 0:
            return
        if self._tail + len(values) > len(self._items):
            live = self._items[self._head : self._tail]
            size = max(1024, 2 * (len(live) + len(values)))
            items = np.zeros(size, dtype=np.int64) if size > len(self._items) else self._items
            items[: len(live)] = live
            self._items, self._head, self._tail = items, 0, len(live)
        self._items[self._tail : self._tail + len(values)] = values
        self._tail += len(values)

    def push_front(self, values: I64) -> None:
        """Put back values taken with peek/drop (the room they left is still there)."""
        if len(values) > self._head:
            raise ValueError("push_front of more than was taken")
        self._head -= len(values)
        self._items[self._head : self._head + len(values)] = values

    def replace(self, values: I64) -> None:
        self._items = np.zeros(max(1024, 2 * len(values)), dtype=np.int64)
        self._items[: len(values)] = values
        self._head, self._tail = 0, len(values)
