"""HTTP API throughput beside the native (Flight) door, in the same run.

    python scripts/http_bench.py [--records 200000] [--singles 2000] [--no-fsync]

Starts one ``odradek serve`` (fsync on unless ``--no-fsync``) on free loopback ports
and measures, one client at a time, against the same server:

* produce in batches of 100 records (~100 B values, keyed): HTTP ``POST
  /v1/topics/{topic}/records`` on one keep-alive connection, and the Python client's
  ``append`` over Flight;
* produce single records, one request (one append) each, both doors;
* tail: a topic of ``--records`` records read from the start to its end, as Server-Sent
  Events (``GET /v1/topics/{topic}/events?start=earliest&limit=N``; every event's JSON
  parsed, and once only counted, which is what the server sends), as pages of ``GET
  .../records`` (10,000 records a request), and with the Python client's ``read`` over
  Flight (Arrow batches, rows counted).

Prints one line per row (records/s) and a JSON document of them at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
from typing import Any

import odradek

VALUE = "v" * 100
BATCH = 100


def start(data_dir: str, fsync: bool) -> tuple[subprocess.Popen[bytes], str, str]:
    command = [
        sys.executable, "-m", "odradek.cli.main", "serve", "--data-dir", data_dir,
        "--listen", "127.0.0.1:0", "--kafka-listen", "off", "--registry-listen", "127.0.0.1:0",
        *([] if fsync else ["--no-fsync"]),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    match = re.search(r"ready url=(\S+) .*registry=(\S+)", line)
    if match is None:
        process.kill()
        raise SystemExit(f"odradek serve did not start: {line!r}")
    return process, match.group(1), match.group(2)


class Http:
    """One keep-alive connection to the HTTP API."""

    def __init__(self, base: str) -> None:
        parts = urllib.parse.urlsplit(base)
        assert parts.hostname is not None and parts.port is not None
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def post(self, path: str, document: Any) -> Any:
        self.connection.request("POST", path, json.dumps(document), {"Content-Type": "application/json"})
        response = self.connection.getresponse()
        body = response.read()
        if response.status >= 300:
            raise SystemExit(f"POST {path}: {response.status} {body[:500]!r}")
        return json.loads(body)


def batch(start: int, count: int) -> list[dict[str, str]]:
    return [{"key": f"k{(start + n) % 1000}", "value": VALUE} for n in range(count)]


def rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else float("inf")


def produce_http(api: Http, topic: str, records: int, size: int) -> float:
    api.post("/v1/topics", {"name": topic})
    began = time.perf_counter()
    for first in range(0, records, size):
        api.post(f"/v1/topics/{topic}/records", {"records": batch(first, size)})
    return rate(records, time.perf_counter() - began)


def produce_flight(client: Any, topic: str, records: int, size: int) -> float:
    client.create_topic(topic)
    began = time.perf_counter()
    for first in range(0, records, size):
        client.append(topic, batch(first, size))
    return rate(records, time.perf_counter() - began)


def tail_sse(base: str, topic: str, records: int, *, parse: bool = True) -> float:
    parts = urllib.parse.urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    began = time.perf_counter()
    connection.request("GET", f"/v1/topics/{topic}/events?start=earliest&limit={records}")
    response = connection.getresponse()
    seen = 0
    if not parse:  # what the server sends, without the client's per-event cost
        carried = b""  # an event's name may be split between two chunks
        while chunk := response.read1(1 << 20):
            data = carried + chunk
            seen += data.count(b"event: record")
            carried = data[-12:]  # shorter than the name: never counted twice
    for line in response if parse else ():
        if line.startswith(b'data: {"offset"'):
            json.loads(line[6:])
            seen += 1
        elif line.startswith(b"event: end"):
            break
    seconds = time.perf_counter() - began
    connection.close()
    if seen != records:
        raise SystemExit(f"the tail saw {seen} of {records} records")
    return rate(records, seconds)


def read_http(base: str, topic: str, records: int) -> float:
    """Pages of ``GET /v1/topics/{topic}/records`` (10,000 records each) to the end."""
    parts = urllib.parse.urlsplit(base)
    assert parts.hostname is not None and parts.port is not None
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    began = time.perf_counter()
    seen, offset = 0, 0
    while seen < records:
        connection.request("GET", f"/v1/topics/{topic}/records?offset={offset}&limit=10000")
        page = json.loads(connection.getresponse().read())
        seen += len(page["records"])
        offset = page["next_offset"]
    connection.close()
    return rate(records, time.perf_counter() - began)


def tail_flight(client: Any, topic: str, records: int) -> float:
    began = time.perf_counter()
    seen = 0
    for part in client.read(topic, start="earliest", wait=0.0):
        seen += part.num_rows
        if seen >= records:
            break
    seconds = time.perf_counter() - began
    if seen != records:
        raise SystemExit(f"the read saw {seen} of {records} records")
    return rate(records, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=200_000, help="records of the batched and tail rows")
    parser.add_argument("--singles", type=int, default=2_000, help="single-record appends per door")
    parser.add_argument("--no-fsync", action="store_true", help="serve without fsync")
    args = parser.parse_args(argv)
    rows: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="odradek-http-bench-") as directory:
        process, url, base = start(directory, fsync=not args.no_fsync)
        try:
            client = odradek.connect(url)
            api = Http(base)
            rows["http_produce_batch100"] = produce_http(api, "bench.http.batch", args.records, BATCH)
            rows["flight_produce_batch100"] = produce_flight(
                client, "bench.flight.batch", args.records, BATCH
            )
            rows["http_produce_single"] = produce_http(api, "bench.http.single", args.singles, 1)
            rows["flight_produce_single"] = produce_flight(client, "bench.flight.single", args.singles, 1)
            rows["http_sse_tail"] = tail_sse(base, "bench.flight.batch", args.records)
            rows["http_sse_tail_unparsed"] = tail_sse(base, "bench.flight.batch", args.records, parse=False)
            rows["http_read_pages"] = read_http(base, "bench.flight.batch", args.records)
            rows["flight_read_tail"] = tail_flight(client, "bench.flight.batch", args.records)
            client.close()
        finally:
            process.terminate()
            process.wait(timeout=60)
    for name, value in rows.items():
        print(f"{name:28} {value:>14,.0f} records/s")
    print(json.dumps({"fsync": not args.no_fsync, "records": args.records, "singles": args.singles, **rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
