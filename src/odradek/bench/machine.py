"""Facts about the machine a run measured: read at run time, printed into the results."""

from __future__ import annotations

import os
import platform
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa

from odradek import __version__ as odradek_version


def describe(scratch: Path) -> dict[str, Any]:
    """Cores, memory, CPU model, kernel, and the disk the data directories live on."""
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "memory_bytes": _memory_total_bytes(),
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version(),
        "pyarrow": pa.__version__,
        "odradek": odradek_version,
        "disk": _disk(scratch),
        # Other work on the machine skews figures, latencies most: say how busy it was.
        "load_average_at_start": list(os.getloadavg()),
    }


def summary_line(facts: dict[str, Any]) -> str:
    disk = facts["disk"]
    memory_gib = facts["memory_bytes"] / 2**30 if facts["memory_bytes"] else 0.0
    return (
        f"{facts['cores']} cores ({facts['cpu_model']}), {memory_gib:.1f} GiB memory, "
        f"disk {disk['device']} ({disk['filesystem']}, {disk['kind']}, "
        f"{disk['free_bytes'] / 2**30:.0f} GiB free), Linux {facts['kernel']}, Python {facts['python']}"
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_total_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.system()


def _disk(path: Path) -> dict[str, Any]:
    """Device, filesystem and kind of the mount holding ``path``.

    The kind is the kernel's rotational flag, which virtual disks often set regardless
    of what backs them: it is reported as read, not interpreted."""
    usage = shutil.disk_usage(path)
    device, filesystem = _mount_of(path)
    return {
        "device": device,
        "filesystem": filesystem,
        "kind": _disk_kind(device),
        "total_bytes": usage.total,
        "free_bytes": usage.free,
    }


def _mount_of(path: Path) -> tuple[str, str]:
    resolved = str(path.resolve())
    best = ("unknown", "unknown", "")
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return best[0], best[1]
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        device, mount_point, filesystem = fields[0], fields[1], fields[2]
        inside = resolved == mount_point or resolved.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best[2]):
            best = (device, filesystem, mount_point)
    return best[0], best[1]


def _disk_kind(device: str) -> str:
    name = os.path.basename(device)
    candidates = [name, name.rstrip("0123456789")]
    if "nvme" in name and "p" in name:
        candidates.append(name.rsplit("p", 1)[0])
    for candidate in candidates:
        flag = Path("/sys/block") / candidate / "queue" / "rotational"
        try:
            return "rotational" if flag.read_text().strip() == "1" else "non-rotational"
        except OSError:
            continue
    return "unknown"
