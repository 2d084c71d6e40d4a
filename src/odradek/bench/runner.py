"""The suite from start to end: machine facts, limits, each system in turn, the report.

One system runs at a time (its servers started before its workloads and stopped after
them), so on a small machine no system competes with another for cores or disk.
Progress goes to stderr, one line per step; results go to ``--out``.
"""

from __future__ import annotations

import datetime
import shutil
import sys
import tempfile
import time
from pathlib import Path

from odradek.bench import charts, cluster_workloads, limits_probe, machine, report, systems
from odradek.bench.options import CLUSTER_SYSTEMS, CLUSTER_WORKLOADS, Options, parse
from odradek.bench.outcomes import Skipped
from odradek.bench.results import ERROR, SKIPPED, Figure, Metric, SystemInfo
from odradek.bench.systems.base import System
from odradek.bench.workloads import Datasets, Session, metrics_of


class Progress:
    """Writes ``[bench m:ss] message`` lines to stderr."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        elapsed = int(time.monotonic() - self.started)
        print(f"[bench {elapsed // 60}:{elapsed % 60:02d}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``odradek bench`` and ``python -m odradek.bench``; returns the exit code."""
    options = parse(argv)
    progress = Progress()
    options.out.mkdir(parents=True, exist_ok=True)
    if options.scratch is not None:
        options.scratch.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="odradek-bench-", dir=options.scratch))
    try:
        return _run(options, scratch, progress)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _run(options: Options, scratch: Path, progress: Progress) -> int:
    started_at = datetime.datetime.now(datetime.UTC)
    profile = options.profile
    facts = machine.describe(scratch)
    progress(
        f"profile {profile.name}: {profile.runs} runs per figure after a warm-up; "
        f"systems {', '.join(options.systems)}; workloads {', '.join(options.workloads)}"
    )
    progress(f"machine: {machine.summary_line(facts)}")

    sizes = limits_probe.ProbeSizes(
        profile.fsync_probe_bytes, profile.fsync_latency_samples, profile.tcp_probe_bytes
    )
    limits = limits_probe.probe_all(scratch, sizes, profile.runs, progress)

    data = Datasets(profile)
    infos: list[SystemInfo] = []
    figures: list[Figure] = []
    for system in systems.build(tuple(name for name in options.systems if name not in CLUSTER_SYSTEMS)):
        info, system_figures = _run_system(system, options, data, scratch, progress)
        infos.append(info)
        figures.extend(system_figures)
    if any(
        name in CLUSTER_SYSTEMS for name in options.systems
    ):  # its own harness: bench/cluster_workloads.py
        info, system_figures = cluster_workloads.run(options, scratch, progress, metrics_of)
        infos.append(info)
        figures.extend(system_figures)

    finished_at = datetime.datetime.now(datetime.UTC)
    document = report.build(options, facts, limits, infos, figures, started_at, finished_at)
    written = report.write(options.out, document)
    if options.charts:
        written.extend(charts.write(options.out, document))
    progress(
        f"done in {(finished_at - started_at).total_seconds():.0f} s; wrote "
        + ", ".join(str(path) for path in written)
    )
    odradek_failed = any(f.status == ERROR for f in figures if f.system.startswith("odradek"))
    return 1 if odradek_failed else 0


def _run_system(
    system: System, options: Options, data: Datasets, scratch: Path, progress: Progress
) -> tuple[SystemInfo, list[Figure]]:
    info = SystemInfo(
        name=system.name,
        title=system.title,
        durability=system.durability,
        durability_label=system.durability_label,
        weaker_durability=system.weaker_durability,
        networked=system.networked,
        is_odradek=system.is_odradek,
        tuning=system.tuning,
    )
    try:
        system.prepare(options.allow_install, progress)
    except Skipped as exc:
        return _skip(info, options, str(exc), progress)

    directory = scratch / system.name
    directory.mkdir()
    progress(f"{system.name}: starting")
    try:
        system.start(directory, progress)
        info.versions = system.versions()
        session = Session(system, options.profile, data, progress)
        figures: list[Figure] = []
        for workload in options.workloads:
            if workload in CLUSTER_WORKLOADS:
                figures.extend(cluster_workloads.not_here(system.name, workload, progress))
            else:
                figures.extend(session.run(workload))
        session.finish()
        return info, figures
    except Exception as exc:  # noqa: BLE001 - a system that cannot start is reported, not fatal
        info.status = ERROR
        info.note = f"{type(exc).__name__}: {exc}"
        progress(f"{system.name}: FAILED {info.note}")
        return info, [
            Figure(m.name, system.name, ERROR, note=info.note)
            for workload in options.workloads
            for m in _metrics_of(workload)
        ]
    finally:
        system.stop()
        shutil.rmtree(directory, ignore_errors=True)
        progress(f"{system.name}: stopped")


def _skip(
    info: SystemInfo, options: Options, note: str, progress: Progress
) -> tuple[SystemInfo, list[Figure]]:
    info.status = SKIPPED
    info.note = note
    progress(f"{info.name}: skipped: {note}")
    return info, [
        Figure(m.name, info.name, SKIPPED, note=note)
        for workload in options.workloads
        for m in _metrics_of(workload)
    ]


def _metrics_of(workload: str) -> list[Metric]:
    return metrics_of(workload) + cluster_workloads.metrics_of(workload)
