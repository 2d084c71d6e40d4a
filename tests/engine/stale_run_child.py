"""Child process of the stale key-index run reproduction (test_power_loss.py).

Usage: python stale_run_child.py DATA_DIR PHASE

Runs on a PowerLossDisk with a key-index memtable of 4 entries, prints ``ready`` when
its phase is done, and waits to be killed (the power cut):

* phase 1: creates topic ``t``, appends 4 records of key ``a`` (acknowledged: the
  memtable fills and the run ``[0, 4)`` is written), then *submits* 4 records of key
  ``b`` without waiting for their fsync: they are written, the memtable fills again and
  the run ``[4, 8)`` is written and made durable, but the records themselves never are.
* phase 2: opens the directory again (the run ``[4, 8)`` reaches past the log's end, so
  the key index removes it) and appends 4 keyless records, acknowledged: the log now
  reaches offset 8. Keyless records add nothing to the key index, so no run is written.
"""

from __future__ import annotations

import sys
import time

import odradek
from odradek import limits
from odradek.storage.powerloss import PowerLossDisk


def main() -> None:
    data_dir, phase = sys.argv[1], sys.argv[2]
    limits.key_index_memtable_entries_max = 4
    client = odradek.open(data_dir, disk=PowerLossDisk(data_dir), retention_check_seconds=3600)
    if phase == "1":
        client.create_topic("t", retention=None)
        client.append("t", [{"key": b"a", "value": b"acknowledged"}] * 4)
        client.engine.submit_append("t", [{"key": b"b", "value": b"never synced"}] * 4)
        client.engine._topic("t").keys.wait_idle()  # the run [4, 8) is durable
    else:
        client.append("t", [{"value": b"keyless"}] * 4)
    print("ready", flush=True)
    while True:  # the parent cuts the power
        time.sleep(1)


if __name__ == "__main__":
    main()
