"""The console's own endpoints under ``/v1/console/``, without IO (docs/console.md).

The console reads everything else from the HTTP API and the Schema Registry endpoints;
these three answer what neither has a reason to hold:

* ``GET /v1/console/topics`` — every topic (or a pattern's) with its size and its rates,
  records/s and bytes/s over the last seconds. The rates come from samples of the
  topics' ends and sizes taken when the listing is asked for (one a second at most, the
  last ``console_rate_samples_max`` kept): no thread samples a server nobody watches.
* ``GET /v1/console/tail`` — a pattern's live tail as Server-Sent Events (tail.py).
* ``GET /v1/console/cluster`` — the cluster agent's ``cluster_status`` (what
  ``odradek cluster status`` shows), or ``{"clustered": false}`` on a single node.

Errors, draining and the event streams' slots are the HTTP API's (routes.py), and so is
authorization (decision 0020): with ``--authorize`` the listing shows the topics the
principal may describe, a tail follows the topics it may read (a topic named alone
needs ``read`` on it: 403 otherwise), and a cluster agent's status needs ``describe``
on the cluster.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any

from odradek import limits
from odradek.console.tail import PatternTail
from odradek.errors import InvalidRequest, OdradekError, TopicNotFound, Unauthorized, Unavailable
from odradek.names import is_pattern
from odradek.protocols.http_api import ApiRequest, ApiResponse, EventStream, HttpApi
from odradek.security.tenants import local_error

PREFIX = "/v1/console/"
ClusterStatus = Callable[[], dict[str, Any]]


def owns_api(path: str) -> bool:
    """Whether ``path`` is one of the console's endpoints."""
    return path.startswith(PREFIX)


class RateSampler:
    """Samples of each topic's (end offset, bytes) in time, to tell rates; thread-safe."""

    def __init__(self, samples_max: int, sample_seconds_min: float) -> None:
        self.samples_max = samples_max
        self.sample_seconds_min = sample_seconds_min
        self._lock = threading.Lock()
        self._samples: collections.deque[tuple[float, dict[str, tuple[int, int]]]] = collections.deque(
            maxlen=samples_max
        )

    def rates(
        self, now: float, current: dict[str, tuple[int, int]]
    ) -> tuple[dict[str, tuple[float, float]], float | None]:
        """Records/s and bytes/s of each topic since the oldest kept sample, and that
        sample's age (None: no earlier sample, no rates yet); keeps ``current``."""
        with self._lock:
            oldest = self._samples[0] if self._samples else None
            if not self._samples or now - self._samples[-1][0] >= self.sample_seconds_min:
                self._samples.append((now, dict(current)))
        if oldest is None or now - oldest[0] <= 0:
            return {}, None
        span = now - oldest[0]
        rates: dict[str, tuple[float, float]] = {}
        for name, (end, size) in current.items():
            before = oldest[1].get(name)
            if before is None:
                continue
            # Retention and compaction shrink a topic: its bytes rate never goes below 0.
            rates[name] = (max(0, end - before[0]) / span, max(0, size - before[1]) / span)
        return rates, span


class ConsoleApi:
    """Answers the console's endpoints for the HTTP API ``api`` serves."""

    def __init__(self, api: HttpApi, cluster_status: ClusterStatus | None = None) -> None:
        self.api = api
        self.engine = api.engine
        self.cluster_status = cluster_status
        self.sampler = RateSampler(limits.console_rate_samples_max, limits.console_rate_sample_seconds_min)
        self._routes: dict[str, Callable[[ApiRequest], ApiResponse | EventStream]] = {
            "topics": self._topics,
            "tail": self._tail,
            "cluster": self._cluster,
        }

    def handle(self, request: ApiRequest) -> ApiResponse | EventStream:
        """One request, one answer; never raises."""
        name = request.path[len(PREFIX) :].strip("/")
        handler = self._routes.get(name)
        try:
            if handler is None:
                return ApiResponse.error(_NotFound(f"no such resource: {request.path} (see /openapi.json)"))
            if request.method.upper() != "GET":
                refused = ApiResponse.error(
                    _MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
                )
                return ApiResponse(refused.status, refused.body, headers=(("Allow", "GET"),))
            if self.api._draining.is_set() or self.engine.closed:
                raise Unavailable("the server is shutting down; retry against a running server")
            return handler(request)
        except OdradekError as exc:
            return ApiResponse.error(local_error(request.namespace, exc))

    def _topics(self, request: ApiRequest) -> ApiResponse:
        namespace = request.namespace  # the principal's own topics, as it names them (decision 0028)
        pattern = request.query.get("pattern")
        if namespace.translates:
            pattern = namespace.pattern(pattern or ">")
        elif pattern is not None:
            pattern = namespace.pattern(pattern)
        names = [name for name in self.engine.list_topics(pattern) if namespace.owns(name)]
        if request.authorizer is not None:
            allowed = set(
                request.authorizer.filter(
                    request.principal, "describe", "topic", [namespace.local(name) for name in names]
                )
            )
            names = [name for name in names if namespace.local(name) in allowed]
        truncated = len(names) > limits.console_topics_max
        rows: list[dict[str, Any]] = []
        for name in names[: limits.console_topics_max]:
            try:
                info = self.engine.describe_topic(name)
            except TopicNotFound:
                continue  # deleted since it was listed
            schema = info.schema if isinstance(info.schema, dict) else None
            rows.append(
                {
                    "name": namespace.local(name),
                    "engine_name": name,
                    "records": info.records,
                    "bytes": info.bytes,
                    "keys": info.keys,
                    "first_offset": info.first_offset,
                    "next_offset": info.next_offset,
                    "segments": info.segments,
                    "cleanup": info.config.get("cleanup", "delete"),
                    "schema": None if schema is None else schema.get("kind"),
                    "status": info.status,
                    "created_at": info.created_at,
                }
            )
        now = time.monotonic()
        rates, span = self.sampler.rates(
            now, {row["engine_name"]: (row["next_offset"], row["bytes"]) for row in rows}
        )
        for row in rows:
            records_rate, bytes_rate = rates.get(row.pop("engine_name"), (None, None))
            row["records_per_second"] = records_rate
            row["bytes_per_second"] = bytes_rate
        return ApiResponse.of(
            {
                "topics": rows,
                "truncated": truncated,
                "topics_max": limits.console_topics_max,
                "rate_window_seconds": span,
                "unavailable": {
                    namespace.local(name): reason
                    for name, reason in self.engine.unavailable_topics().items()
                    if namespace.owns(name)
                },
            }
        )

    def _tail(self, request: ApiRequest) -> EventStream:
        pattern = request.query.get("pattern", "")
        if not pattern:
            raise InvalidRequest("a tail needs a pattern: a topic name or a pattern such as orders.>")
        readable: Callable[[list[str]], list[str]] | None = None
        authorizer, principal = request.authorizer, request.principal
        namespace = request.namespace  # (decision 0028)
        if authorizer is not None:
            if not is_pattern(pattern):
                authorizer.check(principal, "read", "topic", pattern)

            def readable(names: list[str]) -> list[str]:  # engine names, checked as said
                allowed = set(
                    authorizer.filter(principal, "read", "topic", [namespace.local(n) for n in names])
                )
                return [name for name in names if namespace.local(name) in allowed]

        pattern = namespace.pattern(pattern) if is_pattern(pattern) else namespace.topic(pattern)
        if not is_pattern(pattern):
            self.engine.describe_topic(pattern)  # TopicNotFound (404) for a missing topic
        start = request.query.get("start", "latest")
        if start not in ("latest", "recent", "earliest"):
            raise InvalidRequest(f"start is latest, recent or earliest, got {start!r}")
        owner = request.owner
        streams = self.api.streams
        streams.acquire(owner)
        try:
            return PatternTail(
                self.engine,
                pattern,
                start=start,
                readable=readable,
                heartbeat_seconds=limits.http_sse_heartbeat_seconds,
                stopping=self.api._draining.is_set,
                release=lambda: streams.release(owner),
                said=namespace.local,
            )
        except BaseException:
            streams.release(owner)
            raise

    def _cluster(self, request: ApiRequest) -> ApiResponse:
        if request.namespace.translates:
            raise Unauthorized(f"the cluster's status is not shown to the principals of {request.namespace}")
        if self.cluster_status is None:
            return ApiResponse.of({"clustered": False})
        if request.authorizer is not None:
            request.authorizer.check(request.principal, "describe", "cluster")
        return ApiResponse.of({"clustered": True, "status": self.cluster_status()})


class _NotFound(OdradekError):
    code = "not_found"


class _MethodNotAllowed(OdradekError):
    code = "method_not_allowed"
