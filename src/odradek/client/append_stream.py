"""The remote client's append stream: its single appends, from any number of threads,
over one long-lived DoExchange (``{"kind": "append"}``; docs/flight-protocol.md,
docs/decisions/0009-append-stream.md).

Theory of operation
-------------------
A thread that appends takes a request id, registers itself as waiting for it, writes
its batch (tagged by the id) and waits for the answer with that id. Answers come back
on the one stream in the order the server finishes them, so whoever reads the stream
hands each answer to the thread it belongs to. No thread is dedicated to reading:
the waiting threads take turns (leader and followers). One of them reads until its
own answer arrives, passing on those of others; then it steps down and wakes another
waiting thread to read. A lone thread thus reads its own answer, with no hand-over
between threads; many threads share one reader at a time.

Rules
-----
* At most ``window`` requests are in flight (the smaller of the client's and the one
  the server announced when the stream opened); a thread beyond it waits for a slot.
* Writes to the stream are serialized by a lock; a thread's appends go out, and are
  written by the server, in the order it makes them.
* If the stream fails (the server went away, the connection broke), every request
  without an answer gets the error at once and the stream is dropped; the next append
  opens a new one. An error the server sent as it ended the stream (it drains) means
  that the requests it did not answer were not written; a broken connection leaves
  each unanswered append unknown, and the error says so: a retry with the same
  producer id and sequence is then written at most once.
* Requests that threads queue while another thread writes go out together: the
  writing thread, once done, writes everything queued meanwhile as one message (up to
  the ``requests_max`` the server announced and ``limits.append_stream_group_bytes_max``
  bytes), so concurrent appenders share a message each way, not only an fsync. A lone
  thread's request goes out at once, alone. Each request is still its own append with
  its own answer; queue order is write order, so one thread's appends keep their order.
* The stream is closed once idle for ``limits.append_stream_idle_seconds`` (a server
  that drains waits for open streams); the next append opens it again.
* A server without append streams (an older one) refuses the stream's command with
  ``invalid_request``; the client then says so (``append`` returns None) and the
  caller appends over DoPut from then on.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Iterator

import pyarrow as pa
import pyarrow.flight as flight

from odradek import api, limits
from odradek.errors import ClosedError, InvalidRequest, OdradekError, Unavailable
from odradek.protocols.flight import messages
from odradek.records import INPUT_SCHEMA
from odradek.types import AppendResult

# Translates Flight and Arrow errors into OdradekErrors (remote.py's ``_errors``).
Translate = Callable[[], contextlib.AbstractContextManager[None]]
# Turns a Flight error without Odradek details into an OdradekError (remote.py).
TranslateError = Callable[[flight.FlightError, str], OdradekError]


class _Waiter:
    """One request in flight: its thread waits on ``event`` for its answer, or for its
    turn to read the stream (``sleeping``: it waits there now)."""

    __slots__ = ("answer", "done", "event", "sleeping")

    def __init__(self) -> None:
        self.event = threading.Event()
        self.done = False
        self.sleeping = False
        self.answer: AppendResult | OdradekError | None = None

    def settle(self, answer: AppendResult | OdradekError) -> None:
        self.answer = answer
        self.done = True
        self.event.set()


class _Stream:
    """One open append stream (DoExchange) and its requests in flight."""

    def __init__(
        self,
        writer: flight.FlightStreamWriter,
        reader: flight.FlightStreamReader,
        window: int,
        url: str,
        translate_error: TranslateError,
        requests_max: int = 1,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._url = url
        self._translate_error = translate_error
        self._slots = threading.BoundedSemaphore(window)
        self._requests_max = requests_max
        self._write_lock = threading.Lock()
        # Requests waiting to be written (request id, tagged options, batch), and whether
        # a thread writes them now; guarded by the queue lock.
        self._queue_lock = threading.Lock()
        self._queue: collections.deque[tuple[int, bytes, pa.RecordBatch]] = collections.deque()
        self._sending = False
        self._lock = threading.Lock()  # guards the fields below
        self._reading = False  # a thread reads the stream now
        self._ids = itertools.count()
        self._waiting: dict[int, _Waiter] = {}
        self.failure: OdradekError | None = None
        self._closed = False
        self.users = 0  # threads inside ``append`` (guarded by the AppendStreams' lock)
        self.last_used = time.monotonic()

    def append(self, topic_and_options: bytes, batch: pa.RecordBatch) -> AppendResult | None:
        """The answer to one request: its result, or raises its error. None if the
        stream had failed before the request was sent (nothing was sent: open a new
        stream and send it there)."""
        with self._slots:
            waiter = _Waiter()
            with self._lock:
                if self.failure is not None:
                    return None
                request_id = next(self._ids)
                self._waiting[request_id] = waiter
            if self._requests_max == 1:
                self._write(batch, messages.tag_append_request(request_id, topic_and_options))
            else:
                self._send(request_id, topic_and_options, batch)
            answer = self._wait(waiter)
        if isinstance(answer, OdradekError):
            raise answer
        return answer

    def _write(self, batch: pa.RecordBatch, metadata: bytes) -> None:
        try:
            with self._write_lock:
                self._writer.write_with_metadata(batch, pa.py_buffer(metadata))
        except (flight.FlightError, pa.ArrowException):
            pass  # the stream is broken: reading it finds its end and fails every request

    def _send(self, request_id: int, topic_and_options: bytes, batch: pa.RecordBatch) -> None:
        """Queue a request; unless another thread is writing (it will write this one
        too), write what is queued, grouped, until the queue is empty."""
        with self._queue_lock:
            self._queue.append((request_id, topic_and_options, batch))
            if self._sending:
                return
            self._sending = True
        while True:
            with self._queue_lock:
                if not self._queue:
                    self._sending = False
                    return
                group = self._take_group()
            try:
                self._write_group(group)
            except Exception as exc:  # noqa: BLE001 - answered to the waiting threads, not raised here
                self._drop(exc)

    def _write_group(self, group: list[tuple[int, bytes, pa.RecordBatch]]) -> None:
        """Write queued requests as one message (alone if there is one, or if their
        batches cannot be concatenated, as batches whose schemas carry metadata)."""
        if len(group) > 1:
            try:
                records = pa.concat_batches([batch for _, _, batch in group])
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                pass
            else:
                tagged = [(request_id, batch.num_rows, body) for request_id, body, batch in group]
                self._write(records, messages.encode_append_requests(tagged))
                return
        for request_id, body, batch in group:
            self._write(batch, messages.tag_append_request(request_id, body))

    def _drop(self, error: Exception) -> None:
        """A write failed in a way the stream cannot recover from: end the stream, so
        that every request without an answer (this group's too) gets the error."""
        self.abort(
            Unavailable(
                f"could not send an append to {self._url} ({type(error).__name__}: {error}); the "
                "appends without an answer may or may not have been written: an append retried "
                "with the same producer id and sequence is written at most once"
            )
        )

    def _take_group(self) -> list[tuple[int, bytes, pa.RecordBatch]]:
        """The queued requests that go in the next message (the queue lock is held):
        the oldest, and those after it while the group stays within the bounds."""
        group = [self._queue.popleft()]
        size = len(group[0][1]) + group[0][2].get_total_buffer_size()
        while self._queue and len(group) < self._requests_max:
            _, body, batch = self._queue[0]
            size += len(body) + batch.get_total_buffer_size()
            if size > limits.append_stream_group_bytes_max:
                break
            group.append(self._queue.popleft())
        return group

    def _wait(self, waiter: _Waiter) -> AppendResult | OdradekError:
        """Wait for the answer, reading the stream whenever no other thread does."""
        while True:
            with self._lock:
                if not waiter.done and self.failure is not None and not self._reading:
                    waiter.settle(self.failure)  # the stream ended while this one registered
                if waiter.done:
                    break
                lead = not self._reading
                self._reading = True if lead else self._reading
                waiter.sleeping = not lead
            if not lead:
                waiter.event.wait()
                waiter.event.clear()  # woken for its answer or for its turn to read
                continue
            try:
                while not waiter.done:
                    self._read_one()
            finally:
                self._step_down()
        if waiter.answer is None:  # cannot happen: done is set with the answer
            raise OdradekError(f"an append to {self._url} ended without an answer")
        return waiter.answer

    def _step_down(self) -> None:
        """Stop reading and wake a thread that waits for its turn, if any."""
        with self._lock:
            self._reading = False
            successor = next((w for w in self._waiting.values() if w.sleeping), None)
            if successor is not None:
                successor.sleeping = False
        if successor is not None:
            successor.event.set()

    def _read_one(self) -> None:
        """Read one answer and hand it to its thread; fail the stream if it ends."""
        try:
            chunk = self._reader.read_chunk()
            metadata = chunk.app_metadata
            if metadata is None:
                raise InvalidRequest(f"{self._url} sent an append stream message without an answer")
            answers = messages.decode_append_answers(metadata.to_pybytes())
        except StopIteration:
            self._fail(self._lost(None, from_server=False))
            return
        except flight.FlightError as exc:
            sent = messages.decode_error(exc.extra_info)
            self._fail(
                self._lost(sent or self._translate_error(exc, self._url), from_server=sent is not None)
            )
            return
        except (OdradekError, pa.ArrowException) as exc:
            error = exc if isinstance(exc, OdradekError) else InvalidRequest(str(exc))
            self._fail(self._lost(error, from_server=False))
            return
        with self._lock:
            waiters = [(self._waiting.pop(request_id, None), answer) for request_id, answer in answers]
        for waiter, answer in waiters:
            if waiter is not None:
                waiter.settle(answer)

    def _lost(self, error: OdradekError | None, from_server: bool) -> OdradekError:
        """The error for the requests without an answer when the stream ends."""
        if error is not None and from_server:
            return error  # the server answered all it wrote before it ended the stream
        cause = f": {error.message}" if error is not None else ""
        return Unavailable(
            f"the append stream to {self._url} broke before this append was answered{cause}. "
            "It may or may not have been written; an append retried with the same producer id "
            "and sequence is written at most once"
        )

    def _fail(self, error: OdradekError) -> None:
        """Fail every request without an answer with the stream's first failure."""
        with self._lock:
            if self.failure is None:
                self.failure = error
            failure = self.failure
            waiting = list(self._waiting.values())
            self._waiting.clear()
        for waiter in waiting:
            waiter.settle(failure)
        self.close()  # by the reader, or once no thread can start reading: failure is set

    def close(self) -> None:
        """Finish the call (idempotent). Only the reader, or a thread that knows nobody
        reads (an idle stream), may call it: gRPC must not finish a call under a read."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(flight.FlightError, pa.ArrowException, OSError):
            self._writer.done_writing()
        with contextlib.suppress(flight.FlightError, pa.ArrowException, OSError):
            self._writer.close()

    def abort(self, error: OdradekError | None = None) -> None:
        """End the stream from any thread (the client closes, or ``error``): a read in
        progress fails, so its reader fails every request without an answer and closes
        the stream."""
        with self._lock:
            if self.failure is None:  # from now on no thread starts reading
                self.failure = error or ClosedError(
                    "the client was closed before this append was answered: it may or may not "
                    "have been written"
                )
            reading = self._reading
        if not reading:
            self._fail(self.failure)
            return
        with contextlib.suppress(flight.FlightError, pa.ArrowException, OSError):
            self._reader.cancel()


class AppendStreams:
    """The append stream of one remote client, opened on first use and reopened after
    a failure or once closed for idleness."""

    def __init__(
        self,
        flight_client: flight.FlightClient,
        url: str,
        translate: Translate,
        translate_error: TranslateError,
        check_open: Callable[[], None],
        window: int = limits.append_stream_window_default,
    ) -> None:
        self._flight = flight_client
        self._url = url
        self._translate = translate
        self._translate_error = translate_error
        self._check_open = check_open
        self._window = window
        self._lock = threading.Lock()
        self._stream: _Stream | None = None
        self._supported = True
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        self._opening: flight.FlightStreamReader | None = None
        self._close_error: OdradekError | None = None

    @property
    def supported(self) -> bool:
        """False once the server turned append streams down (an older server)."""
        return self._supported

    def append(
        self,
        topic: str,
        batch: pa.RecordBatch,
        expect: api.Expect | None = None,
        expect_offset: int | None = None,
        producer: api.Producer | None = None,
    ) -> AppendResult | None:
        """Append ``batch`` (of INPUT_SCHEMA) as one request; None if this server has
        no append streams (append over DoPut instead)."""
        body = messages.encode_append_options(expect, expect_offset, producer, topic=topic)
        for _ in range(2):  # a stream found failed before anything was sent: once more
            with self._use() as stream:
                if stream is None:
                    return None
                result = stream.append(body, batch)
            if result is not None:
                return result
        raise Unavailable(f"the append stream to {self._url} keeps failing; retry later")

    @contextlib.contextmanager
    def _use(self) -> Iterator[_Stream | None]:
        stream = self._take()
        if stream is None:
            yield None
            return
        try:
            yield stream
        finally:
            with self._lock:
                stream.users -= 1
                stream.last_used = time.monotonic()

    def _take(self) -> _Stream | None:
        with self._lock:
            self._check_open()
            if self._stop.is_set():  # closed for good: the client moved on
                raise self._close_error or ClosedError("the append streams were closed")
            if not self._supported:
                return None
            stream = self._stream
            if stream is None or stream.failure is not None:
                stream = self._open()
                if stream is None:
                    self._supported = False
                    return None
                self._stream = stream
                if self._reaper is None:
                    self._reaper = threading.Thread(
                        target=self._reap, name="odradek-append-stream-reaper", daemon=True
                    )
                    self._reaper.start()
            stream.users += 1
            return stream

    def _open(self) -> _Stream | None:
        """A new stream, greeted by the server; None if the server has no append streams."""
        command = messages.encode_append_stream_command(self._window, limits.append_stream_requests_max)
        with self._translate():
            writer, reader = self._flight.do_exchange(flight.FlightDescriptor.for_command(command))
        self._opening = reader  # close() cancels it: a server that froze never greets
        try:
            try:
                if self._stop.is_set():
                    raise ClosedError("the append streams were closed")
                with self._translate():
                    writer.begin(INPUT_SCHEMA)
                    greeting = reader.read_chunk()
            except OdradekError:
                if self._stop.is_set() and self._close_error is not None:
                    raise self._close_error from None
                raise
            finally:
                self._opening = None
            if greeting.app_metadata is None:
                raise InvalidRequest(f"{self._url} opened an append stream without a greeting")
            window, requests_max = messages.decode_append_stream_greeting(greeting.app_metadata.to_pybytes())
        except StopIteration:
            _close_quietly(writer)
            raise Unavailable(f"{self._url} closed the append stream as it opened; retry") from None
        except InvalidRequest:
            _close_quietly(writer)
            return None  # a server that knows only consumer-group exchanges
        except BaseException:
            _close_quietly(writer)
            raise
        window = min(window, self._window)
        requests_max = min(requests_max, limits.append_stream_requests_max)
        return _Stream(writer, reader, window, self._url, self._translate_error, requests_max)

    def _reap(self) -> None:
        idle = limits.append_stream_idle_seconds
        while not self._stop.wait(idle / 2):
            self._close_idle(time.monotonic() - idle)

    def _close_idle(self, used_before: float) -> None:
        with self._lock:
            stream = self._stream
            if stream is None or stream.users or stream.last_used >= used_before:
                return
            self._stream = None
        stream.close()

    def close(self, error: OdradekError | None = None) -> None:
        """Close for good; appends waiting fail with ``error`` (by default: the client
        was closed)."""
        self._close_error = error
        self._stop.set()
        opening = self._opening
        if opening is not None:  # a stream being opened (under the lock): cancel its wait
            with contextlib.suppress(flight.FlightError, pa.ArrowException, OSError):
                opening.cancel()
        with self._lock:
            stream, self._stream = self._stream, None
        if stream is not None:
            stream.abort(error)


def _close_quietly(writer: flight.FlightStreamWriter) -> None:
    with contextlib.suppress(flight.FlightError, pa.ArrowException, OSError):
        writer.close()
