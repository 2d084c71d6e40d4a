"""The container image definition (deploy/container/Containerfile), checked offline.

Goal: the image runs ``odradek serve`` as a non-root user on python:3.11-slim, installs
the project from the source tree with extras that exist, exposes the doors' ports, keeps
its data directory in a volume, and sets only ODRADEK_* variables that serve reads, with
every door on 0.0.0.0; its user is the one the Helm chart's pods run as.

Method: no container engine here, so the file is parsed with BuildKit's own parser (the
``dockerfile`` package) and its instructions checked; the image's environment is fed to
serve's ``settings_from`` as the container would see it; the extras against
pyproject.toml, the copied paths against the repository and its ignore file.
"""

from __future__ import annotations

import fnmatch
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers beside this file, by name

from chart_rendering import CHART, CONTAINERFILE, REPOSITORY

dockerfile = pytest.importorskip("dockerfile", reason="install odradek[deploy] (./dev setup)")
yaml = pytest.importorskip("yaml", reason="install odradek[deploy] (./dev setup)")

from odradek.cli.main import build_parser  # noqa: E402
from odradek.cli.serve import _ENVIRONMENT, settings_from  # noqa: E402

BASE_IMAGE = "python:3.11-slim"
EXTRAS = {"kafka", "schemas", "stores", "cluster"}


def stages() -> list[list[Any]]:
    """The file's instructions, one list per build stage (each opening with its FROM)."""
    result: list[list[Any]] = []
    for command in dockerfile.parse_file(str(CONTAINERFILE)):
        if command.cmd == "FROM":
            result.append([])
        assert result, f"an instruction before the first FROM: {command.original}"
        result[-1].append(command)
    return result


def final(cmd: str) -> list[Any]:
    """The final stage's instructions named ``cmd``."""
    return [command for command in stages()[-1] if command.cmd == cmd]


def image_environment() -> dict[str, str]:
    environment: dict[str, str] = {}
    for command in final("ENV"):
        pairs = command.value
        environment.update(zip(pairs[0::2], pairs[1::2], strict=True))
    return environment


def test_every_stage_is_python_slim() -> None:
    for stage in stages():
        assert stage[0].value[0] == BASE_IMAGE


def test_it_runs_odradek_serve() -> None:
    (entrypoint,) = final("ENTRYPOINT")
    (command,) = final("CMD")
    assert entrypoint.json and list(entrypoint.value) == ["odradek"]
    assert command.json and command.value[0] == "serve"
    scripts = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["scripts"]
    assert "odradek" in scripts
    assert [signal.value[0] for signal in final("STOPSIGNAL")] in ([], ["SIGTERM"])


def test_it_runs_as_the_charts_non_root_user() -> None:
    users = final("USER")
    assert users, "no USER: the image would run as root"
    user = users[-1].value[0]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric, so runAsNonRoot can check it
    created = " ".join(" ".join(command.value) for command in final("RUN"))
    assert re.search(rf"useradd\b.*--uid {uid}\b", created), "the image does not create its user"
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["podSecurityContext"]["runAsUser"] == int(uid)
    assert values["podSecurityContext"]["runAsNonRoot"] is True


def test_it_installs_the_project_with_extras_that_exist() -> None:
    (build, *_) = stages()
    arguments = dict(
        command.value[0].split("=", 1)
        for command in build
        if command.cmd == "ARG" and "=" in command.value[0]
    )
    extras = set(arguments["EXTRAS"].split(","))
    assert extras == EXTRAS
    optional = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert extras <= set(optional), extras - set(optional)
    installs = [command for command in build if command.cmd == "RUN" and "pip install" in command.value[0]]
    assert len(installs) == 1 and '".[${EXTRAS}]"' in installs[0].value[0]


def test_what_it_copies_is_in_the_build_context() -> None:
    """Every COPY source exists in the repository and is kept by the ignore file."""
    ignore = [
        line.strip()
        for line in (CONTAINERFILE.parent / "Containerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        source
        for stage in stages()
        for command in stage
        if command.cmd == "COPY" and not any(flag.startswith("--from=") for flag in command.flags)
        for source in command.value[:-1]
    ]
    assert sources
    for source in sources:
        assert (REPOSITORY / source).exists(), source
        kept = True
        for pattern in ignore:  # the last matching pattern decides, as Docker's does
            negated = pattern.startswith("!")
            if fnmatch.fnmatch(source, pattern.removeprefix("!")):
                kept = negated
        assert kept, f"{source} is ignored by Containerfile.dockerignore"


def test_every_door_listens_on_all_interfaces_and_is_exposed() -> None:
    environment = image_environment()
    names = {name for name in environment if name.startswith("ODRADEK_")}
    assert names <= set(_ENVIRONMENT.values()), names - set(_ENVIRONMENT.values())
    settings = settings_from(build_parser().parse_args(["serve"]), environment)
    listens = [settings.listen, settings.kafka_listen, settings.registry_listen, settings.metrics_listen]
    ports = set()
    for address in listens:
        assert address is not None
        host, port = address.rsplit(":", 1)
        assert host == "0.0.0.0"
        ports.add(port)
    exposed = {port for command in final("EXPOSE") for port in command.value}
    assert exposed == ports
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert {str(port) for port in values["ports"].values()} == ports


def test_the_data_directory_is_a_volume() -> None:
    environment = image_environment()
    settings = settings_from(build_parser().parse_args(["serve"]), environment)
    volumes = {path for command in final("VOLUME") for path in command.value}
    assert settings.data_dir in volumes
