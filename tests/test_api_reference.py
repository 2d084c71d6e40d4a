"""docs/api.md is what scripts/api_reference.py writes from the docstrings now.

Goal: the API reference page never drifts from the docstrings of odradek.api and the
defaults of odradek.defaults; the script refuses docstring sections it cannot render
rather than dropping their text. Method: run the script's ``render`` in-process and
compare with the page byte for byte; ``--check`` exits 1 on a stale page; the parser
is given a malformed section.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_script() -> Any:
    spec = importlib.util.spec_from_file_location("api_reference", ROOT / "scripts" / "api_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_page_is_up_to_date() -> None:
    reference = load_script()
    assert (ROOT / "docs" / "api.md").read_text() == reference.render(), (
        "docs/api.md is stale: run python scripts/api_reference.py"
    )


def test_check_fails_on_a_stale_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = load_script()
    stale = tmp_path / "api.md"
    stale.write_text(reference.render() + "a line nobody generated\n")
    monkeypatch.setattr(reference, "PAGE", stale)
    assert reference.main(["--check"]) == 1
    stale.write_text(reference.render())
    assert reference.main(["--check"]) == 0


def test_a_section_line_that_is_no_entry_is_refused() -> None:
    reference = load_script()
    doc = """Summary.

    Args:
        name: the name.

    A paragraph that slipped into the section.
    """
    with pytest.raises(ValueError, match="not an entry"):
        reference.parse_docstring(doc)
    parsed = reference.parse_docstring(
        """Summary.

        More.

        Args:
            name: the name,
                continued.

        Raises:
            InvalidRequest: when.
        """
    )
    assert (parsed.prose, parsed.args, parsed.raises) == (
        "Summary.\n\nMore.",
        {"name": "the name, continued."},
        {"InvalidRequest": "when."},
    )
