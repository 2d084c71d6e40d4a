"""``python -m odradek.bench``: the same as ``odradek bench``."""

from __future__ import annotations

import sys

from odradek.bench.runner import main

if __name__ == "__main__":
    sys.exit(main(None))
