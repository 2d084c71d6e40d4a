"""Rendering the Helm chart offline, and reading what it rendered.

Helm 4's own engine (helm-python-sdk, a C library over Helm's Go SDK) renders the chart
in a child process: its Go runtime stays out of the test process (signal handlers,
threads across the suite's forks). Each case is rendered as ``helm template`` would: no
cluster, ``lookup`` empty, values checked against the chart's values.schema.json.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPOSITORY = Path(__file__).resolve().parents[2]
CHART = REPOSITORY / "deploy" / "helm" / "odradek"
CONTAINERFILE = REPOSITORY / "deploy" / "container" / "Containerfile"

RELEASE = "demo"
NAMESPACE = "streaming"

_RENDER = r"""
import json, sys
import helm_python as helm

request = json.load(sys.stdin)
answers = []
with helm.Chart.load(request["chart"]) as chart:
    for values in request["cases"]:
        try:
            manifests = chart.render(values, name=request["release"], namespace=request["namespace"])
            answers.append({"manifests": manifests})
        except helm.HelmError as exc:
            answers.append({"error": f"{type(exc).__name__}: {exc}"})
json.dump(answers, sys.stdout)
"""


@dataclasses.dataclass(frozen=True)
class Rendered:
    """What one ``helm template`` made: Kubernetes objects, and NOTES.txt."""

    objects: list[dict[str, Any]]
    notes: str

    def kinds(self) -> list[str]:
        return [item["kind"] for item in self.objects]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [
            item
            for item in self.objects
            if item["kind"] == kind and (name is None or item["metadata"]["name"] == name)
        ]
        assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}: {self.kinds()}"
        return found[0]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [item for item in self.objects if item["kind"] == kind]

    def agent(self) -> dict[str, Any]:
        """The agent container of the Deployment."""
        containers = self.one("Deployment")["spec"]["template"]["spec"]["containers"]
        assert [container["name"] for container in containers] == ["agent"]
        container: dict[str, Any] = containers[0]
        return container

    def env(self) -> dict[str, dict[str, Any]]:
        """The agent's environment variables by name (each an EnvVar object)."""
        variables = self.agent()["env"]
        names = [variable["name"] for variable in variables]
        assert len(names) == len(set(names)), f"a variable is set twice: {names}"
        return {variable["name"]: variable for variable in variables}


def render_cases(cases: Mapping[str, Mapping[str, Any]]) -> dict[str, Rendered | str]:
    """Each case's values rendered: the objects, or the error Helm gave as text."""
    names = list(cases)
    request = {
        "chart": str(CHART),
        "release": RELEASE,
        "namespace": NAMESPACE,
        "cases": [cases[name] for name in names],
    }
    child = subprocess.run(
        [sys.executable, "-c", _RENDER],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if child.returncode != 0:
        raise AssertionError(f"rendering failed (exit {child.returncode}):\n{child.stderr}")
    answers = json.loads(child.stdout)
    rendered: dict[str, Rendered | str] = {}
    for name, answer in zip(names, answers, strict=True):
        if "error" in answer:
            rendered[name] = answer["error"]
        else:
            rendered[name] = _parse(answer["manifests"])
    return rendered


def _parse(manifests: Mapping[str, str]) -> Rendered:
    objects = []
    notes = ""
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        objects.extend(document for document in yaml.safe_load_all(text) if document)
    return Rendered(objects, notes)
