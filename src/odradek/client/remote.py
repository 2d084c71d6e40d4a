"""The remote client: the API of :class:`odradek.api.Client` over Arrow Flight
(``odradek.connect(url)``); the methods' documentation is the protocol's.

Each method is one Flight call, except single appends: those of all threads share one
long-lived append stream (``client/append_stream.py``). Encoding lives in
``protocols/flight/messages.py``
and every Flight or Arrow error is translated in one place (``_errors``) back into the
OdradekError the server sent, same class and attributes. Records are converted to an
Arrow batch here (``records.to_input_batch``) because that is what travels; every
decision about them is the server's. Thread-safe: one gRPC channel, any number of
concurrent calls.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pyarrow as pa
import pyarrow.flight as flight

from odradek import api, defaults, limits
from odradek.client.append_stream import AppendStreams
from odradek.errors import (
    ClosedError,
    InvalidRequest,
    NotOwner,
    OdradekError,
    RequestTooLarge,
    StorageError,
    Unauthenticated,
    Unavailable,
    WaitTimeout,
)
from odradek.groups import GroupInfo, OffsetReset
from odradek.protocols.flight import messages
from odradek.protocols.tls import TLS_SCHEME, client_tls
from odradek.records import INPUT_SCHEMA, Records, to_input_batch
from odradek.types import AppendResult, SchemaInfo, TopicInfo

if TYPE_CHECKING:
    from odradek.client.remote_consumer import RemoteConsumer

DEFAULT_URL = defaults.url  # the name older code imports
_SCHEMES = ("grpc://", "grpc+tcp://", "grpc+tls://")


def connect(
    url: str | None = None,
    *,
    timeout: float | None = defaults.call_timeout_seconds,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    token: str | None = None,
    user: str | None = None,
    password: str | None = None,
) -> RemoteClient:
    """A client (:class:`odradek.api.Client`) of the Odradek server at ``url``.

    Connecting is lazy: an unreachable server raises ``Unavailable`` on the first call.

    Args:
        url: ``grpc://host:port`` (or ``host:port``), ``grpc+tls://host:port`` for a
            server with TLS; None for ``$ODRADEK_URL`` when it is set and not empty,
            else ``grpc://127.0.0.1:8815``, as the command line.
        timeout: seconds every call may take, except reads, polls and appends waiting
            in the append stream; None for no bound.
        tls_ca: with ``grpc+tls://``, a PEM file of the CA that signed the server's
            certificate (None: ``$ODRADEK_TLS_CA``, else the system's CAs).
        tls_cert: with ``grpc+tls://``, the client's PEM certificate for a server that
            requires client certificates (None: ``$ODRADEK_TLS_CLIENT_CERT``). Files given
            replace all three variables.
        tls_key: the private key of ``tls_cert`` (None: ``$ODRADEK_TLS_CLIENT_KEY``).
        token: an API token (``odradek token create``) or a JWT, sent on every call
            for a server with authentication (None: ``$ODRADEK_TOKEN`` when set).
        user: a user name (``odradek user add``), with ``password``, instead of a token.
        password: the password of ``user``.

    Raises:
        InvalidRequest: the URL (given or from the variable) is not a grpc:// URL; TLS
            files given for a plain URL, unreadable, not PEM, or a key that is not the
            certificate's.

    Example::

        client = odradek.connect()                        # $ODRADEK_URL or the default
        client = odradek.connect("grpc://10.0.0.5:8815")
        client = odradek.connect("grpc+tls://broker.internal:8815", tls_ca="ca.crt")
    """
    return RemoteClient(
        url,
        timeout=timeout,
        tls_ca=tls_ca,
        tls_cert=tls_cert,
        tls_key=tls_key,
        token=token,
        user=user,
        password=password,
    )


def configured_url() -> str:
    """The server to talk to when no URL is given: ``$ODRADEK_URL`` when it is set and
    not empty, else the default (``grpc://127.0.0.1:8815``), as typed."""
    return os.environ.get(defaults.url_variable) or defaults.url


def server_url(url: str | None = None) -> str:
    """The server a client talks to: ``url``, else :func:`configured_url`; normalized
    (see :func:`normalize_url`)."""
    return normalize_url(configured_url() if url is None else url)


F = TypeVar("F", bound=Callable[..., Any])


def _failover(repeatable: bool | Callable[[dict[str, Any]], bool]) -> Callable[[F], F]:
    """A method that follows a cluster's owner (see :meth:`RemoteClient._follow`).
    ``repeatable``: whether the call may be sent again after an ``Unavailable`` whose
    outcome is unknown (given the call's keyword arguments); a ``NotOwner`` refusal did
    nothing, and is followed whatever the call."""

    def decorate(method: F) -> F:
        @functools.wraps(method)
        def call(self: RemoteClient, *args: Any, **kwargs: Any) -> Any:
            return self._follow(method, repeatable, args, kwargs)

        return cast(F, call)

    return decorate


def _with_producer(kwargs: dict[str, Any]) -> bool:
    return kwargs.get("producer") is not None  # an idempotent retry is written once


def _exist_ok(kwargs: dict[str, Any]) -> bool:
    return bool(kwargs.get("exist_ok"))


class RemoteClient(api.Client):
    """``odradek.connect(url)``: the whole API against a server, or against a cluster
    (``grpc://a1:8815,a2:8815,a3:8815``): calls go to the agent that owns the data,
    following its redirects (``NotOwner``) and, when an agent cannot be reached, the
    other agents named (decision record 0013)."""

    def __init__(
        self,
        url: str | None = None,
        *,
        timeout: float | None = defaults.call_timeout_seconds,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
        token: str | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self.urls = cluster_urls(url)
        self._middleware = _credentials(token, user, password)
        self.url = self.urls[0]
        tls = client_tls(self.url, ca=tls_ca, cert=tls_cert, key=tls_key)  # see connect()
        self.tls_arguments = tls.flight_arguments() if tls is not None else {}
        self._options = flight.FlightCallOptions(timeout=timeout)
        self._stream_options = flight.FlightCallOptions()
        self.closed = False
        self._switch_lock = threading.Lock()
        # A cluster whose topics are spread over cells (decision 0032): the agent each
        # topic was last redirected to, and the connections to agents the client left
        # for another after a redirect (kept open to go back to them at no cost).
        self._routes: dict[str, str] = {}
        self._pool: dict[str, tuple[flight.FlightClient, _PutStreams, AppendStreams]] = {}
        self.failover_seconds = defaults.failover_seconds
        self._connect(self.url)
        self._consumers: weakref.WeakSet[RemoteConsumer] = weakref.WeakSet()
        self._last_call = 0.0
        if len(self.urls) > 1:  # a cluster: look out for an owner that froze or was replaced
            threading.Thread(
                target=_watch_owner, args=(weakref.ref(self),), name="odradek-owner-watch", daemon=True
            ).start()

    def _connect(self, url: str) -> None:
        pooled = self._pool.pop(url, None)
        if pooled is not None:
            self._flight, self._puts, self._appends = pooled
            self.url = url
            return
        with _errors(url):
            self._flight = flight.FlightClient(url, middleware=self._middleware, **self._tls_of(url))
        self._puts = _PutStreams(self)
        self._appends = AppendStreams(
            self._flight, url, functools.partial(_errors, url), translate_error, self._check_open
        )
        self.url = url

    def _tls_of(self, url: str) -> dict[str, Any]:
        """The FlightClient's TLS arguments for ``url`` (none for a plain one)."""
        return self.tls_arguments if url.startswith(TLS_SCHEME) else {}

    def _follow(
        self,
        method: Callable[..., Any],
        repeatable: bool | Callable[[dict[str, Any]], bool],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """``method`` on the agent that owns the data: after a redirect, or an agent
        out of reach (a repeatable call only), the call goes to the next agent, for at
        most ``failover_seconds``."""
        deadline: float | None = None
        backoff = _FAILOVER_BACKOFF_FIRST_SECONDS
        topic = args[0] if method.__name__ in _TOPIC_CALLS and args and isinstance(args[0], str) else None
        while True:
            route = self._routes.get(topic) if topic is not None else None
            if route is not None and route != self.url:
                self._switch(self.url, route, keep=True)  # where this topic's cell was last served
            url = self.url
            self._last_call = time.monotonic()
            try:
                return method(self, *args, **kwargs)
            except NotOwner as exc:
                error: OdradekError = exc
                target = exc.owner
                if topic is not None and len(self.urls) > 1:
                    # Where the topic is served now, or nowhere known: then not here
                    # first again (the agent lost its cell and knows no new owner yet).
                    self._route(topic, normalize_url(target) if target is not None else None)
            except (Unavailable, StorageError) as exc:
                self._forget_routes(url)
                # Out of reach, or its engine closed under the call (a handover): in a
                # cluster, a call safe to repeat goes to the next agent.
                allowed = repeatable(kwargs) if callable(repeatable) else repeatable
                if len(self.urls) < 2 or self.closed or not exc.retryable:
                    raise
                if not allowed:
                    if isinstance(exc, Unavailable):
                        # Its outcome is unknown, so it is not sent again; but the agent
                        # may be gone: the next call starts at the next one, which
                        # redirects it to the owner, rather than meeting the same end
                        # until the owner watch notices (up to a second).
                        self._switch(url, self._next_url(url))
                    raise
                error, target = exc, None
            now = time.monotonic()
            deadline = now + self.failover_seconds if deadline is None else deadline
            if now >= deadline or self.closed:
                raise error
            if target is not None and target != url:
                self._switch(url, normalize_url(target), keep=True)
                continue
            time.sleep(backoff)  # no owner named (a failover in progress) or out of reach
            backoff = min(backoff * 2, FAILOVER_BACKOFF_MAX_SECONDS)
            if len(self.urls) > 1:
                self._switch(url, self._next_url(url))

    def _next_url(self, url: str) -> str:
        """The agent after ``url`` in the client's list, in turn."""
        return self.urls[(self.urls.index(url) + 1) % len(self.urls)] if url in self.urls else self.urls[0]

    def _route(self, topic: str, url: str | None) -> None:
        """Remember that ``topic`` is served at ``url`` (a redirect said so; None: forget
        where); at most ``cluster_client_routes_max`` topics, the oldest forgotten first."""
        with self._switch_lock:
            self._routes.pop(topic, None)
            if url is None:
                return
            self._routes[topic] = url
            while len(self._routes) > limits.cluster_client_routes_max:
                del self._routes[next(iter(self._routes))]

    def _forget_routes(self, url: str) -> None:
        """``url`` failed a call: no topic is sent there first any more."""
        with self._switch_lock:
            for topic in [topic for topic, routed in self._routes.items() if routed == url]:
                del self._routes[topic]

    def _switch(self, failed: str, target: str, abandon: bool = False, keep: bool = False) -> None:
        """Talk to ``target`` instead of ``failed`` (unless another thread switched
        already). The old connection closes a little later: calls of other threads
        still on it end first, or fail and follow; ``keep`` (``failed`` redirected a
        call, it is alive): it stays open, for calls on the topics it serves.
        ``abandon``: ``failed`` no longer owns the data (it froze, or lost its lease):
        the appends waiting on it fail at once with ``Unavailable`` (their outcome is
        unknown; idempotent ones are sent again to ``target``)."""
        with self._switch_lock:
            if self.url != failed or self.closed or target == failed:
                return
            if target not in self.urls and len(self.urls) < limits.cluster_client_urls_max:
                self.urls.append(target)
            old = (self._flight, self._puts, self._appends)
            self._connect(target)
            if keep and not abandon:
                self._pool[failed] = old
                return
        if abandon:
            self._forget_routes(failed)
            old[2].close(
                Unavailable(
                    f"{failed} stopped owning the data while this append waited for its answer: "
                    "it may or may not have been written"
                )
            )
        closer = threading.Timer(_OLD_CONNECTION_SECONDS, _close_connection, old)
        closer.daemon = True
        closer.start()

    # -- topics -----------------------------------------------------------------------

    @_failover(_exist_ok)
    def create_topic(
        self,
        name: str,
        *,
        retention: api.Duration = defaults.retention,
        retention_bytes: api.Size = defaults.retention_bytes,
        segment_bytes: api.Size = defaults.segment_bytes,
        segment_age: api.Duration = defaults.segment_age,
        cleanup: str = defaults.cleanup,
        delete_retention: api.Duration = defaults.delete_retention,
        min_compaction_lag: api.Duration = defaults.min_compaction_lag,
        min_cleanable_dirty_ratio: float = defaults.min_cleanable_dirty_ratio,
        exist_ok: bool = False,
        schema: api.Schema | None = None,
        compatibility: str = defaults.compatibility,
        reducer: str | None = None,
        snapshot_every: int = defaults.snapshot_every,
    ) -> TopicInfo:
        body: dict[str, Any] = {
            "name": name,
            "retention": retention,
            "retention_bytes": retention_bytes,
            "segment_bytes": segment_bytes,
            "segment_age": segment_age,
            "cleanup": cleanup,
            "delete_retention": delete_retention,
            "min_compaction_lag": min_compaction_lag,
            "min_cleanable_dirty_ratio": min_cleanable_dirty_ratio,
            "exist_ok": exist_ok,
            "compatibility": compatibility,
        }
        if reducer is not None:  # only when set: a server that predates reducers refuses none
            body["reducer"] = reducer
            body["snapshot_every"] = snapshot_every
        if schema is not None:
            body["schema"] = messages.encode_schema(schema)
        return messages.decode_topic_info(self._action("create_topic", body))

    # -- schemas ----------------------------------------------------------------------

    @_failover(False)
    def set_schema(self, topic: str, schema: api.Schema, *, compatibility: str | None = None) -> SchemaInfo:
        body = {"topic": topic, "schema": messages.encode_schema(schema), "compatibility": compatibility}
        info = messages.decode_schema_info(
            messages.load(self._action("set_schema", body), "set_schema result")
        )
        if info is None:
            raise InvalidRequest("set_schema answered without a schema")
        return info

    @_failover(True)
    def get_schema(self, topic: str, version: int | None = None) -> SchemaInfo | None:
        answer = messages.load(
            self._action("get_schema", {"topic": topic, "version": version}), "get_schema result"
        )
        return messages.decode_schema_info(answer.get("schema"))

    @_failover(True)
    def schema_versions(self, topic: str) -> list[SchemaInfo]:
        infos: list[SchemaInfo] = []
        start: int | None = 1
        while start is not None:  # the server answers in pages of at most about 512 KiB
            body = {"topic": topic, "from_version": start}
            answer = messages.load(self._action("schema_versions", body), "schema_versions result")
            page = [messages.decode_schema_info(v) for v in answer.get("versions", [])]
            infos.extend(info for info in page if info is not None)
            following = answer.get("next_version")
            start = following if isinstance(following, int) and following > start else None
        return infos

    @_failover(True)
    def check_schema(self, topic: str, schema: api.Schema, *, compatibility: str | None = None) -> list[str]:
        body = {"topic": topic, "schema": messages.encode_schema(schema), "compatibility": compatibility}
        answer = messages.load(self._action("check_schema", body), "check_schema result")
        return [str(problem) for problem in answer.get("problems", [])]

    @_failover(True)
    def set_compatibility(self, topic: str, compatibility: str) -> None:
        self._action("set_compatibility", {"topic": topic, "compatibility": compatibility})

    @_failover(False)
    def delete_topic(self, name: str) -> None:
        self._action("delete_topic", {"name": name})

    @_failover(True)  # the same settings again change nothing
    def alter_topic(self, name: str, **settings: Any) -> TopicInfo:
        return messages.decode_topic_info(self._action("alter_topic", {"name": name, "settings": settings}))

    @_failover(True)
    def list_topics(self, pattern: str | None = None) -> list[str]:
        topics = messages.load(self._action("list_topics", {"pattern": pattern}), "list_topics result")
        return list(topics.get("topics", []))

    @_failover(True)
    def unavailable_topics(self) -> dict[str, str]:
        topics = messages.load(self._action("list_topics", {}), "list_topics result")
        return {str(name): str(why) for name, why in (topics.get("unavailable") or {}).items()}

    @_failover(True)
    def describe_topic(self, name: str) -> TopicInfo:
        return messages.decode_topic_info(self._action("describe_topic", {"name": name}))

    @_failover(True)
    def verify_topic(self, name: str) -> dict[str, Any]:
        return dict(messages.load(self._action("verify_topic", {"name": name}), "verify_topic result"))

    @_failover(False)
    def repair_topic(self, name: str, *, drop_range: api.DropRange) -> TopicInfo:
        body = {"name": name, "drop_range": drop_range}
        return messages.decode_topic_info(self._action("repair_topic", body))

    # -- data -------------------------------------------------------------------------

    @_failover(_with_producer)
    def append(
        self,
        topic: str,
        records: Records,
        *,
        expect: api.Expect | None = None,
        expect_offset: int | None = None,
        producer: api.Producer | None = None,
        wait_for: Sequence[str] | None = None,
        timeout: float = defaults.wait_for_timeout_seconds,
    ) -> AppendResult:
        batch = to_input_batch(records, limits.flight_message_bytes_max, "json")
        if wait_for is not None:  # refused before anything is written (views/waits.py)
            waits = {"topic": _check_str(topic, "topic"), "wait_for": wait_for, "timeout": timeout}
            self._action("check_waiters", waits)
        result = None
        if batch.schema.equals(INPUT_SCHEMA):  # typed values travel over DoPut, schema and all
            result = self._appends.append(_check_str(topic, "topic"), batch, expect, expect_offset, producer)
        if result is None:
            result = self._put_append(topic, batch, expect, expect_offset, producer)
        if wait_for is not None:
            self._wait_for(waits, result)
        return result

    def _wait_for(self, waits: dict[str, Any], result: AppendResult) -> None:
        """Synchronous commit: wait on the server for an append's waiters."""
        body = {**waits, "base_offset": result.base_offset, "count": result.count}
        options = flight.FlightCallOptions(timeout=float(waits["timeout"]) + _WAIT_FOR_MARGIN_SECONDS)
        with _errors(self.url):
            self._check_open()
            action = flight.Action("wait_for", messages.dump(body))
            results = list(self._flight.do_action(action, options))
        answer = messages.load(results[0].body.to_pybytes(), "wait_for result") if results else {}
        pending = answer.get("pending")
        if pending:
            raise WaitTimeout(str(answer.get("message", "")), [str(name) for name in pending], result)

    def _put_append(
        self,
        topic: str,
        batch: pa.RecordBatch,
        expect: api.Expect | None,
        expect_offset: int | None,
        producer: api.Producer | None,
    ) -> AppendResult:
        """One append over a DoPut stream of its own (kept for the next append): for
        servers without append streams, and for batches with typed values."""
        options = None
        if expect is not None or expect_offset is not None or producer is not None:
            options = pa.py_buffer(messages.encode_append_options(expect, expect_offset, producer))
        stream = self._puts.take(_check_str(topic, "topic"), batch.schema)
        answered = False
        try:
            with _errors(self.url):
                if options is None:
                    stream.writer.write_batch(batch)
                else:
                    stream.writer.write_with_metadata(batch, options)
                answer = stream.reader.read()
                if answer is None:  # the server ended the stream: its close carries the error
                    stream.writer.close()
                    raise Unavailable(
                        f"{self.url} closed the append without answering; it may not be written"
                    )
            answered = True
        finally:
            self._puts.give_back(stream, reusable=answered)
        return messages.decode_append_result(answer.to_pybytes())

    def append_many(
        self, topic: str, batches: Iterable[Records], *, window: int = defaults.append_window
    ) -> list[AppendResult]:
        # One DoPut stream: up to ``window`` batches travel ahead of the oldest one's
        # result, so the server prepares the next batches while the last ones sync. If
        # one is refused, the error is raised once the results before it are in. A
        # redirect (the agent does not serve the topic, or gave it up mid-stream) sends
        # the batches not yet acknowledged, and then the rest, to the agent named.
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise InvalidRequest(f"window must be an int >= 1, got {window!r}")
        source = _Unacknowledged(batches)
        results: list[AppendResult] = []
        window = min(window, limits.append_window_max)
        self._append_stream(_check_str(topic, "topic"), source, window, results)
        return results

    @_failover(False)
    def _append_stream(
        self, topic: str, source: _Unacknowledged, window: int, results: list[AppendResult]
    ) -> None:
        """``source``'s batches on one DoPut stream, each result added to ``results``
        as it comes (and its batch let go by ``source``)."""
        stream = self._puts.open(topic, window)

        def acknowledged(answer: bytes) -> None:
            results.append(messages.decode_append_result(answer))
            source.acknowledged()

        try:
            _PutPipeline(stream, window, self.url).run(source, acknowledged)
        finally:
            stream.close()

    @_failover(True)
    def read(
        self,
        pattern: str,
        *,
        start: api.Start = defaults.start,
        wait: float = defaults.read_wait_seconds,
        follow: bool = False,
        max_records: int | None = None,
        max_bytes: int | None = None,
    ) -> ReadStream:
        request = messages.ReadRequest(
            pattern=_check_str(pattern, "pattern"),
            start=messages.encode_start(start),
            wait=wait,
            follow=follow,
            max_records=max_records,
            max_bytes=max_bytes,
        )
        return ReadStream(self._get(messages.encode_ticket(request), self._stream_options), self.url)

    @_failover(True)
    def fetch(
        self,
        topic: str,
        offset: int,
        *,
        max_records: int = defaults.fetch_records_max,
        max_bytes: int = defaults.fetch_bytes_max,
    ) -> list[pa.RecordBatch]:
        request = messages.FetchRequest(_check_str(topic, "topic"), offset, max_records, max_bytes)
        return list(ReadStream(self._get(messages.encode_ticket(request), self._options), self.url))

    @_failover(True)
    def read_key(
        self,
        topic: str,
        key: api.Key,
        from_version: int = defaults.from_version,
        to_version: int | None = None,
        *,
        from_snapshot: bool = False,
    ) -> pa.Table:
        if not isinstance(from_snapshot, bool):
            raise InvalidRequest(f"from_snapshot must be True or False, got {from_snapshot!r}")
        request = messages.ReadKeyRequest(
            _check_str(topic, "topic"), messages.key_bytes(key), from_version, to_version, from_snapshot
        )
        reader = self._get(messages.encode_ticket(request), self._options)
        if from_snapshot and "snapshot" not in reader.schema.names:  # a server without snapshots
            reader.cancel()
            raise InvalidRequest(f"the server at {self.url} does not know read_key(..., from_snapshot=True)")
        return pa.Table.from_batches(list(ReadStream(reader, self.url)), schema=reader.schema)

    @_failover(True)  # the same snapshot again replaces itself
    def snapshot(self, topic: str, key: api.Key, state: bytes, *, version: int) -> None:
        body = messages.encode_snapshot(_check_str(topic, "topic"), messages.key_bytes(key), state, version)
        self._action("snapshot", body)

    @_failover(True)
    def key_version(self, topic: str, key: api.Key) -> int:
        body = {"topic": topic, "key": messages.encode_key(messages.key_bytes(key))}
        return int(messages.load(self._action("key_version", body), "key_version result")["version"])

    # -- views ------------------------------------------------------------------------

    @_failover(_exist_ok)
    def create_view(
        self,
        name: str,
        pattern: str,
        reducer: str | api.ViewFunction,
        *,
        key: str | api.ViewFunction | None = None,
        exist_ok: bool = False,
        value_format: str | None = None,
    ) -> dict[str, Any]:
        if not isinstance(reducer, str) or (key is not None and not isinstance(key, str)):
            raise InvalidRequest(
                "a remote client names a view's reducer and key function by import path "
                "('package.module:function', importable on the server)"
            )
        body = {
            "name": name,
            "pattern": pattern,
            "reducer": reducer,
            "key": key,
            "exist_ok": exist_ok,
            "value_format": value_format,
        }
        return dict(messages.load(self._action("create_view", body), "create_view result"))

    @_failover(True)
    def view_get(self, name: str, key: api.Key) -> bytes | None:
        body = {"name": name, "key": messages.encode_key(messages.key_bytes(key))}
        state = messages.load(self._action("view_get", body), "view_get result").get("state")
        return None if state is None else messages.decode_key(state, "hex")

    @_failover(True)
    def view_scan(
        self, name: str, prefix: api.Key = b"", *, after: api.Key | None = None, limit: int | None = None
    ) -> pa.Table:
        body = {
            "name": name,
            "prefix": messages.encode_key(messages.key_bytes(prefix)),
            "after": None if after is None else messages.encode_key(messages.key_bytes(after)),
            "limit": limit,
        }
        return messages.decode_view_scan(self._action("view_scan", body))

    @_failover(True)
    def describe_view(self, name: str) -> dict[str, Any]:
        return dict(messages.load(self._action("describe_view", {"name": name}), "describe_view result"))

    @_failover(True)
    def list_views(self) -> list[str]:
        return list(messages.load(self._action("list_views", {}), "list_views result").get("views", []))

    @_failover(False)
    def delete_view(self, name: str) -> None:
        self._action("delete_view", {"name": name})

    # -- consumer groups --------------------------------------------------------------

    @_failover(True)  # a join refused or never made left no member behind
    def subscribe(
        self,
        pattern: str,
        *,
        group: str,
        start: api.Start = defaults.start,
        ack_timeout: float = defaults.ack_timeout_seconds,
        max_deliveries: int = defaults.max_deliveries,
        dead_letter_topic: str | None = None,
        max_in_flight_per_key: int | None = None,
        ordering: str = defaults.ordering,
    ) -> RemoteConsumer:
        # The member lasts as long as the consumer's stream to the server, which leaves
        # the group when it ends.
        from odradek.client.remote_consumer import RemoteConsumer  # it builds on this module

        options = {
            "start": start,
            "ack_timeout": ack_timeout,
            "max_deliveries": max_deliveries,
            "dead_letter_topic": dead_letter_topic,
            "max_in_flight_per_key": max_in_flight_per_key,
            "ordering": ordering,
        }
        consumer = RemoteConsumer(self, _check_str(pattern, "pattern"), _check_str(group, "group"), options)
        self._consumers.add(consumer)
        return consumer

    @_failover(True)
    def describe_group(self, group: str) -> GroupInfo:
        info = messages.load(self._action("describe_group", {"group": group}), "describe_group result")
        try:
            return GroupInfo.from_json(info)
        except (KeyError, TypeError) as exc:
            raise InvalidRequest(f"group info from {self.url} is malformed: {exc}") from None

    @_failover(True)
    def list_groups(self) -> list[str]:
        return list(messages.load(self._action("list_groups", {}), "list_groups result").get("groups", []))

    @_failover(False)
    def delete_group(self, group: str) -> None:
        self._action("delete_group", {"group": group})

    @_failover(True)  # the same reset again moves nothing further
    def reset_offsets(
        self, group: str, to: api.Start, *, topics: str | None = None, dry_run: bool = False
    ) -> list[OffsetReset]:
        body = {"group": group, "topics": topics, "to": messages.encode_start(to), "dry_run": bool(dry_run)}
        result = messages.load(self._action("reset_offsets", body), "reset_offsets result")
        try:
            return [OffsetReset.from_json(row) for row in result["plan"]]
        except (KeyError, TypeError) as exc:
            raise InvalidRequest(f"reset_offsets result from {self.url} is malformed: {exc}") from None

    @_failover(True)
    def ping(self) -> None:
        self._action("ping", {})

    # -- Kafka partitions (for `odradek consume --partition`: not part of the client API) --

    @_failover(True)
    def _kafka_partitions(self, topic: str, start: int, end: int) -> dict[str, Any]:
        """The Kafka partition map of ``topic``'s offsets in [start, end) (the
        ``kafka_partitions`` action; protocols/kafka/partition_map.py)."""
        body = {"topic": topic, "start": start, "end": end}
        return dict(messages.load(self._action("kafka_partitions", body), "kafka_partitions result"))

    # -- cluster (for `odradek cluster`: not part of the client API, decision 0010) -----

    @_failover(True)
    def _cluster_status(self) -> dict[str, Any]:
        """The cluster as the agent this client talks to sees it (``{"cluster": None}``
        from a server outside a cluster): its role, the owner and its epoch, the agents."""
        return dict(messages.load(self._action("cluster_status", {}), "cluster_status result"))

    def _move_topic(self, topic: str, *, to: str | None = None, cell: str | None = None) -> dict[str, Any]:
        """Move ``topic`` to another cell of a cluster of several cells (decision 0032):
        the cell ``cell``, or the least loaded one agent ``to`` serves. The agent
        serving its cell releases it to the store, the agent serving the target cell
        adopts it by reference and places it there; appends meanwhile wait and retry.
        If the adoption fails the topic is taken back into its cell; if even that fails,
        it stays released (unavailable) until the move is asked again or its cell is
        next opened. Returns ``{"topic", "from_cell", "to_cell", "to_agent", "seconds"}``."""
        started = time.monotonic()
        released = messages.load(
            self._follow_action("release_topic", {"topic": topic, "to": to, "cell": cell}),
            "release_topic result",
        )
        origin, target = released.get("from_cell"), released.get("to_cell")
        if not isinstance(origin, str) or not isinstance(target, str):
            raise OdradekError(f"release_topic answered without its cells: {released!r}")
        try:
            self._follow_action("adopt_topic", {"topic": topic, "from_cell": origin, "cell": target})
        except OdradekError as exc:
            try:
                self._follow_action("adopt_topic", {"topic": topic, "from_cell": origin, "cell": origin})
            except OdradekError as undo:
                raise OdradekError(
                    f"the move of topic {topic!r} to cell {target} failed ({exc.message}) and taking it "
                    f"back into cell {origin} failed too ({undo.message}): it stays released, "
                    "unavailable, until the move is asked again or its cell is next opened"
                ) from exc
            raise type(exc)(
                f"topic {topic!r} stays in cell {origin}: its move to cell {target} failed: {exc.message}"
            ) from exc
        return {
            "topic": topic,
            "from_cell": origin,
            "to_cell": target,
            "to_agent": released.get("to_agent"),
            "seconds": time.monotonic() - started,
        }

    @_failover(False)
    def _follow_action(self, name: str, body: dict[str, Any]) -> bytes:
        """One action on the agent it concerns, following its redirects (not sent again
        after an unknown outcome)."""
        return self._action(name, body)

    @_failover(False)
    def _hand_over(self, to: str | None = None) -> dict[str, Any]:
        """Ask the owner of a cluster's data to hand it over to agent ``to`` (another
        live agent when None); returns ``{"from", "to"}`` at once (decision 0013)."""
        return dict(messages.load(self._action("handover", {"to": to}), "handover result"))

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with self._switch_lock:
                pooled, self._pool = list(self._pool.values()), {}
            for connection in pooled:
                _close_connection(*connection)
            self._appends.close()
            self._puts.close()
            for consumer in list(self._consumers):
                consumer.close()
            with contextlib.suppress(flight.FlightError, pa.ArrowException):
                self._flight.close()

    def __enter__(self) -> RemoteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls ------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise ClosedError("the client is closed")

    def _action(self, name: str, body: dict[str, Any]) -> bytes:
        with _errors(self.url):
            self._check_open()
            results = list(self._flight.do_action(flight.Action(name, messages.dump(body)), self._options))
        if not results:
            raise OdradekError(f"{self.url} sent no result for {name}")
        return bytes(results[0].body.to_pybytes())

    def _get(self, ticket: bytes, options: flight.FlightCallOptions) -> flight.FlightStreamReader:
        with _errors(self.url):
            self._check_open()
            return self._flight.do_get(flight.Ticket(ticket), options)


# An append stream (DoPut) left idle this long is closed: a server that drains for a
# shutdown waits for open streams, and a restarted server must not meet stale ones.
put_stream_idle_seconds = 0.5


class _PutStream:
    def __init__(
        self,
        topic: str,
        schema: pa.Schema,
        writer: flight.FlightStreamWriter,
        reader: flight.FlightMetadataReader,
    ) -> None:
        self.topic = topic
        self.schema = schema  # what its batches are: a stream carries one schema
        self.writer = writer
        self.reader = reader
        self.last_used = time.monotonic()

    def close(self) -> None:
        with contextlib.suppress(flight.FlightError, pa.ArrowException):
            self.writer.done_writing()
        with contextlib.suppress(flight.FlightError, pa.ArrowException):
            self.writer.close()


class _PutStreams:
    """Open DoPut streams kept between appends, per topic and batch schema (typed values
    of a schema'd topic have a schema of their own), so that an append costs one
    message each way instead of a new gRPC call. A stream serves one append at a time;
    one that failed is closed, never reused; idle ones are closed by a reaper thread."""

    def __init__(self, client: RemoteClient) -> None:
        self._client = client
        self._idle: dict[tuple[str, pa.Schema], list[_PutStream]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None

    def take(self, topic: str, schema: pa.Schema) -> _PutStream:
        with self._lock:
            self._client._check_open()
            idle = self._idle.get((topic, schema))
            if idle:
                return idle.pop()
            if self._reaper is None:
                self._reaper = threading.Thread(target=self._reap, name="odradek-put-reaper", daemon=True)
                self._reaper.start()
        # One append at a time: with a window of 1 the server acknowledges each on the
        # call's own thread, without handing it to another.
        return self.open(topic, window=1, schema=schema)

    def open(self, topic: str, window: int, schema: pa.Schema = INPUT_SCHEMA) -> _PutStream:
        """A new DoPut stream of batches of ``schema``, on which the server keeps up to
        ``window`` appends in flight."""
        command = messages.encode_append_options(topic=topic, window=window)
        with _errors(self._client.url):
            self._client._check_open()
            writer, reader = self._client._flight.do_put(
                flight.FlightDescriptor.for_command(command), schema, self._client._stream_options
            )
        return _PutStream(topic, schema, writer, reader)

    def give_back(self, stream: _PutStream, reusable: bool) -> None:
        if reusable and not self._stop.is_set():
            stream.last_used = time.monotonic()
            with self._lock:
                self._idle.setdefault((stream.topic, stream.schema), []).append(stream)
            return
        stream.close()

    def _reap(self) -> None:
        while not self._stop.wait(put_stream_idle_seconds / 2):
            self._close_idle(time.monotonic() - put_stream_idle_seconds)

    def _close_idle(self, used_before: float) -> None:
        doomed: list[_PutStream] = []
        with self._lock:
            for target, streams in list(self._idle.items()):
                keep = [stream for stream in streams if stream.last_used >= used_before]
                doomed.extend(stream for stream in streams if stream.last_used < used_before)
                if keep:
                    self._idle[target] = keep
                else:
                    del self._idle[target]
        for stream in doomed:
            stream.close()

    def close(self) -> None:
        self._stop.set()
        self._close_idle(float("inf"))


class _Unacknowledged:
    """The batches of one ``append_many``, kept from when they are taken until their
    result came: iterating again (on the agent a redirect named) gives the batches not
    acknowledged yet, then the rest of the caller's iterable, which is read once."""

    def __init__(self, batches: Iterable[Records]) -> None:
        self._rest = iter(batches)
        self._held: collections.deque[Records] = collections.deque()  # at most the window

    def __iter__(self) -> Iterator[Records]:
        yield from list(self._held)
        for records in self._rest:
            self._held.append(records)
            yield records

    def acknowledged(self) -> None:
        self._held.popleft()


class _PutPipeline:
    """The batches of one ``append_many`` on a DoPut stream of its own.

    The calling thread converts and writes batches, at most ``window`` ahead of the
    results; a reader thread reads the results as they come, so neither side of the
    stream waits on the other (a server with a smaller window than ours stops reading
    until we read its results). The server ends the stream after a refused batch: the
    write or read that meets the end stops the pipeline, and the stream's close
    carries the server's error.
    """

    def __init__(self, stream: _PutStream, window: int, url: str) -> None:
        self._stream = stream
        self._url = url
        self._window = window
        self._permits = threading.Semaphore(window)
        self._sent: queue.SimpleQueue[bool] = queue.SimpleQueue()  # one token per batch written
        self._answered = 0
        self._acknowledged: Callable[[bytes], None] = lambda answer: None
        self._ended = threading.Event()  # the server ended the stream (an error is in its close)
        self._read_error: BaseException | None = None

    def run(self, batches: Iterable[Records], acknowledged: Callable[[bytes], None]) -> None:
        """Write ``batches``; ``acknowledged(answer)`` is called with each result, in
        order, as it comes (on the reader's thread)."""
        self._acknowledged = acknowledged
        reader = threading.Thread(target=self._read_results, name="odradek-append-results", daemon=True)
        reader.start()
        written = 0
        refused_here: OdradekError | None = None  # a batch this side could not convert
        try:
            for records in batches:
                try:
                    batch = to_input_batch(records, limits.flight_message_bytes_max, "json")
                except OdradekError as exc:
                    refused_here = exc
                    break
                self._permits.acquire()
                if self._ended.is_set():
                    break
                try:
                    self._stream.writer.write_batch(batch)
                except (flight.FlightError, pa.ArrowException):
                    self._ended.set()  # the server ended the stream; its close says why
                    break
                written += 1
                self._sent.put(True)
        finally:
            self._sent.put(False)
            reader.join()
        if self._ended.is_set():
            # A batch the server refused comes before any this side refused.
            with _errors(self._url):
                self._stream.writer.close()
            raise self._read_error or Unavailable(
                f"{self._url} ended the append stream without an answer; batches after "
                f"the {self._answered} answered may not be written"
            )
        if self._answered != written:  # cannot happen: the reader read one per batch
            raise OdradekError(f"{self._url} answered {self._answered} of {written} appends")
        if refused_here is not None:
            raise refused_here

    def _read_results(self) -> None:
        try:
            while self._sent.get():
                with _errors(self._url):
                    answer = self._stream.reader.read()
                if answer is None:
                    self._ended.set()
                    return
                self._acknowledged(answer.to_pybytes())
                self._answered += 1
                self._permits.release()
        except OdradekError as exc:
            self._read_error = exc
            self._ended.set()
        finally:
            if self._ended.is_set():
                for _ in range(self._window):  # the writer must not wait for results any more
                    self._permits.release()


class ReadStream:
    """The batches of one read, as they arrive. ``close()`` (thread-safe) cancels it;
    a read left early should be closed, or used as a context manager."""

    def __init__(self, reader: flight.FlightStreamReader, url: str) -> None:
        self._reader = reader
        self._url = url
        self._lock = threading.Lock()
        self._done = False

    def __iter__(self) -> ReadStream:
        return self

    def __next__(self) -> pa.RecordBatch:
        if self._done:
            raise StopIteration
        while True:
            try:
                with _errors(self._url):
                    chunk = self._reader.read_chunk()
            except StopIteration:
                self._done = True
                raise
            except OdradekError:
                self._done = True
                raise
            if chunk.data is not None:
                return chunk.data

    def close(self) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        with contextlib.suppress(flight.FlightError, pa.ArrowException):
            self._reader.cancel()

    def __enter__(self) -> ReadStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    """The one place where Flight and Arrow errors become OdradekErrors."""
    try:
        yield
    except flight.FlightError as exc:
        raise translate_error(exc, url) from exc
    except pa.ArrowException as exc:
        raise InvalidRequest(f"could not exchange data with {url}: {exc}") from exc


def translate_error(exc: flight.FlightError, url: str) -> OdradekError:
    sent = messages.decode_error(exc.extra_info)
    if sent is not None:
        return sent
    text = str(exc)
    if "larger than max" in text or ("exceeds" in text and "limit" in text):
        return RequestTooLarge(f"a message to or from {url} is over the transport's size limit: {text}")
    if isinstance(exc, flight.FlightUnauthenticatedError):
        return Unauthenticated(f"{url} refused the credentials: {text.splitlines()[0]}")
    if isinstance(exc, flight.FlightCancelledError):
        return ClosedError(f"the call to {url} was cancelled: {text}")
    if isinstance(exc, (flight.FlightUnavailableError, flight.FlightTimedOutError)):
        return Unavailable(f"cannot reach an Odradek server at {url}: {text}")
    return OdradekError(f"call to {url} failed: {text}")


def cluster_urls(url: str | None) -> list[str]:
    """The servers of ``url`` (see :func:`server_url`): one, or a cluster's agents
    given as ``grpc://a1:8815,a2:8815`` (each normalized; duplicates dropped)."""
    text = configured_url() if url is None else url
    if not isinstance(text, str) or not text.strip(","):
        raise InvalidRequest(f"server URL must be like {DEFAULT_URL}, got {url!r}")
    scheme = text.split("://", 1)[0] + "://" if "://" in text else ""
    urls: list[str] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        if scheme and "://" not in item:
            item = scheme + item  # grpc://a:1,b:2 names b with a's scheme
        normalized = normalize_url(item)
        if normalized not in urls:
            urls.append(normalized)
    if not urls:
        raise InvalidRequest(f"server URL must be like {DEFAULT_URL}, got {url!r}")
    if len(urls) > limits.cluster_client_urls_max:
        raise InvalidRequest(f"{len(urls)} servers given, at most {limits.cluster_client_urls_max}")
    return urls


def _close_connection(flight_client: flight.FlightClient, puts: _PutStreams, appends: AppendStreams) -> None:
    appends.close()
    puts.close()
    with contextlib.suppress(flight.FlightError, pa.ArrowException):
        flight_client.close()


def _watch_owner(client_ref: weakref.ReferenceType[RemoteClient]) -> None:
    """A cluster client's watchdog: while the client is in use, once a second, ask
    another agent (in turn) whether it owns the data; if it does, switch to it and
    abandon the calls waiting on the agent the client talked to (an owner frozen by
    SIGSTOP or a long pause keeps its connections open and answers nothing: without
    this they would wait forever)."""
    probes: dict[str, flight.FlightClient] = {}
    options = flight.FlightCallOptions(timeout=_OWNER_PROBE_SECONDS)
    turn = 0
    try:
        while True:
            time.sleep(_OWNER_PROBE_SECONDS)
            client = client_ref()
            if client is None or client.closed:
                return
            if time.monotonic() - client._last_call > _OWNER_PROBE_IDLE_SECONDS:
                del client
                continue
            current = client.url
            others = [url for url in client.urls if url != current]
            if not others:
                del client
                continue
            turn = (turn + 1) % len(others)
            other = others[turn]
            try:
                probe = probes.get(other)
                if probe is None:
                    probe = probes[other] = flight.FlightClient(
                        other, middleware=client._middleware, **client._tls_of(other)
                    )
                results = list(probe.do_action(flight.Action("cluster_status", b"{}"), options))
                status = messages.load(results[0].body.to_pybytes(), "cluster_status result")
            except (flight.FlightError, pa.ArrowException, OdradekError, IndexError, OSError):
                del client
                continue
            # Only an agent that owns the data now says so of itself; a standby's view
            # of who owns it may lag behind a change.
            # (A cluster of several cells, decision 0032, has an owner per cell: there
            # the client follows each call's redirect instead.)
            if status.get("role") == "owner" and other != current and "cells" not in status:
                client._switch(current, other, abandon=True)
            del client
    finally:
        for probe in probes.values():
            with contextlib.suppress(flight.FlightError, pa.ArrowException):
                probe.close()


# The calls on one topic (their first argument): in a cluster of several cells each
# goes first to the agent that last served the topic (RemoteClient._routes).
_TOPIC_CALLS = frozenset(
    {
        "create_topic",
        "_append_stream",
        "set_schema",
        "get_schema",
        "schema_versions",
        "check_schema",
        "set_compatibility",
        "delete_topic",
        "alter_topic",
        "describe_topic",
        "verify_topic",
        "repair_topic",
        "append",
        "append_many",
        "read",
        "fetch",
        "read_key",
        "snapshot",
        "key_version",
        "_kafka_partitions",
        "subscribe",  # a group lives in its topic's cell (decision 0032)
    }
)
_OWNER_PROBE_SECONDS = 1.0  # how often a cluster client in use asks who owns the data
_OWNER_PROBE_IDLE_SECONDS = 30.0  # a client idle this long asks nothing
_FAILOVER_BACKOFF_FIRST_SECONDS = 0.05
FAILOVER_BACKOFF_MAX_SECONDS = 0.25  # look again at least four times a second during a failover
_OLD_CONNECTION_SECONDS = 5.0  # calls still on a connection left behind end within this
_WAIT_FOR_MARGIN_SECONDS = 5.0  # a wait_for call's deadline beyond its wait: the answer's trip


TOKEN_VARIABLE = "ODRADEK_TOKEN"


def _credentials(token: str | None, user: str | None, password: str | None) -> list[Any]:
    """The Flight client middleware sending the credentials (none: no middleware)."""
    from odradek.security.flight import ClientCredentials
    from odradek.security.http import basic_header

    if user is not None or password is not None:
        if token is not None or not user or password is None:
            raise InvalidRequest("give a token, or a user and its password (not both)")
        return [ClientCredentials(basic_header(user, password))]
    token = token if token is not None else os.environ.get(TOKEN_VARIABLE) or None
    return [] if token is None else [ClientCredentials(f"Bearer {token.strip()}")]


def normalize_url(url: str) -> str:
    """``grpc://host:port`` from what a user typed (``host:port`` is accepted too)."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"server URL must be like {DEFAULT_URL}, got {url!r}")
    if "://" not in url:
        url = "grpc://" + url
    if not url.startswith(_SCHEMES):
        raise InvalidRequest(f"server URL must start with grpc:// (e.g. {DEFAULT_URL}), got {url!r}")
    return url


def _check_str(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRequest(f"{what} must be a string, got {type(value).__name__}")
    return value
