"""Old epochs' claims are deleted; the epoch order and fencing do not change.

Goal: ``epochs/`` does not grow by one object per start: an agent whose epoch is the
highest deletes the claims of older epochs at its first checkpoint, keeping its own.
The next agent still claims a higher epoch than every earlier one, and an agent that
was replaced still sees that it was (it deletes nothing). Fences are kept (decision
record 0011): the test counts them per start, for the figures in object-storage.md.

Method: agents attached one after another to one memory:// store (each closed cleanly,
or left running as a zombie), the store's listings read after each start.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from object_servers import unique_prefix

from odradek.storage import journal
from odradek.storage.agent import StoreSettings, attach
from odradek.storage.objectbackends import forget_memory_store
from odradek.storage.objects import ObjectStore, open_store

SETTINGS = StoreSettings(flush_seconds=0.002, checkpoint_seconds=3600.0, in_flight_max=4)


@pytest.fixture
def memory_store(request: pytest.FixtureRequest) -> ObjectStore:
    name = f"epochs-{uuid.uuid4().hex}"
    request.addfinalizer(lambda: forget_memory_store(name))
    return open_store(f"memory://{name}/{unique_prefix()}")


def _claims(store: ObjectStore) -> list[int]:
    return [int(key.rsplit("/", 1)[-1]) for key, _ in store.list("epochs/")]


def _fences(store: ObjectStore) -> int:
    return sum(1 for _, size in store.list("wal/") if size == journal.HEADER_SIZE)


def test_an_agent_deletes_older_epochs_claims_and_keeps_the_order(
    memory_store: ObjectStore, tmp_path: Path
) -> None:
    fences = []
    for start in range(1, 5):
        disk, recovery = attach(str(tmp_path / f"agent-{start}"), memory_store, SETTINGS)
        assert recovery.epoch == start  # each start claims the next epoch
        assert disk.checkpointer is not None
        disk.checkpointer.collect_pending()  # what its thread does first, after serving began
        assert _claims(memory_store) == [start]
        fences.append(_fences(memory_store))
        disk.detach()
    # Fences stay: each start adds at most 3 x in_flight_max + 1 (a zombie may try them).
    growth = [after - before for before, after in zip([0, *fences], fences, strict=False)]
    assert all(0 < added <= 3 * SETTINGS.in_flight_max + 1 for added in growth), growth

    zombie, _ = attach(str(tmp_path / "zombie"), memory_store, SETTINGS)
    newer, recovery = attach(str(tmp_path / "newer"), memory_store, SETTINGS)
    assert recovery.epoch == zombie.writer.epoch + 1
    assert newer.checkpointer is not None
    newer.checkpointer.collect_pending()
    assert _claims(memory_store) == [recovery.epoch]
    assert zombie.checkpointer is not None
    zombie.checkpoint()  # its manifest is written (an older epoch's: never adopted)...
    assert zombie.checkpointer.fenced
    assert _claims(memory_store) == [recovery.epoch]  # ...and it deletes nothing
    newer.detach()
    zombie.detach()
