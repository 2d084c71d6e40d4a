"""The segment file format (``engine.segment``): frames, scanning, sidecar indexes.

Goal: a frame written by ``encode_frame`` is read back by ``scan_frames`` with the
same offsets, count, max timestamp, size and metadata, and its body decodes to the
same batch; a scan of damaged bytes (cut at any point, any byte flipped, junk
appended, offsets that do not continue) keeps exactly the frames before the damage
and returns nothing invalid; ``SegmentFile`` and the sidecar index round-trip and
reject what does not match.

Method: hypothesis builds random sequences of frames (random sizes, with and without
producer metadata), concatenates them, damages the bytes, and compares the scan with
the frame boundaries it knows; plus direct tests of SegmentFile on a temporary file.
"""

from __future__ import annotations

import os
import struct
from typing import Any

import crc32c
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.engine import segment as seg
from odradek.errors import StorageError
from odradek.records import STORED_SCHEMA, TIMESTAMP_TYPE
from odradek.storage.disk import LOCAL


def stored_batch(base: int, count: int, value_size: int = 3) -> pa.RecordBatch:
    offsets = list(range(base, base + count))
    return pa.RecordBatch.from_arrays(
        [
            pa.array(offsets, pa.int64()),
            pa.array([1_000_000 + o for o in offsets], pa.int64()).view(TIMESTAMP_TYPE),
            pa.array([None if o % 3 == 0 else f"k{o % 4}".encode() for o in offsets], pa.binary()),
            pa.array([bytes([o % 251]) * value_size for o in offsets], pa.binary()),
            pa.array([[("h", str(o).encode())] for o in offsets], STORED_SCHEMA.field("headers").type),
            pa.array([None if o % 3 == 0 else o for o in offsets], pa.int64()),
        ],
        schema=STORED_SCHEMA,
    )


def encode(
    frames: list[tuple[int, int, dict[str, Any] | None]], base: int = 0
) -> tuple[bytes, list[dict[str, Any]]]:
    """Bytes of consecutive frames (count, value size, meta) and what each one holds."""
    data = bytearray()
    expected = []
    for count, value_size, meta in frames:
        batch = stored_batch(base, count, value_size)
        max_timestamp = 1_000_000 + base + count - 1
        pieces, size = seg.encode_frame(batch, base, max_timestamp, meta)
        joined = b"".join(bytes(p) for p in pieces)
        assert len(joined) == size
        expected.append(
            {
                "base": base,
                "position": len(data),
                "count": count,
                "max_timestamp": max_timestamp,
                "size": size,
                "meta": meta,
                "batch": batch,
            }
        )
        data += joined
        base += count
    return bytes(data), expected


def check_prefix(found: list[seg.FrameInfo], valid: int, expected: list[dict[str, Any]], data: bytes) -> None:
    """``found`` is exactly ``expected[:len(found)]`` and ``valid`` ends its last frame."""
    assert len(found) <= len(expected)
    for frame, want in zip(found, expected):
        assert (
            frame.base_offset,
            frame.position,
            frame.count,
            frame.max_timestamp,
            frame.size,
            frame.meta,
        ) == (
            want["base"],
            want["position"],
            want["count"],
            want["max_timestamp"],
            want["size"],
            want["meta"],
        )
        meta_length = seg.parse_header(data[frame.position : frame.position + seg.HEADER_SIZE])[5]
        body_start = frame.position + seg.HEADER_SIZE + meta_length
        assert body_start % seg.BODY_ALIGNMENT == 0  # Arrow reads bodies zero-copy
        body = pa.py_buffer(data[body_start : frame.position + frame.size])
        assert seg.decode_body(body).equals(want["batch"])
    assert valid == (found[-1].position + found[-1].size if found else 0)


FRAMES = st.lists(
    st.tuples(
        st.integers(1, 6),
        st.integers(0, 40),
        st.one_of(st.none(), st.fixed_dictionaries({"p": st.text(max_size=5), "s": st.integers(0, 2**40)})),
    ),
    min_size=1,
    max_size=5,
)


def test_round_trip_of_a_few_frames() -> None:
    data, expected = encode([(3, 5, None), (1, 0, {"p": "prod", "s": 7}), (4, 100, None)], base=10)
    found, valid = seg.scan_frames(memoryview(data), 10)
    assert len(found) == 3
    assert valid == len(data)
    check_prefix(found, valid, expected, data)


def test_header_layout_is_as_documented() -> None:
    data, _ = encode([(2, 1, None)], base=5)
    magic, _, length, base, count, max_ts, meta_len = seg.HEADER.unpack(data[: seg.HEADER_SIZE])
    assert seg.HEADER_SIZE == 34
    assert (magic, base, count, max_ts) == (b"ODR1", 5, 2, 1_000_006)
    assert (seg.HEADER_SIZE + meta_len) % seg.BODY_ALIGNMENT == 0  # padding only, no metadata
    assert data[seg.HEADER_SIZE : seg.HEADER_SIZE + meta_len].strip() == b""
    assert length == len(data) - seg.HEADER_SIZE


@settings(max_examples=60, deadline=None, database=None)
@given(FRAMES, st.integers(0, 2**63 - 1))
def test_round_trip(frames: list[tuple[int, int, Any]], base: int) -> None:
    base %= 2**40
    data, expected = encode(frames, base)
    found, valid = seg.scan_frames(memoryview(data), base)
    assert len(found) == len(expected)
    check_prefix(found, valid, expected, data)
    # Without an expected base the scan trusts the first frame's offset.
    assert len(seg.scan_frames(memoryview(data), None)[0]) == len(expected)


@settings(max_examples=100, deadline=None, database=None)
@given(FRAMES, st.data())
def test_a_torn_tail_keeps_the_whole_frames_before_the_cut(
    frames: list[tuple[int, int, Any]], data: st.DataObject
) -> None:
    raw, expected = encode(frames)
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    found, valid = seg.scan_frames(memoryview(raw[:cut]), 0)
    whole = [f for f in expected if f["position"] + f["size"] <= cut]
    assert len(found) == len(whole)
    check_prefix(found, valid, expected, raw)


@settings(max_examples=150, deadline=None, database=None)
@given(FRAMES, st.data())
def test_a_flipped_byte_invalidates_its_frame_and_everything_after(
    frames: list[tuple[int, int, Any]], data: st.DataObject
) -> None:
    raw, expected = encode(frames)
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    flip = data.draw(st.integers(1, 255), label="xor")
    damaged = bytearray(raw)
    damaged[position] ^= flip
    found, valid = seg.scan_frames(memoryview(bytes(damaged)), 0)
    before = [f for f in expected if f["position"] + f["size"] <= position]
    assert len(found) == len(before)
    check_prefix(found, valid, expected, raw)


@settings(max_examples=50, deadline=None, database=None)
@given(FRAMES, st.binary(min_size=1, max_size=100))
def test_junk_after_the_last_frame_is_not_a_frame(frames: list[tuple[int, int, Any]], junk: bytes) -> None:
    raw, expected = encode(frames)
    found, valid = seg.scan_frames(memoryview(raw + junk), 0)
    assert len(found) == len(expected)
    check_prefix(found, valid, expected, raw)


def test_frames_must_continue_the_offsets() -> None:
    first, _ = encode([(2, 1, None)], base=0)
    gap, _ = encode([(2, 1, None)], base=5)  # should start at 2
    found, valid = seg.scan_frames(memoryview(first + gap), 0)
    assert len(found) == 1 and valid == len(first)
    assert seg.scan_frames(memoryview(first), 1) == ([], 0)


def test_a_header_with_an_implausible_length_is_rejected() -> None:
    header = seg.HEADER.pack(seg.MAGIC, 0, seg.FRAME_BYTES_MAX + 1, 0, 1, 0, 0)
    with pytest.raises(ValueError, match="implausible"):
        seg.parse_header(header)
    assert seg.scan_frames(memoryview(header + bytes(64)), 0) == ([], 0)
    with pytest.raises(ValueError, match="magic"):
        seg.parse_header(b"XXXX" + header[4:])


def test_an_empty_frame_count_stops_the_scan() -> None:
    batch = stored_batch(0, 1)
    pieces, _ = seg.encode_frame(batch.slice(0, 0), 0, 0, None)
    raw = b"".join(bytes(p) for p in pieces)
    assert seg.scan_frames(memoryview(raw), 0) == ([], 0)


# -- SegmentFile and the sidecar index -------------------------------------------------------


def write_frames(file: seg.SegmentFile, frames: list[tuple[int, int]], base: int) -> list[seg.FrameInfo]:
    infos = []
    for count, value_size in frames:
        batch = stored_batch(base, count, value_size)
        pieces, size = seg.encode_frame(batch, base, 1_000_000 + base + count - 1, None)
        position = file.append(pieces, size)
        infos.append(seg.FrameInfo(base, position, count, 1_000_000 + base + count - 1, size))
        base += count
    return infos


def test_segment_file_append_read_and_reopen(tmp_path: Any) -> None:
    directory = str(tmp_path)
    file = seg.SegmentFile(LOCAL, directory, 100, create=True)
    assert os.path.basename(file.path) == "00000000000000000100.log"
    infos = write_frames(file, [(2, 3), (5, 10), (1, 0)], 100)
    for info in infos:
        assert file.read_batch(info, verify=True).equals(
            stored_batch(info.base_offset, info.count, {2: 3, 5: 10, 1: 0}[info.count])
        )
    assert file.scan() == seg.SegmentScan(infos, [], file.size)
    file.sync()
    file.close()
    with pytest.raises(StorageError):
        seg.SegmentFile(LOCAL, directory, 100, create=True)  # exists
    again = seg.SegmentFile(LOCAL, directory, 100, create=False)
    assert again.scan() == seg.SegmentScan(infos, [], again.size)
    assert list(seg.iter_segment_bases(LOCAL, directory)) == [100]
    again.close()


def test_segment_file_detects_a_corrupt_frame_on_read(tmp_path: Any) -> None:
    file = seg.SegmentFile(LOCAL, str(tmp_path), 0, create=True)
    infos = write_frames(file, [(3, 50)], 0)
    file.close()
    with open(file.path, "r+b") as handle:
        handle.seek(infos[0].size - 5)
        byte = handle.read(1)
        handle.seek(infos[0].size - 5)
        handle.write(bytes([byte[0] ^ 0x40]))
    damaged = seg.SegmentFile(LOCAL, str(tmp_path), 0, create=False)
    with pytest.raises(StorageError, match="checksum"):
        damaged.read_batch(infos[0], verify=True)
    wrong = seg.FrameInfo(1, 0, 3, 0, infos[0].size)
    with pytest.raises(StorageError, match="does not match"):
        damaged.read_batch(wrong, verify=False)
    damaged.close()


def test_sidecar_index_round_trip_and_rejection(tmp_path: Any) -> None:
    directory = str(tmp_path)
    file = seg.SegmentFile(LOCAL, directory, 0, create=True)
    infos = write_frames(file, [(2, 3), (4, 4)], 0)
    size = file.size
    file.close()
    seg.write_index(LOCAL, directory, 0, infos, size)
    assert seg.read_index(LOCAL, directory, 0, size) == seg.SegmentIndex(infos, [])
    # An index that does not end where the segment ends belongs to another file.
    assert seg.read_index(LOCAL, directory, 0, size + 1) is None
    assert seg.read_index(LOCAL, directory, 7, size) is None  # absent
    path = os.path.join(directory, f"{0:020d}{seg.INDEX_SUFFIX}")
    with open(path, "r+b") as handle:
        raw = bytearray(handle.read())
        raw[6] ^= 1
        handle.seek(0)
        handle.write(raw)
    assert seg.read_index(LOCAL, directory, 0, size) is None  # checksum mismatch
    with open(path, "wb") as handle:
        handle.write(struct.pack("<I", 0) + b"abc")
    assert seg.read_index(LOCAL, directory, 0, size) is None  # not whole entries


def test_a_sidecar_index_of_the_first_format_still_reads(tmp_path: Any) -> None:
    """Data directories written before damage was recorded open unchanged: a version-1
    index (CRC of the entries, then the entries) is read as it was."""
    directory = str(tmp_path)
    file = seg.SegmentFile(LOCAL, directory, 0, create=True)
    infos = write_frames(file, [(2, 3), (4, 4)], 0)
    size = file.size
    file.close()
    entries = b"".join(
        seg.INDEX_ENTRY.pack(f.base_offset, f.position, f.count, f.max_timestamp, f.size) for f in infos
    )
    with open(os.path.join(directory, seg.index_name(0)), "wb") as handle:
        handle.write(struct.pack("<I", crc32c.crc32c(entries)) + entries)
    assert seg.read_index(LOCAL, directory, 0, size) == seg.SegmentIndex(infos, [])
    assert seg.read_index(LOCAL, directory, 0, size - 1) is None


# -- scanning past damage -------------------------------------------------------------------


@settings(max_examples=150, deadline=None, database=None)
@given(FRAMES, st.data())
def test_a_scan_goes_on_past_a_damaged_frame(frames: list[tuple[int, int, Any]], data: st.DataObject) -> None:
    """A flipped byte damages exactly the frame holding it: every other frame is found,
    and the damage names that frame's bytes and offsets (or, for the last frame, the
    scan reports a tail, which only the caller can tell from a torn write)."""
    raw, expected = encode(frames)
    position = data.draw(st.integers(0, len(raw) - 1), label="position")
    damaged = bytearray(raw)
    damaged[position] ^= data.draw(st.integers(1, 255), label="xor")
    scan = seg.scan_segment(bytes(damaged), "00000000000000000000.log", 0)
    hit = next(i for i, f in enumerate(expected) if f["position"] <= position < f["position"] + f["size"])
    found = [f.position for f in scan.frames]
    assert found == [f["position"] for i, f in enumerate(expected) if i != hit]
    if hit == len(expected) - 1:
        assert scan.damages == [] and scan.tail == expected[hit]["position"]
    else:
        (damage,) = scan.damages
        assert (damage.position, damage.end_position) == (
            expected[hit]["position"],
            expected[hit + 1]["position"],
        )
        assert damage.first_offset == expected[hit]["base"]
        assert damage.end_offset == expected[hit + 1]["base"]
        assert scan.tail == len(raw)


def test_a_frame_that_skips_offsets_is_damage_of_those_offsets() -> None:
    first, _ = encode([(2, 1, None)], base=0)
    gap, _ = encode([(2, 1, None)], base=5)  # offsets 2..4 are missing
    scan = seg.scan_segment(first + gap, "x.log", 0)
    assert [f.base_offset for f in scan.frames] == [0, 5]
    (damage,) = scan.damages
    assert (damage.first_offset, damage.end_offset, damage.position, damage.end_position) == (
        2,
        5,
        len(first),
        len(first),
    )
