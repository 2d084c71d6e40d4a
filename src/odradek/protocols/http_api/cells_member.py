"""The HTTP API's consumer-group member by pattern over every cell (decision 0039),
without IO of its own.

A group subscribing to a pattern over a cluster whose topics are spread over cells
reads topics of every cell, and each cell's topics are read by the groups of the
engine serving that cell (decision 0038). An HTTP member joining by pattern is
therefore made a member of the group *in every cell*, with one member id: the agent
the join reached joins it in each cell (here when it serves the cell, else through
the agent that does, the join forwarded with the client's credentials and the id in
``X-Odradek-Member``).

Nothing about the member is kept by the agent that joined it: its id begins with
:data:`~odradek.protocols.http_api.cells.MEMBER_PREFIX`, which sends every request
for it, at any agent, to every cell (http_api/cells.py's route), so a client behind a
load balancer may poll through one agent and acknowledge through another:

* **poll**: groups/parts.py's, starting at a random cell (every cell is asked first
  as often as any other), each cell's part a poll of that cell's member;
* **ack / nack**: the deliveries split by their topic's cell, each cell settles its
  own, the counts added up and the rejections listed together;
* **leave**: the member leaves every cell; ``404`` only when no cell knew it.

Each cell's group is a whole group: it keeps its own windows, leases, attempts, dead
letters and member lease, so per-key order and the key as the failure domain hold as
on a single node. A cell whose member expired (silent for ``ack_timeout``) answers a
poll ``404 unknown_member``: the member is then made to leave every other cell too
and the client joins again, as on a single node. A request whose body is not what the
API takes is sent as it is to the first cell, whose refusal is the answer.
"""

from __future__ import annotations

import concurrent.futures
import json
import random
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from odradek import limits
from odradek.errors import OdradekError
from odradek.groups.options import check_delay, check_poll
from odradek.groups.parts import poll_parts, together
from odradek.protocols.http_api.cells import MEMBER_PREFIX
from odradek.protocols.http_api.routes import ApiResponse

T = TypeVar("T")

# The header a join forwarded to another agent names the member's id with.
MEMBER_HEADER = "X-Odradek-Member"

POLL_FIELDS = frozenset({"max_records", "timeout", "value_encoding"})
SETTLE_FIELDS = frozenset({"deliveries", "delay"})


class Ask(Protocol):
    """The answer of ``cell``'s API to ``method path`` with ``body`` (a join with
    ``member``: the id to join as)."""

    def __call__(
        self, cell: str, method: str, path: str, body: bytes, member: str | None = None
    ) -> ApiResponse: ...


def new_member_id() -> str:
    return MEMBER_PREFIX + uuid.uuid4().hex


class _Refused(Exception):
    """A cell's refusal, which is the request's answer."""

    def __init__(self, answer: ApiResponse) -> None:
        super().__init__(answer.status)
        self.answer = answer


class MemberOverCells:
    """One request about a member over ``cells`` (the module's docstring).
    ``cell_of`` gives a topic's cell (engine names); ``prefix`` is what the principal's
    namespace puts before its topics' names (the deliveries name topics as it says
    them)."""

    def __init__(self, cells: Sequence[str], ask: Ask, cell_of: Callable[[str], str], prefix: str) -> None:
        self._cells = list(cells)
        self._ask = ask
        self._cell_of = cell_of
        self._prefix = prefix
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def answer(self, method: str, path: str, body: bytes) -> ApiResponse:
        """The answer to ``method path`` (``/v1/groups/{g}/members[/{m}[/action]]``)."""
        segments = path.strip("/").split("/")
        with concurrent.futures.ThreadPoolExecutor(
            max_workers=len(self._cells), thread_name_prefix="odradek-api-member"
        ) as pool:
            self._pool = pool
            try:
                if len(segments) == 4 and method == "POST":
                    return self._join(path, body)
                if len(segments) == 5 and method == "DELETE":
                    return self._leave(path)
                if len(segments) == 6 and method == "POST" and segments[5] == "poll":
                    return self._poll(path, body)
                if len(segments) == 6 and method == "POST" and segments[5] in ("ack", "nack"):
                    return self._settle(path, body)
            except _Refused as refused:
                return refused.answer
        return self._ask(self._cells[0], method, path, body)  # refused as one node refuses it

    # -- the member's calls ---------------------------------------------------------

    def _join(self, path: str, body: bytes) -> ApiResponse:
        member = new_member_id()
        calls = [
            (index, lambda cell=cell: self._ask(cell, "POST", path, body, member))
            for index, cell in enumerate(self._cells)
        ]
        answers = self._together(calls)
        refused = next((answer for answer in answers if answer.status >= 300), None)
        if refused is None:
            return answers[0]
        joined = [cell for cell, answer in zip(self._cells, answers, strict=True) if answer.status < 300]
        self._leave_cells(f"{path.rstrip('/')}/{member}", joined)
        return refused

    def _leave(self, path: str) -> ApiResponse:
        answers = self._leave_cells(path, self._cells)
        left = [answer for answer in answers if answer.status < 300]
        if left:
            return left[0]
        return answers[0]  # no cell knew the member (404), or the first other refusal

    def _poll(self, path: str, body: bytes) -> ApiResponse:
        asked = _poll_request(body)
        if asked is None:
            return self._ask(self._cells[0], "POST", path, body)
        max_records, timeout, encoding = asked

        def poll(index: int, budget: int, wait: float) -> list[Any]:
            sent = json.dumps({"max_records": budget, "timeout": wait, "value_encoding": encoding})
            answer = self._ask(self._cells[index], "POST", path, sent.encode())
            deliveries = _document(answer).get("deliveries")
            if not isinstance(deliveries, list):
                raise _Refused(_unreadable(self._cells[index], "a poll"))
            return deliveries

        try:
            deliveries = poll_parts(
                len(self._cells),
                random.randrange(len(self._cells)),
                max_records,
                timeout,
                poll,
                lambda _delivery: 1,
                lambda calls, _wait: self._together(calls),
                # Records in hand are answered despite another cell's failure, which
                # the next poll meets again; not a cell that forgot the member (below).
                lambda failure: not (isinstance(failure, _Refused) and failure.answer.status == 404),
            )
        except _Refused as refused:
            if refused.answer.status == 404:  # the member expired in a cell: it leaves them all
                self._leave_cells(path.rsplit("/", 1)[0], self._cells)
            raise
        member = path.strip("/").split("/")[4]
        return ApiResponse.of({"member": member, "deliveries": deliveries})

    def _settle(self, path: str, body: bytes) -> ApiResponse:
        document = _settle_request(body)
        if document is None:
            return self._ask(self._cells[0], "POST", path, body)
        by_cell: dict[str, list[Any]] = {}
        for delivery in document["deliveries"]:
            by_cell.setdefault(self._cell(delivery["topic"]), []).append(delivery)
        calls = [
            (index, lambda cell=cell: self._ask(cell, "POST", path, _with(document, by_cell[cell])))
            for index, cell in enumerate(self._cells)
            if cell in by_cell
        ]
        settled = 0
        rejected: list[Any] = []
        for cell, answer in zip(
            [cell for cell in self._cells if cell in by_cell], self._together(calls), strict=True
        ):
            result = _document(answer)
            count, refusals = result.get("settled"), result.get("rejected")
            if not isinstance(count, int) or not isinstance(refusals, list):
                raise _Refused(_unreadable(cell, "an ack"))
            settled += count
            rejected.extend(refusals)
        return ApiResponse.of({"settled": settled, "rejected": rejected})

    # -- inside -----------------------------------------------------------------------

    def _leave_cells(self, path: str, cells: Sequence[str]) -> list[ApiResponse]:
        calls = [
            (index, lambda cell=cell: self._ask(cell, "DELETE", path, b""))
            for index, cell in enumerate(cells)
        ]
        return self._together(calls) if calls else []

    def _cell(self, topic: str) -> str:
        """The cell of the topic a delivery names (the home cell for one the cluster
        does not place, whose group answers it as unknown)."""
        try:
            return self._cell_of(self._prefix + topic)
        except OdradekError:
            return self._cells[0]

    def _together(self, calls: Sequence[tuple[int, Callable[[], T]]]) -> list[T]:
        """Each call's answer, in order, the calls made at the same time (one: here);
        the first failure is raised once every call ended. Each call is bounded in time
        by the forward it makes (``limits.registry_forward_seconds`` past its wait)."""
        if len(calls) == 1:
            return [calls[0][1]()]
        assert self._pool is not None
        return together(self._pool, calls)


def _document(answer: ApiResponse) -> dict[str, Any]:
    """A cell's answer's document; _Refused with the answer when it refused."""
    if answer.status >= 300:
        raise _Refused(answer)
    try:
        document = answer.document()
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise _Refused(_unreadable("a cell", "a request"))
    return document


def _unreadable(cell: str, what: str) -> ApiResponse:
    message = f"{cell} answered {what} of a member over cells with a document the API does not send"
    return ApiResponse.of({"code": "error", "message": message, "details": {}}, 502)


def _poll_request(body: bytes) -> tuple[int, float, str] | None:
    """A poll's max_records (at most ``limits.http_read_records_max``), timeout and
    value encoding; None for a body the API refuses."""
    try:
        document = json.loads(body) if body.strip() else {}
        if not isinstance(document, dict) or document.keys() - POLL_FIELDS:
            return None
        max_records, timeout = check_poll(document.get("max_records", 100), document.get("timeout", 1.0))
    except (ValueError, RecursionError, OdradekError):
        return None
    encoding = document.get("value_encoding", "auto")
    if timeout > limits.http_poll_seconds_max or encoding not in ("auto", "base64"):
        return None
    return min(max_records, limits.http_read_records_max), timeout, encoding


def _settle_request(body: bytes) -> dict[str, Any] | None:
    """An ack's or a nack's document, each delivery naming its topic; None for a body
    the API refuses."""
    try:
        document = json.loads(body)
        if not isinstance(document, dict) or document.keys() - SETTLE_FIELDS:
            return None
        check_delay(document.get("delay", 0.0))
    except (ValueError, RecursionError, OdradekError):
        return None
    deliveries = document.get("deliveries")
    if not isinstance(deliveries, list) or not deliveries:
        return None
    if not all(isinstance(entry, dict) and isinstance(entry.get("topic"), str) for entry in deliveries):
        return None
    return document


def _with(document: dict[str, Any], deliveries: list[Any]) -> bytes:
    return json.dumps({**document, "deliveries": deliveries}).encode()
