"""docs/cli.md names every `odradek serve` setting with its flag, variable and TOML key.

Goal: a setting added to `odradek serve` cannot go undocumented (the settings table had
fallen behind the code). Method: compare serve.py's Settings fields and environment
variables with the table in docs/cli.md.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from odradek.cli import serve

CLI_DOC = Path(__file__).parents[2] / "docs" / "cli.md"


def test_every_serve_setting_is_in_the_docs() -> None:
    text = CLI_DOC.read_text()
    internal = {"kafka_listen_given", "registry_listen_given"}
    flags = {"store_options": "--store-option"}  # repeated, one KEY=VALUE each
    for field in dataclasses.fields(serve.Settings):
        if field.name in internal:
            continue
        assert f"`{field.name}`" in text, f"docs/cli.md does not name the TOML key {field.name}"
        variable = serve._ENVIRONMENT.get(field.name)
        assert variable is not None, f"setting {field.name} has no environment variable"
        assert f"`{variable}`" in text, f"docs/cli.md does not name {variable}"
        if field.name != "fsync":
            flag = flags.get(field.name, f"--{field.name.replace('_', '-')}")
            assert f"`{flag}" in text, f"docs/cli.md does not name {flag}"
