"""The getting-started pages run as written: every command and every snippet.

Goal: a Kafka user, a NATS user and a Python developer copy what their page shows and it
works (a page that does not run is a page that lies). Method: per page, a real `odradek
serve` (its Kafka door on a free port, 3 partitions for topics Kafka clients create)
and, in order, each ```bash block run by bash (`set -e`, `odradek` the command line of
this checkout) and each ```python block run in one namespace, in a temporary directory.
The addresses the pages show (127.0.0.1:8815 for Flight, 127.0.0.1:9092 for Kafka) are
the test server's in the blocks run. Blocks in other fences (``` plain: installing and
starting a server; ```text: other systems' commands) are not run; each page must have
something to run.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from odradek.ports import free_port

DOCS = Path(__file__).parents[1] / "docs"
PAGES = ("getting-started-kafka.md", "getting-started-nats.md", "getting-started-python.md")
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)

sys.path.insert(0, str(Path(__file__).parent / "cli"))  # the real-server helpers of the CLI tests

from odradek_process import Server  # noqa: E402


def _blocks(page: str) -> list[tuple[str, str]]:
    return [
        (kind, body) for kind, body in BLOCK.findall((DOCS / page).read_text()) if kind in ("bash", "python")
    ]


def test_every_page_has_something_to_run_and_is_linked_from_the_readme() -> None:
    readme = (DOCS.parent / "README.md").read_text()
    for page in PAGES:
        kinds = [kind for kind, _ in _blocks(page)]
        assert "python" in kinds or "bash" in kinds, page
        assert f"docs/{page}" in readme, f"README.md does not link docs/{page}"


@pytest.mark.parametrize("page", PAGES)
def test_the_page_runs_as_written(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kafka = f"127.0.0.1:{free_port()}"
    server = Server(
        tmp_path / "server-data",
        "--kafka-listen",
        kafka,
        "--kafka-partitions",
        "3",
        "--registry-listen",
        "off",
    )
    try:
        work = tmp_path / "work"
        work.mkdir()
        monkeypatch.chdir(work)
        native = server.url.removeprefix("grpc://")

        def local(text: str) -> str:
            return text.replace("127.0.0.1:8815", native).replace("127.0.0.1:9092", kafka)

        shell = f'set -e\nodradek() {{ {sys.executable} -m odradek.cli.main "$@"; }}\n'
        environment = {**os.environ, "ODRADEK_URL": server.url}
        namespace: dict[str, object] = {"__name__": "getting_started"}
        for index, (kind, body) in enumerate(_blocks(page)):
            where = f"{page}, block {index + 1}:\n{body}"
            if kind == "bash":
                result = subprocess.run(
                    ["bash", "-c", shell + local(body)],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=180,
                    env=environment,
                    cwd=work,
                )
                assert result.returncode == 0, f"{where}\n{result.stderr.decode()[-3000:]}"
            else:
                exec(compile(local(body), f"{page} block {index + 1}", "exec"), namespace)
    finally:
        code, errors = server.stop()
    assert code == 0, errors[-3000:]
