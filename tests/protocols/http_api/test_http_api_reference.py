"""docs/http-api.md's reference is what scripts/http_api_reference.py writes from the
OpenAPI document now.

Goal: the HTTP API's reference never drifts from /openapi.json, its one source; the
script keeps the page's hand-written part as it is. Method: run the script's ``render``
in-process and compare with the page byte for byte; ``--check`` exits 1 on a page whose
reference was edited, 0 on a fresh one; a page without the marker line is refused.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def load_script() -> Any:
    path = ROOT / "scripts" / "http_api_reference.py"
    spec = importlib.util.spec_from_file_location("http_api_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_the_page_is_up_to_date() -> None:
    reference = load_script()
    page = (ROOT / "docs" / "http-api.md").read_text()
    assert page == reference.render(page), (
        "docs/http-api.md is stale: run python scripts/http_api_reference.py"
    )
    assert "### `POST /v1/topics/{topic}/records`" in page


def test_check_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = load_script()
    stale = tmp_path / "http-api.md"
    fresh = reference.render((ROOT / "docs" / "http-api.md").read_text())
    stale.write_text(fresh.replace("List topics", "List the topics", 1))
    monkeypatch.setattr(reference, "PAGE", stale)
    assert reference.main(["--check"]) == 1
    assert reference.main([]) == 0  # rewrites it
    assert stale.read_text() == fresh
    assert reference.main(["--check"]) == 0
    stale.write_text("# A page without the marker\n")
    with pytest.raises(ValueError, match="marker"):
        reference.main(["--check"])
