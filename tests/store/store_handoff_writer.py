"""Child process of the handoff crash test: store_crash_writer.py's appends, with the
topic released to the store and adopted again at random between them (decision 0030,
step 1), so that kills land inside releases and adoptions too.

Usage: as store_crash_writer.py. ``ODRADEK_CRASH_HANDOFF_EVERY``: one append in about
this many is preceded by a release and an adoption (default 8). Each one adds ``begun``
then ``done`` to ``DATA_DIR/../handoffs.log``.
"""

from __future__ import annotations

import functools
import os
import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parents[1] / "engine"))

import crash_writer
import store_crash_writer

import odradek

if __name__ == "__main__":
    every = int(os.environ.get("ODRADEK_CRASH_HANDOFF_EVERY", "8"))
    chance = random.Random(int(sys.argv[4]) ^ 0x5EED)
    opened = functools.partial(
        odradek.open,
        store=os.environ["ODRADEK_CRASH_STORE"],
        store_settings=store_crash_writer.settings(),
    )

    def open_with_handoffs(*args: Any, **kwargs: Any) -> odradek.EmbeddedClient:
        client = opened(*args, **kwargs)
        journal = os.path.join(os.path.dirname(args[0]), "handoffs.log")
        engine = client.engine
        if crash_writer.TOPIC in engine.released_topics():
            engine.adopt_topic(crash_writer.TOPIC)  # released when the last writer was killed
        append = client.append

        def append_with_handoffs(topic: str, *a: Any, **k: Any) -> Any:
            if chance.randrange(every) == 0:
                with open(journal, "a") as handle:  # what the test counts: begun, done
                    handle.write("begun\n")
                engine.release_topic(topic)
                engine.adopt_topic(topic)
                with open(journal, "a") as handle:
                    handle.write("done\n")
            return append(topic, *a, **k)

        client.append = append_with_handoffs  # type: ignore[method-assign]
        return client

    odradek.open = open_with_handoffs  # type: ignore[assignment]
    crash_writer.main()
