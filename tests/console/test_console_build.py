"""The committed build of the console is the build of the committed sources.

Goal: the assets `pip install` users get (src/odradek/console/static) never drift from
the sources in console/: a source changed without `npm run build` fails here, as does a
build whose index.html names an asset that is not there. Method: hash the sources as
console/stamp.mjs does (every file but node_modules, sorted by path, each as path, NUL,
content, NUL) and compare with the build.json the build wrote; read index.html's asset
references; read pyproject.toml's package data, which must ship every built file.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ROOT / "console"
STATIC = ROOT / "src" / "odradek" / "console" / "static"


def sources_hash(root: Path) -> tuple[str, list[str]]:
    names = sorted(
        path.relative_to(root).as_posix()
        for path in root.rglob("*")
        if path.is_file() and "node_modules" not in path.relative_to(root).parts
    )
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    return digest.hexdigest(), names


def test_the_committed_build_is_made_from_the_committed_sources() -> None:
    stamp = json.loads((STATIC / "build.json").read_text())
    digest, names = sources_hash(SOURCES)
    assert names == stamp["sources"], "console/ has other files than the build saw: run npm run build"
    assert digest == stamp["sources_sha256"], (
        "console/ changed since src/odradek/console/static was built: "
        "run `npm ci && npm run build` in console/"
    )


def test_the_page_names_only_assets_that_are_there() -> None:
    index = (STATIC / "index.html").read_text()
    referenced = re.findall(r'(?:src|href)="\./(assets/[^"]+)"', index)
    assert referenced, index
    for name in referenced:
        assert (STATIC / name).is_file(), name
    built = sorted(path.name for path in (STATIC / "assets").iterdir())
    assert built == json.loads((STATIC / "build.json").read_text())["assets"]
    assert sorted(Path(name).name for name in referenced) == built  # nothing stale left beside


def test_the_package_ships_every_built_file() -> None:
    import tomllib

    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    globs = settings["package-data"]["odradek.console"]
    package = STATIC.parent
    for path in STATIC.rglob("*"):
        if path.is_file():
            name = path.relative_to(package).as_posix()
            assert any(
                fnmatch.fnmatch(name, glob) and name.count("/") == glob.count("/") for glob in globs
            ), name


def test_a_changed_source_changes_the_hash(tmp_path: Path) -> None:
    copy = tmp_path / "console"
    for name in sources_hash(SOURCES)[1]:
        target = copy / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((SOURCES / name).read_bytes())
    assert sources_hash(copy)[0] == sources_hash(SOURCES)[0]
    (copy / "src" / "api.ts").write_text((SOURCES / "src" / "api.ts").read_text() + "\n")
    assert sources_hash(copy)[0] != sources_hash(SOURCES)[0]
