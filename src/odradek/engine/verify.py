"""``odradek topic verify``: check every byte of a topic against its checksums.

A verify reads the whole topic, online (appends go on meanwhile; it reads what is
durable, as any reader does, and takes no lock):

* every segment is scanned frame by frame with its CRC checked, the way recovery scans
  the active segment; the frames found are compared with what the topic serves (a frame
  the topic lists that the scan does not find is damage found now);
* each sealed segment's sidecar index must be present, pass its checksum and list
  exactly the frames the scan found;
* every key-index run, producer snapshot, both copies of ``topic.json`` and the head
  file must pass their checksums.

It reports the damaged offset ranges (those recovery or earlier reads found, and those
found now), whether the operator accepted each, and every problem with a derived file
(which the engine rebuilds by itself at the next open). It changes nothing, except
that damage it finds is recorded, so that reads skip it as they would after finding it.

A topic's snapshot log (engine/snapshots.py) is checked the same way, frames, sidecar
indexes and key-index runs, and reported apart under ``snapshot_log``: its offsets are
not the topic's (``odradek topic repair`` cannot drop them), and a damaged frame there
is a lost snapshot, not lost events. Its damage also makes the report not ``ok`` and is
named in ``problems``, so no reader of the report misses it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from odradek.engine import segment as seg
from odradek.engine.keyindex import Run
from odradek.engine.topicfiles import HEAD_NAME, META_NAME, decode_head
from odradek.storage import documents

if TYPE_CHECKING:
    from odradek.engine.topic import Topic

Progress = Callable[[int, int], None]  # (bytes checked, bytes in all)


@dataclasses.dataclass
class VerifyReport:
    topic: str
    segments: int = 0
    frames: int = 0
    bytes: int = 0
    damaged: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    problems: list[str] = dataclasses.field(default_factory=list)  # derived files, rebuilt at open
    #: The snapshot log's own report (segments, frames, bytes, damaged, problems); None
    #: when the topic has no snapshot log.
    snapshot_log: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return not self.damaged and not self.problems

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "ok": self.ok}


def verify_topic(topic: Topic, progress: Progress | None = None) -> VerifyReport:
    report = VerifyReport(topic.name)
    _check_log(topic, report, progress)
    _check_derived(topic, report)
    _check_meta(topic, report)
    report.damaged = [{**d.to_json(), "accepted": topic.is_accepted(d)} for d in topic.log.damages]
    companion = topic.snapshots.companion()
    if companion is not None:
        report.snapshot_log = _check_snapshot_log(companion, report)
    return report


def _check_snapshot_log(companion: Topic, report: VerifyReport) -> dict[str, Any]:
    """Check the snapshot log as a log of its own (no ``topic.json``: its settings are
    fixed); name its damage in ``report.problems`` too."""
    own = VerifyReport(companion.name)
    _check_log(companion, own, None)
    _check_derived(companion, own)
    own.damaged = [d.to_json() for d in companion.log.damages]
    for damage in own.damaged:
        report.problems.append(
            f"snapshot log: offsets {damage['first_offset']}-{damage['end_offset'] - 1} in its segment "
            f"{damage['segment']} are damaged ({damage['reason']}): the snapshots stored there are lost; "
            "read_key with from_snapshot of their keys raises DataDamaged, and the snapshot log refuses "
            "new snapshots of every key until the damage is dealt with (it has no repair command yet)"
        )
    report.problems.extend(f"snapshot log: {problem}" for problem in own.problems)
    summary = own.to_json()
    del summary["topic"], summary["snapshot_log"]
    return summary


def _check_log(topic: Topic, report: VerifyReport, progress: Progress | None) -> None:
    """Scan every segment of ``topic``'s log with its CRCs and its sidecar indexes."""
    segments = list(topic.log.segments)
    durable = topic.durable_offset
    total = sum(s.file.size for s in segments)
    done = 0
    for number, segment in enumerate(segments):
        frames = [f for f in segment.frames if f.next_offset <= durable]
        end = frames[-1].position + frames[-1].size if frames else 0
        sealed = number < len(segments) - 1
        if sealed:
            end = segment.file.size
        try:
            data = segment.file.mapping() if end else memoryview(b"")
        except FileNotFoundError:
            continue  # retention removed it meanwhile
        except OSError as exc:
            report.problems.append(f"segment {segment.file.name} cannot be read: {exc}")
            continue
        scan = seg.scan_segment(data, segment.file.name, segment.base_offset, min(end, len(data)))
        found = {f.base_offset for f in scan.frames}
        for frame in frames:
            if frame.base_offset not in found and frame.base_offset not in segment.bad:
                topic.log.note_damage(segment, frame, "its bytes fail their checksum (found by verify)")
        for damage in scan.damages:
            if not any(d.first_offset <= damage.first_offset < d.end_offset for d in topic.log.damages):
                topic.log.add_damage(damage)
        if sealed:
            _check_index(topic, segment, scan, report)
        report.segments += 1
        report.frames += len(scan.frames)
        report.bytes += end
        done += segment.file.size
        if progress is not None:
            progress(done, total)


def _check_index(topic: Topic, segment: Any, scan: seg.SegmentScan, report: VerifyReport) -> None:
    index = seg.read_index(topic.disk, topic.directory, segment.base_offset, segment.file.size)
    name = seg.index_name(segment.base_offset)
    if index is None:
        report.problems.append(f"index {name} is missing or damaged (rebuilt from its segment at open)")
    elif [f.position for f in index.frames] != [f.position for f in scan.frames]:
        report.problems.append(f"index {name} does not list the frames its segment holds")


def _check_derived(topic: Topic, report: VerifyReport) -> None:
    disk = topic.disk
    keys = topic.keys.directory
    for name in sorted(disk.listdir(keys)):
        if not name.startswith("run-") or not name.endswith(".arrow"):
            continue
        start, end = (int(part) for part in name[len("run-") : -len(".arrow")].split("-"))
        try:
            run = Run(disk, os.path.join(keys, name), start, end)
        except (OSError, ValueError) as exc:
            report.problems.append(f"key index run {name} is damaged ({exc}; rebuilt from the log at open)")
            continue
        if not run.checksummed:
            report.problems.append(f"key index run {name} has no checksum (written by an older version)")
    producers = os.path.join(topic.directory, "producers")
    if disk.isdir(producers):
        for name in sorted(disk.listdir(producers)):
            if name.endswith(".json"):
                try:
                    documents.decode(disk.read_bytes(os.path.join(producers, name)))
                except (OSError, ValueError) as exc:
                    report.problems.append(f"producer snapshot {name} is damaged ({exc})")


def _check_meta(topic: Topic, report: VerifyReport) -> None:
    """Both copies of ``topic.json`` and the head file."""
    disk = topic.disk
    generations = []
    for path in (
        os.path.join(topic.directory, META_NAME),
        os.path.join(topic.directory, META_NAME) + ".copy",
    ):
        try:
            generations.append(documents.decode(disk.read_bytes(path))[1])
        except FileNotFoundError:
            if not generations or generations[0] > 0:  # a topic from before copies has one
                report.problems.append(
                    f"{os.path.basename(path)} is missing (the next change writes it again)"
                )
        except (OSError, ValueError) as exc:
            report.problems.append(f"{os.path.basename(path)} is damaged ({exc}; the other copy is used)")
    try:
        raw = disk.read_bytes(os.path.join(topic.directory, HEAD_NAME))
        if raw and decode_head(raw) is None:
            report.problems.append("the head file is damaged (it is rewritten by the next append)")
    except FileNotFoundError:
        pass
