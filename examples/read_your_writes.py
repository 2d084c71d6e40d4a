"""Read-your-writes across a materialized view, under concurrency.

    python examples/read_your_writes.py [--writers 8] [--orders 25] [--customers 5] [--json]

Creates the topic ``orders.eu`` and the view ``orders_by_customer`` over ``orders.>``
(its reducer and key function are the two functions below), then runs ``--writers``
threads that each append ``--orders`` orders, one at a time, with
``wait_for=["view:orders_by_customer"]``, and read the order's customer with
``view_get`` right after each append. The customers are shared between the writers, so
every read races with other writers' appends to the same key. A read that does not
show its own order is a violation; the summary counts them (0 expected) and the script
exits 1 if there is any.

Where it runs:

* without ``$ODRADEK_URL``: an embedded engine in a temporary directory (the view
  imports this file as the module ``read_your_writes``: run it as a script, as above);
* with ``$ODRADEK_URL`` (``grpc://HOST:PORT``): that server, which imports the reducer
  by the same path, so start it with this directory on its ``PYTHONPATH``::

      PYTHONPATH=examples odradek serve --data-dir /tmp/shop &
      ODRADEK_URL=grpc://127.0.0.1:7070 python examples/read_your_writes.py

  Each run tags its order ids, so runs against one server do not mix.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from typing import Any

import odradek

TOPIC = "orders.eu"
VIEW = "orders_by_customer"
REDUCER = "read_your_writes:orders"
KEY_FUNCTION = "read_your_writes:customer"


def orders(state: bytes | None, record: dict[str, Any]) -> bytes:
    """The view's reducer: the sorted order ids (the records' keys) of a customer, as
    JSON. Applying an order twice leaves the state as it was."""
    ids = set(json.loads(state)) if state else set()
    ids.add(record["key"].decode())
    return json.dumps(sorted(ids)).encode()


def customer(record: dict[str, Any]) -> bytes:
    """The view's key function: the order's ``customer``."""
    return str(json.loads(record["value"])["customer"]).encode()


class Tally:
    """What the writers saw, shared between them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.appends = 0
        self.violations: list[str] = []
        self.errors: list[str] = []
        self.seconds: list[float] = []


def write(client: Any, writer: int, args: argparse.Namespace, run: str, tally: Tally) -> None:
    """One writer: append each order waiting for the view, then read its customer."""
    for index in range(args.orders):
        order = f"{run}-w{writer}-{index}"
        who = f"customer-{(writer + index) % args.customers}"
        value = json.dumps({"customer": who, "total": index}).encode()
        started = time.perf_counter()
        try:
            client.append(TOPIC, [{"key": order.encode(), "value": value}], wait_for=[f"view:{VIEW}"])
            state = client.view_get(VIEW, who)
        except odradek.OdradekError as exc:  # WaitTimeout included: the view did not apply it in time
            with tally.lock:
                tally.errors.append(f"{order}: {type(exc).__name__}: {exc}")
            continue
        elapsed = time.perf_counter() - started
        seen = state is not None and order in json.loads(state)
        with tally.lock:
            tally.appends += 1
            tally.seconds.append(elapsed)
            if not seen:
                tally.violations.append(order)


def run_writers(client: Any, args: argparse.Namespace) -> dict[str, Any]:
    client.create_topic(TOPIC, exist_ok=True)
    client.create_view(VIEW, "orders.>", REDUCER, key=KEY_FUNCTION, exist_ok=True)
    run = uuid.uuid4().hex[:8]
    tally = Tally()
    started = time.perf_counter()
    threads = [
        threading.Thread(target=write, args=(client, writer, args, run, tally), name=f"writer-{writer}")
        for writer in range(args.writers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = sorted(tally.seconds)

    def quantile(share: float) -> float:
        return seconds[min(len(seconds) - 1, int(share * len(seconds)))] * 1000 if seconds else 0.0

    return {
        "writers": args.writers,
        "orders": args.writers * args.orders,
        "appends": tally.appends,
        "violations": len(tally.violations),
        "errors": len(tally.errors),
        "first_problems": (tally.violations + tally.errors)[:5],
        "seconds": round(time.perf_counter() - started, 3),
        "append_and_read_ms_p50": round(quantile(0.5), 3),
        "append_and_read_ms_p99": round(quantile(0.99), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--writers", type=int, default=8, help="concurrent writer threads")
    parser.add_argument("--orders", type=int, default=25, help="orders per writer")
    parser.add_argument("--customers", type=int, default=5, help="customers the orders are spread over")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON document")
    args = parser.parse_args()
    if min(args.writers, args.orders, args.customers) < 1:
        parser.error("--writers, --orders and --customers must be at least 1")
    url = os.environ.get("ODRADEK_URL")
    if url:
        with odradek.connect(url) as client:
            summary = run_writers(client, args)
        summary["server"] = url
    else:
        with tempfile.TemporaryDirectory() as directory, odradek.open(directory) as client:
            summary = run_writers(client, args)
        summary["server"] = "embedded"
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{summary['appends']} of {summary['orders']} orders appended by {summary['writers']} writers "
            f"({summary['server']}) in {summary['seconds']} s; append + view_get p50 "
            f"{summary['append_and_read_ms_p50']} ms, p99 {summary['append_and_read_ms_p99']} ms; "
            f"{summary['violations']} violations (a view_get without its order), {summary['errors']} errors"
        )
        for problem in summary["first_problems"]:
            print(f"  {problem}")
    return 0 if summary["violations"] == 0 and summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
