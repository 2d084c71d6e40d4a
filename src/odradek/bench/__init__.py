"""``odradek bench``: Odradek against its peers and the hardware, measured in one run.

    python -m odradek.bench --quick --out bench-results

See BENCHMARKS.md at the repository root for the method. The CLI registers
``odradek bench`` by delegating to :func:`main`.
"""

from __future__ import annotations

from odradek.bench.runner import main

__all__ = ["main"]
