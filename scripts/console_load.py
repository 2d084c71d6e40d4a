"""The web console's page load time in headless Chromium.

    python scripts/console_load.py [--rounds 10] [--topics 20] [--chromium /usr/bin/chromium]

Starts one ``odradek serve`` on free loopback ports with ``--topics`` topics of 100
records each, then opens ``/ui/`` (the Topics page) ``--rounds`` times, each in a new
browser context (a cold cache: the page and its assets are fetched every time), and
reports the medians (and the slowest round) of:

* DOMContentLoaded: from the start of the navigation to the end of its
  DOMContentLoaded event (Navigation Timing);
* first contentful paint (Paint Timing): the page's header drawn;
* data shown: from the start of the navigation until the topics table holds a row per
  topic (the page's first call to /v1/console/topics answered and rendered).

Prints one line per figure and a JSON document of them at the end. A measurement, not a
test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from typing import Any

DATA_SHOWN = """(count) => document.querySelectorAll("[data-testid=topics] tbody tr").length >= count
    ? performance.now() : null"""
TIMINGS = """() => {
    const navigation = performance.getEntriesByType("navigation")[0];
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    return {dom: navigation.domContentLoadedEventEnd, paint: paint ? paint.startTime : null};
}"""


def start_server(data_dir: str) -> tuple[subprocess.Popen[bytes], str]:
    command = [
        sys.executable, "-m", "odradek.cli.main", "serve", "--data-dir", data_dir,
        "--listen", "127.0.0.1:0", "--kafka-listen", "off", "--registry-listen", "127.0.0.1:0", "--no-fsync",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    line = process.stdout.readline().decode()
    match = re.search(r"registry=(\S+)", line)
    if match is None:
        process.kill()
        raise SystemExit(f"odradek serve did not start: {line!r}")
    return process, match.group(1)


def post(base: str, path: str, body: Any) -> None:
    request = urllib.request.Request(
        base + path, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()


def measure(base: str, rounds: int, topics: int, chromium: str) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    figures: dict[str, list[float]] = {
        "dom_content_loaded_ms": [],
        "first_contentful_paint_ms": [],
        "data_shown_ms": [],
    }
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            for _ in range(rounds):
                context = browser.new_context()
                page = context.new_page()
                page.goto(base + "/ui/")
                shown = page.wait_for_function(DATA_SHOWN, arg=topics, timeout=60_000).json_value()
                timings = page.evaluate(TIMINGS)
                figures["dom_content_loaded_ms"].append(timings["dom"])
                if timings["paint"] is not None:
                    figures["first_contentful_paint_ms"].append(timings["paint"])
                figures["data_shown_ms"].append(shown)
                context.close()
        finally:
            browser.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--topics", type=int, default=20)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        process, base = start_server(data_dir)
        try:
            for index in range(arguments.topics):
                name = f"load.topic-{index:03d}"
                post(base, "/v1/topics", {"name": name})
                post(
                    base,
                    f"/v1/topics/{name}/records",
                    {"records": [{"key": f"k{i}", "value": "v" * 100} for i in range(100)]},
                )
            figures = measure(base, arguments.rounds, arguments.topics, arguments.chromium)
        finally:
            process.terminate()
            process.wait(timeout=60)
    summary: dict[str, Any] = {"rounds": arguments.rounds, "topics": arguments.topics}
    for name, values in figures.items():
        if values:
            summary[name] = {"median": round(statistics.median(values), 1), "max": round(max(values), 1)}
            print(f"{name:28} median {statistics.median(values):7.1f} ms   slowest {max(values):7.1f} ms")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
