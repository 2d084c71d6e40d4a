"""Fixtures of the console's tests: a real `odradek serve` and Debian's headless Chromium,
one of each per module (each test makes its own topics and groups)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The helpers beside this file are imported by name under any --import-mode.
sys.path.insert(0, str(Path(__file__).parent))

from console_server import Served

# Playwright's own browser builds are not downloaded: the tests drive Debian's chromium
# (./dev setup installs it).
CHROMIUM = os.environ.get("ODRADEK_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    server = Served(str(tmp_path_factory.mktemp("data")))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (./dev setup installs Debian's)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()
