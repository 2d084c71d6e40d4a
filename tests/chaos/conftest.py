"""Helpers of the chaos tests (simulation.py) are imported by name under any
--import-mode."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
