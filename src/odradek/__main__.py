"""``python -m odradek``: the command line (odradek.cli.main)."""

import sys

from odradek.cli.main import main

sys.exit(main())
