"""Fixtures of the cluster tests: real etcd members (etcd_servers.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# The helpers beside this file (and tests/storage's, whose free_ports they share) are
# imported by name under any --import-mode.
sys.path.insert(0, str(Path(__file__).parents[1] / "storage"))
sys.path.insert(0, str(Path(__file__).parent))

from etcd_servers import etcd_cluster3, etcd_server  # noqa: F401  (fixtures)
from object_servers import moto_s3  # noqa: F401  (a fixture: the agents' store)
