"""Journal objects: encoding round-trips, damage is refused, and fencing picks the valid ones.

Goal: what the store journals is read back exactly (every op, any path, binary data),
a flipped or missing byte makes the whole object refused (it was never acknowledged),
and the validity rule leaves out exactly the objects a replaced agent wrote after the
new agent's fence, in (epoch, flush) order. Method: hypothesis over entries and over
interleavings of two agents' slots; no store.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from odradek.storage import journal
from odradek.storage.journal import Entry, Listed

PATHS = st.text(alphabet="abcxyz./_-0123456789", min_size=1, max_size=30)


def entries() -> st.SearchStrategy[Entry]:
    return st.one_of(
        st.builds(
            lambda p, o, d: Entry(journal.OP_WRITE, p, o, d), PATHS, st.integers(0, 2**40), st.binary()
        ),
        st.builds(lambda p, o: Entry(journal.OP_TRUNCATE, p, o), PATHS, st.integers(0, 2**40)),
        st.builds(lambda p, d: Entry(journal.OP_REPLACE, p, 0, d), PATHS, st.binary()),
        st.builds(lambda p, t: Entry(journal.OP_RENAME, p, target=t), PATHS, PATHS),
        st.builds(
            lambda op, p: Entry(op, p),
            st.sampled_from([journal.OP_CREATE, journal.OP_MKDIR, journal.OP_REMOVE, journal.OP_RMTREE]),
            PATHS,
        ),
    )


def _same(a: Entry, b: Entry) -> bool:
    left = (a.op, a.path, a.position, bytes(a.data), a.target)
    return left == (b.op, b.path, b.position, bytes(b.data), b.target)


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(entries(), max_size=20), st.integers(0, 2**40), st.integers(0, 2**40), st.integers(0, 2**40))
def test_round_trip(items: list[Entry], epoch: int, flush: int, slot: int) -> None:
    data = journal.encode(epoch, flush, slot, items)
    decoded = journal.decode(data)
    assert (decoded.epoch, decoded.flush, decoded.slot, decoded.is_fence) == (epoch, flush, slot, False)
    assert len(decoded.entries) == len(items)
    assert all(_same(a, b) for a, b in zip(items, decoded.entries, strict=True))
    assert sum(entry.size for entry in items) == len(data) - journal.HEADER_SIZE


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(entries(), min_size=1, max_size=5), st.data())
def test_any_damage_is_refused(items: list[Entry], data: st.DataObject) -> None:
    raw = bytearray(journal.encode(3, 7, 11, items))
    if data.draw(st.booleans(), label="truncate"):
        cut = data.draw(st.integers(0, len(raw) - 1), label="cut")
        damaged = bytes(raw[:cut])
    else:
        position = data.draw(st.integers(0, len(raw) - 1), label="position")
        raw[position] ^= data.draw(st.integers(1, 255), label="xor")
        damaged = bytes(raw)
    with pytest.raises(journal.JournalDamaged):
        journal.decode(damaged)


def test_a_fence_is_an_object_without_entries() -> None:
    fence = journal.decode(journal.encode_fence(5, 9))
    assert fence.is_fence and (fence.epoch, fence.slot, fence.entries) == (5, 9, ())


def test_validity_leaves_out_what_a_replaced_agent_wrote_after_the_fence() -> None:
    data, fence = journal.KIND_JOURNAL, journal.KIND_FENCE
    listed = [
        Listed(0, 1, 1, data),
        Listed(1, 1, 2, data),
        Listed(2, 2, 0, fence),  # agent 2 fenced a hole: agent 1's flush 3 never landed here
        Listed(3, 1, 4, data),  # agent 1's write after the fence: a zombie's, never acknowledged
        Listed(4, 2, 0, fence),
        Listed(5, 2, 1, data),
        Listed(7, 2, 3, data),  # moved past a leftover: replayed in flush order
        Listed(6, 2, 2, data),
    ]
    order = journal.valid(listed)
    assert [(item.epoch, item.flush) for item in order] == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]


@settings(max_examples=300, deadline=None, database=None)
@given(st.data())
def test_validity_never_keeps_an_older_epoch_after_a_newer_fence(data: st.DataObject) -> None:
    count = data.draw(st.integers(0, 30), label="slots")
    listed = [
        Listed(
            slot,
            data.draw(st.integers(1, 4), label="epoch"),
            slot,
            data.draw(st.sampled_from([journal.KIND_JOURNAL, journal.KIND_FENCE]), label="kind"),
        )
        for slot in range(count)
    ]
    kept = {item.slot for item in journal.valid(listed)}
    highest = 0
    for item in listed:
        if item.kind == journal.KIND_FENCE:
            highest = max(highest, item.epoch)
            assert item.slot not in kept
        else:
            assert (item.slot in kept) == (item.epoch >= highest)
            if item.slot in kept:
                highest = item.epoch
