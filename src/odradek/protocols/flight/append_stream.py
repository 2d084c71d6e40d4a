"""One client's append stream: its single appends, from any of its threads, over one
DoExchange (descriptor command ``{"kind": "append"}``; docs/flight-protocol.md,
docs/decisions/0009-append-stream.md).

Theory of operation
-------------------
Two threads serve a stream (the call's own and a helper) and trade two roles. The
*reader* reads the next request (a record batch tagged by its app_metadata: ``id``,
``topic``, options), reserves its bytes in the in-flight budget and *submits* it to the
engine (``Engine.submit_append``: checked and written, not yet durable). The
*answerer* waits for the oldest submitted append to be durable (``PendingAppend.wait``,
the group commit) and writes its answer, tagged with its request's id. A thread that
has just read a request answers it itself when nobody is answering, and the other
thread takes over reading: a lone request goes to its fsync without a hand-over
between threads, while the requests that arrive during an fsync are read and written
meanwhile and share the next fsync, whichever of the client's threads sent them.

Rules
-----
* Every request gets exactly one answer: its result once durable, or the error that
  refused it, nothing of it written. A refusal (bad options, a failed expectation, a
  schema violation, a batch over a limit, a budget that stays full) answers that
  request only; the stream goes on.
* A refusal is answered at once, by the reader; results are answered by the answerer
  once durable, in the order their requests were read. Answers are tagged, so their
  order is not part of the protocol: a failed expectation does not wait for another
  append's fsync.
* Requests are submitted in the order they are read, so appends one client thread
  sends one after another are written in that order.
* At most ``window`` requests wait for their answer; then the handler stops reading
  (gRPC's flow control pushes back on the client), as it does while the in-flight
  budget is exhausted.
* A request whose ``id`` cannot be read cannot be answered: the stream ends with the
  error, after the answers of every request before it.
* When the server drains, the request read next is refused with ``unavailable`` and
  the stream ends, with ``unavailable``, once every submitted append is answered: a
  request left without an answer was not written.
* If the client goes away, the answerer still waits for every submitted append
  (their reservations are released, the durable offset moves on for readers) but
  writes nothing more.
* A client that said so in its command (``requests_max``) may group several requests
  in one message (``{"requests": [...]}``, their records one after another in the
  batch). Each is still its own append, submitted in order, with its own result or
  refusal; the message's bytes are reserved once, until its last append is answered.
  Answers to such a client are grouped too (``{"answers": [...]}``): the refusals of
  a message together, at once, and the oldest result with the results after it that
  the same fsync made durable.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import pyarrow as pa
import pyarrow.flight as flight

from odradek.budget import Reservation
from odradek.errors import InvalidRequest, OdradekError, RequestTooLarge, Unavailable
from odradek.protocols.flight import messages
from odradek.types import AppendResult

log = logging.getLogger(__name__)


class Pending(Protocol):
    """What ``Engine.submit_append`` returns (its ``ready()``, True once ``wait()``
    would not wait, is optional: a pending append without it is answered alone)."""

    def wait(self) -> AppendResult: ...


class Observer(Protocol):
    """Told about every append the stream made or refused (the door's metrics)."""

    def appended(self, topic: str, records: int, size_bytes: int, seconds: float) -> None: ...

    def failed(self, call: str, code: str) -> None: ...


# Submits one append (checked and written; raises a refusal): (topic, batch, options,
# size: the request's share of its message's bytes, as metered).
Submit = Callable[[str, pa.RecordBatch, messages.AppendOptions, int], Pending]
# Reserves a batch's bytes in the in-flight budget, waiting for room; raises
# RequestTooLarge (never fits) or BudgetExhausted (no room in time).
Reserve = Callable[[int], Reservation]

CALL = "append_stream"  # the call name in the door's error metrics


@dataclasses.dataclass
class _Entry:
    """A request read from the stream, waiting for its answer to be written.

    ``reservation`` is the bytes of the request's message in the budget: held by the
    message's last submitted request, which is answered last of them."""

    request_id: int
    topic: str = ""
    pending: Pending | None = None
    refusal: OdradekError | None = None
    reservation: Reservation | None = None
    started: float = 0.0
    size: int = 0  # its share of its message's bytes (the door's metrics)


class AppendStream:
    """Serves one append stream with two threads that trade two roles: the *reader*
    reads and submits the next request, the *answerer* waits for the oldest one's
    append to be durable and writes its answer. Each is held by one thread at a time."""

    def __init__(
        self,
        submit: Submit,
        reserve: Reserve,
        serving: Callable[[], bool],
        window: int,
        observer: Observer | None = None,
        give_back_memory: Callable[[], None] = lambda: None,
        requests_max: int = 1,
        refusal: Callable[[], OdradekError] | None = None,
    ) -> None:
        """``serving()`` is False once the server drains (``refusal()`` is then the
        error of the appends refused, nothing written: by default the server is
        shutting down); ``give_back_memory`` returns
        freed memory to the system after an oversized batch was refused;
        ``requests_max``: requests the client may group in one message (1: it does not
        group, nor read grouped answers)."""
        self._submit = submit
        self._reserve = reserve
        self._serving = serving
        self._refusal = refusal or _shutting_down
        self._window = window
        self._requests_max = requests_max
        self._observer = observer
        self._give_back_memory = give_back_memory
        self._condition = threading.Condition()
        # Guarded by the condition:
        self._waiting: collections.deque[_Entry] = collections.deque()  # read, not answered; oldest first
        self._reading = False
        self._answering = False
        self._finished = False  # nothing more is read (the client finished, went away, or a drain)
        self._ended: BaseException | None = None  # what ends the call once all is answered
        self._write_lock = threading.Lock()
        self._broken = False  # an answer could not be written: the client is gone (write lock)
        self._reader: flight.MetadataRecordBatchReader | None = None
        self._writer: flight.MetadataRecordBatchWriter | None = None

    def serve(
        self, reader: flight.MetadataRecordBatchReader, writer: flight.MetadataRecordBatchWriter
    ) -> None:
        """Answer requests until the client finishes writing (or the server drains);
        raise what ended the stream otherwise, once every request read is answered."""
        self._reader, self._writer = reader, writer
        greeting = messages.encode_append_stream_ready(self._window, self._requests_max)
        writer.write_metadata(pa.py_buffer(greeting))
        helper = threading.Thread(target=self._work, name="odradek-append-stream", daemon=True)
        helper.start()
        try:
            self._work()
        finally:
            helper.join()
        if self._ended is not None:
            raise self._ended

    # -- the two roles ----------------------------------------------------------------------

    def _work(self) -> None:
        with self._condition:
            role = self._claim()
        while role is not None:
            role = self._read() if role is _READ else self._answer_oldest()

    def _claim(self) -> object | None:
        """The role this thread takes next (the condition is held), waiting until one
        is free; None once everything read is answered and nothing more will be read.

        Answering comes first: a thread that has just read a request answers it itself
        when nobody else is answering, so a lone request is not handed to the other
        thread on its way to the fsync; the other thread is woken to read meanwhile."""
        while True:
            if self._waiting and not self._answering:
                self._answering = True
                return _ANSWER
            if not self._finished and not self._reading and len(self._waiting) < self._window:
                self._reading = True
                return _READ
            if self._finished and not self._waiting:
                return None
            self._condition.wait()

    def _read(self) -> object | None:
        """Read one message and submit its requests (or refuse them); then claim the
        next role."""
        entries: list[_Entry] = []
        end: BaseException | None = None
        finished = False
        if self._reader is None:  # cannot happen: serve() sets it before any thread runs
            raise RuntimeError("an append stream has no reader")
        try:
            chunk = self._reader.read_chunk()
        except StopIteration:
            finished = True
        except Exception as exc:  # noqa: BLE001 - the transport failed: the client is gone
            end = exc
        else:
            if not self._serving():
                entries = [_Entry(request_id, refusal=self._refusal()) for request_id in _request_ids(chunk)]
                end = self._refusal()
            else:
                try:
                    entries = self._take(chunk)
                except InvalidRequest as exc:  # a request nobody can be answered for
                    end = exc
                except Exception as exc:  # ends this stream, not the server
                    log.exception("an append stream failed unexpectedly")
                    end = exc
        refused = [entry for entry in entries if entry.pending is None]
        if refused:  # answered at once
            self._write_answers([self._answer(entry) for entry in refused])
        with self._condition:
            self._reading = False
            self._waiting.extend(entry for entry in entries if entry.pending is not None)
            if end is not None or finished:
                self._finished = True
                if self._ended is None:
                    self._ended = end
            self._condition.notify_all()
            return self._claim()

    def _answer_oldest(self) -> object | None:
        """Wait for the oldest request's append and write its answer; to a client that
        groups, with those of the requests after it that are durable by then (one
        fsync covers them: one message wakes all their threads, whose next appends
        then travel together). Claim the next role."""
        with self._condition:
            first = self._waiting[0]
        answers = [self._answer(first)]
        entries = [first]
        if self._requests_max > 1:
            with self._condition:
                following = list(itertools.islice(self._waiting, 1, self._requests_max))
            for entry in following:
                ready = getattr(entry.pending, "ready", None)
                if ready is None or not ready():
                    break
                answers.append(self._answer(entry))
                entries.append(entry)
        self._write_answers(answers)
        with self._condition:
            for _ in entries:
                self._waiting.popleft()
            self._answering = False
            self._condition.notify_all()
            return self._claim()

    def _write_answers(self, answers: list[bytes]) -> None:
        """Write answers: grouped for a client that groups (at most ``requests_max`` a
        message; an answer with versions as Arrow IPC goes alone), else one a message."""
        if self._requests_max == 1:
            for answer in answers:
                self._write(answer)
            return
        lines = [answer for answer in answers if b"\n" not in answer]
        for answer in answers:
            if b"\n" in answer:
                self._write(answer)
        for start in range(0, len(lines), self._requests_max):
            self._write(messages.encode_append_answers(lines[start : start + self._requests_max]))

    def _write(self, answer: bytes) -> None:
        """Write one answer (from either role); nothing more once the client is gone."""
        with self._write_lock:
            if self._broken or self._writer is None:
                return
            try:
                self._writer.write_metadata(pa.py_buffer(answer))
            except (flight.FlightError, pa.ArrowException) as exc:
                log.debug("append stream: the client went away: %s", exc)
                self._broken = True

    def _take(self, chunk: flight.FlightStreamChunk) -> list[_Entry]:
        """The entries of one message's requests: each submitted, or refused. Raises
        only for a request that cannot be answered (no readable id)."""
        metadata = chunk.app_metadata
        if metadata is None or not metadata.size:
            raise InvalidRequest(
                'every request of an append stream carries app_metadata {"id", "topic", ...options}'
            )
        batch = chunk.data
        rows = 0 if batch is None else batch.num_rows
        requests = messages.decode_append_requests(metadata.to_pybytes(), rows)
        entries = [_Entry(request.request_id, request.topic) for request in requests]
        for entry, request in zip(entries, requests, strict=True):
            entry.refusal = request.refused
        if batch is None:
            for entry in entries:
                entry.refusal = entry.refusal or InvalidRequest(
                    "an append request carries a record batch: the records to append"
                )
            return entries
        del chunk
        if all(entry.refusal is not None for entry in entries):
            return entries
        size = batch.get_total_buffer_size()
        try:
            reservation = self._reserve(size)
        except RequestTooLarge as exc:
            del batch  # its memory goes before the refusal is answered
            self._give_back_memory()
            for entry in entries:
                entry.refusal = entry.refusal or exc
            return entries
        except OdradekError as exc:
            for entry in entries:
                entry.refusal = entry.refusal or exc
            return entries
        start = 0
        last: _Entry | None = None
        for entry, request in zip(entries, requests, strict=True):
            records = batch if len(requests) == 1 else batch.slice(start, request.rows)
            start += request.rows
            if entry.refusal is not None:
                continue
            entry.size = size * request.rows // rows
            self._submit_one(entry, records, request)
            if entry.pending is not None:
                last = entry
        if last is None:
            reservation.release()
        else:
            last.reservation = reservation
        return entries

    def _submit_one(self, entry: _Entry, batch: pa.RecordBatch, request: messages.AppendRequest) -> None:
        """Submit one request's append, or note why it was refused."""
        entry.started = time.perf_counter()
        try:
            entry.pending = self._submit(request.topic, batch, request.options, entry.size)
        except OdradekError as exc:
            entry.refusal = exc
        except (pa.ArrowException, UnicodeDecodeError) as exc:
            entry.refusal = InvalidRequest(f"could not read the request: {exc}")
        except Exception as exc:  # a bug must not end the other appends of the stream
            log.exception("an append of an append stream failed unexpectedly")
            entry.refusal = OdradekError(f"internal server error in an append: {type(exc).__name__}: {exc}")

    def _answer(self, entry: _Entry) -> bytes:
        """The answer's bytes, once the entry's append is durable (or refused)."""
        try:
            if entry.pending is not None:
                result = entry.pending.wait()
                if self._observer is not None:
                    seconds = time.perf_counter() - entry.started
                    self._observer.appended(entry.topic, result.count, entry.size, seconds)
                return messages.encode_append_result(result, entry.request_id)
        except OdradekError as exc:
            entry.refusal = exc
        except Exception as exc:  # answered as an internal error; the stream goes on
            log.exception("waiting for an append of an append stream failed unexpectedly")
            entry.refusal = OdradekError(f"internal server error in an append: {type(exc).__name__}: {exc}")
        finally:
            if entry.reservation is not None:
                entry.reservation.release()
        refusal = entry.refusal or OdradekError("an append request was neither submitted nor refused")
        if self._observer is not None:
            self._observer.failed(CALL, refusal.code)
        return messages.encode_append_refusal(entry.request_id, refusal)


_READ = object()
_ANSWER = object()


def _request_ids(chunk: flight.FlightStreamChunk) -> list[int]:
    """The ids of a message's requests that can be read (none if its metadata cannot)."""
    metadata = chunk.app_metadata
    if metadata is None or not metadata.size:
        return []
    rows = 0 if chunk.data is None else chunk.data.num_rows
    try:
        requests = messages.decode_append_requests(metadata.to_pybytes(), rows)
    except InvalidRequest:
        return []
    return [request.request_id for request in requests]


def _shutting_down() -> Unavailable:
    return Unavailable(
        "the server is shutting down: this append was not written; retry it against a running server"
    )
