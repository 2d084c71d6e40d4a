"""Read-your-writes across a derived view: append an order, then see it in the view.

    python scripts/views_demo.py [--threads 4] [--orders 50]

Writes a small reducer module (``shop_reducers``: the order ids of each customer, keyed
by the order's JSON ``customer``) to a temporary directory on ``sys.path``, opens an
embedded node, creates the view ``orders_by_customer`` over ``orders.>``, and has
several threads each append orders with ``wait_for=["view:orders_by_customer"]`` and
read the customer's state right after each append. Every read sees its order; the
script prints how many did (and exits 1 if any did not).

The same works against a server (``odradek.connect``) whose Python can import the
reducer module: put it on the server's PYTHONPATH.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import odradek

REDUCERS = '''
import json


def orders(state, record):
    """The sorted order ids (record keys) of a customer, as JSON."""
    ids = set(json.loads(state)) if state else set()
    ids.add(record["key"].decode())
    return json.dumps(sorted(ids)).encode()


def customer(record):
    """The view key of an order: its JSON ``customer``."""
    return json.loads(record["value"])["customer"].encode()
'''


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--orders", type=int, default=50, help="orders per thread")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "shop_reducers.py").write_text(REDUCERS)
        sys.path.insert(0, directory)
        with odradek.open(Path(directory) / "data") as client:
            client.create_topic("orders.eu")
            client.create_view(
                "orders_by_customer", "orders.>", "shop_reducers:orders", key="shop_reducers:customer"
            )
            seen: list[bool] = []
            lock = threading.Lock()

            def shop(number: int) -> None:
                customer = f"customer-{number}"
                for index in range(args.orders):
                    order_id = f"order-{number}-{index}"
                    value = json.dumps({"customer": customer, "total": index}).encode()
                    client.append(
                        "orders.eu",
                        [{"key": order_id.encode(), "value": value}],
                        wait_for=["view:orders_by_customer"],
                    )
                    state = client.view_get("orders_by_customer", customer)
                    with lock:
                        seen.append(state is not None and order_id in json.loads(state))

            started = time.perf_counter()
            threads = [threading.Thread(target=shop, args=(number,)) for number in range(args.threads)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - started
            print(
                f"{len(seen)} appends from {args.threads} threads in {seconds:.2f} s; "
                f"the order was in the view right after its append {sum(seen)} times, "
                f"missing {seen.count(False)}"
            )
            print(client.view_scan("orders_by_customer", b"customer-0").to_pylist()[0]["state"][:80])
            return 0 if all(seen) else 1


if __name__ == "__main__":
    sys.exit(main())
