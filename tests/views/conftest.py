"""The view tests import their reducers (view_reducers.py) from this directory by name."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
