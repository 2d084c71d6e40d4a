"""The appends of one DoPut stream in flight: submitted in order, acknowledged in order.

Theory of operation
-------------------
The DoPut handler thread reads a batch, *submits* it to the engine
(``Engine.submit_append``: checked and written, not yet durable) and hands the
pending append to :class:`AppendPipeline`, then goes back to reading. The pipeline's
acknowledger thread waits for each pending append in turn (``PendingAppend.wait``:
the group commit's fsync) and writes its PutResult. So the engine prepares batch
N+1 while batch N syncs, and several batches of one stream share one fsync.

Rules
-----
* At most ``window`` appends are in flight: :meth:`AppendPipeline.add` blocks the
  handler (which then stops reading the stream) until the oldest is acknowledged.
* Results are written in submission order, one PutResult per batch.
* A refused batch raises in the handler's ``submit``, before anything of it is
  written. The handler then calls :meth:`finish`, which writes the results of every
  batch before it, and only then lets the error end the stream. Nothing after a
  refused batch is submitted.
* If a wait fails (fsync failure) or a write fails (the client went away), the
  acknowledger keeps waiting for the rest, so the topic's durable offset moves on
  for readers, but writes nothing more; the first such error is raised to the
  handler at its next ``add`` or at ``finish``.
* The acknowledger thread starts with the first append and ends with ``finish``.
* With a window of 1 there is no acknowledger thread: :meth:`add` acknowledges on the
  handler's thread before it returns, so a client that sends one batch and waits for
  its result (a single-record append) costs no thread hop.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Protocol

from odradek.types import AppendResult


class Pending(Protocol):
    """What ``Engine.submit_append`` returns."""

    def wait(self) -> AppendResult: ...


# Called with each acknowledged append's result and the pending entry's context; returns
# the bytes of its PutResult.
Encode = Callable[[AppendResult, object], bytes]


class AppendPipeline:
    def __init__(self, write: Callable[[bytes], None], encode: Encode, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._write = write
        self._encode = encode
        self._window = window
        self._condition = threading.Condition()
        self._pending: collections.deque[tuple[Pending, object]] = collections.deque()
        self._finished = False
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None

    def add(self, pending: Pending, context: object = None) -> None:
        """Queue ``pending`` for acknowledgement; blocks while ``window`` are in flight.

        Raises the error of an earlier acknowledgement, if one failed.
        """
        if self._window == 1:
            self._acknowledge_inline(pending, context)
            return
        with self._condition:
            while len(self._pending) >= self._window and self._error is None:
                self._condition.wait()
            if self._error is not None:
                raise self._error
            self._pending.append((pending, context))
            self._condition.notify_all()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._acknowledge, name="odradek-flight-acks", daemon=True
                )
                self._thread.start()

    def finish(self) -> None:
        """Acknowledge everything added, then raise the first failure, if any."""
        with self._condition:
            self._finished = True
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error

    def _acknowledge_inline(self, pending: Pending, context: object) -> None:
        if self._error is not None:
            raise self._error
        try:
            self._write(self._encode(pending.wait(), context))
        except Exception as exc:
            self._error = exc  # finish() raises it again
            raise

    def _acknowledge(self) -> None:
        while True:
            with self._condition:
                while not self._pending and not self._finished:
                    self._condition.wait()
                if not self._pending:
                    return
                pending, context = self._pending[0]
            try:
                result = pending.wait()
                if self._error is None:
                    self._write(self._encode(result, context))
            except Exception as exc:  # noqa: BLE001 - handed to the handler thread, which raises it
                with self._condition:
                    if self._error is None:
                        self._error = exc
            with self._condition:
                self._pending.popleft()
                self._condition.notify_all()
