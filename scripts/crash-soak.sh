#!/usr/bin/env bash
# Soak variant of the SIGKILL crash test: many more kill/restart cycles.
#   scripts/crash-soak.sh [CYCLES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export ODRADEK_CRASH_CYCLES=${1:-1000}
export ODRADEK_CRASH_SEED=${2:-$RANDOM}
echo "crash soak: $ODRADEK_CRASH_CYCLES cycles, seed $ODRADEK_CRASH_SEED" >&2
exec python3 -m pytest -q -p no:cacheprovider -o timeout=0 tests/engine/test_crash.py
